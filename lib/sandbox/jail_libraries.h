// What the jail (jail.h) and the seccomp filter (policy.h) need of libcap
// and libseccomp, as a table of the functions. libcrosvm.so carries the
// jail's code but links neither library (a VMM that never jails a device
// maps neither): the program that jails itself, crosvm-device or a unit
// test, links them and passes linked_jail_libraries().
#pragma once

#include <seccomp.h>
#include <sys/capability.h>

extern "C" {

struct crosvm_jail_libraries {
  decltype(&::cap_get_bound) cap_get_bound;
  decltype(&::cap_drop_bound) cap_drop_bound;
  decltype(&::cap_reset_ambient) cap_reset_ambient;
  decltype(&::cap_init) cap_init;
  decltype(&::cap_set_proc) cap_set_proc;
  decltype(&::cap_free) cap_free;
  decltype(&::seccomp_init) seccomp_init;
  decltype(&::seccomp_release) seccomp_release;
  decltype(&::seccomp_attr_set) seccomp_attr_set;
  decltype(&::seccomp_rule_add_array) seccomp_rule_add_array;
  decltype(&::seccomp_load) seccomp_load;
  decltype(&::seccomp_syscall_resolve_name) seccomp_syscall_resolve_name;
  decltype(&::seccomp_syscall_resolve_num_arch) seccomp_syscall_resolve_num_arch;
};

}  // extern "C"

namespace crosvm::sandbox {

using JailLibraries = crosvm_jail_libraries;

// The functions themselves (linked_jail_libraries.cpp, in the crosvm_jail
// archive, which links libcap and libseccomp).
const JailLibraries& linked_jail_libraries();

}  // namespace crosvm::sandbox
