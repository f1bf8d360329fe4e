// A few threads that run blocking work (a disk's reads and writes) off the
// thread that queues it, so that requests are served concurrently and
// finish in whatever order the host completes them.
//
// Threads start as work needs them, up to the pool's maximum, and stay
// until the pool goes away: how many a guest can make busy is bounded, and
// so is what is queued (the caller's own bound: a virtio queue's size).
// Work submitted as a barrier starts only after everything submitted before
// it has finished (a FLUSH after the writes the guest completed); work
// submitted after a barrier does not wait for it.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "base/log.h"
#include "base/thread.h"

namespace crosvm {

class WorkPool {
 public:
  // Called on the thread that submits work as it starts a pool thread for
  // it; what it returns (if anything) runs first on the new thread. A new
  // thread inherits its starter's scheduling policy: a disk's worker that
  // batches (request_batching.h) gives its pool threads SCHED_OTHER back.
  using ThreadPrologue = std::function<std::function<void()>()>;

  // Threads are named `name` ("crosvm_blk0io", 15 characters shown).
  WorkPool(std::string name, unsigned max_threads, const Logger& logger, ThreadPrologue prologue = {});
  // Waits for what was submitted, then ends the threads.
  ~WorkPool();
  WorkPool(const WorkPool&) = delete;
  WorkPool& operator=(const WorkPool&) = delete;

  // Queues `work`; it must not throw (what escapes is logged and dropped).
  // When no thread can be started at all, `work` runs here, now.
  void submit(std::function<void()> work, bool barrier = false);
  // Returns once everything submitted so far has finished. Not from the
  // pool's own work.
  void drain();
  // Queued or running.
  size_t unfinished() const;
  size_t threads() const;

 private:
  struct Item {
    uint64_t sequence;
    bool barrier;
    std::function<void()> work;
  };
  void run();
  // The first queued item that may start now; end() if none. Under mutex_.
  std::deque<Item>::iterator next_ready();

  std::string name_;
  unsigned max_threads_;
  Logger logger_;
  ThreadPrologue prologue_;
  mutable std::mutex mutex_;
  std::condition_variable work_ready_;
  std::condition_variable work_done_;
  std::deque<Item> queued_;
  std::set<uint64_t> unfinished_;  // the sequence numbers queued or running
  uint64_t next_sequence_ = 0;
  unsigned idle_ = 0;
  bool stopping_ = false;
  std::vector<Thread> threads_;
};

}  // namespace crosvm
