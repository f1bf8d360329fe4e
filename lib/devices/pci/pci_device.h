// A PCI function as the root bus sees it: configuration space accesses
// (serialised by the root) and accesses to its memory BARs (straight from
// the MMIO bus, on vCPU threads, so a device locks its own state).
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "devices/pci/config_space.h"

namespace crosvm::pci {

class PciDevice {
 public:
  virtual ~PciDevice() = default;
  virtual std::string_view name() const = 0;

  // Dword-aligned `offset`, 0..4095.
  virtual uint32_t config_read(uint16_t offset) = 0;
  // 1, 2 or 4 bytes at `offset`, not crossing a dword.
  virtual void config_write(uint16_t offset, std::span<const uint8_t> data) = 0;
  // For the root: the command register and the BARs as the guest left them.
  virtual const ConfigSpace& config_space() const = 0;

  virtual void bar_read(uint8_t bar, uint64_t offset, std::span<uint8_t> data) = 0;
  virtual void bar_write(uint8_t bar, uint64_t offset, std::span<const uint8_t> data) = 0;
  // The root now decodes `bar` at `address`, or no longer decodes it.
  virtual void bar_mapped(uint8_t bar, std::optional<uint64_t> address) {
    (void)bar;
    (void)address;
  }
};

}  // namespace crosvm::pci
