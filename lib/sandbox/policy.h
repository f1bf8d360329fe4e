// The seccomp policies of the device processes: a common allow-list every
// device needs (memory, threads, its event loop, the vhost-user socket,
// its log) and each kind's own additions. Written as data, so that tests
// walk every rule and docs/security.md can list them.
//
// What is not allowed kills the process (SECCOMP_RET_KILL_PROCESS), except:
// open/openat/readlink fail with ENOENT (there is nothing to open anyway,
// and libraries probe files), and clone3 fails with ENOSYS (its flags sit
// in memory a filter cannot read: glibc then uses clone, whose flags are
// checked: threads only). ioctls are pinned to exact request numbers, mmap
// and mprotect never make memory executable.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "sandbox/jail_libraries.h"

namespace crosvm::sandbox {

// One condition on a syscall argument: (argument & mask) == value.
struct ArgumentCheck {
  unsigned index;
  uint64_t mask;
  uint64_t value;
};

// A syscall allowed when all its checks hold; a name may appear in several
// rules (any of them allows it).
struct SyscallRule {
  std::string_view name;
  std::vector<ArgumentCheck> checks;
};

struct Policy {
  std::string_view kind;  // "common", "block", "rng"
  std::vector<SyscallRule> rules;
};

const Policy& common_policy();
// The kind's own rules, or nullptr for a kind that cannot run jailed.
const Policy* device_policy(std::string_view kind);

struct FilterOptions {
  // crosvm's --jail seccomp-log-failures: a call outside the policy fails
  // with ENOSYS and is named on stderr (the device log) instead of killing
  // the process. For writing policies, never for production.
  bool log_failures = false;
  // Syscalls taken out of the policy (tests of the sandbox itself).
  std::vector<std::string> denied;
};

// Loads the common policy plus `kind`'s into this process, every thread of
// it (TSYNC). Irrevocable.
Result<void> load_filter(std::string_view kind, const FilterOptions& options, const JailLibraries& libraries);

}  // namespace crosvm::sandbox
