#include "devices/virtio/request_batching.h"

#include <sched.h>

#include <cerrno>

namespace crosvm::virtio {

bool RequestBatching::after_turn(size_t taken, size_t in_flight) {
  if (taken == 0) return false;  // a kick that found nothing new
  const bool deep = taken > 1 || in_flight > 0;
  if (batching_) {
    if (deep) return false;
    batching_ = false;
    lone_turns_ = 0;
    return true;
  }
  if (!deep && ++lone_turns_ < kProbeEvery) return false;
  batching_ = true;
  lone_turns_ = 0;
  return true;
}

Result<void> set_thread_batching(bool batching) {
  // Only ever between the two, and only from the one this sets: a thread
  // the embedder made real-time or idle, or gave SCHED_RESET_ON_FORK (the
  // worker inherits its creator's policy), is left as it is. (A jailed
  // disk's seccomp policy allows exactly these two values.)
  const int current = ::sched_getscheduler(0);
  if (current < 0) return make_errno_error(ErrorCode::kIo, errno, "cannot read the thread's scheduling policy");
  if (current != (batching ? SCHED_OTHER : SCHED_BATCH)) {
    return make_error(ErrorCode::kState, "the thread runs under scheduling policy {:#x}, which is left as it is",
                      current);
  }
  const sched_param param{};  // priority 0: the only one these policies have
  if (::sched_setscheduler(0, batching ? SCHED_BATCH : SCHED_OTHER, &param) != 0) {
    return make_errno_error(ErrorCode::kIo, errno, "cannot set the thread's scheduling policy");
  }
  return {};
}

}  // namespace crosvm::virtio
