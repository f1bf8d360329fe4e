#include "vm/callback_queue.h"

#include <sys/eventfd.h>

namespace crosvm {

Result<std::unique_ptr<CallbackQueue>> CallbackQueue::create() {
  EventFd ready = CROSVM_TRY(EventFd::create(EFD_NONBLOCK));
  return std::unique_ptr<CallbackQueue>(new CallbackQueue(std::move(ready)));
}

void CallbackQueue::push_output(uint32_t port, const OutputCallback& callback,
                                std::span<const uint8_t> bytes) {
  std::lock_guard lock(mutex_);
  const size_t room = kMaxQueuedOutputBytes - queued_output_bytes_;
  const size_t taken = std::min(room, bytes.size());
  dropped_bytes_ += bytes.size() - taken;
  if (taken == 0) return;
  bytes = bytes.first(taken);
  queued_output_bytes_ += taken;
  if (!tasks_.empty() && tasks_.back().output == &callback && tasks_.back().port == port) {
    tasks_.back().bytes.insert(tasks_.back().bytes.end(), bytes.begin(), bytes.end());
    return;  // already signalled
  }
  tasks_.push_back(Task{{}, &callback, port, std::vector<uint8_t>(bytes.begin(), bytes.end())});
  ready_.signal();
}

void CallbackQueue::push(std::function<void()> task) {
  std::lock_guard lock(mutex_);
  tasks_.push_back(Task{std::move(task), nullptr, 0, {}});
  ready_.signal();
}

size_t CallbackQueue::dispatch(const std::function<bool()>& keep_going) {
  std::deque<Task> batch;
  {
    std::lock_guard lock(mutex_);
    ready_.drain();
    batch.swap(tasks_);
    queued_output_bytes_ = 0;
  }
  size_t ran = 0;
  for (Task& task : batch) {
    if (!keep_going()) break;
    if (task.output != nullptr) {
      (*task.output)(task.bytes);
    } else {
      task.run();
    }
    ++ran;
  }
  return ran;
}

uint64_t CallbackQueue::take_dropped_bytes() {
  std::lock_guard lock(mutex_);
  return std::exchange(dropped_bytes_, 0);
}

}  // namespace crosvm
