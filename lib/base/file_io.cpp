#include "base/file_io.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

namespace crosvm {

namespace {

// Blocks SIGPIPE on this thread while it lives. A SIGPIPE that our own
// write raised meanwhile is taken off the thread before the old mask comes
// back, so it is never delivered; one that was pending before is left.
class NoSigpipe {
 public:
  NoSigpipe() {
    sigemptyset(&pipe_);
    sigaddset(&pipe_, SIGPIPE);
    ::pthread_sigmask(SIG_BLOCK, &pipe_, &saved_);
    sigset_t pending;
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
  }
  ~NoSigpipe() {
    if (raised_ && !was_pending_) {
      const timespec now{};
      while (::sigtimedwait(&pipe_, nullptr, &now) < 0 && errno == EINTR) {
      }
    }
    ::pthread_sigmask(SIG_SETMASK, &saved_, nullptr);
  }
  void note(int error) { raised_ |= error == EPIPE; }

 private:
  sigset_t pipe_;
  sigset_t saved_;
  bool was_pending_ = false;
  bool raised_ = false;
};

}  // namespace

bool write_all(int fd, std::span<const uint8_t> data) {
  NoSigpipe guard;
  while (!data.empty()) {
    ssize_t written = ::write(fd, data.data(), data.size());
    if (written > 0) {
      data = data.subspan(static_cast<size_t>(written));
      continue;
    }
    if (written < 0) guard.note(errno);
    if (written < 0 && errno == EINTR) continue;
    if (written < 0 && errno == EAGAIN) {
      pollfd wait_for{fd, POLLOUT, 0};
      ::poll(&wait_for, 1, -1);
      continue;
    }
    return false;
  }
  return true;
}

Result<UniqueFd> open_file(const std::string& path, int flags, const char* what) {
  if (path.empty()) return make_error(ErrorCode::kInvalidArgument, "no {} path given", what);
  UniqueFd fd(::open(path.c_str(), flags | O_CLOEXEC));
  if (!fd) return make_errno_error(ErrorCode::kIo, errno, "cannot open {} '{}'", what, path);
  return fd;
}

}  // namespace crosvm
