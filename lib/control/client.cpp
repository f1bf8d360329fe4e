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

Result<std::string> send_request_line(const std::string& path, const std::string& request_line,
                                      std::chrono::milliseconds timeout) {
  if (request_line.find('\n') != std::string::npos) {
    return make_error(ErrorCode::kProtocol, "a request is one line");
  }
  const sockaddr_un address = CROSVM_TRY(socket_address(path));
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return make_errno_error(ErrorCode::kIo, errno, "control socket");
  if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
    return make_errno_error(ErrorCode::kIo, errno, "cannot connect to the control socket {}", path);
  }
  const auto deadline = Clock::now() + timeout;

  const std::string message = request_line + "\n";
  size_t sent = 0;
  while (sent < message.size()) {
    CROSVM_TRY(wait_for(fd.get(), POLLOUT, deadline, path));
    const ssize_t written = ::send(fd.get(), message.data() + sent, message.size() - sent, MSG_NOSIGNAL);
    if (written < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return make_errno_error(ErrorCode::kIo, errno, "control socket {}", path);
    }
    sent += static_cast<size_t>(written);
  }

  std::string received;
  for (;;) {
    const size_t newline = received.find('\n');
    if (newline != std::string::npos) {
      received.resize(newline);
      break;
    }
    if (received.size() > kMaxMessageBytes) {
      return make_error(ErrorCode::kProtocol, "the control socket {} sent an over-long answer", path);
    }
    CROSVM_TRY(wait_for(fd.get(), POLLIN, deadline, path));
    char buffer[4096];
    const ssize_t got = ::recv(fd.get(), buffer, sizeof(buffer), 0);
    if (got < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      return make_errno_error(ErrorCode::kIo, errno, "control socket {}", path);
    }
    if (got == 0) {
      return make_error(ErrorCode::kIo, "the control socket {} closed without an answer", path);
    }
    received.append(buffer, static_cast<size_t>(got));
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
