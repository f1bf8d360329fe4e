#include "base/file_io.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

namespace crosvm {

SigpipeBlocked::SigpipeBlocked() {
  sigemptyset(&pipe_);
  sigaddset(&pipe_, SIGPIPE);
  ::pthread_sigmask(SIG_BLOCK, &pipe_, &saved_);
  sigset_t pending;
  sigpending(&pending);
  was_pending_ = sigismember(&pending, SIGPIPE) == 1;
}

SigpipeBlocked::~SigpipeBlocked() {
  sigset_t pending;
  sigpending(&pending);
  if (!was_pending_ && sigismember(&pending, SIGPIPE) == 1) {
    const timespec now{};
    while (::sigtimedwait(&pipe_, nullptr, &now) < 0 && errno == EINTR) {
    }
  }
  ::pthread_sigmask(SIG_SETMASK, &saved_, nullptr);
}

bool write_all(int fd, std::span<const uint8_t> data) {
  SigpipeBlocked guard;
  while (!data.empty()) {
    ssize_t written = ::write(fd, data.data(), data.size());
    if (written > 0) {
      data = data.subspan(static_cast<size_t>(written));
      continue;
    }
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
