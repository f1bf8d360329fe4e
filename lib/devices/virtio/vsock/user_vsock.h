// virtio-vsock in userspace (--vsock socket=PATH): needs neither
// /dev/vhost-vsock nor root, and runs jailed like every virtio device.
//
//   - A host program connects to the Unix socket PATH and writes
//     "CONNECT <port>\n": the device opens a connection to the guest's
//     listener on that port and answers "OK <host port>\n" once the guest
//     accepted (the stream is closed if it refused). Then the stream
//     carries the connection's bytes both ways.
//   - A guest that connects to the host (CID 2) on port P reaches the
//     Unix socket PATH_P: the VMM's broker (host_side.h) connects to it
//     and passes the stream in; nobody listening there refuses the guest.
//
// Credit (virtio 5.10.6.3) is enforced both ways. The guest may have at
// most kBufferBytes in flight per connection (what we advertise); a
// packet beyond that, a packet for a connection that is not in a state to
// take it, or a malformed one resets that connection (RST) and nothing
// else. We send the guest no more than it advertised. So the device holds
// at most kBufferBytes of a connection's data while the host program does
// not read, and at most kMaxConnections connections: the bound on its
// memory is kMaxConnections * kBufferBytes (32 MiB), plus a bounded queue
// of RSTs the guest has not taken yet.
//
// Every host stream waits on one epoll set, which the device's worker
// waits on as its one host fd; a stream is watched only for what the
// device can act on now (readable while the guest has credit and posted
// receive buffers; writable while data waits for it), so neither a guest
// that posts no buffers nor a host that does not read costs CPU.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/unique_fd.h"
#include "devices/virtio/chain_io.h"
#include "devices/virtio/queue_device.h"
#include "devices/virtio/vsock/packet.h"

namespace crosvm::virtio {

class UserVsock final : public QueueDevice {
 public:
  static constexpr uint16_t kQueueSize = 256;
  static constexpr uint16_t kReceiveQueue = 0;
  static constexpr uint16_t kTransmitQueue = 1;
  static constexpr uint16_t kEventQueue = 2;
  // What each connection may buffer for the host (the credit the guest gets).
  static constexpr uint32_t kBufferBytes = 256 * 1024;
  // Connections at once, either side opening, host streams still saying
  // CONNECT included.
  static constexpr size_t kMaxConnections = 128;
  // RSTs waiting for a receive buffer; more are dropped (the guest that
  // posts no buffers loses only its own answers).
  static constexpr size_t kMaxQueuedResets = 256;

  // `listener`: the Unix socket host programs connect to (listening,
  // non-blocking); `broker`: the VMM's broker for the guest's connections.
  static Result<std::shared_ptr<UserVsock>> create(std::string name, uint64_t cid, UniqueFd listener,
                                                   UniqueFd broker, const Logger& logger);
  ~UserVsock() override;

  DeviceType type() const override { return DeviceType::kVsock; }
  uint32_t pci_class() const override { return 0x078000; }  // other communication controller
  std::vector<uint16_t> queue_max_sizes() const override { return {kQueueSize, kQueueSize, kQueueSize}; }
  uint64_t device_features() const override { return 0; }  // streams only
  void read_config(uint64_t offset, std::span<uint8_t> data) override;
  void write_config(uint64_t, std::span<const uint8_t>) override {}

  uint64_t cid() const { return cid_; }
  // For tests: connections open now, and the bytes they hold for the host.
  size_t connection_count();
  uint64_t buffered_bytes();
  // Packets waiting for receive buffers: RSTs, and connections owing one.
  size_t waiting_packets();

 private:
  struct Connection;
  enum class State;

  UserVsock(std::string name, uint64_t cid, UniqueFd listener, UniqueFd broker, UniqueFd epoll,
            const Logger& logger);
  Turn on_kick(ActiveQueue& queue) override;
  void on_reset() override;
  std::vector<int> host_fds() const override { return {epoll_.get()}; }
  Turn on_host_ready(size_t index) override;

  // The guest's packets.
  void from_guest(const DescriptorChain& chain);
  void from_guest_accepted(const vsock::PacketHeader& header, ChainReader& payload);
  void receive_data(Connection& connection, const vsock::PacketHeader& header, ChainReader& payload);
  // The host's side.
  void accept_host_streams();
  void take_broker_answers();
  void read_connect_line(Connection& connection);
  void read_from_host(Connection& connection);
  void write_to_host(Connection& connection);
  // Ends what is over once data stopped flowing (shutdowns both ways).
  void settle(Connection& connection);

  Connection* find(uint32_t host_port, uint32_t guest_port);
  Connection* find(uint64_t id);
  Connection& add_connection(uint32_t host_port, uint32_t guest_port, UniqueFd stream);
  // Ends a connection: its stream closed, and (with `reset_guest`) a RST
  // to the guest.
  void close(Connection& connection, bool reset_guest);
  // A packet refused: its connection (if any) is closed with a RST, else
  // a RST answers it.
  void refuse(Connection* connection, const vsock::PacketHeader& header);
  void queue_reset(const vsock::PacketHeader& header);
  void queue_op(Connection& connection, unsigned op_bit);
  vsock::PacketHeader header_for(Connection& connection, vsock::Op op);
  uint32_t guest_credit(const Connection& connection) const;
  void watch(Connection& connection);
  void watch_all();

  // Receive buffers: the one a read did not fill (kept for the next
  // packet), else the next the guest posted.
  std::optional<PoppedChain> take_receive_buffer();
  void put_packet(const PoppedChain& buffer, const vsock::PacketHeader& header, uint32_t payload);
  // Sends what waits (RSTs, then each connection's control packets) while
  // buffers last; then interrupts the driver if it asked.
  void finish_turn();

  uint64_t cid_;
  UniqueFd listener_;
  UniqueFd broker_;
  UniqueFd epoll_;
  // Guarded by worker().lock().
  std::unordered_map<uint64_t, std::unique_ptr<Connection>> connections_;
  std::map<uint64_t, uint64_t> by_ports_;  // host port << 32 | guest port -> id
  uint64_t next_id_ = 16;
  uint32_t next_host_port_ = 1u << 30;
  std::deque<vsock::PacketHeader> resets_;
  std::deque<uint64_t> control_ready_;  // connections with control packets to send
  std::optional<PoppedChain> held_buffer_;
  bool starved_ = false;  // the guest posted no receive buffer the last time we looked
  unsigned delivered_ = 0;
  bool broker_lost_ = false;
  bool listener_paused_ = false;
};

}  // namespace crosvm::virtio
