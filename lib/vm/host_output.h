// Serial and console output bound for a host file descriptor (stdout, a
// file), written in batches by the event loop instead of one write() per
// byte on the vCPU thread. A guest printing its boot log makes one byte-wide
// port write per character; a write(2) for each cost a syscall per byte and
// woke whoever reads the other end of a pipe per byte (under nested KVM such
// a reader's wake-ups were what made guests stall: docs/testing.md). The
// vCPU only appends to a buffer and, when it was empty, posts one flush,
// which the loop makes kCoalesce later: where the loop thread runs as soon
// as it is posted to (one host CPU), a flush at once wrote a byte at a time
// again, at two context switches and four syscalls per byte, and doubled
// a verbose boot's time (bench/findings.md, "Boot to /init").
//
// The event loop never waits on the fd: it writes what the fd takes at once
// (chunks of at most PIPE_BUF once poll() says it is writable) and tries the
// rest again a little later, so a reader that stops reading (a paused pager,
// a harness that forgot its pipe) does not stall the control socket or
// the devices. Pipes, sockets and files keep that promise; a terminal whose
// reader stalls (Ctrl-S) may not: it polls writable with less room than
// PIPE_BUF, and the write then waits for the rest.
//
// Bounded: at most kMaxPending bytes wait. A device's write_some() takes
// only what fits and is told (when_writable) once room opens, so a virtio
// console leaves its guest's buffers in the ring meanwhile and nothing
// waits; a UART's vCPU (write_waiting) flushes the buffer itself when it is
// full, as a slow UART holds up its guest. Order is kept. The loop writes
// at most kMaxWritePerTurn bytes per turn and then yields, so a guest
// printing without pause to a fast file cannot keep the loop to itself.
// Whatever is still pending is written by flush() (the VM calls it when it
// stops) and the destructor; those wait for the reader, so nothing is lost.
//
// To a datagram socket (crosvm's type=unix, and syslog) it sends a line per
// datagram instead: the line without its "\n" (or "\r\n"), cut into pieces
// of kMaxLine bytes when longer, as crosvm does. A line is sent once it is
// complete; the last, unfinished one waits for its newline, or for flush().
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <utility>

#include "base/event_loop.h"
#include "base/unique_fd.h"
#include "devices/output_stream.h"

namespace crosvm {

class HostOutput final : public OutputStream, public std::enable_shared_from_this<HostOutput> {
 public:
  static constexpr size_t kMaxPending = 64 << 10;
  static constexpr size_t kMaxWritePerTurn = 64 << 10;
  // What output waits, at most, for more to join it: below what an eye or
  // a terminal's frame can tell.
  static constexpr std::chrono::milliseconds kCoalesce{2};

  static constexpr size_t kMaxLine = 1024;  // a datagram's line, at most

  // A line per datagram; `header` (syslog's), when set, goes before each.
  struct Datagrams {
    std::function<std::string()> header;
  };

  // Writes to `fd`, which it does not own (stdout) unless `owned` holds it.
  HostOutput(EventLoop& loop, int fd, std::shared_ptr<UniqueFd> owned = nullptr,
             std::optional<Datagrams> datagrams = std::nullopt);
  ~HostOutput() override;
  HostOutput(const HostOutput&) = delete;
  HostOutput& operator=(const HostOutput&) = delete;

  // From any thread. Queues what fits below kMaxPending.
  size_t write_some(std::span<const uint8_t> bytes) override;
  // `ready` runs once at least half the buffer is free.
  void when_writable(std::function<void()> ready) override;
  // From any thread: queues all of `bytes`, flushing on this thread when
  // the buffer is full.
  void write_waiting(std::span<const uint8_t> bytes) override;
  // Writes everything queued so far, on the calling thread, waiting for the
  // fd as long as it takes.
  void flush();

 private:
  struct Retry;  // the loop's timer for an fd that was not writable

  // On the loop: writes what the fd takes without waiting; arms the retry
  // for the rest.
  void flush_ready();
  void retry_later();
  void post_flush();      // kCoalesce from now
  void post_flush_now();  // the loop's next turn (a turn's budget was spent)
  // Hands room to the waiting writer, if there is room (pending_mutex_ not held).
  void wake_writer();
  bool has_room_locked() const { return pending_.size() <= kMaxPending / 2; }
  // The next datagram at the front of pending_ (pending_mutex_ held): its
  // bytes with the header, and how much of pending_ it stands for. None
  // while the first line is unfinished, unless `all`.
  std::optional<std::pair<std::string, size_t>> next_datagram_locked(bool all) const;

  EventLoop& loop_;
  const int fd_;
  std::shared_ptr<UniqueFd> owned_;
  const std::optional<Datagrams> datagrams_;
  std::unique_ptr<Retry> retry_;  // used on the loop only
  std::mutex write_mutex_;    // held while writing to the fd: order across threads
  std::mutex pending_mutex_;  // guards what follows
  std::string pending_;
  bool flush_posted_ = false;  // a loop flush is posted, or its retry armed
  std::function<void()> writable_waiter_;  // when_writable()'s, until there is room
};

}  // namespace crosvm
