// The jail a device process puts itself in (crosvm-device, before it builds
// its device), in this order:
//   1. new mount, network, IPC and UTS namespaces (the user and PID
//      namespaces came with the clone);
//   2. an empty, read-only tmpfs as its root (pivot_root; the old root is
//      detached): there is no file to open, and nothing to write;
//   3. rlimits: a few fds, no core dumps, no locked memory;
//   4. every capability set emptied (effective, permitted, inheritable,
//      bounding, ambient);
//   5. PR_SET_NO_NEW_PRIVS.
// Then the device is built from its fds, and last the seccomp filter is
// loaded (policy.h).
#pragma once

#include "base/result.h"
#include "sandbox/jail_libraries.h"

namespace crosvm::sandbox {

struct JailLimits {
  unsigned max_fds = 64;  // RLIMIT_NOFILE: the device's fds, with room for its sessions
};

Result<void> enter_jail(const JailLimits& limits, const JailLibraries& libraries);

}  // namespace crosvm::sandbox
