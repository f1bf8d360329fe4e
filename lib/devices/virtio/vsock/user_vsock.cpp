#include "devices/virtio/vsock/user_vsock.h"

#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>

#include <fmt/format.h>

#include "devices/virtio/chain_io.h"
#include "devices/virtio/vsock/host_side.h"

namespace crosvm::virtio {

using vsock::Op;
using vsock::PacketHeader;

namespace {

constexpr uint64_t kListenerId = 1;
constexpr uint64_t kBrokerId = 2;
constexpr size_t kHeaderBytes = sizeof(PacketHeader);
// The longest "CONNECT <port>\n" a host program may send.
constexpr size_t kConnectLineMax = 32;
// Reads from one host stream per event before the others get a turn.
constexpr int kReadsPerEvent = 8;

// Control packets a connection may owe the guest, sent in this order.
constexpr unsigned kOweRequest = 1;
constexpr unsigned kOweResponse = 2;
constexpr unsigned kOweCredit = 4;
constexpr unsigned kOweShutdown = 8;

uint64_t ports_key(uint32_t host_port, uint32_t guest_port) { return uint64_t{host_port} << 32 | guest_port; }

std::optional<uint32_t> parse_connect_line(std::string_view line) {
  constexpr std::string_view kPrefix = "CONNECT ";
  if (!line.starts_with(kPrefix)) return std::nullopt;
  line.remove_prefix(kPrefix.size());
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  uint32_t port = 0;
  const auto [end, error] = std::from_chars(line.data(), line.data() + line.size(), port);
  if (error != std::errc() || end != line.data() + line.size() || line.empty()) return std::nullopt;
  return port;
}

}  // namespace

enum class UserVsock::State {
  kConnectLine,     // a host stream that has not said CONNECT yet
  kAskedHost,       // the guest asked; the broker connects to PATH_P
  kAskedGuest,      // the host asked; REQUEST sent or owed, RESPONSE awaited
  kConnected,
};

struct UserVsock::Connection {
  uint64_t id;
  uint32_t host_port = 0;
  uint32_t guest_port = 0;
  UniqueFd stream;
  State state = State::kConnectLine;
  // The guest's bytes the host has not taken yet: data[head..].
  std::vector<uint8_t> pending;
  size_t pending_head = 0;
  // Our counters (what the guest sent, what the host took, what we last
  // told the guest the host took) and the guest's.
  uint32_t received = 0;
  uint32_t forwarded = 0;
  uint32_t advertised = 0;
  uint32_t sent = 0;
  uint32_t peer_buf_alloc = 0;
  uint32_t peer_fwd_cnt = 0;
  bool host_done = false;       // the host stream ended (EOF): SHUTDOWN(send) owed or sent
  bool host_write_shut = false;  // we shut the stream's write side
  bool guest_no_send = false;
  bool guest_no_receive = false;
  unsigned owed = 0;
  uint32_t watched = 0;  // the epoll events registered; 0: not registered
  std::string line;      // kConnectLine: what came of "CONNECT <port>" so far

  size_t pending_bytes() const { return pending.size() - pending_head; }
};

Result<std::shared_ptr<UserVsock>> UserVsock::create(std::string name, uint64_t cid, UniqueFd listener,
                                                     UniqueFd broker, const Logger& logger) {
  UniqueFd epoll(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll) return make_errno_error(ErrorCode::kIo, errno, "{}: epoll_create1", name);
  for (const auto& [fd, id] : {std::pair{listener.get(), kListenerId}, std::pair{broker.get(), kBrokerId}}) {
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.u64 = id;
    if (::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, fd, &event) != 0) {
      return make_errno_error(ErrorCode::kIo, errno, "{}: epoll_ctl", name);
    }
  }
  return std::shared_ptr<UserVsock>(
      new UserVsock(std::move(name), cid, std::move(listener), std::move(broker), std::move(epoll), logger));
}

