#include "vm/host_output.h"

#include <limits.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>

#include "base/file_io.h"

namespace crosvm {

namespace {
// How long the loop leaves an fd that was not writable before trying again.
constexpr std::chrono::milliseconds kRetryInterval{10};
}  // namespace

struct HostOutput::Retry {
  explicit Retry(boost::asio::io_context& context) : timer(context) {}
  boost::asio::steady_timer timer;
};

HostOutput::HostOutput(EventLoop& loop, int fd, std::shared_ptr<UniqueFd> owned, std::optional<Datagrams> datagrams)
    : loop_(loop),
      fd_(fd),
      owned_(std::move(owned)),
      datagrams_(std::move(datagrams)),
      retry_(std::make_unique<Retry>(loop.context())) {}

HostOutput::~HostOutput() {
  {
    std::lock_guard lock(pending_mutex_);
    writable_waiter_ = nullptr;  // its device may be going away too
  }
  flush();
}

size_t HostOutput::write_some(std::span<const uint8_t> bytes) {
  bool post = false;
  size_t taken = 0;
  {
    std::lock_guard lock(pending_mutex_);
    taken = std::min(bytes.size(), kMaxPending - std::min(kMaxPending, pending_.size()));
    pending_.append(reinterpret_cast<const char*>(bytes.data()), taken);
    if (taken > 0 && !flush_posted_) flush_posted_ = post = true;
  }
  if (post) post_flush();
  return taken;
}

void HostOutput::when_writable(std::function<void()> ready) {
  {
    std::lock_guard lock(pending_mutex_);
    if (!ready || !has_room_locked()) {
      writable_waiter_ = std::move(ready);
      return;
    }
    writable_waiter_ = nullptr;
  }
  ready();
}

void HostOutput::write_waiting(std::span<const uint8_t> bytes) {
  bool post = false;
  bool full = false;
  {
    std::lock_guard lock(pending_mutex_);
    pending_.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    full = pending_.size() >= kMaxPending;
    if (!full && !flush_posted_) flush_posted_ = post = true;
  }
  if (full) {
    flush();  // the guest waits for a slow reader, as for a slow UART
  } else if (post) {
    post_flush();
  }
}

void HostOutput::post_flush() {
  // The loop collects for kCoalesce before it writes: a byte per port write
  // makes a batch per line or more, not a write (and a wake-up of the loop
  // and of the reader) per byte. The timer is the retry's: at most one of
  // the two is armed, as flush_posted_ stays set until the flush is done.
  loop_.post([weak = weak_from_this()] {
    auto self = weak.lock();
    if (!self) return;
    self->retry_->timer.expires_after(kCoalesce);
    self->retry_->timer.async_wait([weak](const boost::system::error_code& error) {
      if (error) return;
      if (auto self = weak.lock()) self->flush_ready();
    });
  });
}

void HostOutput::post_flush_now() {
  loop_.post([weak = weak_from_this()] {
    if (auto self = weak.lock()) self->flush_ready();
  });
}

void HostOutput::wake_writer() {
  std::function<void()> waiter;
  {
    std::lock_guard lock(pending_mutex_);
    if (!writable_waiter_ || !has_room_locked()) return;
    waiter.swap(writable_waiter_);
  }
  waiter();
}

void HostOutput::flush() {
  {
    std::lock_guard writing(write_mutex_);
    if (datagrams_) {
      for (;;) {
        std::optional<std::pair<std::string, size_t>> next;
        {
          std::lock_guard lock(pending_mutex_);
          next = next_datagram_locked(true);
          if (!next) {
            flush_posted_ = false;
            break;
          }
          pending_.erase(0, next->second);
        }
        // Waits for room; an error (nobody reads the socket any more) drops the line.
        while (::send(fd_, next->first.data(), next->first.size(), MSG_NOSIGNAL) < 0 && errno == EINTR) {
        }
      }
    } else {
      std::string batch;
      {
        std::lock_guard lock(pending_mutex_);
        batch.swap(pending_);
        flush_posted_ = false;
      }
      if (!batch.empty()) {
        (void)write_all(fd_, std::span(reinterpret_cast<const uint8_t*>(batch.data()), batch.size()));
      }
    }
  }
  wake_writer();
}

std::optional<std::pair<std::string, size_t>> HostOutput::next_datagram_locked(bool all) const {
  const std::string_view pending(pending_);
  const size_t newline = pending.substr(0, kMaxLine + 1).find('\n');
  std::string_view line;
  size_t taken = 0;
  if (newline != std::string_view::npos) {
    line = pending.substr(0, newline);
    taken = newline + 1;
    if (line.ends_with('\r')) line.remove_suffix(1);
  } else if (pending.size() >= kMaxLine || (all && !pending.empty())) {
    line = pending.substr(0, kMaxLine);
    taken = line.size();
  } else {
    return std::nullopt;
  }
  std::string datagram = datagrams_->header ? datagrams_->header() : std::string();
  datagram.append(line);
  return std::pair{std::move(datagram), taken};
}

void HostOutput::flush_ready() {
  // A vCPU writing a full buffer holds the lock while it waits for the
  // reader: the loop does not wait with it.
  std::unique_lock writing(write_mutex_, std::try_to_lock);
  if (!writing.owns_lock()) return retry_later();
  size_t budget = kMaxWritePerTurn;
  for (;;) {
    if (budget == 0) {
      // More is waiting (a guest that never pauses): the rest in another
      // turn, after whatever else the loop has to do. flush_posted_ stays.
      writing.unlock();
      wake_writer();
      return post_flush_now();
    }
    pollfd ready{fd_, POLLOUT, 0};
    if (::poll(&ready, 1, 0) <= 0) return retry_later();  // not writable yet (or poll failed)
    if (datagrams_) {
      std::optional<std::pair<std::string, size_t>> next;
      {
        std::lock_guard lock(pending_mutex_);
        next = next_datagram_locked(false);
        if (!next) {  // nothing, or only an unfinished line: the next write posts again
          flush_posted_ = false;
          break;
        }
      }
      if ((ready.revents & POLLOUT) != 0 &&
          ::send(fd_, next->first.data(), next->first.size(), MSG_DONTWAIT | MSG_NOSIGNAL) < 0 &&
          (errno == EAGAIN || errno == EINTR)) {
        return retry_later();  // the reader's queue is full: the line stays in front
      }
      // Sent, or dropped (nobody reads the socket any more). Only this
      // thread, holding write_mutex_, takes from the front of pending_.
      std::lock_guard lock(pending_mutex_);
      pending_.erase(0, next->second);
      budget -= std::min(budget, next->second);
      continue;
    }
    std::string chunk;
    {
      std::lock_guard lock(pending_mutex_);
      if (pending_.empty()) {
        flush_posted_ = false;
        break;
      }
      // A pipe that polls writable has room for PIPE_BUF bytes at least: a
      // write of no more does not block, whatever the fd's mode.
      chunk = pending_.substr(0, std::min<size_t>(PIPE_BUF, budget));
      pending_.erase(0, chunk.size());
    }
    budget -= chunk.size();
    ssize_t written = -1;  // polled without POLLOUT: an error, a hang-up or a bad fd
    if ((ready.revents & POLLOUT) != 0) {
      written = ::write(fd_, chunk.data(), chunk.size());
      if (written < 0 && (errno == EINTR || errno == EAGAIN)) written = 0;
    }
    if (written >= 0 && static_cast<size_t>(written) < chunk.size()) {
      // The rest goes back in front: whatever was appended since comes after it.
      std::lock_guard lock(pending_mutex_);
      pending_.insert(0, chunk, static_cast<size_t>(written), std::string::npos);
      if (written == 0) {
        return retry_later();
      }
    }
    // written < 0 otherwise: the reader is gone or the fd is broken; the
    // bytes are dropped, as write_all() drops them.
  }
  writing.unlock();
  wake_writer();
}

void HostOutput::retry_later() {
  retry_->timer.expires_after(kRetryInterval);
  retry_->timer.async_wait([weak = weak_from_this()](const boost::system::error_code& error) {
    if (error) return;
    if (auto self = weak.lock()) self->flush_ready();
  });
}

}  // namespace crosvm
