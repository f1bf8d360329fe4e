// virtio-console (virtio 1.x, 5.3) with a single port and no multiport
// support: hvc0 in a Linux guest. What the guest writes goes to an output
// sink (stdout, a file, a callback); host input is buffered (bounded) and
// handed to the guest as it posts receive buffers.
#pragma once

#include <deque>
#include <functional>
#include <mutex>

#include "devices/host_input.h"
#include "devices/virtio/queue_device.h"

namespace crosvm::virtio {

class Console final : public QueueDevice, public HostInput {
 public:
  using OutputSink = std::function<void(std::span<const uint8_t>)>;
  static constexpr uint16_t kQueueSize = 256;
  static constexpr uint16_t kReceiveQueue = 0;
  static constexpr uint16_t kTransmitQueue = 1;
  static constexpr size_t kInputCapacity = 4096;

  Console(std::string name, OutputSink output, const Logger& logger);

  DeviceType type() const override { return DeviceType::kConsole; }
  uint32_t pci_class() const override { return 0x078000; }  // communication controller, other
  std::vector<uint16_t> queue_max_sizes() const override { return {kQueueSize, kQueueSize}; }
  uint64_t device_features() const override { return 0; }
  void read_config(uint64_t offset, std::span<uint8_t> data) override;
  void write_config(uint64_t, std::span<const uint8_t>) override {}

  size_t queue_input(std::span<const uint8_t> bytes) override;
  void set_input_space_listener(std::function<void()> listener) override;

 private:
  Turn on_kick(ActiveQueue& queue) override;
  void deliver_input();  // under the worker's lock

  OutputSink output_;
  std::mutex input_mutex_;
  std::deque<uint8_t> input_;
  bool input_was_full_ = false;
  std::function<void()> input_space_listener_;
};

}  // namespace crosvm::virtio
