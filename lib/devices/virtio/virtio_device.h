// A virtio device as its transport sees it: device type, feature bits,
// configuration space, queues, activate and reset. It knows nothing of PCI
// or MMIO; the transport negotiates, validates the queues the driver set up
// and hands them over at DRIVER_OK.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "base/event_fd.h"
#include "base/result.h"
#include "devices/virtio/queue.h"
#include "memory/guest_memory.h"

namespace crosvm::virtio {

enum class DeviceType : uint32_t {
  kNet = 1,
  kBlock = 2,
  kConsole = 3,
  kRng = 4,
  kBalloon = 5,
  kVsock = 19,
  kFs = 26,
  kPmem = 27,
};

// Transport-independent feature bits (virtio 1.x, 6).
inline constexpr uint64_t kFeatureIndirectDescriptors = 1ull << 28;
inline constexpr uint64_t kFeatureEventIndex = 1ull << 29;
inline constexpr uint64_t kFeatureVersion1 = 1ull << 32;

// Device status bits (2.1).
inline constexpr uint8_t kStatusAcknowledge = 1;
inline constexpr uint8_t kStatusDriver = 2;
inline constexpr uint8_t kStatusDriverOk = 4;
inline constexpr uint8_t kStatusFeaturesOk = 8;
inline constexpr uint8_t kStatusNeedsReset = 64;
inline constexpr uint8_t kStatusFailed = 128;

// How a device reaches the driver; the transport implements it. Callable
// from any thread.
class Interrupt {
 public:
  virtual ~Interrupt() = default;
  virtual void signal_used(uint16_t queue) = 0;
  // The configuration changed: the generation moves and the driver is told.
  virtual void signal_config_change() = 0;
  // The device cannot go on (e.g. the driver broke a ring): DEVICE_NEEDS_RESET
  // and a configuration interrupt. `why` goes to the log.
  virtual void report_needs_reset(std::string_view why) = 0;

  // For a device in another process (vhost-user): an eventfd that raises
  // `queue`'s interrupt with no help from this process (the MSI-X vector's
  // irqfd while it is unmasked), or nullopt while only signal_used() can
  // (a masked vector, INTx: the transport records what is pending).
  virtual std::optional<int> direct_queue_fd(uint16_t queue) {
    (void)queue;
    return std::nullopt;
  }
  // `on_change` runs (on the thread that changed it, a vCPU) whenever the
  // answer of direct_queue_fd() may have changed; an empty one stops it.
  virtual void watch_direct_fds(std::function<void()> on_change) { (void)on_change; }
};

struct ActiveQueue {
  uint16_t index;   // the queue's number in the device
  SplitQueue queue;
  EventFd kick;     // signalled when the driver notifies this queue
};

// Where a queue stood when reset() ended its activation.
struct QueuePosition {
  uint16_t index;
  uint16_t next_available;
};

struct Activation {
  const GuestMemory* memory;
  uint64_t features;                 // what was negotiated
  std::vector<ActiveQueue> queues;   // the queues the driver enabled, by index
  std::shared_ptr<Interrupt> interrupt;
};

class VirtioDevice {
 public:
  virtual ~VirtioDevice() = default;

  virtual DeviceType type() const = 0;
  virtual std::string_view name() const = 0;
  // PCI class code (class << 16 | subclass << 8 | interface).
  virtual uint32_t pci_class() const = 0;
  // One entry per queue: the largest size the device accepts.
  virtual std::vector<uint16_t> queue_max_sizes() const = 0;
  // Device-specific feature bits; the transport adds VERSION_1 and the ring
  // features it implements.
  virtual uint64_t device_features() const = 0;
  // The ring features (INDIRECT_DESC, EVENT_IDX) the device handles: all of
  // them for a device of this library, what its backend offers for a
  // vhost-user frontend.
  virtual uint64_t ring_features() const { return kFeatureIndirectDescriptors | kFeatureEventIndex; }

  // The device-specific configuration space. Accesses past its end read 0
  // and are ignored; the device checks offsets itself.
  virtual void read_config(uint64_t offset, std::span<uint8_t> data) = 0;
  virtual void write_config(uint64_t offset, std::span<const uint8_t> data) = 0;

  // DRIVER_OK: starts serving the queues. An error puts the device in
  // DEVICE_NEEDS_RESET.
  virtual Result<void> activate(Activation activation) = 0;
  // Back to the state before activate(). When it returns no queue work runs
  // and no guest memory is touched by the device any more.
  virtual void reset() = 0;
  // After reset(): where each queue of the activation it ended stood (a
  // vhost-user backend answers GET_VRING_BASE with it). Chains the device
  // had taken but not finished are not counted back.
  virtual std::vector<QueuePosition> positions_at_reset() const { return {}; }
};

// Copies the part of `config` that [offset, offset + out.size()) covers into
// `out`, zero past its end: the helper behind every read_config().
void read_config_bytes(std::span<const uint8_t> config, uint64_t offset, std::span<uint8_t> out);

}  // namespace crosvm::virtio