UserVsock::UserVsock(std::string name, uint64_t cid, UniqueFd listener, UniqueFd broker, UniqueFd epoll,
                     const Logger& logger)
    : QueueDevice(std::move(name), logger),
      cid_(cid),
      listener_(std::move(listener)),
      broker_(std::move(broker)),
      epoll_(std::move(epoll)) {}

UserVsock::~UserVsock() { reset(); }

void UserVsock::read_config(uint64_t offset, std::span<uint8_t> data) {
  const uint64_t config = cid_;  // le64 guest_cid
  read_config_bytes(std::span(reinterpret_cast<const uint8_t*>(&config), sizeof(config)), offset, data);
}

size_t UserVsock::connection_count() {
  std::lock_guard lock(worker().lock());
  return connections_.size();
}

size_t UserVsock::waiting_packets() {
  std::lock_guard lock(worker().lock());
  return resets_.size() + control_ready_.size();
}

uint64_t UserVsock::buffered_bytes() {
  std::lock_guard lock(worker().lock());
  uint64_t bytes = 0;
  for (const auto& [id, connection] : connections_) bytes += connection->pending.capacity();
  return bytes;
}

QueueDevice::Turn UserVsock::on_kick(ActiveQueue& queue) {
  Turn turn = Turn::kIdle;
  if (queue.index == kTransmitQueue) {
    turn = serve_available(queue, [this](const DescriptorChain& chain) -> uint32_t {
      from_guest(chain);
      return 0;
    });
  } else if (queue.index == kReceiveQueue) {
    if (starved_) {
      starved_ = false;
      watch_all();
    }
  }
  // The event queue's buffers wait for an event (a transport reset after a
  // migration) that never comes.
  finish_turn();
  return active() ? turn : Turn::kIdle;
}

void UserVsock::on_reset() {
  // Every host stream closes: the programs see the end of the connection.
  for (auto& [id, connection] : connections_) {
    if (connection->watched != 0) ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, connection->stream.get(), nullptr);
  }
  connections_.clear();
  by_ports_.clear();
  resets_.clear();
  control_ready_.clear();
  held_buffer_.reset();
  starved_ = false;
  delivered_ = 0;
}

QueueDevice::Turn UserVsock::on_host_ready(size_t) {
  epoll_event events[32];
  const int count = ::epoll_wait(epoll_.get(), events, 32, 0);
  for (int i = 0; i < count && active(); ++i) {
    const uint64_t id = events[i].data.u64;
    if (id == kListenerId) {
      accept_host_streams();
      continue;
    }
    if (id == kBrokerId) {
      take_broker_answers();
      continue;
    }
    Connection* connection = find(id);
    if (connection == nullptr) continue;  // closed by an earlier event of this batch
    if (connection->state == State::kConnectLine) {
      read_connect_line(*connection);
      continue;
    }
    const uint32_t happened = events[i].events;
    if ((happened & (EPOLLOUT | EPOLLERR | EPOLLHUP)) && connection->pending_bytes() > 0) {
      write_to_host(*connection);
      connection = find(id);
      if (connection == nullptr) continue;
    }
    if ((happened & (EPOLLIN | EPOLLERR | EPOLLHUP)) && (connection->watched & EPOLLIN)) read_from_host(*connection);
  }
  finish_turn();
  return Turn::kIdle;
}

// ---- the guest's packets ----

void UserVsock::from_guest(const DescriptorChain& chain) {
  ChainReader reader(memory(), chain.readable);
  if (reader.remaining() < kHeaderBytes) {
    report_problem(fmt::format("a vsock packet of {} bytes (a header has {})", reader.remaining(), kHeaderBytes));
    return;
  }
  auto header = reader.read_object<PacketHeader>();
  if (!header) return;
  const vsock::GuestPacket checked = vsock::check_guest_packet(*header, reader.remaining(), cid_);
  if (checked.verdict != vsock::GuestPacket::Verdict::kAccept) {
    report_problem(checked.problem);
    if (checked.verdict == vsock::GuestPacket::Verdict::kReset) {
      refuse(find(header->dst_port, header->src_port), *header);
    }
    return;
  }
  from_guest_accepted(*header, reader);
}

