#include "base/event_fd.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

namespace crosvm {

Result<EventFd> EventFd::create(int flags) {
  int fd = ::eventfd(0, EFD_CLOEXEC | flags);
  if (fd < 0) return make_errno_error(ErrorCode::kIo, errno, "eventfd");
  return EventFd(UniqueFd(fd));
}

void EventFd::signal() const {
  uint64_t one = 1;
  ssize_t written;
  do {
    written = ::write(fd_.get(), &one, sizeof(one));
  } while (written < 0 && errno == EINTR);
}

uint64_t EventFd::drain() const {
  uint64_t value = 0;
  ssize_t got;
  do {
    got = ::read(fd_.get(), &value, sizeof(value));
  } while (got < 0 && errno == EINTR);
  return got == sizeof(value) ? value : 0;
}

Result<EventFd> EventFd::duplicate() const {
  int fd = ::fcntl(fd_.get(), F_DUPFD_CLOEXEC, 0);
  if (fd < 0) return make_errno_error(ErrorCode::kIo, errno, "dup eventfd");
  return EventFd(UniqueFd(fd));
}

}  // namespace crosvm
