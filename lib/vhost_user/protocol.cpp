#include "vhost_user/protocol.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <optional>

#include "base/unix_socket.h"

namespace crosvm::vhost_user {
namespace {

Error protocol_error(std::string message) { return Error{ErrorCode::kProtocol, std::move(message)}; }

// What a frontend request carries: a body of exactly `body` bytes (or, with
// `body_or_empty`, none: several frontends send GET_* with an empty body,
// others with a u64 that means nothing), and how many fds.
struct Shape {
  uint32_t request;
  const char* name;
  int body;  // -1: variable (checked by its parser)
  bool body_or_empty;
};

constexpr Shape kShapes[] = {
    {1, "GET_FEATURES", 8, true},
    {2, "SET_FEATURES", 8, false},
    {3, "SET_OWNER", 8, true},
    {4, "RESET_OWNER", 8, true},
    {5, "SET_MEM_TABLE", -1, false},
    {6, "SET_LOG_BASE", -1, false},
    {7, "SET_LOG_FD", -1, false},
    {8, "SET_VRING_NUM", sizeof(VringState), false},
    {9, "SET_VRING_ADDR", sizeof(VringAddress), false},
    {10, "SET_VRING_BASE", sizeof(VringState), false},
    {11, "GET_VRING_BASE", sizeof(VringState), false},
    {12, "SET_VRING_KICK", 8, false},
    {13, "SET_VRING_CALL", 8, false},
    {14, "SET_VRING_ERR", 8, false},
    {15, "GET_PROTOCOL_FEATURES", 8, true},
    {16, "SET_PROTOCOL_FEATURES", 8, false},
    {17, "GET_QUEUE_NUM", 8, true},
    {18, "SET_VRING_ENABLE", sizeof(VringState), false},
    {19, "SEND_RARP", -1, false},
    {20, "NET_SET_MTU", -1, false},
    {21, "SET_BACKEND_REQ_FD", 8, true},
    {22, "IOTLB_MSG", -1, false},
    {23, "SET_VRING_ENDIAN", -1, false},
    {24, "GET_CONFIG", -1, false},
    {25, "SET_CONFIG", -1, false},
    {31, "GET_INFLIGHT_FD", -1, false},
    {32, "SET_INFLIGHT_FD", -1, false},
    {34, "RESET_DEVICE", 8, true},
    {35, "VRING_KICK", -1, false},
    {36, "GET_MAX_MEM_SLOTS", 8, true},
    {37, "ADD_MEM_REG", -1, false},
    {38, "REM_MEM_REG", -1, false},
    {39, "SET_STATUS", 8, false},
    {40, "GET_STATUS", 8, true},
};

const Shape* find_shape(uint32_t request) {
  for (const Shape& shape : kShapes) {
    if (shape.request == request) return &shape;
  }
  return nullptr;
}

// The requests a backend of this library serves (the rest of kShapes are
// named for log lines but refused).
bool served(Request request) {
  switch (request) {
    case Request::kGetFeatures:
    case Request::kSetFeatures:
    case Request::kSetOwner:
    case Request::kResetOwner:
    case Request::kSetMemTable:
    case Request::kSetVringNum:
    case Request::kSetVringAddr:
    case Request::kSetVringBase:
    case Request::kGetVringBase:
    case Request::kSetVringKick:
    case Request::kSetVringCall:
    case Request::kSetVringErr:
    case Request::kGetProtocolFeatures:
    case Request::kSetProtocolFeatures:
    case Request::kGetQueueNum:
    case Request::kSetVringEnable:
    case Request::kSetBackendReqFd:
    case Request::kGetConfig:
    case Request::kSetConfig:
    case Request::kResetDevice:
    case Request::kGetMaxMemSlots:
    case Request::kSetStatus:
    case Request::kGetStatus:
      return true;
    default:
      return false;
  }
}

// When a wait of `timeout_ms` (< 0: none) that starts now must end.
std::optional<std::chrono::steady_clock::time_point> deadline_after(int timeout_ms) {
  if (timeout_ms < 0) return std::nullopt;
  return std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
}

// Waits until `fd` has `events` or `deadline` passes (kTimeout, with `what`).
Result<void> wait_for(int fd, short events, std::optional<std::chrono::steady_clock::time_point> deadline,
                      int timeout_ms, std::string_view what) {
  if (!deadline) return {};
  pollfd entry{.fd = fd, .events = events, .revents = 0};
  for (;;) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(*deadline - std::chrono::steady_clock::now());
    const int ready = ::poll(&entry, 1, static_cast<int>(std::max<int64_t>(left.count(), 0)));
    if (ready > 0) return {};
    if (ready == 0) return make_error(ErrorCode::kTimeout, "vhost-user: {} within {} ms", what, timeout_ms);
    if (errno != EINTR) return make_errno_error(ErrorCode::kIo, errno, "vhost-user: poll");
  }
}

}  // namespace

