// A virtio device in a jailed process of its own, as the VMM sees it: the
// helper (crosvm-device) spawned with every fd the device needs (its end
// of a vhost-user socketpair, a disk, a log pipe), its log lines forwarded
// to the VM's logger, its pidfd watched on the VM's loop. The VMM talks to
// the device through a vhost-user frontend on the other end of the
// socketpair.
//
// Any exit of the process while it is watched is reported (the VM ends
// with it, as crosvm's does). Destroying the object kills the process and
// reaps it: nothing is left behind, and no one else can reap it (it is a
// clone child: waitpid(-1, ...) does not see it).
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "base/event_loop.h"
#include "base/log.h"
#include "base/result.h"
#include "base/unique_fd.h"
#include "sandbox/device_control.h"
#include "sandbox/spawn.h"

namespace crosvm::sandbox {

// Where crosvm-device is: `configured` if not empty, else the
// CROSVM_DEVICE_HELPER environment variable, else beside the library (a
// build tree), else the installed libexecdir.
Result<std::string> find_helper(const std::string& configured);

struct DeviceProcessOptions {
  std::string helper;  // crosvm-device's path (find_helper)
  std::string kind;    // "block", "rng"
  std::string name;    // for the log and the exit reason: "virtio-blk 0 (disk.img)"
  // The helper's device arguments (crosvm-device's usage), without fds.
  std::vector<std::string> arguments;
  // More fds the device needs, each placed at 5, 6, ... and named to the
  // helper as "FLAG N": {"--file-fd", the disk}, the console's pipes.
  std::vector<std::pair<std::string, UniqueFd>> fds;
  bool seccomp_log_failures = false;
  std::vector<std::string> denied_syscalls;  // tests of the sandbox itself
  bool debug = false;                        // forward debug lines too
};

class DeviceProcess {
 public:
  // Spawns the device; `connection` receives the VMM's end of the
  // vhost-user socketpair.
  static Result<std::unique_ptr<DeviceProcess>> start(DeviceProcessOptions options, const Logger& logger,
                                                      UniqueFd& connection);
  ~DeviceProcess();
  DeviceProcess(const DeviceProcess&) = delete;
  DeviceProcess& operator=(const DeviceProcess&) = delete;

  // From now on its log lines go to the logger, and when it exits `on_exit`
  // runs on the loop with a sentence: "device virtio-rng (pid 12) was
  // killed by signal 9 (SIGKILL)". Once.
  Result<void> watch(EventLoop& loop, std::function<void(const std::string&)> on_exit);

  // Before watch(), when the device could not be set up: waits (up to a
  // second) for the process to end and says how it ended and what it
  // logged, for the error message: "exited with status 1: jail: pivot_root:
  // Invalid argument".
  std::string failure_report();

  // Asks the device to do what vhost-user does not carry (a disk's
  // resize), and waits for its answer (at most 5 s). Any thread.
  Result<void> request(ControlRequest request, uint64_t value);

  pid_t pid() const { return process_.pid; }
  const std::string& name() const { return name_; }

 private:
  struct Watch;
  DeviceProcess(Process process, std::string name, UniqueFd log, UniqueFd control, const Logger& logger);

  Process process_;
  std::string name_;
  UniqueFd log_;  // until watch() takes it
  std::mutex control_mutex_;
  UniqueFd control_;  // device_control.h, one request at a time
  Logger logger_;
  std::shared_ptr<Watch> watch_;
  bool reaped_ = false;
};

}  // namespace crosvm::sandbox