void UserVsock::from_guest_accepted(const PacketHeader& header, ChainReader& payload) {
  Connection* connection = find(header.dst_port, header.src_port);
  if (connection != nullptr) {
    connection->peer_buf_alloc = header.buf_alloc;
    connection->peer_fwd_cnt = header.fwd_cnt;
  }
  switch (static_cast<Op>(header.op)) {
    case Op::kRequest: {
      if (connection != nullptr) {
        report_problem(fmt::format("vsock: REQUEST for port {} from guest port {}, already connected",
                                   header.dst_port, header.src_port));
        close(*connection, true);
        return;
      }
      if (connections_.size() >= kMaxConnections) {
        report_limited(fmt::format("{}: the guest's connection to host port {} refused: {} connections are open",
                                   name(), header.dst_port, kMaxConnections));
        queue_reset(header);
        return;
      }
      Connection& added = add_connection(header.dst_port, header.src_port, UniqueFd());
      by_ports_[ports_key(header.dst_port, header.src_port)] = added.id;
      added.state = State::kAskedHost;
      added.peer_buf_alloc = header.buf_alloc;
      added.peer_fwd_cnt = header.fwd_cnt;
      if (broker_lost_ || !vsock::send_broker_request(broker_.get(), {added.id, header.dst_port, 0})) {
        close(added, true);
      }
      return;
    }
    case Op::kResponse: {
      if (connection == nullptr || connection->state != State::kAskedGuest || (connection->owed & kOweRequest)) {
        report_problem(fmt::format("vsock: RESPONSE from guest port {} to host port {}, which asked nothing",
                                   header.src_port, header.dst_port));
        refuse(connection, header);
        return;
      }
      const std::string answer = fmt::format("OK {}\n", connection->host_port);
      if (::send(connection->stream.get(), answer.data(), answer.size(), MSG_DONTWAIT | MSG_NOSIGNAL) !=
          static_cast<ssize_t>(answer.size())) {
        close(*connection, true);  // the host program left
        return;
      }
      connection->state = State::kConnected;
      watch(*connection);
      return;
    }
    case Op::kReset:
      if (connection != nullptr) close(*connection, false);
      return;
    case Op::kShutdown:
      if (connection == nullptr || connection->state != State::kConnected) {
        refuse(connection, header);
        return;
      }
      connection->guest_no_receive |= (header.flags & vsock::kShutdownReceive) != 0;
      connection->guest_no_send |= (header.flags & vsock::kShutdownSend) != 0;
      settle(*connection);
      if ((connection = find(header.dst_port, header.src_port)) != nullptr) watch(*connection);
      return;
    case Op::kReadWrite:
      if (connection == nullptr || connection->state != State::kConnected || connection->guest_no_send) {
        report_problem(fmt::format("vsock: data from guest port {} to host port {} on no open connection",
                                   header.src_port, header.dst_port));
        refuse(connection, header);
        return;
      }
      receive_data(*connection, header, payload);
      return;
    case Op::kCreditUpdate:
    case Op::kCreditRequest:
      if (connection == nullptr) {
        queue_reset(header);
      } else if (header.op == static_cast<uint16_t>(Op::kCreditRequest)) {
        queue_op(*connection, kOweCredit);
      } else {
        watch(*connection);  // the guest may have room again
      }
      return;
  }
}

