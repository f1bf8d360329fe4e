// virtio-console (virtio 1.x, 5.3) with a single port and no multiport
// support: hvc0 in a Linux guest. What the guest writes is streamed from
// its buffers to an OutputStream (stdout, a file, a callback) in pieces of
// at most kPieceBytes, never copied whole: a chain of 255 descriptors over
// the same guest RAM costs the host nothing more than a short one. While
// the stream is full the transmit chain waits where it is and the rest
// stay in the ring (the guest's driver sees a busy console), and the
// device's thread does not wait. Host input is buffered (bounded) and
// handed to the guest as it posts receive buffers.
#pragma once

#include <deque>
#include <functional>
#include <mutex>

#include "devices/host_input.h"
#include "devices/output_stream.h"
#include "devices/virtio/queue_device.h"

namespace crosvm::virtio {

class Console final : public QueueDevice, public HostInput {
 public:
  static constexpr uint16_t kQueueSize = 256;
  // The most handed to the output at once, and per turn of the device.
  static constexpr size_t kPieceBytes = 64 << 10;
  static constexpr uint64_t kTransmitBytesPerTurn = 256 << 10;
  static constexpr uint16_t kReceiveQueue = 0;
  static constexpr uint16_t kTransmitQueue = 1;
  static constexpr size_t kInputCapacity = 4096;

  Console(std::string name, std::shared_ptr<OutputStream> output, const Logger& logger);

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
  void on_reset() override;
  // Under the worker's lock.
  Turn transmit(ActiveQueue& queue);
  enum class Sent { kAll, kOutputFull, kBudgetUsed };
  Sent send_transmitting(uint64_t& budget);
  void deliver_input();

  // The transmit chain being written out (popped, not yet returned).
  struct Transmitting {
    DescriptorChain chain;
    uint64_t sent = 0;
  };

  std::shared_ptr<OutputStream> output_;
  std::optional<Transmitting> transmitting_;  // under the worker's lock
  std::mutex input_mutex_;
  std::deque<uint8_t> input_;
  bool input_was_full_ = false;
  std::function<void()> input_space_listener_;
};

}  // namespace crosvm::virtio
