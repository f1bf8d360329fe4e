// An eventfd(2): the currency of KVM's irqfd and ioeventfd, and of wake-ups
// between threads.
#pragma once

#include <cstdint>

#include "base/result.h"
#include "base/unique_fd.h"

namespace crosvm {

class EventFd {
 public:
  static Result<EventFd> create(int flags = 0);
  // Takes `fd` from another process (a vhost-user kick or call fd) after
  // checking that it is an eventfd: anything else is refused, so a peer
  // cannot make a device block on a pipe or write into a file.
  static Result<EventFd> adopt(UniqueFd fd);

  // Adds one to the counter; never blocks for realistic counts.
  void signal() const;
  // Returns the counter and resets it; 0 when nothing was signalled (the fd is
  // non-blocking when created with EFD_NONBLOCK).
  uint64_t drain() const;

  int fd() const { return fd_.get(); }
  Result<EventFd> duplicate() const;

 private:
  explicit EventFd(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

}  // namespace crosvm