void UserVsock::receive_data(Connection& connection, const PacketHeader& header, ChainReader& payload) {
  // What the guest may send: what we advertised as room, no more.
  const uint32_t in_flight = connection.received - connection.advertised;
  if (uint64_t{in_flight} + header.len > kBufferBytes) {
    report_problem(fmt::format("vsock: guest port {} sent {} bytes to host port {} beyond its credit ({} of {} used)",
                               header.src_port, header.len, header.dst_port, in_flight, kBufferBytes));
    close(connection, true);
    return;
  }
  auto pieces = payload.take(header.len);
  if (!pieces) {  // checked: the chain holds len bytes
    close(connection, true);
    return;
  }
  connection.received += header.len;
  size_t written = 0;
  if (connection.pending_bytes() == 0) {
    msghdr message{};
    message.msg_iov = pieces->data();
    message.msg_iovlen = pieces->size();
    const ssize_t result = ::sendmsg(connection.stream.get(), &message, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (result < 0 && errno != EAGAIN && errno != EINTR) {
      close(connection, true);  // the host program closed its end
      return;
    }
    written = result > 0 ? static_cast<size_t>(result) : 0;
  }
  // The rest waits here (within kBufferBytes, as checked).
  size_t skip = written;
  for (const iovec& piece : *pieces) {
    if (skip >= piece.iov_len) {
      skip -= piece.iov_len;
      continue;
    }
    const auto* bytes = static_cast<const uint8_t*>(piece.iov_base);
    if (connection.pending_head > 0 && connection.pending.size() + piece.iov_len - skip > kBufferBytes) {
      connection.pending.erase(connection.pending.begin(),
                               connection.pending.begin() + static_cast<ptrdiff_t>(connection.pending_head));
      connection.pending_head = 0;
    }
    connection.pending.insert(connection.pending.end(), bytes + skip, bytes + piece.iov_len);
    skip = 0;
  }
  connection.forwarded += static_cast<uint32_t>(written);
  if (connection.forwarded - connection.advertised >= kBufferBytes / 4) queue_op(connection, kOweCredit);
  watch(connection);
}

// ---- the host's side ----

void UserVsock::accept_host_streams() {
  for (int accepted = 0; accepted < 16; ++accepted) {
    UniqueFd stream(::accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!stream) {
      if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED) return;
      // Out of fds (EMFILE): the listener is not watched until a
      // connection closes, rather than reported ready again and again.
      report_limited(fmt::format("{}: accepting a host connection: {}", name(), std::strerror(errno)));
      if (::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, listener_.get(), nullptr) == 0) listener_paused_ = true;
      return;
    }
    if (connections_.size() >= kMaxConnections) {
      report_limited(fmt::format("{}: a host connection refused: {} connections are open", name(),
                                 kMaxConnections));
      continue;  // closed: the program sees the end without "OK"
    }
    Connection& connection = add_connection(0, 0, std::move(stream));
    connection.state = State::kConnectLine;
    watch(connection);
  }
}

void UserVsock::take_broker_answers() {
  while (true) {
    auto received = vsock::receive_broker_answer(broker_.get());
    if (!received) {
      // The VMM's end is gone (it is being destroyed): no more guest connects.
      report_limited(fmt::format("{}: {}", name(), received.error().message));
      broker_lost_ = true;
      ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, broker_.get(), nullptr);
      return;
    }
    if (!received->has_value()) return;
    Connection* connection = find((*received)->answer.id);
    if (connection == nullptr || connection->state != State::kAskedHost) continue;  // the guest gave up
    if ((*received)->answer.error != 0) {
      close(*connection, true);  // nobody listens on PATH_P: refused
      continue;
    }
    connection->stream = std::move((*received)->stream);
    connection->state = State::kConnected;
    queue_op(*connection, kOweResponse);
    watch(*connection);
  }
}

