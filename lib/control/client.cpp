#include "control/client.h"

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>

#include "base/unique_fd.h"
#include "control/socket_address.h"

namespace crosvm::control {
namespace {

using Clock = std::chrono::steady_clock;

// Waits for `events` on `fd` until `deadline`.
Result<void> wait_for(int fd, short events, Clock::time_point deadline, const std::string& path) {
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      return make_error(ErrorCode::kTimeout, "no answer from the control socket {} in time", path);
    }
    pollfd entry{fd, events, 0};
    const int ready = ::poll(&entry, 1, static_cast<int>(std::min<int64_t>(left.count(), INT32_MAX)));
    if (ready > 0) return {};
    if (ready < 0 && errno != EINTR) return make_errno_error(ErrorCode::kIo, errno, "control socket {}", path);
  }
}

}  // namespace

Result<std::string> send_request_line(const std::string& path, const std::string& request,
                                      std::chrono::milliseconds timeout) {
  if (request.empty()) return make_error(ErrorCode::kProtocol, "a request is not empty");
  if (request.size() > kMaxMessageBytes) {
    return make_error(ErrorCode::kProtocol, "a request of {} bytes is over the limit of {}", request.size(),
                      kMaxMessageBytes);
  }
  const sockaddr_un address = CROSVM_TRY(socket_address(path));
  UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return make_errno_error(ErrorCode::kIo, errno, "control socket");
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
    if (errno == EPROTOTYPE) {
      return make_error(ErrorCode::kIo,
                        "{} is not a control socket of crosvm's kind (a SOCK_SEQPACKET socket); "
                        "is it an older libcrosvm's?",
                        path);
    }
    return make_errno_error(ErrorCode::kIo, errno, "cannot connect to the control socket {}", path);
  }
  const auto deadline = Clock::now() + timeout;

  for (;;) {  // one packet: all of it or nothing
    CROSVM_TRY(wait_for(fd.get(), POLLOUT, deadline, path));
    if (::send(fd.get(), request.data(), request.size(), MSG_NOSIGNAL) >= 0) break;
    if (errno != EINTR && errno != EAGAIN) return make_errno_error(ErrorCode::kIo, errno, "control socket {}", path);
  }

  std::string received(kMaxMessageBytes, '\0');
  for (;;) {
    CROSVM_TRY(wait_for(fd.get(), POLLIN, deadline, path));
    const ssize_t got = ::recv(fd.get(), received.data(), received.size(), MSG_TRUNC);
    if (got < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return make_errno_error(ErrorCode::kIo, errno, "control socket {}", path);
    }
    if (got == 0) return make_error(ErrorCode::kIo, "the control socket {} closed without an answer", path);
    if (static_cast<size_t>(got) > received.size()) {
      return make_error(ErrorCode::kProtocol, "the control socket {} sent an over-long answer ({} bytes)", path, got);
    }
    received.resize(static_cast<size_t>(got));
    break;
  }
  CROSVM_TRY(parse_response(received));
  return received;
}

Result<Response> send_request(const std::string& path, const Request& request,
                              std::chrono::milliseconds timeout) {
  const std::string line = CROSVM_TRY(send_request_line(path, serialize(request), timeout));
  return parse_response(line);
}

}  // namespace crosvm::control
