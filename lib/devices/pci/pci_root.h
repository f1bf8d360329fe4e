// PCI bus 0: a host bridge at 00:00.0 and up to 31 functions (one per slot),
// reachable through the configuration mechanism #1 ports (0xCF8 address,
// 0xCFC-0xCFF data) and through an ECAM window. After every configuration
// write the root re-derives where each BAR is decoded (memory space enabled
// and the BAR's current address) and moves it on the MMIO bus, so BAR
// sizing and reprogramming by the guest just work.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <span>

#include "base/log.h"
#include "base/result.h"
#include "devices/bus.h"
#include "devices/pci/pci_device.h"

namespace crosvm::pci {

inline constexpr uint8_t kSlotCount = 32;
inline constexpr uint16_t kConfigAddressPort = 0xcf8;
inline constexpr uint64_t kConfigIoLength = 8;  // 0xcf8..0xcff
inline constexpr uint64_t kEcamBusSize = 1 << 20;

class PciRoot : public std::enable_shared_from_this<PciRoot> {
 public:
  PciRoot(Bus& mmio_bus, const Logger& logger);

  // Puts `device` in `slot` (1..31) and maps its BARs if it decodes memory.
  Result<void> add_device(uint8_t slot, std::shared_ptr<PciDevice> device);
  // The lowest free slot, if any.
  std::optional<uint8_t> free_slot() const;

  // Configuration accesses; an absent function reads all-ones. `offset` may
  // be unaligned; the access must not cross a dword.
  void read_config(uint8_t bus, uint8_t slot, uint8_t function, uint16_t offset,
                   std::span<uint8_t> data);
  void write_config(uint8_t bus, uint8_t slot, uint8_t function, uint16_t offset,
                    std::span<const uint8_t> data);

  // Bus devices for the two access mechanisms; insert the first at
  // kConfigAddressPort on the port bus, the second at the ECAM base. On a PC
  // a byte at 0xCF9 is the reset control register, inside 0xCF8-0xCFF (the
  // address register takes dword accesses only): `reset_control` gets those.
  std::shared_ptr<BusDevice> io_access(std::shared_ptr<BusDevice> reset_control);
  std::shared_ptr<BusDevice> ecam_access();

 private:
  void refresh_bars_locked(uint8_t slot);

  Bus& mmio_bus_;
  Logger logger_;
  mutable std::mutex mutex_;
  std::array<std::shared_ptr<PciDevice>, kSlotCount> slots_;
  std::array<std::array<std::optional<uint64_t>, kBarCount>, kSlotCount> mapped_{};
  uint32_t config_address_ = 0;  // the 0xCF8 register
};

}  // namespace crosvm::pci
