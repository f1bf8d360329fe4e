// Where a device sends what its guest writes out (a console's transmit
// queue): the stream takes what it can without ever waiting and says when
// it can take more. A device holds the guest's buffers back while the
// stream is full (virtio's own flow control), so nothing a guest writes
// queues up on the host without bound and no device thread waits on a
// slow reader.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <utility>

namespace crosvm {

class OutputStream {
 public:
  virtual ~OutputStream() = default;
  // Takes up to bytes.size() bytes; returns how many (0 when full). Never
  // waits.
  virtual size_t write_some(std::span<const uint8_t> bytes) = 0;
  // `ready` runs once (on any thread: it must only post work) when
  // write_some() can take bytes again; at once if it can now. An empty
  // function withdraws the request.
  virtual void when_writable(std::function<void()> ready) = 0;
  // Takes everything, waiting for room if it must: for a UART, whose vCPU
  // then waits as a guest waits for a slow serial line.
  virtual void write_waiting(std::span<const uint8_t> bytes) = 0;
};

// A stream that always has room: an embedder's callback (which copies or
// queues what it is given, bounded on its side), or nothing at all.
class CallbackOutput final : public OutputStream {
 public:
  using Callback = std::function<void(std::span<const uint8_t>)>;
  explicit CallbackOutput(Callback callback = {}) : callback_(std::move(callback)) {}

  size_t write_some(std::span<const uint8_t> bytes) override {
    if (callback_) callback_(bytes);
    return bytes.size();
  }
  void when_writable(std::function<void()> ready) override {
    if (ready) ready();
  }
  void write_waiting(std::span<const uint8_t> bytes) override { (void)write_some(bytes); }

 private:
  Callback callback_;
};

}  // namespace crosvm
