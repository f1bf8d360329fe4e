#include "vm/vcpu_kick.h"

#include <csignal>
#include <mutex>

namespace crosvm {
namespace {

void ignore_kick(int) {}

}  // namespace

int kick_signal() { return SIGRTMIN + kKickSignalOffset; }

Result<void> install_kick_handler() {
  static std::mutex mutex;
  static bool installed = false;
  std::lock_guard lock(mutex);
  if (installed) return {};

  struct sigaction current {};
  if (::sigaction(kick_signal(), nullptr, &current) != 0) {
    return make_errno_error(ErrorCode::kInternal, errno, "cannot read the handler of signal {}",
                            kick_signal());
  }
  if (current.sa_handler != SIG_DFL && current.sa_handler != SIG_IGN &&
      current.sa_handler != ignore_kick) {
    return make_error(ErrorCode::kState,
                      "signal SIGRTMIN+{} already has a handler; libcrosvm needs it to stop vCPUs",
                      kKickSignalOffset);
  }
  struct sigaction action {};
  action.sa_handler = ignore_kick;
  sigemptyset(&action.sa_mask);
  action.sa_flags = 0;  // no SA_RESTART: KVM_RUN must return EINTR
  if (::sigaction(kick_signal(), &action, nullptr) != 0) {
    return make_errno_error(ErrorCode::kInternal, errno, "cannot install the vCPU kick handler");
  }
  installed = true;
  return {};
}

void unblock_kick_signal() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, kick_signal());
  ::pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
}

void kick_thread(pthread_t thread) { ::pthread_kill(thread, kick_signal()); }

}  // namespace crosvm
