// A vhost-user frontend: a virtio device in the VMM whose queues another
// process serves (our own `crosvm-launch device`, qemu-storage-daemon,
// virtiofsd). The PCI transport, MSI-X and the ioeventfds stay here; at
// DRIVER_OK the frontend hands the backend guest RAM (the memfd), each
// queue's ring addresses and its kick eventfd (KVM's ioeventfd itself, so
// the guest's notifications never pass through the VMM) and a call eventfd
// per queue: the MSI-X vector's irqfd itself while the vector is unmasked,
// so that a completion reaches the guest without passing through the VMM,
// and, while it is masked or in INTx mode, an eventfd of the frontend's,
// which it watches and turns into the transport's interrupt (a masked
// vector records a pending bit there, so no interrupt is lost).
//
// The device's configuration space is read from the backend once
// (GET_CONFIG) and served from that cache; the backend channel's
// CONFIG_CHANGE_MSG refreshes it. A backend that breaks the protocol, stops
// answering (5 s) or goes away puts the device in DEVICE_NEEDS_RESET with
// one log line; the VMM and its other devices go on.
#pragma once

#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "base/event_fd.h"
#include "base/log.h"
#include "base/thread.h"
#include "vhost_user/protocol.h"
#include "devices/virtio/virtio_device.h"

namespace crosvm::vhost_user {

// The device kinds a frontend can stand for: what the transport must know
// that the backend does not say.
struct FrontendKind {
  std::string_view name;  // "block", as in --vhost-user type=block
  virtio::DeviceType type;
  uint32_t pci_class;
  uint16_t default_queues;  // when the backend does not say (no MQ)
  uint32_t config_size;     // bytes read with GET_CONFIG
};
const FrontendKind* find_frontend_kind(std::string_view name);
std::string frontend_kind_names();  // "block, fs, rng, net, console, vsock"

struct FrontendOptions {
  std::string socket;  // the backend's listening socket
  std::string name;    // for the log and status ("vhost-user-blk 0 (/run/blk.sock)")
  std::string tag;     // fs: the tag the guest mounts (the frontend's to say)
  uint16_t queue_size = 256;
};

class Frontend final : public virtio::VirtioDevice {
 public:
  // How long a backend may take to answer.
  static constexpr int kReplyTimeoutMs = 5000;

  // Connects to the backend and negotiates (features, protocol features,
  // queue count, configuration). Errors are one line naming the socket.
  static Result<std::shared_ptr<Frontend>> connect(const FrontendKind& kind, FrontendOptions options,
                                                   const Logger& logger);
  // The same over a connection already made (tests, a spawned backend).
  static Result<std::shared_ptr<Frontend>> create(const FrontendKind& kind, Connection connection,
                                                  FrontendOptions options, const Logger& logger);
  ~Frontend() override;

  virtio::DeviceType type() const override { return kind_.type; }
  std::string_view name() const override { return options_.name; }
  uint32_t pci_class() const override { return kind_.pci_class; }
  std::vector<uint16_t> queue_max_sizes() const override {
    return std::vector<uint16_t>(queue_count_, options_.queue_size);
  }
  uint64_t device_features() const override;
  uint64_t ring_features() const override;
  void read_config(uint64_t offset, std::span<uint8_t> data) override;
  void write_config(uint64_t offset, std::span<const uint8_t> data) override;
  Result<void> activate(virtio::Activation activation) override;
  void reset() override;

  // False once the backend broke the protocol or went away.
  bool connected() const { return !broken_.load(); }

 private:
  Frontend(const FrontendKind& kind, Connection connection, FrontendOptions options, const Logger& logger);

  Result<void> negotiate();
  // Sends a request; with `reply` waits for the answer to it, and for an
  // acknowledgement when REPLY_ACK was negotiated. Under socket_mutex_.
  Result<std::optional<Message>> call(Message message, std::span<const int> fds = {}, bool reply = false);
  Result<uint64_t> get_u64(Request request);
  Result<void> set_u64(Request request, uint64_t value, std::span<const int> fds = {});
  Result<void> refresh_config();
  Result<void> start_rings(const virtio::Activation& activation);
  // Gives each active queue's call to the backend: the transport's irqfd
  // while it can deliver by itself (no hop through this process), else our
  // own eventfd, which the watcher turns into signal_used(). Under
  // socket_mutex_.
  Result<void> route_calls();
  // The backend is gone or broke the protocol: logged once, and the device
  // asks for a reset if it is active.
  void fail(std::string_view why);
  void watch();  // the watcher thread's body
  void stop_watcher();

  const FrontendKind& kind_;
  FrontendOptions options_;
  Logger logger_;
  std::mutex socket_mutex_;  // one request and its reply at a time
  Connection connection_;
  std::optional<Connection> channel_;  // the backend channel, our end
  uint64_t backend_features_ = 0;
  uint64_t protocol_features_ = 0;
  uint16_t queue_count_ = 1;
  std::atomic<bool> broken_{false};

  std::mutex config_mutex_;
  std::vector<uint8_t> config_;

  // The activation's side, from activate() to reset() (serialized by the
  // transport).
  std::shared_ptr<virtio::Interrupt> interrupt_;
  std::vector<uint16_t> active_queues_;
  std::vector<EventFd> calls_;   // one per active queue, in active_queues_ order
  std::vector<int> call_targets_;  // what the backend was last given per queue; under socket_mutex_
  bool routing_ = false;           // the rings run and calls follow the transport; under socket_mutex_
  std::vector<EventFd> errors_;  // likewise
  std::optional<EventFd> stop_;
  Thread watcher_;
};

}  // namespace crosvm::vhost_user
