// A host program a device relies on, started by the VMM beside the VM
// (passt, which carries a NIC's frames to the host's sockets). It is no
// device process: it is not jailed by us (passt sandboxes itself), and its
// exit does not end the VM (the device sees its end of the connection
// close and takes its link down). Like a device process it is a clone
// child started with exec (spawn.h): an embedder's waitpid(-1, ...) never
// sees it, and destroying the object kills and reaps it.
//
// What it writes on stdout and stderr goes to the VM's logger as warnings
// (it is run quiet: what it still says matters), one line at a time, each
// cut at 1 KiB and under a GuestLog bucket; an exit other than status 0 is
// one more line.
#pragma once

#include <sys/types.h>

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/host_service.h"
#include "base/log.h"
#include "base/result.h"
#include "base/thread.h"
#include "base/unique_fd.h"
#include "sandbox/spawn.h"

namespace crosvm::sandbox {

struct CompanionOptions {
  std::string name;                    // for the log: "passt for virtio-net 0"
  std::string program;                 // an absolute path (find_program)
  std::vector<std::string> arguments;  // argv[1..]
  std::vector<int> fds;                // at 3, 4, ... in the child; the caller keeps its copies
  // Lines of its output that carry nothing (true: dropped).
  std::function<bool(std::string_view)> is_noise;
};

class Companion final : public HostService {
 public:
  static Result<std::unique_ptr<Companion>> start(CompanionOptions options, const Logger& logger);
  ~Companion() override;  // kills and reaps the program, then stops relaying its output
  Companion(const Companion&) = delete;
  Companion& operator=(const Companion&) = delete;

  pid_t pid() const { return process_.pid; }
  const std::string& name() const { return name_; }
  // How it ended, once it has (reaps it); nullopt while it runs.
  Result<std::optional<ExitStatus>> exited();

 private:
  Companion(Process process, std::string name) : process_(std::move(process)), name_(std::move(name)) {}
  Process process_;
  std::string name_;
  std::optional<ExitStatus> status_;
  UniqueFd stop_;  // an eventfd: tells the relay thread to finish
  Thread relay_;
};

// `name` as execvp would find it on PATH (or `name` itself when it holds a
// '/'), checked to be executable; the error says what was tried.
Result<std::string> find_program(const std::string& name);

}  // namespace crosvm::sandbox
