#include "base/unix_socket.h"

#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <thread>

#include <fmt/format.h>

#include "base/unique_fd.h"

namespace crosvm {
namespace {

// Whether a process accepts connections on the socket at `address`. The
// probe does not block (a live server whose backlog is full, or one built
// but not started, answers EAGAIN) and only a refused connection means
// that nobody listens: EACCES and the like say nothing, and such a socket
// is left alone. A stream socket is probed, then a packet one (the control
// socket): a socket of the other type answers EPROTOTYPE.
Result<bool> someone_listens(const sockaddr_un& address, const std::string& path, std::string_view what) {
  int error = 0;
  for (int type : {SOCK_STREAM, SOCK_SEQPACKET}) {
    UniqueFd probe(::socket(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!probe) return make_errno_error(ErrorCode::kIo, errno, "{} {}", what, path);
    if (::connect(probe.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0) return true;
    error = errno;
    if (error != EPROTOTYPE) break;
  }
  switch (error) {
    case EAGAIN:
    case EINPROGRESS: return true;
    case ECONNREFUSED:
    case ENOENT: return false;
    default:
      return make_errno_error(ErrorCode::kIo, error, "{} {} exists and cannot be probed, so it is left alone", what,
                              path);
  }
}

}  // namespace

Result<sockaddr_un> unix_socket_address(const std::string& path, std::string_view what) {
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof(address.sun_path)) {
    return make_error(ErrorCode::kInvalidArgument, "{} path \"{}\" must have 1 to {} bytes", what, path,
                      sizeof(address.sun_path) - 1);
  }
  path.copy(address.sun_path, path.size());
  return address;
}

Result<void> clear_stale_socket(const std::string& path, const sockaddr_un& address, std::string_view what) {
  struct stat info {};
  if (::lstat(path.c_str(), &info) != 0) {
    if (errno == ENOENT) return {};
    return make_errno_error(ErrorCode::kIo, errno, "{} {}", what, path);
  }
  if (!S_ISSOCK(info.st_mode)) {
    return make_error(ErrorCode::kIo, "{} {}: the path exists and is not a socket", what, path);
  }
  if (CROSVM_TRY(someone_listens(address, path, what))) {
    return make_error(ErrorCode::kIo, "{} {} {}", what, path, kSocketInUse);
  }
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    return make_errno_error(ErrorCode::kIo, errno, "cannot remove the stale {} {}", what, path);
  }
  return {};
}

Result<UniqueFd> connect_unix_socket(const std::string& path, int type, std::string_view what,
                                     std::chrono::milliseconds patience) {
  const sockaddr_un address = CROSVM_TRY(unix_socket_address(path, what));
  const auto deadline = std::chrono::steady_clock::now() + patience;
  for (;;) {
    UniqueFd socket(::socket(AF_UNIX, type | SOCK_CLOEXEC, 0));
    if (!socket) return make_errno_error(ErrorCode::kIo, errno, "{}: socket", what);
    if (::connect(socket.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0) return socket;
    const int error = errno;
    const bool absent = error == ENOENT || error == ECONNREFUSED;
    if (error != EINTR && (!absent || std::chrono::steady_clock::now() >= deadline)) {
      return make_errno_error(ErrorCode::kIo, error, "{}: cannot connect to {}{}", what, path,
                              absent && patience.count() > 0
                                  ? fmt::format(" (waited {} ms for it)", patience.count())
                                  : std::string());
    }
    if (error != EINTR) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace crosvm
