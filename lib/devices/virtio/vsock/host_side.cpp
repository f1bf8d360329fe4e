#include "devices/virtio/vsock/host_side.h"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <fmt/format.h>

#include "base/unix_socket.h"

namespace crosvm::virtio::vsock {

std::string port_path(const std::string& path, uint32_t port) { return fmt::format("{}_{}", path, port); }

Result<std::unique_ptr<HostSide>> HostSide::open(const std::string& path, const Logger& logger) {
  const sockaddr_un address = CROSVM_TRY(unix_socket_address(path, "vsock socket"));
  // The guest's ports make longer paths; the longest must fit too.
  CROSVM_TRY(unix_socket_address(port_path(path, UINT32_MAX), "vsock socket (with a port's _4294967295)"));
  CROSVM_TRY(clear_stale_socket(path, address, "vsock socket"));
  std::unique_ptr<HostSide> side(new HostSide(path, logger));
  side->listener_ = UniqueFd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!side->listener_) return make_errno_error(ErrorCode::kIo, errno, "vsock socket {}", path);
  if (::bind(side->listener_.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
    return make_errno_error(ErrorCode::kIo, errno, "vsock socket {}: bind", path);
  }
  if (::listen(side->listener_.get(), 128) != 0) {
    const int error = errno;
    ::unlink(path.c_str());
    return make_errno_error(ErrorCode::kIo, error, "vsock socket {}: listen", path);
  }
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, pair) != 0) {
    const int error = errno;
    ::unlink(path.c_str());
    return make_errno_error(ErrorCode::kIo, error, "vsock broker: socketpair");
  }
  side->device_end_ = UniqueFd(pair[0]);
  side->broker_end_ = UniqueFd(pair[1]);
  side->stop_ = UniqueFd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!side->stop_) {
    ::unlink(path.c_str());
    return make_errno_error(ErrorCode::kIo, errno, "vsock broker: eventfd");
  }
  // An answer never waits long for a device that always reads them.
  const timeval timeout{1, 0};
  ::setsockopt(side->broker_end_.get(), SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
  HostSide* self = side.get();
  auto started = Thread::start("vsock-broker", [self] { self->serve(); },
                               [self](std::string_view what) { self->logger_.error("vsock broker: {}", what); });
  if (!started) {
    ::unlink(path.c_str());
    return started.error();
  }
  side->thread_ = std::move(*started);
  return side;
}

HostSide::~HostSide() {
  if (thread_.joinable()) {
    const uint64_t one = 1;
    ssize_t ignored = ::write(stop_.get(), &one, sizeof(one));
    (void)ignored;
    thread_.join();
  }
  ::unlink(path_.c_str());
}

UniqueFd HostSide::connect_port(uint32_t port, int& error) const {
  auto address = unix_socket_address(port_path(path_, port), "vsock port socket");  // fits: checked at open()
  UniqueFd stream(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!address || !stream) {
    error = address ? errno : ENAMETOOLONG;
    return {};
  }
  // Non-blocking: a listener whose backlog is full answers EAGAIN at once,
  // which the guest sees as a refused connection.
  if (::connect(stream.get(), reinterpret_cast<const sockaddr*>(&*address), sizeof(*address)) != 0) {
    error = errno;
    return {};
  }
  return stream;
}

void HostSide::serve() {
  while (true) {
    pollfd fds[2] = {{stop_.get(), POLLIN, 0}, {broker_end_.get(), POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      logger_.error("vsock broker: poll: {}", std::strerror(errno));
      return;
    }
    if (fds[0].revents != 0) return;
    if (fds[1].revents == 0) continue;
    BrokerRequest request{};
    const ssize_t received = ::recv(broker_end_.get(), &request, sizeof(request), MSG_DONTWAIT);
    if (received == 0) return;  // the device is gone
    if (received < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      return;
    }
    if (received != sizeof(request)) continue;  // not ours to answer
    BrokerAnswer answer{request.id, 0, 0};
    UniqueFd stream = connect_port(request.port, answer.error);
    iovec data{&answer, sizeof(answer)};
    msghdr message{};
    message.msg_iov = &data;
    message.msg_iovlen = 1;
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    if (stream) {
      message.msg_control = control;
      message.msg_controllen = sizeof(control);
      cmsghdr* header = CMSG_FIRSTHDR(&message);
      header->cmsg_level = SOL_SOCKET;
      header->cmsg_type = SCM_RIGHTS;
      header->cmsg_len = CMSG_LEN(sizeof(int));
      const int fd = stream.get();
      std::memcpy(CMSG_DATA(header), &fd, sizeof(fd));
    }
    if (::sendmsg(broker_end_.get(), &message, MSG_NOSIGNAL) < 0 && errno == EPIPE) return;
    // The stream's copy here closes with `stream`: the device has its own.
  }
}

bool send_broker_request(int fd, const BrokerRequest& request) {
  return ::send(fd, &request, sizeof(request), MSG_DONTWAIT | MSG_NOSIGNAL) == sizeof(request);
}

Result<std::optional<ReceivedAnswer>> receive_broker_answer(int fd) {
  ReceivedAnswer received{};
  iovec data{&received.answer, sizeof(received.answer)};
  msghdr message{};
  message.msg_iov = &data;
  message.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  message.msg_control = control;
  message.msg_controllen = sizeof(control);
  const ssize_t length = ::recvmsg(fd, &message, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  if (length < 0) {
    if (errno == EAGAIN || errno == EINTR) return std::optional<ReceivedAnswer>();
    return make_errno_error(ErrorCode::kIo, errno, "vsock broker");
  }
  if (length == 0) return make_error(ErrorCode::kIo, "vsock broker: the VMM closed its end");
  for (cmsghdr* header = CMSG_FIRSTHDR(&message); header != nullptr; header = CMSG_NXTHDR(&message, header)) {
    if (header->cmsg_level == SOL_SOCKET && header->cmsg_type == SCM_RIGHTS &&
        header->cmsg_len >= CMSG_LEN(sizeof(int)) && !received.stream) {
      int fd_received = -1;
      std::memcpy(&fd_received, CMSG_DATA(header), sizeof(int));
      received.stream = UniqueFd(fd_received);
    }
  }
  if (length != sizeof(BrokerAnswer) || (received.answer.error == 0 && !received.stream)) {
    return make_error(ErrorCode::kIo, "vsock broker: a malformed answer");
  }
  return std::optional<ReceivedAnswer>(std::move(received));
}

}  // namespace crosvm::virtio::vsock