void UserVsock::read_connect_line(Connection& connection) {
  // What came is taken (never left for the level-triggered epoll to report
  // again and again), up to the newline: what follows it is the
  // connection's first bytes.
  char line[kConnectLineMax];
  const size_t room = kConnectLineMax - connection.line.size();
  const ssize_t peeked = ::recv(connection.stream.get(), line, room, MSG_PEEK | MSG_DONTWAIT);
  if (peeked < 0 && (errno == EAGAIN || errno == EINTR)) return;
  if (peeked <= 0) {
    close(connection, false);
    return;
  }
  const auto* end = static_cast<const char*>(std::memchr(line, '\n', static_cast<size_t>(peeked)));
  const size_t taken = end == nullptr ? static_cast<size_t>(peeked) : static_cast<size_t>(end - line) + 1;
  if (::recv(connection.stream.get(), line, taken, MSG_DONTWAIT) != static_cast<ssize_t>(taken)) {
    close(connection, false);
    return;
  }
  connection.line.append(line, end == nullptr ? taken : taken - 1);
  if (end == nullptr) {
    if (connection.line.size() >= kConnectLineMax) {
      report_limited(fmt::format("{}: a host program sent {} bytes without a newline, not \"CONNECT <port>\"",
                                 name(), connection.line.size()));
      close(connection, false);
    }
    return;  // the rest is coming
  }
  const std::optional<uint32_t> port = parse_connect_line(connection.line);
  if (!port) {
    report_limited(fmt::format("{}: a host program sent \"{}\", not \"CONNECT <port>\"", name(), connection.line));
    close(connection, false);
    return;
  }
  connection.line.clear();
  uint32_t host_port = 0;
  do {
    host_port = next_host_port_++;
    if (next_host_port_ == 0) next_host_port_ = 1u << 30;
  } while (by_ports_.contains(ports_key(host_port, *port)));
  connection.host_port = host_port;
  connection.guest_port = *port;
  by_ports_[ports_key(host_port, *port)] = connection.id;
  connection.state = State::kAskedGuest;
  queue_op(connection, kOweRequest);
  watch(connection);
}

void UserVsock::read_from_host(Connection& connection) {
  const uint64_t id = connection.id;
  for (int read = 0; read < kReadsPerEvent; ++read) {
    const uint32_t credit = guest_credit(connection);
    if (credit == 0) break;
    std::optional<PoppedChain> buffer = take_receive_buffer();
    if (!buffer) break;
    ChainWriter writer(memory(), buffer->chain->writable);
    const uint64_t room = std::min<uint64_t>({credit, writer.remaining() - kHeaderBytes, vsock::kMaxPayload});
    if (room == 0) {
      // Room for a header alone: no data fits. It goes back unused (as a
      // buffer too small for a header does), not held, or this stream
      // would be reported readable again and again with nothing to do.
      report_problem("vsock: a receive buffer with room for a packet header and no data");
      if (ActiveQueue* queue = find_queue(kReceiveQueue); queue == nullptr || !complete(*queue, buffer->head, 0)) {
        return;
      }
      ++delivered_;
      continue;
    }
    ssize_t result = -1;
    if (writer.skip(kHeaderBytes)) {
      auto pieces = writer.take(room);
      if (pieces) result = ::readv(connection.stream.get(), pieces->data(), static_cast<int>(pieces->size()));
    }
    if (result <= 0) {
      held_buffer_ = std::move(buffer);
      if (result < 0 && (errno == EAGAIN || errno == EINTR)) break;
      if (result < 0) {
        close(connection, true);  // ECONNRESET: the program is gone
        return;
      }
      // The host sends no more: the guest is told so, and the connection
      // ends when the guest's side is done too.
      connection.host_done = true;
      queue_op(connection, kOweShutdown);
      settle(connection);
      if (find(id) != nullptr) watch(connection);
      return;
    }
    PacketHeader header = header_for(connection, Op::kReadWrite);
    header.len = static_cast<uint32_t>(result);
    put_packet(*buffer, header, static_cast<uint32_t>(result));
    connection.sent += static_cast<uint32_t>(result);
    if (static_cast<uint64_t>(result) < room) break;  // the stream is empty for now
  }
  watch(connection);
}

void UserVsock::write_to_host(Connection& connection) {
  const ssize_t result = ::send(connection.stream.get(), connection.pending.data() + connection.pending_head,
                                connection.pending_bytes(), MSG_DONTWAIT | MSG_NOSIGNAL);
  if (result < 0) {
    if (errno == EAGAIN || errno == EINTR) return;
    close(connection, true);
    return;
  }
  connection.pending_head += static_cast<size_t>(result);
  connection.forwarded += static_cast<uint32_t>(result);
  if (connection.pending_bytes() == 0) {
    connection.pending_head = 0;
    connection.pending.clear();
    if (connection.pending.capacity() > 64 * 1024) std::vector<uint8_t>().swap(connection.pending);
  }
  if (connection.forwarded - connection.advertised >= kBufferBytes / 4 || connection.pending_bytes() == 0) {
    if (connection.forwarded != connection.advertised) queue_op(connection, kOweCredit);
  }
  const uint64_t id = connection.id;
  settle(connection);
  if (find(id) != nullptr) watch(connection);
}

