// A type-0 PCI configuration space: the standard header, memory BARs and a
// capability list. What the guest may change is a per-byte write mask, so
// BAR sizing (write all-ones, read back the size mask) and read-only fields
// need no special cases. Accesses at 256..4095 (PCIe extended space through
// ECAM) read 0: no extended capabilities.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <vector>

#include "base/result.h"

namespace crosvm::pci {

inline constexpr size_t kConfigSpaceSize = 256;
inline constexpr size_t kBarCount = 6;

inline constexpr uint16_t kCommandIoSpace = 1 << 0;
inline constexpr uint16_t kCommandMemorySpace = 1 << 1;
inline constexpr uint16_t kCommandBusMaster = 1 << 2;
inline constexpr uint16_t kCommandInterruptDisable = 1 << 10;

inline constexpr uint8_t kCapabilityMsix = 0x11;
inline constexpr uint8_t kCapabilityVendor = 0x09;

struct HeaderInfo {
  uint16_t vendor_id = 0;
  uint16_t device_id = 0;
  uint8_t revision = 0;
  uint32_t class_code = 0;  // class << 16 | subclass << 8 | programming interface
  uint16_t subsystem_vendor_id = 0;
  uint16_t subsystem_id = 0;
  uint8_t interrupt_pin = 0;   // 0 none, 1 INTA ... 4 INTD
  uint8_t interrupt_line = 0xff;
  uint16_t command = 0;  // as firmware left it (e.g. memory decoding on)
};

// A 64-bit, non-prefetchable memory BAR occupying slots `index` and `index + 1`.
struct BarSpec {
  uint8_t index = 0;
  uint64_t size = 0;  // a power of two, at least 4 KiB
  uint64_t address = 0;
};

class ConfigSpace {
 public:
  explicit ConfigSpace(const HeaderInfo& header);

  // Declares a BAR at its initial address (the guest may move it).
  void add_bar(const BarSpec& bar);
  // Appends a capability; `body` starts with the ID byte and leaves room for
  // the next pointer (filled in here). `writable` (same length, or empty for
  // none) masks what the guest may write. Returns the capability's offset;
  // fails when it does not fit in the 256 bytes.
  Result<uint8_t> add_capability(std::span<const uint8_t> body, std::span<const uint8_t> writable);

  // Dword-aligned register reads; offsets past 255 read 0.
  uint32_t read_dword(uint16_t offset) const;
  // A guest write of 1, 2 or 4 bytes at `offset`, masked; past 255 ignored.
  void write(uint16_t offset, std::span<const uint8_t> data);

  uint16_t command() const;
  // The address the guest has programmed into a declared BAR.
  std::optional<uint64_t> bar_address(uint8_t index) const;
  std::optional<uint64_t> bar_size(uint8_t index) const;
  std::span<const BarSpec> bars() const { return bars_; }

  // The raw bytes, for the device's own capability fields.
  uint8_t byte(uint16_t offset) const { return offset < kConfigSpaceSize ? bytes_[offset] : 0; }
  uint16_t word(uint16_t offset) const;
  uint32_t dword(uint16_t offset) const { return read_dword(offset); }
  void set_dword(uint16_t offset, uint32_t value);  // device-side, ignores masks

 private:
  std::array<uint8_t, kConfigSpaceSize> bytes_{};
  std::array<uint8_t, kConfigSpaceSize> writable_{};
  std::vector<BarSpec> bars_;
  uint8_t last_capability_ = 0;
  uint8_t next_free_ = 0x40;
};

}  // namespace crosvm::pci
