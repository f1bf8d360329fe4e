#include "sandbox/device_control.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>

namespace crosvm::sandbox {
namespace {

struct RequestMessage {
  uint32_t request;
  uint32_t reserved;  // 0
  uint64_t value;
};

struct ReplyMessage {
  int32_t code;     // 0, or an ErrorCode
  uint32_t length;  // of message, at most sizeof(message)
  char message[240];
};

// Reads exactly `length` bytes within `timeout_ms` in all (-1: forever):
// a device that answers a byte at a time gets no longer than one that
// does not answer. 0 when the peer closed before the first byte.
Result<size_t> read_exactly(int fd, void* data, size_t length, int timeout_ms) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(std::max(timeout_ms, 0));
  size_t done = 0;
  while (done < length) {
    pollfd entry{.fd = fd, .events = POLLIN, .revents = 0};
    int wait_ms = -1;
    if (timeout_ms >= 0) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      wait_ms = static_cast<int>(std::max<int64_t>(left.count(), 0));
    }
    const int ready = ::poll(&entry, 1, wait_ms);
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return make_errno_error(ErrorCode::kIo, errno, "device control channel");
    if (ready == 0) return make_error(ErrorCode::kTimeout, "the device process did not answer");
    const ssize_t got = ::recv(fd, static_cast<char*>(data) + done, length - done, 0);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) return make_errno_error(ErrorCode::kIo, errno, "device control channel");
    if (got == 0) {
      if (done == 0) return size_t{0};
      return make_error(ErrorCode::kProtocol, "device control channel: a message cut short");
    }
    done += static_cast<size_t>(got);
  }
  return done;
}

Result<void> write_exactly(int fd, const void* data, size_t length) {
  size_t done = 0;
  while (done < length) {
    const ssize_t sent = ::send(fd, static_cast<const char*>(data) + done, length - done, MSG_NOSIGNAL);
    if (sent < 0 && errno == EINTR) continue;
    if (sent < 0) return make_errno_error(ErrorCode::kIo, errno, "device control channel");
    done += static_cast<size_t>(sent);
  }
  return {};
}

bool known_code(int32_t code) {
  return (code >= static_cast<int32_t>(ErrorCode::kProtocol) && code <= static_cast<int32_t>(ErrorCode::kInvalidArgument)) ||
         code == static_cast<int32_t>(ErrorCode::kInternal);
}

}  // namespace

Result<void> send_control_request(int fd, ControlRequest request, uint64_t value, int timeout_ms) {
  const RequestMessage message{static_cast<uint32_t>(request), 0, value};
  CROSVM_TRY(write_exactly(fd, &message, sizeof(message)));
  ReplyMessage reply{};
  const size_t got = CROSVM_TRY(read_exactly(fd, &reply, sizeof(reply), timeout_ms));
  if (got == 0) return make_error(ErrorCode::kDevice, "the device process closed its control channel");
  if (reply.code == 0) return {};
  if (!known_code(reply.code) || reply.length > sizeof(reply.message)) {
    return make_error(ErrorCode::kProtocol, "the device process answered with a malformed reply");
  }
  return Error{static_cast<ErrorCode>(reply.code), std::string(reply.message, reply.length)};
}

Result<void> serve_control_requests(int fd, const ControlHandler& handler) {
  for (;;) {
    RequestMessage message{};
    const size_t got = CROSVM_TRY(read_exactly(fd, &message, sizeof(message), -1));
    if (got == 0) return {};
    Result<void> result = make_error(ErrorCode::kInvalidArgument, "unknown control request {}", message.request);
    if (message.reserved == 0 && message.request == static_cast<uint32_t>(ControlRequest::kResize)) {
      result = handler(ControlRequest::kResize, message.value);
    }
    ReplyMessage reply{};
    if (!result) {
      reply.code = static_cast<int32_t>(result.error().code);
      reply.length = static_cast<uint32_t>(std::min(result.error().message.size(), sizeof(reply.message)));
      std::memcpy(reply.message, result.error().message.data(), reply.length);
    }
    CROSVM_TRY(write_exactly(fd, &reply, sizeof(reply)));
  }
}

}  // namespace crosvm::sandbox
