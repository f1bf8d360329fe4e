#include "devices/pci/pci_root.h"

#include <cstring>

namespace crosvm::pci {
namespace {

constexpr uint32_t kConfigAddressEnable = 1u << 31;

// 00:00.0: a host bridge with nothing to configure. The IDs are the ones
// Linux knows as a generic PCIe host bridge (no quirks attached).
class HostBridge final : public PciDevice {
 public:
  HostBridge() : config_(HeaderInfo{.vendor_id = 0x1b36, .device_id = 0x0008, .class_code = 0x060000}) {}
  std::string_view name() const override { return "PCI host bridge"; }
  uint32_t config_read(uint16_t offset) override { return config_.read_dword(offset); }
  void config_write(uint16_t offset, std::span<const uint8_t> data) override {
    config_.write(offset, data);
  }
  const ConfigSpace& config_space() const override { return config_; }
  void bar_read(uint8_t, uint64_t, std::span<uint8_t> data) override {
    std::memset(data.data(), 0xff, data.size());
  }
  void bar_write(uint8_t, uint64_t, std::span<const uint8_t>) override {}

 private:
  ConfigSpace config_;
};

// One BAR's range on the MMIO bus.
class BarRegion final : public BusDevice {
 public:
  BarRegion(std::shared_ptr<PciDevice> device, uint8_t bar) : device_(std::move(device)), bar_(bar) {}
  std::string_view name() const override { return device_->name(); }
  void read(uint64_t offset, std::span<uint8_t> data) override { device_->bar_read(bar_, offset, data); }
  void write(uint64_t offset, std::span<const uint8_t> data) override {
    device_->bar_write(bar_, offset, data);
  }

 private:
  std::shared_ptr<PciDevice> device_;
  uint8_t bar_;
};

// 0xCF8 (the address register, dword accesses only) and 0xCFC-0xCFF (data);
// a byte at 0xCF9 belongs to the reset control register.
class IoAccess final : public BusDevice {
 public:
  IoAccess(std::shared_ptr<PciRoot> root, uint32_t& address, std::mutex& mutex,
           std::shared_ptr<BusDevice> reset_control)
      : root_(std::move(root)), address_(address), mutex_(mutex), reset_control_(std::move(reset_control)) {}
  std::string_view name() const override { return "PCI config ports"; }

  void read(uint64_t offset, std::span<uint8_t> data) override {
    if (is_reset_control(offset, data.size())) {
      reset_control_->read(0, data);
      return;
    }
    std::memset(data.data(), 0xff, data.size());
    if (offset == 0 && data.size() == 4) {
      std::lock_guard lock(mutex_);
      std::memcpy(data.data(), &address_, 4);
      return;
    }
    if (auto target = data_target(offset, data.size())) {
      root_->read_config(target->bus, target->slot, target->function, target->offset, data);
    }
  }

  void write(uint64_t offset, std::span<const uint8_t> data) override {
    if (is_reset_control(offset, data.size())) {
      reset_control_->write(0, data);
      return;
    }
    if (offset == 0 && data.size() == 4) {
      std::lock_guard lock(mutex_);
      std::memcpy(&address_, data.data(), 4);
      return;
    }
    if (auto target = data_target(offset, data.size())) {
      root_->write_config(target->bus, target->slot, target->function, target->offset, data);
    }
  }

 private:
  bool is_reset_control(uint64_t offset, size_t size) const {
    return reset_control_ && offset == 1 && size == 1;
  }
  struct Target {
    uint8_t bus, slot, function;
    uint16_t offset;
  };
  std::optional<Target> data_target(uint64_t offset, size_t size) {
    if (offset < 4 || offset + size > 8) return std::nullopt;
    uint32_t address;
    {
      std::lock_guard lock(mutex_);
      address = address_;
    }
    if ((address & kConfigAddressEnable) == 0) return std::nullopt;
    return Target{static_cast<uint8_t>(address >> 16), static_cast<uint8_t>((address >> 11) & 0x1f),
                  static_cast<uint8_t>((address >> 8) & 0x7),
                  static_cast<uint16_t>((address & 0xfc) + (offset - 4))};
  }

  std::shared_ptr<PciRoot> root_;
  uint32_t& address_;
  std::mutex& mutex_;
  std::shared_ptr<BusDevice> reset_control_;
};

class EcamAccess final : public BusDevice {
 public:
  explicit EcamAccess(std::shared_ptr<PciRoot> root) : root_(std::move(root)) {}
  std::string_view name() const override { return "PCI ECAM"; }
  void read(uint64_t offset, std::span<uint8_t> data) override {
    root_->read_config(bus(offset), slot(offset), function(offset), reg(offset), data);
  }
  void write(uint64_t offset, std::span<const uint8_t> data) override {
    root_->write_config(bus(offset), slot(offset), function(offset), reg(offset), data);
  }

