// virtio-rng (virtio 1.x, 5.4): fills the driver's buffers from the host's
// getrandom(2), which is what /dev/hwrng in the guest reads.
#pragma once

#include "devices/registry.h"
#include "devices/virtio/queue_device.h"

namespace crosvm::virtio {

class Rng final : public QueueDevice {
 public:
  static constexpr uint16_t kQueueSize = 256;
  // At most this much per request, so one huge buffer cannot hold the worker.
  static constexpr uint32_t kMaxBytesPerRequest = 64 * 1024;

  explicit Rng(const Logger& logger) : QueueDevice("virtio-rng", logger) {}

  DeviceType type() const override { return DeviceType::kRng; }
  uint32_t pci_class() const override { return 0xff0000; }  // unclassified
  std::vector<uint16_t> queue_max_sizes() const override { return {kQueueSize}; }
  uint64_t device_features() const override { return 0; }
  void read_config(uint64_t, std::span<uint8_t> data) override { read_config_bytes({}, 0, data); }
  void write_config(uint64_t, std::span<const uint8_t>) override {}

 private:
  Turn on_kick(ActiveQueue& queue) override;
};

// "rng" in the registry: no keys; one is there by default (VmConfig::rng).
extern const VirtioKind kRngKind;

}  // namespace crosvm::virtio
