#include "sandbox/jail.h"

#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

namespace crosvm::sandbox {
namespace {

Error jail_error(int error, std::string_view step) {
  return make_errno_error(ErrorCode::kDevice, error, "jail: {}", step);
}

Result<void> empty_root() {
  // Nothing we mount is seen outside, nor anything from outside here.
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return jail_error(errno, "private mounts");
  // An empty tmpfs, read-only from the start (Debian has no /var/empty),
  // mounted over a directory every system has, becomes the root.
  static constexpr const char* kMountPoint = "/tmp";
  if (::mount("none", kMountPoint, "tmpfs", MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,nr_inodes=1,mode=0555") != 0) {
    return jail_error(errno, "mount an empty root");
  }
  if (::chdir(kMountPoint) != 0) return jail_error(errno, "chdir to the new root");
  // pivot_root(".", "."): the old root is stacked under the new one, then
  // detached, and with it every file of the host.
  if (::syscall(SYS_pivot_root, ".", ".") != 0) return jail_error(errno, "pivot_root");
  if (::umount2(".", MNT_DETACH) != 0) return jail_error(errno, "detach the old root");
  if (::chdir("/") != 0) return jail_error(errno, "chdir /");
  return {};
}

Result<void> limit(int resource, rlim_t value, std::string_view what) {
  const rlimit limits{value, value};
  if (::setrlimit(resource, &limits) != 0) return jail_error(errno, what);
  return {};
}

Result<void> drop_capabilities(const JailLibraries& libraries) {
  // The bounding set first (it takes CAP_SETPCAP, which goes next).
  for (cap_value_t cap = 0; libraries.cap_get_bound(cap) >= 0; ++cap) {
    if (libraries.cap_drop_bound(cap) != 0) return jail_error(errno, "drop the bounding set");
  }
  if (libraries.cap_reset_ambient() != 0) return jail_error(errno, "clear the ambient set");
  cap_t none = libraries.cap_init();  // effective, permitted and inheritable all empty
  if (none == nullptr) return jail_error(errno, "cap_init");
  const int set = libraries.cap_set_proc(none);
  const int error = errno;
  libraries.cap_free(none);
  if (set != 0) return jail_error(error, "clear the capability sets");
  return {};
}

}  // namespace

Result<void> enter_jail(const JailLimits& limits, const JailLibraries& libraries) {
  if (::unshare(CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS) != 0) {
    return jail_error(errno, "new mount, network, IPC and UTS namespaces");
  }
  CROSVM_TRY(empty_root());
  CROSVM_TRY(limit(RLIMIT_NOFILE, limits.max_fds, "RLIMIT_NOFILE"));
  CROSVM_TRY(limit(RLIMIT_CORE, 0, "RLIMIT_CORE"));
  CROSVM_TRY(limit(RLIMIT_MEMLOCK, 0, "RLIMIT_MEMLOCK"));
  CROSVM_TRY(drop_capabilities(libraries));
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return jail_error(errno, "PR_SET_NO_NEW_PRIVS");
  return {};
}

}  // namespace crosvm::sandbox