 private:
  static uint8_t bus(uint64_t offset) { return static_cast<uint8_t>(offset >> 20); }
  static uint8_t slot(uint64_t offset) { return static_cast<uint8_t>((offset >> 15) & 0x1f); }
  static uint8_t function(uint64_t offset) { return static_cast<uint8_t>((offset >> 12) & 0x7); }
  static uint16_t reg(uint64_t offset) { return static_cast<uint16_t>(offset & 0xfff); }
  std::shared_ptr<PciRoot> root_;
};

bool fits_in_dword(uint16_t offset, size_t size) {
  return (size == 1 || size == 2 || size == 4) && (offset % 4) + size <= 4;
}

}  // namespace

PciRoot::PciRoot(Bus& mmio_bus, const Logger& logger) : mmio_bus_(mmio_bus), logger_(logger) {
  slots_[0] = std::make_shared<HostBridge>();
}

Result<void> PciRoot::add_device(uint8_t slot, std::shared_ptr<PciDevice> device) {
  std::lock_guard lock(mutex_);
  if (slot == 0 || slot >= kSlotCount) return make_error(ErrorCode::kDevice, "PCI slot {} does not exist", slot);
  if (slots_[slot]) return make_error(ErrorCode::kDevice, "PCI slot {} is taken", slot);
  slots_[slot] = std::move(device);
  refresh_bars_locked(slot);
  for (const BarSpec& bar : slots_[slot]->config_space().bars()) {
    if ((slots_[slot]->config_space().command() & kCommandMemorySpace) != 0 && !mapped_[slot][bar.index]) {
      return make_error(ErrorCode::kDevice, "{}: BAR {} at {:#x} overlaps another device",
                        slots_[slot]->name(), bar.index, bar.address);
    }
  }
  return {};
}

std::optional<uint8_t> PciRoot::free_slot() const {
  std::lock_guard lock(mutex_);
  for (uint8_t slot = 1; slot < kSlotCount; ++slot) {
    if (!slots_[slot]) return slot;
  }
  return std::nullopt;
}

void PciRoot::read_config(uint8_t bus, uint8_t slot, uint8_t function, uint16_t offset,
                          std::span<uint8_t> data) {
  std::memset(data.data(), 0xff, data.size());
  if (bus != 0 || function != 0 || slot >= kSlotCount || offset >= 4096 ||
      !fits_in_dword(offset, data.size())) {
    return;
  }
  std::lock_guard lock(mutex_);
  if (!slots_[slot]) return;
  const uint32_t dword = slots_[slot]->config_read(static_cast<uint16_t>(offset & ~3u));
  std::memcpy(data.data(), reinterpret_cast<const uint8_t*>(&dword) + offset % 4, data.size());
}

void PciRoot::write_config(uint8_t bus, uint8_t slot, uint8_t function, uint16_t offset,
                           std::span<const uint8_t> data) {
  if (bus != 0 || function != 0 || slot >= kSlotCount || offset >= 4096 ||
      !fits_in_dword(offset, data.size())) {
    return;
  }
  std::lock_guard lock(mutex_);
  if (!slots_[slot]) return;
  slots_[slot]->config_write(offset, data);
  refresh_bars_locked(slot);
}

void PciRoot::refresh_bars_locked(uint8_t slot) {
  const std::shared_ptr<PciDevice>& device = slots_[slot];
  const ConfigSpace& config = device->config_space();
  const bool decoding = (config.command() & kCommandMemorySpace) != 0;
  for (const BarSpec& bar : config.bars()) {
    std::optional<uint64_t> wanted;
    if (decoding) {
      const uint64_t address = config.bar_address(bar.index).value_or(0);
      if (address != 0 && address + bar.size > address) wanted = address;
    }
    std::optional<uint64_t>& current = mapped_[slot][bar.index];
    if (wanted == current) continue;
    if (current) mmio_bus_.remove(*current);
    current.reset();
    if (wanted) {
      if (auto inserted = mmio_bus_.insert(std::make_shared<BarRegion>(device, bar.index), *wanted, bar.size);
          inserted) {
        current = wanted;
      } else {
        // The guest put the BAR over something else: it stays undecoded.
        logger_.debug("{}: BAR {} not mapped at {:#x}: {}", device->name(), bar.index, *wanted,
                      inserted.error().message);
      }
    }
    device->bar_mapped(bar.index, current);
  }
}

std::shared_ptr<BusDevice> PciRoot::io_access(std::shared_ptr<BusDevice> reset_control) {
  return std::make_shared<IoAccess>(shared_from_this(), config_address_, mutex_, std::move(reset_control));
}

std::shared_ptr<BusDevice> PciRoot::ecam_access() { return std::make_shared<EcamAccess>(shared_from_this()); }

}  // namespace crosvm::pci
