#include "base/event_fd.h"

#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <string_view>

namespace crosvm {

Result<EventFd> EventFd::create(int flags) {
  int fd = ::eventfd(0, EFD_CLOEXEC | flags);
  if (fd < 0) return make_errno_error(ErrorCode::kIo, errno, "eventfd");
  return EventFd(UniqueFd(fd));
}

Result<EventFd> EventFd::adopt(UniqueFd fd) {
  if (!fd) return make_error(ErrorCode::kInvalidArgument, "no eventfd was passed");
  char target[64] = {};
  const std::string link = "/proc/self/fd/" + std::to_string(fd.get());
  const ssize_t length = ::readlink(link.c_str(), target, sizeof(target) - 1);
  if (length >= 0) {
    if (std::string_view(target, static_cast<size_t>(length)) != "anon_inode:[eventfd]") {
      return make_error(ErrorCode::kInvalidArgument, "fd {} is not an eventfd ({})", fd.get(),
                        std::string_view(target, static_cast<size_t>(length)));
    }
  } else {
    // No /proc (a jail): an eventfd is an anonymous inode, as this
    // process's own eventfds are; a file, pipe or socket is not.
    struct stat theirs {}, ours {};
    auto reference = create();
    if (!reference || ::fstat(fd.get(), &theirs) != 0 || ::fstat(reference->fd(), &ours) != 0 ||
        theirs.st_dev != ours.st_dev || theirs.st_ino != ours.st_ino) {
      return make_error(ErrorCode::kInvalidArgument, "fd {} is not an eventfd", fd.get());
    }
  }
  return EventFd(std::move(fd));
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
