// The virtio-pci modern transport (virtio 1.x, 4.1): a VirtioDevice behind a
// PCI function with one 64-bit memory BAR holding the common configuration,
// the ISR, the device configuration, the notification area and the MSI-X
// table and PBA, each announced by a vendor capability.
//
// The driver's writes go through one state machine: features are fixed at
// FEATURES_OK (only what was offered, VERSION_1 required), queues are
// validated at DRIVER_OK (a bad set-up gives DEVICE_NEEDS_RESET, not a
// crash), and transport registers are read-only once DRIVER_OK is set.
// Queue notifications arrive on ioeventfds registered at the notification
// area (re-registered when the guest moves the BAR), and interrupts leave
// through MSI-X irqfds, or the INTx line and ISR when MSI-X is off.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "base/event_fd.h"
#include "base/guest_log.h"
#include "base/log.h"
#include "devices/io_events.h"
#include "devices/irq.h"
#include "devices/pci/msix.h"
#include "devices/pci/pci_device.h"
#include "devices/virtio/virtio_device.h"

namespace crosvm::virtio {

// What the VM provides to a virtio-pci function.
struct PciTransportResources {
  const GuestMemory* memory = nullptr;
  pci::MsiRouter* msi_router = nullptr;
  IoEventRegistry* io_events = nullptr;
  std::shared_ptr<LevelIrqLine> intx;  // the slot's INTA line
  uint8_t intx_gsi = 0xff;             // reported in the interrupt line register
  uint64_t bar_address = 0;            // where BAR 0 starts (the guest may move it)
  Logger logger;
};

class VirtioPciDevice final : public pci::PciDevice {
 public:
  // BAR 0's layout.
  static constexpr uint64_t kCommonOffset = 0x0000;
  static constexpr uint64_t kCommonSize = 0x38;
  static constexpr uint64_t kIsrOffset = 0x1000;
  static constexpr uint64_t kDeviceConfigOffset = 0x2000;
  static constexpr uint64_t kDeviceConfigSize = 0x1000;
  static constexpr uint64_t kNotifyOffset = 0x3000;
  static constexpr uint32_t kNotifyMultiplier = 4;
  static constexpr uint64_t kMsixTableOffset = 0x4000;
  static constexpr uint64_t kMsixPbaOffset = 0x6000;
  static constexpr uint64_t kBarSize = 0x8000;
  static constexpr uint16_t kNoVector = 0xffff;
  static constexpr uint16_t kMaxQueues = 64;  // fits the notification area and the MSI-X table

  static Result<std::shared_ptr<VirtioPciDevice>> create(std::shared_ptr<VirtioDevice> device,
                                                         PciTransportResources resources);
  ~VirtioPciDevice() override;

  std::string_view name() const override { return device_->name(); }
  uint32_t config_read(uint16_t offset) override;
  void config_write(uint16_t offset, std::span<const uint8_t> data) override;
  const pci::ConfigSpace& config_space() const override { return config_; }
  void bar_read(uint8_t bar, uint64_t offset, std::span<uint8_t> data) override;
  void bar_write(uint8_t bar, uint64_t offset, std::span<const uint8_t> data) override;
  void bar_mapped(uint8_t bar, std::optional<uint64_t> address) override;

  // The device status as the driver reads it (for tests and status reports).
  uint8_t device_status() const;
  const VirtioDevice& device() const { return *device_; }

 private:
  struct QueueState {
    uint16_t max_size = 0;
    uint16_t size = 0;
    uint16_t msix_vector = kNoVector;
    bool enabled = false;
    QueueConfig addresses;
  };
  class TransportInterrupt;

  VirtioPciDevice(std::shared_ptr<VirtioDevice> device, PciTransportResources resources,
                  pci::ConfigSpace config);

  void read_common(uint64_t offset, std::span<uint8_t> data);
  void write_common(uint64_t offset, std::span<const uint8_t> data);
  void write_status_locked(uint8_t value);
  void activate_locked();
  void reset_locked();
  void handle_pci_cfg_access(bool is_write, std::span<uint8_t> data);
  uint64_t offered_features() const;

  std::shared_ptr<VirtioDevice> device_;
  PciTransportResources resources_;
  Logger logger_;
  // What the guest's driver does wrong, rate-limited for the device's life.
  std::shared_ptr<GuestLog> guest_log_;
  pci::ConfigSpace config_;
  uint8_t msix_capability_ = 0;
  uint8_t pci_cfg_capability_ = 0;
  std::shared_ptr<pci::MsixTable> msix_;
  std::shared_ptr<TransportInterrupt> interrupt_;
  std::vector<EventFd> kicks_;  // one per queue, registered as ioeventfds
  std::optional<uint64_t> notify_base_;  // where the kicks are registered

  mutable std::mutex mutex_;  // the registers below; vCPUs write concurrently
  uint32_t device_feature_select_ = 0;
  uint32_t driver_feature_select_ = 0;
  uint64_t driver_features_ = 0;
  uint8_t status_ = 0;
  uint16_t queue_select_ = 0;
  std::vector<QueueState> queues_;
  bool active_ = false;
};

}  // namespace crosvm::virtio