std::string request_name(uint32_t request) {
  if (const Shape* shape = find_shape(request)) return shape->name;
  return fmt::format("request {}", request);
}

Message Message::make(uint32_t request, uint32_t flags, std::span<const uint8_t> body) {
  Message message;
  message.header = Header{request, flags, static_cast<uint32_t>(body.size())};
  message.body.assign(body.begin(), body.end());
  return message;
}

Result<std::vector<MemoryRegion>> parse_memory_table(const Message& message) {
  if (message.body.size() < 8) return protocol_error("SET_MEM_TABLE: the body is too short for its count");
  uint32_t count;
  std::memcpy(&count, message.body.data(), 4);
  if (count == 0 || count > kMaxRegions) {
    return protocol_error(fmt::format("SET_MEM_TABLE: {} regions (1 to {} are allowed)", count, kMaxRegions));
  }
  if (message.body.size() != 8 + count * sizeof(MemoryRegion)) {
    return protocol_error(fmt::format("SET_MEM_TABLE: {} bytes for {} regions", message.body.size(), count));
  }
  if (message.fds.size() != count) {
    return protocol_error(fmt::format("SET_MEM_TABLE: {} fds for {} regions", message.fds.size(), count));
  }
  std::vector<MemoryRegion> regions(count);
  std::memcpy(regions.data(), message.body.data() + 8, count * sizeof(MemoryRegion));
  return regions;
}

std::vector<uint8_t> encode_memory_table(std::span<const MemoryRegion> regions) {
  std::vector<uint8_t> body(8 + regions.size() * sizeof(MemoryRegion), 0);
  const uint32_t count = static_cast<uint32_t>(regions.size());
  std::memcpy(body.data(), &count, 4);
  if (!regions.empty()) std::memcpy(body.data() + 8, regions.data(), regions.size() * sizeof(MemoryRegion));
  return body;
}

Result<ConfigBody> parse_config(const Message& message) {
  const std::string name = request_name(message.header.request);
  if (message.body.size() < sizeof(ConfigHeader)) return protocol_error(name + ": the body is too short");
  ConfigBody config;
  std::memcpy(&config.header, message.body.data(), sizeof(ConfigHeader));
  if (config.header.size > kMaxConfigSize) {
    return protocol_error(fmt::format("{}: {} bytes of configuration (at most {})", name, config.header.size,
                                      kMaxConfigSize));
  }
  if (message.body.size() != sizeof(ConfigHeader) + config.header.size) {
    return protocol_error(fmt::format("{}: {} bytes of body for {} of configuration", name, message.body.size(),
                                      config.header.size));
  }
  config.data.assign(message.body.begin() + sizeof(ConfigHeader), message.body.end());
  return config;
}

std::vector<uint8_t> encode_config(uint32_t offset, std::span<const uint8_t> data, uint32_t flags) {
  std::vector<uint8_t> body(sizeof(ConfigHeader) + data.size(), 0);
  const ConfigHeader header{offset, static_cast<uint32_t>(data.size()), flags};
  std::memcpy(body.data(), &header, sizeof(header));
  if (!data.empty()) std::memcpy(body.data() + sizeof(header), data.data(), data.size());
  return body;
}

Result<void> check_frontend_message(const Message& message) {
  const Header& header = message.header;
  if ((header.flags & kVersionMask) != kVersion) {
    return protocol_error(fmt::format("{}: version {} (only 1 is spoken)", request_name(header.request),
                                      header.flags & kVersionMask));
  }
  if (message.is_reply()) return protocol_error(request_name(header.request) + ": a reply where a request belongs");
  const Shape* shape = find_shape(header.request);
  if (shape == nullptr || !served(static_cast<Request>(header.request))) {
    return protocol_error(fmt::format("{} is not supported", request_name(header.request)));
  }
  if (shape->body >= 0 && message.body.size() != static_cast<size_t>(shape->body) &&
      !(shape->body_or_empty && message.body.empty())) {
    return protocol_error(fmt::format("{}: a body of {} bytes where {} belong", shape->name, message.body.size(),
                                      shape->body));
  }
  size_t fds = 0;
  switch (static_cast<Request>(header.request)) {
    case Request::kSetMemTable:
      CROSVM_TRY(parse_memory_table(message));  // counts its fds too
      return {};
    case Request::kGetConfig:
    case Request::kSetConfig:
      CROSVM_TRY(parse_config(message));
      break;
    case Request::kSetVringKick:
    case Request::kSetVringCall:
    case Request::kSetVringErr: {
      uint64_t value;
      std::memcpy(&value, message.body.data(), 8);
      fds = (value & kVringNoFd) != 0 ? 0 : 1;
      break;
    }
    case Request::kSetBackendReqFd:
      fds = 1;
      break;
    default:
      break;
  }
  if (message.fds.size() != fds) {
    return protocol_error(fmt::format("{}: {} fds where {} belong", shape->name, message.fds.size(), fds));
  }
  return {};
}

