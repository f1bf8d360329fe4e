// virtio-vsock (virtio 1.x, 5.10) on the kernel's vhost-vsock: sockets
// between the guest (its CID) and the host (CID 2) with no network. The
// receive and transmit queues are the kernel's; the event queue stays
// here, holding the driver's buffers for a transport reset, which only a
// migration would send (there is none).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "devices/registry.h"
#include "devices/virtio/queue_device.h"
#include "devices/virtio/vhost_kernel.h"
#include "devices/virtio/vsock/vhost_vsock.h"

namespace crosvm::virtio {

inline constexpr uint64_t kVsockFeatureSeqpacket = 1ull << 1;

class Vsock final : public QueueDevice {
 public:
  static constexpr uint16_t kQueueSize = 256;
  static constexpr uint16_t kReceiveQueue = 0;
  static constexpr uint16_t kTransmitQueue = 1;
  static constexpr uint16_t kEventQueue = 2;

  Vsock(std::string name, uint64_t cid, std::unique_ptr<VhostVsock> vhost, const Logger& logger);

  DeviceType type() const override { return DeviceType::kVsock; }
  uint32_t pci_class() const override { return 0x078000; }  // other communication controller
  std::vector<uint16_t> queue_max_sizes() const override { return {kQueueSize, kQueueSize, kQueueSize}; }
  uint64_t device_features() const override;
  uint64_t ring_features() const override;
  std::vector<QueuePosition> positions_at_reset() const override;
  void read_config(uint64_t offset, std::span<uint8_t> data) override;
  void write_config(uint64_t, std::span<const uint8_t>) override {}

  uint64_t cid() const { return cid_; }

 private:
  Result<void> on_activate(const Activation& activation) override;
  Turn on_kick(ActiveQueue& queue) override;
  void on_reset() override;
  std::vector<int> host_fds() const override { return kernel_.host_fds(); }
  Turn on_host_ready(size_t index) override;
  bool served_here(uint16_t queue) const override { return queue == kEventQueue; }

  uint64_t cid_;
  KernelQueues kernel_{[this](std::string_view problem) { report_limited(problem); }};
};

// "vsock" in the registry: cid= (or the CID alone, as crosvm's --vsock 3),
// device= (the vhost-vsock device, default /dev/vhost-vsock), or socket=
// for the userspace vsock (user_vsock.h) instead.
extern const VirtioKind kVsockKind;

// The guest's CID a "vsock" device's options give it (cid=, or 3 for a
// userspace vsock without one).
Result<uint64_t> vsock_guest_cid(const DeviceOptions& options);

}  // namespace crosvm::virtio
