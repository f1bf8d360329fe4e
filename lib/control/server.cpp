#include "control/server.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <boost/asio/basic_socket_acceptor.hpp>
#include <boost/asio/generic/seq_packet_protocol.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <set>
#include <vector>

#include "base/unique_fd.h"
#include "base/unix_socket.h"
#include "control/socket_address.h"

namespace crosvm::control {
namespace {

using boost::asio::generic::seq_packet_protocol;
using boost::system::error_code;
using Acceptor = boost::asio::basic_socket_acceptor<seq_packet_protocol>;

// The most descriptors one packet may bring (crosvm's Tube sends up to 32);
// none is used: they are closed at once. More than this are closed by the
// kernel (MSG_CTRUNC).
constexpr size_t kMaxPassedFds = 32;

// Closes every descriptor a packet carried: no request we serve takes one,
// and a client must not be able to fill our fd table.
void close_passed_fds(msghdr& message) {
  for (cmsghdr* header = CMSG_FIRSTHDR(&message); header != nullptr; header = CMSG_NXTHDR(&message, header)) {
    if (header->cmsg_level != SOL_SOCKET || header->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (header->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int fd = -1;
      std::memcpy(&fd, CMSG_DATA(header) + i * sizeof(int), sizeof(int));
      if (fd >= 0) ::close(fd);
    }
  }
}

}  // namespace

Result<std::string> resolve_socket_path(const std::string& path, unsigned sequence) {
  struct stat info {};
  if (!path.empty() && ::stat(path.c_str(), &info) == 0 && S_ISDIR(info.st_mode)) {
    std::string base = path;
    while (base.size() > 1 && base.back() == '/') base.pop_back();
    const std::string suffix = sequence <= 1 ? "" : fmt::format("-{}", sequence);
    return fmt::format("{}{}crosvm-{}{}.sock", base, base == "/" ? "" : "/", ::getpid(), suffix);
  }
  if (path.empty()) return make_error(ErrorCode::kInvalidArgument, "the control socket path is empty");
  return path;
}

bool names_a_directory(const std::string& path) {
  struct stat info {};
  return !path.empty() && ::stat(path.c_str(), &info) == 0 && S_ISDIR(info.st_mode);
}

struct Connection;

struct ControlServer::State : std::enable_shared_from_this<ControlServer::State> {
  State(boost::asio::io_context& context, ControlTarget& target, const Logger& logger,
        ServerLimits limits)
      : context(context), acceptor(context), retry(context), target(target), logger(logger), limits(limits) {}

  void accept_next();
  void remove(const std::shared_ptr<Connection>& connection) { connections.erase(connection); }

  boost::asio::io_context& context;
  Acceptor acceptor;
  boost::asio::steady_timer retry;  // after a failed accept
  ControlTarget& target;
  Logger logger;
  ServerLimits limits;
  std::string path;
  ino_t socket_inode = 0;
  dev_t socket_device = 0;
  bool stopped = false;
  std::set<std::shared_ptr<Connection>> connections;
};

// One client. Requests are served one at a time, in order: the next packet
// is read only after the previous response has been sent.
struct Connection : std::enable_shared_from_this<Connection> {
  Connection(seq_packet_protocol::socket socket, std::weak_ptr<ControlServer::State> server)
      : socket(std::move(socket)), idle(this->socket.get_executor()), server(std::move(server)) {}

  void start() {
    arm_idle_timer();
    next();
  }

  void close() {
    if (closed) return;
    closed = true;
    error_code ignored;
    socket.shutdown(seq_packet_protocol::socket::shutdown_both, ignored);
    socket.close(ignored);
    idle.cancel();
    if (auto owner = server.lock()) owner->remove(shared_from_this());
  }

  void next() {
    if (closed) return;
    socket.async_wait(seq_packet_protocol::socket::wait_read, [self = shared_from_this()](const error_code& error) {
      if (error || self->closed) return self->close();
      self->receive();
    });
  }

  // Reads one packet: a request, or an error answered in kind. A packet
  // over the limit is answered and the connection goes on (its boundary
  // is kept, so nothing after it is misread).
  void receive() {
    iovec part{buffer.data(), buffer.size()};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxPassedFds)];
    msghdr message{};
    message.msg_iov = &part;
    message.msg_iovlen = 1;
    message.msg_control = control;
    message.msg_controllen = sizeof(control);
    const ssize_t length =
        ::recvmsg(socket.native_handle(), &message, MSG_DONTWAIT | MSG_TRUNC | MSG_CMSG_CLOEXEC);
    if (length < 0) {
      if (errno == EAGAIN || errno == EINTR) return next();
      return close();
    }
    close_passed_fds(message);
    if (length == 0) return close();  // the client left (crosvm never sends an empty packet)
    idle.cancel();
    ++idle_generation;  // no idle deadline while the request is served
    if (static_cast<size_t>(length) > buffer.size()) {
      reply(Response::failure(make_error(ErrorCode::kProtocol, "the message is {} bytes; the limit is {}",
                                         length, kMaxMessageBytes),
                              Dialect::kCrosvm),
            {});
      return;
    }
    serve(std::string_view(buffer.data(), static_cast<size_t>(length)));
  }

