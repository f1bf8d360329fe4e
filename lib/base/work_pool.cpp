#include "base/work_pool.h"

#include <exception>

namespace crosvm {

WorkPool::WorkPool(std::string name, unsigned max_threads, const Logger& logger, ThreadPrologue prologue)
    : name_(std::move(name)),
      max_threads_(max_threads == 0 ? 1 : max_threads),
      logger_(logger),
      prologue_(std::move(prologue)) {}

WorkPool::~WorkPool() {
  drain();
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  work_ready_.notify_all();
  for (Thread& thread : threads_) thread.join();
}

void WorkPool::submit(std::function<void()> work, bool barrier) {
  std::unique_lock lock(mutex_);
  if (idle_ == 0 && threads_.size() < max_threads_) {
    std::function<void()> first = prologue_ ? prologue_() : std::function<void()>();
    auto thread = Thread::start(name_, [this, first = std::move(first)] {
                                  if (first) first();
                                  run();
                                },
                                [this](std::string_view what) { logger_.error("{}: {}", name_, what); });
    if (thread) {
      threads_.push_back(std::move(thread).value());
    } else if (threads_.empty()) {
      // Not one thread (the process's limit): the work runs here, in order.
      logger_.warn("{}: no thread for the work ({}); it runs on the caller's thread", name_,
                   thread.error().message);
      lock.unlock();
      work();
      return;
    }
  }
  const uint64_t sequence = next_sequence_++;
  unfinished_.insert(sequence);
  queued_.push_back({sequence, barrier, std::move(work)});
  lock.unlock();
  work_ready_.notify_one();
}

void WorkPool::drain() {
  std::unique_lock lock(mutex_);
  work_done_.wait(lock, [this] { return unfinished_.empty(); });
}

size_t WorkPool::unfinished() const {
  std::lock_guard lock(mutex_);
  return unfinished_.size();
}

size_t WorkPool::threads() const {
  std::lock_guard lock(mutex_);
  return threads_.size();
}

std::deque<WorkPool::Item>::iterator WorkPool::next_ready() {
  for (auto item = queued_.begin(); item != queued_.end(); ++item) {
    // A barrier waits until nothing older is queued or running.
    if (!item->barrier || item->sequence == *unfinished_.begin()) return item;
  }
  return queued_.end();
}

void WorkPool::run() {
  std::unique_lock lock(mutex_);
  while (true) {
    auto item = next_ready();
    if (item == queued_.end()) {
      if (stopping_) return;
      ++idle_;
      work_ready_.wait(lock);
      --idle_;
      continue;
    }
    const uint64_t sequence = item->sequence;
    std::function<void()> work = std::move(item->work);
    queued_.erase(item);
    lock.unlock();
    try {
      work();
    } catch (const std::exception& error) {
      logger_.error("{}: {}", name_, error.what());
    } catch (...) {
      logger_.error("{}: an unknown exception", name_);
    }
    work = nullptr;  // what it captured goes now, outside the lock
    lock.lock();
    const bool was_oldest = sequence == *unfinished_.begin();
    unfinished_.erase(sequence);
    if (unfinished_.empty()) work_done_.notify_all();
    // A barrier may be ready now; another thread may be waiting for it.
    if (was_oldest && !queued_.empty()) work_ready_.notify_all();
  }
}

}  // namespace crosvm
