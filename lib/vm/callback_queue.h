// Callbacks an embedder runs on its own thread: the library's threads queue
// them, an eventfd becomes readable, and the embedder's event loop calls
// crosvm_vm_dispatch(), which runs them in order (libmpv's model). Serial
// output queued back to back for one port is merged into one call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <span>
#include <vector>

#include "base/event_fd.h"
#include "base/result.h"

namespace crosvm {

class CallbackQueue {
 public:
  using OutputCallback = std::function<void(std::span<const uint8_t>)>;

  // Output beyond this many queued bytes is dropped (and counted) rather
  // than let a stalled embedder grow the VMM without bound.
  static constexpr size_t kMaxQueuedOutputBytes = 4u << 20;

  static Result<std::unique_ptr<CallbackQueue>> create();

  // From any thread. `port` identifies the output so that consecutive
  // chunks for the same port are merged.
  void push_output(uint32_t port, const OutputCallback& callback, std::span<const uint8_t> bytes);
  void push(std::function<void()> task);

  // Readable while callbacks are queued.
  int fd() const { return ready_.fd(); }
  // Runs what is queued now, in order, on the calling thread; returns how
  // many callbacks ran. `keep_going` is asked before each one.
  size_t dispatch(const std::function<bool()>& keep_going);
  // Bytes of output dropped since the last call.
  uint64_t take_dropped_bytes();

 private:
  struct Task {
    std::function<void()> run;       // a plain task, or
    const OutputCallback* output = nullptr;  // output for `port`
    uint32_t port = 0;
    std::vector<uint8_t> bytes;
  };
  explicit CallbackQueue(EventFd ready) : ready_(std::move(ready)) {}

  EventFd ready_;
  std::mutex mutex_;
  std::deque<Task> tasks_;
  size_t queued_output_bytes_ = 0;
  uint64_t dropped_bytes_ = 0;
};

}  // namespace crosvm