  void serve(std::string_view packet) {
    auto owner = server.lock();
    if (!owner) return close();
    Dialect dialect = Dialect::kCrosvm;
    auto parsed = parse_request(packet, &dialect);
    if (!parsed) {
      owner->logger.debug("control socket: bad request: {}", parsed.error().message);
      reply(Response::failure(parsed.error(), dialect), {});
      return;
    }
    const Request request = *parsed;
    ControlTarget& target = owner->target;
    auto answer = [&](const Result<void>& result) {
      return result ? Response::success(request) : Response::failure(result.error(), request);
    };
    switch (request.kind) {
      case RequestKind::kStop:
        owner->logger.info("control socket: stop requested");
        // Stop once the answer is out: the socket goes away with the VM.
        reply(Response::success(request), [&target] { target.stop(); });
        return;
      case RequestKind::kSuspend: {
        owner->logger.info("control socket: suspend requested");
        std::weak_ptr<Connection> weak = shared_from_this();
        boost::asio::io_context& context = owner->context;
        target.suspend([weak, &context, request](Result<void> result) {
          boost::asio::post(context, [weak, request, result = std::move(result)] {
            if (auto self = weak.lock()) {
              self->reply(result ? Response::success(request) : Response::failure(result.error(), request), {});
            }
          });
        });
        return;
      }
      case RequestKind::kResume:
        owner->logger.info("control socket: resume requested");
        reply(answer(target.resume()), {});
        return;
      case RequestKind::kStatus: {
        Response response = Response::success(request);
        response.status = target.status();
        reply(response, {});
        return;
      }
      case RequestKind::kDiskResize: {
        owner->logger.info("control socket: resize disk {} to {} bytes", request.disk, request.size);
        auto result = target.resize_disk(request.disk, request.size);
        if (!result) owner->logger.warn("control socket: {}", result.error().message);
        reply(answer(result), {});
        return;
      }
      case RequestKind::kPowerButton:
        owner->logger.info("control socket: power button pressed");
        reply(answer(target.press_power_button()), {});
        return;
      case RequestKind::kUnsupported: {
        // As crosvm answers a request for a device it does not have.
        owner->logger.info("control socket: {} is not supported", request.variant);
        Response response = Response::failure(
            make_error(ErrorCode::kProtocol, "{} is not supported by this VM", request.variant), request);
        response.error_number = EOPNOTSUPP;
        reply(response, {});
        return;
      }
    }
  }

  // Sends `response` as one packet; then runs `after` if given, else reads
  // the next request. One send at a time, under the same deadline as an idle
  // client: one that sends and never reads is dropped, not served forever.
  void reply(const Response& response, std::function<void()> after) {
    if (closed) return;
    if (writing) {  // never two sends on one socket (Asio forbids it)
      if (after) after();
      return close();
    }
    writing = true;
    outgoing = serialize(response);
    arm_idle_timer();
    socket.async_send(boost::asio::buffer(outgoing), 0,
                      [self = shared_from_this(), after = std::move(after)](const error_code& error, size_t) {
                        self->writing = false;
                        // Runs even when the client has gone: a stop it asked for still happens.
                        if (after) after();
                        if (error || self->closed) return self->close();
                        self->arm_idle_timer();
                        self->next();
                      });
  }

  // A client that sends nothing for the idle timeout, or does not take its
  // answer in that time, is dropped without a word: a packet it did not ask
  // for would be read as the answer to its next request.
  void arm_idle_timer() {
    const uint64_t generation = ++idle_generation;
    auto owner = server.lock();
    if (!owner || closed) return;
    idle.expires_after(owner->limits.idle_timeout);
    idle.async_wait([self = shared_from_this(), generation](const error_code& error) {
      if (error || self->closed || generation != self->idle_generation) return;
      if (auto owner = self->server.lock()) owner->logger.debug("control socket: an idle client is dropped");
      self->close();
    });
  }

  seq_packet_protocol::socket socket;
  boost::asio::steady_timer idle;
  std::weak_ptr<ControlServer::State> server;
  std::vector<char> buffer = std::vector<char>(kMaxMessageBytes);
  std::string outgoing;
  uint64_t idle_generation = 0;
  bool writing = false;
  bool closed = false;
};

