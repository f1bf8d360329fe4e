#include "sandbox/jail_libraries.h"

namespace crosvm::sandbox {

const JailLibraries& linked_jail_libraries() {
  static constexpr JailLibraries kLinked{
      .cap_get_bound = ::cap_get_bound,
      .cap_drop_bound = ::cap_drop_bound,
      .cap_reset_ambient = ::cap_reset_ambient,
      .cap_init = ::cap_init,
      .cap_set_proc = ::cap_set_proc,
      .cap_free = ::cap_free,
      .seccomp_init = ::seccomp_init,
      .seccomp_release = ::seccomp_release,
      .seccomp_attr_set = ::seccomp_attr_set,
      .seccomp_rule_add_array = ::seccomp_rule_add_array,
      .seccomp_load = ::seccomp_load,
      .seccomp_syscall_resolve_name = ::seccomp_syscall_resolve_name,
      .seccomp_syscall_resolve_num_arch = ::seccomp_syscall_resolve_num_arch,
  };
  return kLinked;
}

}  // namespace crosvm::sandbox