void UserVsock::settle(Connection& connection) {
  if (connection.pending_bytes() > 0) return;  // the host has the guest's last bytes to take first
  if (connection.guest_no_send && !connection.host_write_shut) {
    ::shutdown(connection.stream.get(), SHUT_WR);
    connection.host_write_shut = true;
  }
  // Both directions over (the guest's close sends both flags): RST ends
  // it for the guest, as Linux's peer does.
  if (connection.guest_no_send && (connection.guest_no_receive || connection.host_done)) close(connection, true);
}

// ---- connections ----

UserVsock::Connection* UserVsock::find(uint32_t host_port, uint32_t guest_port) {
  const auto found = by_ports_.find(ports_key(host_port, guest_port));
  return found == by_ports_.end() ? nullptr : find(found->second);
}

UserVsock::Connection* UserVsock::find(uint64_t id) {
  const auto found = connections_.find(id);
  return found == connections_.end() ? nullptr : found->second.get();
}

UserVsock::Connection& UserVsock::add_connection(uint32_t host_port, uint32_t guest_port, UniqueFd stream) {
  auto connection = std::make_unique<Connection>();
  connection->id = next_id_++;
  connection->host_port = host_port;
  connection->guest_port = guest_port;
  connection->stream = std::move(stream);
  Connection& added = *connection;
  connections_[added.id] = std::move(connection);
  return added;
}

void UserVsock::close(Connection& connection, bool reset_guest) {
  if (reset_guest && connection.state != State::kConnectLine) {
    resets_.push_back(header_for(connection, Op::kReset));
    if (resets_.size() > kMaxQueuedResets) resets_.pop_front();
  }
  if (connection.watched != 0) ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, connection.stream.get(), nullptr);
  // control_ready_ holds only open connections, so it is never longer than
  // kMaxConnections however often a guest that posts no buffers opens and
  // resets connections.
  if (connection.owed != 0) {
    control_ready_.erase(std::remove(control_ready_.begin(), control_ready_.end(), connection.id),
                         control_ready_.end());
  }
  if (connection.state != State::kConnectLine) by_ports_.erase(ports_key(connection.host_port, connection.guest_port));
  connections_.erase(connection.id);  // closes the stream
  if (listener_paused_) {
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.u64 = kListenerId;
    if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, listener_.get(), &event) == 0) listener_paused_ = false;
  }
}

void UserVsock::refuse(Connection* connection, const PacketHeader& header) {
  if (connection != nullptr) {
    close(*connection, true);
  } else {
    queue_reset(header);
  }
}

void UserVsock::queue_reset(const PacketHeader& header) {
  if (resets_.size() >= kMaxQueuedResets) return;
  resets_.push_back(vsock::reset_for(header));
}

void UserVsock::queue_op(Connection& connection, unsigned op_bit) {
  if (connection.owed == 0) control_ready_.push_back(connection.id);
  connection.owed |= op_bit;
}

PacketHeader UserVsock::header_for(Connection& connection, Op op) {
  PacketHeader header{};
  header.src_cid = vsock::kHostCid;
  header.dst_cid = cid_;
  header.src_port = connection.host_port;
  header.dst_port = connection.guest_port;
  header.type = vsock::kTypeStream;
  header.op = static_cast<uint16_t>(op);
  header.buf_alloc = kBufferBytes;
  header.fwd_cnt = connection.forwarded;
  connection.advertised = connection.forwarded;
  return header;
}