void ControlServer::State::accept_next() {
  if (stopped) return;
  acceptor.async_accept([self = shared_from_this()](const error_code& error, seq_packet_protocol::socket socket) {
    if (self->stopped) return;
    if (error) {
      if (error == boost::asio::error::operation_aborted) return;
      // Out of fds, say: wait a little rather than spin on the error.
      self->logger.warn("control socket: accept failed: {}", error.message());
      self->retry.expires_after(std::chrono::milliseconds(100));
      self->retry.async_wait([self](const error_code& waited) {
        if (!waited) self->accept_next();
      });
      return;
    }
    // Asio's accept() does not set close-on-exec: an embedder's children
    // must not inherit a control connection.
    ::fcntl(socket.native_handle(), F_SETFD, FD_CLOEXEC);
    if (self->connections.size() >= self->limits.max_clients) {
      // Told why, then dropped; the clients already connected go on.
      auto rejected = std::make_shared<Connection>(std::move(socket), std::weak_ptr<State>{});
      rejected->reply(Response::failure(make_error(ErrorCode::kState,
                                                   "too many clients ({} at once); try again later",
                                                   self->limits.max_clients),
                                        Dialect::kCrosvm),
                      [rejected] { rejected->close(); });
    } else {
      auto connection = std::make_shared<Connection>(std::move(socket), self);
      self->connections.insert(connection);
      connection->start();
    }
    self->accept_next();
  });
}

ControlServer::ControlServer(std::shared_ptr<State> state) : state_(std::move(state)) {}

ControlServer::~ControlServer() { shutdown(); }

Result<std::unique_ptr<ControlServer>> ControlServer::bind(boost::asio::io_context& context,
                                                           const std::string& requested_path,
                                                           ControlTarget& target, const Logger& logger,
                                                           ServerLimits limits) {
  // In a directory, a second VM of this process takes crosvm-PID-2.sock, and
  // so on: a live crosvm-PID.sock there can only be this process's own.
  const unsigned names = names_a_directory(requested_path) ? kMaxVmsPerDirectory : 1;
  std::string path;
  sockaddr_un address{};
  for (unsigned sequence = 1;; ++sequence) {
    path = CROSVM_TRY(resolve_socket_path(requested_path, sequence));
    address = CROSVM_TRY(socket_address(path));
    auto cleared = clear_stale_socket(path, address, "control socket");
    if (cleared) break;
    if (sequence == names || cleared.error().message.find(kSocketInUse) == std::string::npos) {
      return cleared.error();
    }
  }

  // SOCK_SEQPACKET, one message per packet, as crosvm's control socket.
  UniqueFd fd(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!fd) return make_errno_error(ErrorCode::kIo, errno, "control socket");
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) != 0) {
    return make_errno_error(ErrorCode::kIo, errno, "cannot bind the control socket {}", path);
  }
  // Nobody can connect before listen(): the mode is set in time.
  struct stat info {};
  if (::chmod(path.c_str(), 0600) != 0 || ::stat(path.c_str(), &info) != 0) {
    const int saved = errno;
    ::unlink(path.c_str());
    return make_errno_error(ErrorCode::kIo, saved, "control socket {}", path);
  }
  if (::listen(fd.get(), 16) != 0) {
    const int saved = errno;
    ::unlink(path.c_str());
    return make_errno_error(ErrorCode::kIo, saved, "cannot listen on the control socket {}", path);
  }

  auto state = std::make_shared<State>(context, target, logger, limits);
  state->path = path;
  state->socket_inode = info.st_ino;
  state->socket_device = info.st_dev;
  error_code error;
  state->acceptor.assign(seq_packet_protocol(AF_UNIX, 0), fd.get(), error);
  if (error) {
    ::unlink(path.c_str());
    return make_error(ErrorCode::kIo, "control socket {}: {}", path, error.message());
  }
  fd.release();
  return std::unique_ptr<ControlServer>(new ControlServer(std::move(state)));
}

const std::string& ControlServer::path() const { return state_->path; }

void ControlServer::start() {
  boost::asio::post(state_->context, [state = state_] { state->accept_next(); });
}

void ControlServer::shutdown() {
  State& state = *state_;
  if (state.stopped) return;
  state.stopped = true;
  error_code ignored;
  state.acceptor.close(ignored);
  state.retry.cancel();
  auto connections = state.connections;  // close() edits the set
  for (const auto& connection : connections) connection->close();
  state.connections.clear();
  // Only our own socket: another VMM may have replaced the file since.
  struct stat info {};
  if (::lstat(state.path.c_str(), &info) == 0 && info.st_ino == state.socket_inode &&
      info.st_dev == state.socket_device) {
    ::unlink(state.path.c_str());
  }
}

}  // namespace crosvm::control
