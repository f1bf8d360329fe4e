// Starting a device process: clone3 into new user and PID namespaces with a
// pidfd, then exec of the helper. Never a fork without exec: the VMM is
// multithreaded (an embedder's threads, vCPUs, loops), and between clone
// and exec the child only waits for its uid map, moves fds into place and
// execs, with raw async-signal-safe calls and no allocation.
//
// The child is a "clone child" (no exit signal): an embedder's
// waitpid(-1, ...) never sees it, only waits on its pidfd do.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"
#include "sandbox/aborted_status.h"

namespace crosvm::sandbox {

struct SpawnOptions {
  std::string program;                 // the helper's absolute path
  std::vector<std::string> arguments;  // argv[1..]
  // Placed at fds 3, 4, ... in the child, in this order; every other fd of
  // the VMM stays behind. The caller keeps its own copies.
  std::vector<int> fds;
  int stdin_fd = -1;   // fd 0 (e.g. /dev/null); -1: closed
  int output_fd = -1;  // fds 1 and 2 (the log pipe); -1: closed
  // New user and PID namespaces. Root's device runs as nobody (65534)
  // outside them; anyone else's as themselves. Always on in the VMM; off
  // only for tests of the spawning itself.
  bool new_namespaces = true;
};

struct Process {
  pid_t pid = -1;
  UniqueFd pidfd;  // readable once the process has exited
};

// Starts `options.program`; returns once it has been exec'd (an exec that
// fails is reported here, with its errno, and leaves no process).
Result<Process> spawn(const SpawnOptions& options);

// How a process ended, as waitid() says.
struct ExitStatus {
  bool signaled = false;
  int code = 0;  // the exit code, or the signal
};
// Reaps the process (it must have exited: its pidfd is readable, or after
// kill()); nullopt while it still runs.
Result<std::optional<ExitStatus>> try_reap(int pidfd);
// SIGKILL through the pidfd, then waits for it (bounded: the kernel ends a
// killed process promptly) and reaps it.
Result<ExitStatus> kill_and_reap(const Process& process);
// "exited with status 1", "killed by signal 31 (SIGSYS)", and for
// kAbortedStatus "aborted (SIGABRT)".
std::string describe(const ExitStatus& status);

}  // namespace crosvm::sandbox