Result<std::pair<Connection, Connection>> Connection::pair() {
  int fds[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    return make_errno_error(ErrorCode::kIo, errno, "vhost-user: socketpair");
  }
  return std::pair{Connection(UniqueFd(fds[0])), Connection(UniqueFd(fds[1]))};
}

Result<Connection> Connection::connect(const std::string& path) {
  return Connection(CROSVM_TRY(connect_unix_socket(path, SOCK_STREAM, "vhost-user", {})));
}

Result<void> Connection::send(const Message& message, std::span<const int> fds) const {
  if (fds.size() > kMaxFds) return make_error(ErrorCode::kInternal, "vhost-user: {} fds in one message", fds.size());
  std::vector<uint8_t> bytes(kHeaderSize + message.body.size());
  const Header header{message.header.request, message.header.flags, static_cast<uint32_t>(message.body.size())};
  std::memcpy(bytes.data(), &header, kHeaderSize);
  if (!message.body.empty()) std::memcpy(bytes.data() + kHeaderSize, message.body.data(), message.body.size());

  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)] = {};
  const auto deadline = deadline_after(kSendTimeoutMs);
  size_t sent = 0;
  bool first = true;
  while (sent < bytes.size()) {
    iovec vector{.iov_base = bytes.data() + sent, .iov_len = bytes.size() - sent};
    msghdr header_out{};
    header_out.msg_iov = &vector;
    header_out.msg_iovlen = 1;
    if (first && !fds.empty()) {
      header_out.msg_control = control;
      header_out.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
      cmsghdr* entry = CMSG_FIRSTHDR(&header_out);
      entry->cmsg_level = SOL_SOCKET;
      entry->cmsg_type = SCM_RIGHTS;
      entry->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
      std::memcpy(CMSG_DATA(entry), fds.data(), sizeof(int) * fds.size());
    }
    const ssize_t done = ::sendmsg(socket_.get(), &header_out, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (done < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        CROSVM_TRY(wait_for(socket_.get(), POLLOUT, deadline, kSendTimeoutMs,
                            fmt::format("the other side read nothing of {}", request_name(header.request))));
        continue;
      }
      return make_errno_error(ErrorCode::kIo, errno, "vhost-user: cannot send {}", request_name(header.request));
    }
    sent += static_cast<size_t>(done);
    first = false;
  }
  return {};
}

Result<Message> Connection::receive(int timeout_ms) const {
  Message message;
  uint8_t header_bytes[kHeaderSize];
  size_t got = 0;
  size_t wanted = kHeaderSize;
  uint8_t* target = header_bytes;
  bool in_body = false;
  const auto deadline = deadline_after(timeout_ms);
  while (got < wanted) {
    CROSVM_TRY(wait_for(socket_.get(), POLLIN, deadline, timeout_ms, "no whole answer"));
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxFds)] = {};
    iovec vector{.iov_base = target + got, .iov_len = wanted - got};
    msghdr header_in{};
    header_in.msg_iov = &vector;
    header_in.msg_iovlen = 1;
    header_in.msg_control = control;
    header_in.msg_controllen = sizeof(control);
    const ssize_t done = ::recvmsg(socket_.get(), &header_in, MSG_CMSG_CLOEXEC);
    if (done < 0) {
      if (errno == EINTR) continue;
      return make_errno_error(ErrorCode::kIo, errno, "vhost-user: cannot read from the socket");
    }
    // Take every fd that came, so that none leaks whatever happens next.
    for (cmsghdr* entry = CMSG_FIRSTHDR(&header_in); entry != nullptr; entry = CMSG_NXTHDR(&header_in, entry)) {
      if (entry->cmsg_level != SOL_SOCKET || entry->cmsg_type != SCM_RIGHTS) continue;
      const size_t count = (entry->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      for (size_t i = 0; i < count; ++i) {
        int fd;
        std::memcpy(&fd, CMSG_DATA(entry) + i * sizeof(int), sizeof(int));
        message.fds.emplace_back(fd);
      }
    }
    if ((header_in.msg_flags & MSG_CTRUNC) != 0 || message.fds.size() > kMaxFds) {
      return protocol_error(fmt::format("vhost-user: more than {} fds in one message", kMaxFds));
    }
    if (done == 0) {
      if (got == 0 && !in_body) return make_error(ErrorCode::kIo, "vhost-user: the peer closed the connection");
      return protocol_error("vhost-user: the peer closed the connection in the middle of a message");
    }
    got += static_cast<size_t>(done);
    if (got == wanted && !in_body) {
      std::memcpy(&message.header, header_bytes, kHeaderSize);
      if (message.header.size > kMaxBody) {
        return protocol_error(fmt::format("vhost-user: {} with a body of {} bytes (at most {})",
                                          request_name(message.header.request), message.header.size, kMaxBody));
      }
      in_body = true;
      message.body.resize(message.header.size);
      target = message.body.data();
      got = 0;
      wanted = message.header.size;
    }
  }
  return message;
}

}  // namespace crosvm::vhost_user
