// A vhost-user backend: any virtio device of this library, served to one
// frontend (our VMM, or QEMU) over a Unix socket. The frontend keeps the
// transport (PCI, MSI-X); the backend gets guest RAM as fds, and per queue
// a kick eventfd (the guest's notifications, straight from KVM's
// ioeventfd) and a call eventfd (an irqfd, or the frontend's own), and
// builds the device's Activation from them: the device cannot tell it is
// not in the VMM.
//
// A queue runs while it is started (it has a kick fd) and enabled (always,
// unless VHOST_USER_F_PROTOCOL_FEATURES was negotiated: then
// SET_VRING_ENABLE says). Whenever the set of running queues changes the
// device is reset and activated again with the new set, each queue resuming
// where it stood. GET_VRING_BASE stops a queue and answers its position.
//
// Nothing the frontend sends is trusted: a malformed or unsupported
// message, a memory table whose regions overlap or lie past their files, a
// ring outside the table, a queue index out of range, a kick or call fd
// that is no eventfd: each is an error that ends the connection with one
// log line; the device is reset and no fd of the session stays open.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/event_fd.h"
#include "base/log.h"
#include "base/result.h"
#include "vhost_user/protocol.h"
#include "devices/virtio/virtio_device.h"
#include "memory/guest_memory.h"

namespace crosvm::vhost_user {

class Backend {
 public:
  Backend(std::shared_ptr<virtio::VirtioDevice> device, const Logger& logger);
  ~Backend();
  Backend(const Backend&) = delete;
  Backend& operator=(const Backend&) = delete;

  // Serves the frontend on `connection` until it disconnects (ok) or
  // breaks the protocol (the error). The device is reset either way.
  Result<void> serve(const Connection& connection);

  // One request, already read: the reply to send, if the request has one
  // (or asked for an acknowledgement). An error ends the connection.
  Result<std::optional<Message>> handle(Message message);

  // Back to the state before any frontend: the device reset, every fd of
  // the session closed.
  void reset();

  // The features this backend offers: the device's, VERSION_1, the ring
  // features and PROTOCOL_FEATURES.
  uint64_t offered_features() const;
  static constexpr uint64_t kOfferedProtocolFeatures =
      kProtocolMultiQueue | kProtocolReplyAck | kProtocolBackendRequests | kProtocolConfig | kProtocolResetDevice;

 private:
  class Interrupt;
  struct Ring {
    uint16_t size = 0;
    std::optional<VringAddress> address;
    uint16_t base = 0;  // where the ring resumes
    std::optional<EventFd> kick;
    bool started = false;  // a kick fd came since the last stop
    bool enabled = false;
  };

  Result<std::optional<Message>> dispatch(Message& message);
  Result<Ring*> find_ring(uint32_t index);
  Result<void> set_memory_table(const Message& message);
  Result<uint64_t> guest_address(uint64_t user_address, uint64_t length, const char* what) const;
  // Brings the device in line with the queues that should run.
  Result<void> reconcile(bool force_restart = false);
  void stop_device();

  std::shared_ptr<virtio::VirtioDevice> device_;
  Logger logger_;
  std::shared_ptr<Interrupt> interrupt_;
  uint64_t features_ = 0;
  uint64_t protocol_features_ = 0;
  uint8_t status_ = 0;
  std::shared_ptr<GuestMemory> memory_;
  std::vector<MemoryRegion> table_;
  std::vector<Ring> rings_;
  std::vector<uint16_t> running_;  // the queues of the device's activation
};

}  // namespace crosvm::vhost_user
