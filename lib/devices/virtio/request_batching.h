// Whether a device's worker, woken by a guest's kick, takes the CPU from
// the vCPU that kicked it, or lets the guest go on and queue more first.
//
// On a host whose CPUs are all busy (a vCPU and its device's worker on one
// CPU), the kernel runs a worker that a kick wakes at once, ahead of the
// vCPU: the guest's request is answered before it could queue another, and
// every request costs its own kick exit and its own interrupt. That is the
// shortest wait for a guest that waits on each request; a guest with many
// in flight (32 threads reading, a database) would rather queue them all
// and take one interrupt for the lot. While a worker batches, it runs under
// SCHED_BATCH, which the kernel never lets preempt a running task on its
// wake-up: the worker runs when the vCPU waits (the guest idles, having
// queued what it had) or at the next scheduler tick. With idle CPUs it
// changes nothing: a woken thread goes to one of them either way.
//
// The worker batches while its turns show more than one request at a time,
// and answers at once as soon as a turn takes a request alone with nothing
// else in flight. A worker that answers at once never sees a second
// request (it answers each first), so every kProbeEvery lone turns it tries
// batching for one turn: a guest that was waiting on each request pays
// one slower answer in that many.
#pragma once

#include <cstddef>

#include "base/result.h"

namespace crosvm::virtio {

class RequestBatching {
 public:
  static constexpr unsigned kProbeEvery = 32;

  // After a turn that took `taken` requests while `in_flight` others were
  // still running. Returns true when the worker should change how it runs
  // (batching() says how).
  bool after_turn(size_t taken, size_t in_flight);
  bool batching() const { return batching_; }

 private:
  bool batching_ = false;
  unsigned lone_turns_ = 0;
};

// The calling thread: SCHED_BATCH while `batching`, SCHED_OTHER otherwise
// (its nice value kept either way). An error, and nothing changed, when
// the thread is under any other policy (one the embedder chose).
Result<void> set_thread_batching(bool batching);

}  // namespace crosvm::virtio