uint32_t UserVsock::guest_credit(const Connection& connection) const {
  const uint32_t in_flight = connection.sent - connection.peer_fwd_cnt;
  return in_flight >= connection.peer_buf_alloc ? 0 : connection.peer_buf_alloc - in_flight;
}

void UserVsock::watch(Connection& connection) {
  uint32_t wanted = 0;
  if (connection.state == State::kConnectLine) wanted |= EPOLLIN;
  if (connection.state == State::kConnected && !connection.host_done && !connection.guest_no_receive && !starved_ &&
      guest_credit(connection) > 0) {
    wanted |= EPOLLIN;
  }
  if (connection.pending_bytes() > 0) wanted |= EPOLLOUT;
  if (wanted == connection.watched || !connection.stream) return;
  epoll_event event{};
  event.events = wanted;
  event.data.u64 = connection.id;
  const int operation = connection.watched == 0 ? EPOLL_CTL_ADD : wanted == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
  if (::epoll_ctl(epoll_.get(), operation, connection.stream.get(), &event) == 0) connection.watched = wanted;
}

void UserVsock::watch_all() {
  for (auto& [id, connection] : connections_) watch(*connection);
}

// ---- the receive queue ----

std::optional<PoppedChain> UserVsock::take_receive_buffer() {
  if (held_buffer_) {
    std::optional<PoppedChain> buffer = std::move(held_buffer_);
    held_buffer_.reset();
    return buffer;
  }
  ActiveQueue* queue = find_queue(kReceiveQueue);
  while (queue != nullptr && active()) {
    auto popped = pop_or_arm(*queue);
    if (!popped) {
      fail(popped.error().message);
      return std::nullopt;
    }
    if (!popped->has_value()) break;
    PoppedChain& next = **popped;
    if (next.chain && next.chain->writable_bytes >= kHeaderBytes && next.chain->readable.empty()) {
      return std::move(next);
    }
    report_problem(next.chain ? "vsock: a receive buffer too small for a packet header, or readable"
                              : fmt::format("queue {}: {}", kReceiveQueue, next.problem));
    if (!complete(*queue, next.head, 0)) return std::nullopt;
    ++delivered_;
  }
  if (!starved_) {
    starved_ = true;
    watch_all();
  }
  return std::nullopt;
}

void UserVsock::put_packet(const PoppedChain& buffer, const PacketHeader& header, uint32_t payload) {
  ActiveQueue* queue = find_queue(kReceiveQueue);
  if (queue == nullptr) return;
  ChainWriter writer(memory(), buffer.chain->writable);
  if (!writer.write_object(header)) return;  // fits: checked when taken
  if (complete(*queue, buffer.head, static_cast<uint32_t>(kHeaderBytes) + payload)) ++delivered_;
}

void UserVsock::finish_turn() {
  while (active() && (!resets_.empty() || !control_ready_.empty())) {
    Connection* connection = nullptr;
    if (resets_.empty()) {
      connection = find(control_ready_.front());
      if (connection == nullptr || connection->owed == 0) {
        control_ready_.pop_front();
        continue;
      }
    }
    std::optional<PoppedChain> buffer = take_receive_buffer();
    if (!buffer) break;
    PacketHeader header{};
    if (connection == nullptr) {
      header = resets_.front();
      resets_.pop_front();
    } else {
      const unsigned bit = connection->owed & (~connection->owed + 1);  // the lowest: the first owed
      header = header_for(*connection, bit == kOweRequest    ? Op::kRequest
                                       : bit == kOweResponse ? Op::kResponse
                                       : bit == kOweCredit   ? Op::kCreditUpdate
                                                             : Op::kShutdown);
      if (bit == kOweShutdown) header.flags = vsock::kShutdownSend;
      connection->owed &= ~bit;
      if (connection->owed == 0) control_ready_.pop_front();
    }
    put_packet(*buffer, header, 0);
  }
  if (delivered_ > 0) {
    delivered_ = 0;
    if (ActiveQueue* queue = find_queue(kReceiveQueue)) notify_used(*queue);
  }
}

}  // namespace crosvm::virtio
