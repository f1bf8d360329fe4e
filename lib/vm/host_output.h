// Serial and console output bound for a host file descriptor (stdout, a
// file), written in batches by the event loop instead of one write() per
// byte on the vCPU thread. A guest printing its boot log makes one byte-wide
// port write per character; a write(2) for each cost a syscall per byte and
// woke whoever reads the other end of a pipe per byte (under nested KVM such
// a reader's wake-ups were what made guests stall: docs/testing.md). The
// vCPU only appends to a buffer and, when it was empty, posts one flush.
//
// Bounded: beyond kMaxPending bytes waiting, the writer flushes itself, as
// a slow UART holds up its guest. Order is kept. Whatever is still pending
// is written by flush() (the VM calls it when it stops) and the destructor.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>

#include "base/unique_fd.h"
#include "vm/event_loop.h"

namespace crosvm {

class HostOutput : public std::enable_shared_from_this<HostOutput> {
 public:
  static constexpr size_t kMaxPending = 64 << 10;

  // Writes to `fd`, which it does not own (stdout) unless `owned` holds it.
  HostOutput(EventLoop& loop, int fd, std::shared_ptr<UniqueFd> owned = nullptr)
      : loop_(loop), fd_(fd), owned_(std::move(owned)) {}
  ~HostOutput();
  HostOutput(const HostOutput&) = delete;
  HostOutput& operator=(const HostOutput&) = delete;

  // From any thread: queues `bytes` for the fd.
  void write(std::span<const uint8_t> bytes);
  // Writes everything queued so far, on the calling thread.
  void flush();

 private:
  EventLoop& loop_;
  const int fd_;
  std::shared_ptr<UniqueFd> owned_;
  std::mutex write_mutex_;    // held while writing to the fd: order across threads
  std::mutex pending_mutex_;  // guards what follows
  std::string pending_;
  bool flush_posted_ = false;
};

}  // namespace crosvm
