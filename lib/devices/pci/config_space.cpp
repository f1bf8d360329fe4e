#include "devices/pci/config_space.h"

#include <cstring>

namespace crosvm::pci {
namespace {

constexpr uint16_t kVendorId = 0x00;
constexpr uint16_t kCommand = 0x04;
constexpr uint16_t kStatus = 0x06;
constexpr uint16_t kRevision = 0x08;
constexpr uint16_t kHeaderType = 0x0e;
constexpr uint16_t kBar0 = 0x10;
constexpr uint16_t kSubsystemVendor = 0x2c;
constexpr uint16_t kCapabilitiesPointer = 0x34;
constexpr uint16_t kInterruptLine = 0x3c;
constexpr uint16_t kInterruptPin = 0x3d;
constexpr uint16_t kStatusCapabilityList = 1 << 4;
constexpr uint32_t kBarMemory64 = 0x4;

}  // namespace

ConfigSpace::ConfigSpace(const HeaderInfo& header) {
  auto put16 = [this](uint16_t offset, uint16_t value) { std::memcpy(&bytes_[offset], &value, 2); };
  put16(kVendorId, header.vendor_id);
  put16(kVendorId + 2, header.device_id);
  bytes_[kRevision] = header.revision;
  bytes_[kRevision + 1] = static_cast<uint8_t>(header.class_code);
  bytes_[kRevision + 2] = static_cast<uint8_t>(header.class_code >> 8);
  bytes_[kRevision + 3] = static_cast<uint8_t>(header.class_code >> 16);
  bytes_[kHeaderType] = 0;
  put16(kSubsystemVendor, header.subsystem_vendor_id);
  put16(kSubsystemVendor + 2, header.subsystem_id);
  bytes_[kInterruptLine] = header.interrupt_line;
  bytes_[kInterruptPin] = header.interrupt_pin;
  put16(kCommand, header.command);

  const uint16_t command_mask = kCommandIoSpace | kCommandMemorySpace | kCommandBusMaster |
                                kCommandInterruptDisable;
  writable_[kCommand] = static_cast<uint8_t>(command_mask);
  writable_[kCommand + 1] = static_cast<uint8_t>(command_mask >> 8);
  writable_[kInterruptLine] = 0xff;
}

void ConfigSpace::add_bar(const BarSpec& bar) {
  const uint16_t low = kBar0 + 4 * bar.index;
  const uint64_t value = bar.address | kBarMemory64;
  std::memcpy(&bytes_[low], &value, 8);
  const uint64_t mask = ~(bar.size - 1) & ~uint64_t{0xf};  // the flag bits stay read-only
  std::memcpy(&writable_[low], &mask, 8);
  bars_.push_back(bar);
}

Result<uint8_t> ConfigSpace::add_capability(std::span<const uint8_t> body,
                                            std::span<const uint8_t> writable) {
  const uint8_t offset = next_free_;
  if (body.size() < 2 || offset + body.size() > kConfigSpaceSize ||
      (!writable.empty() && writable.size() != body.size())) {
    return make_error(ErrorCode::kInternal, "a PCI capability of {} bytes does not fit at {:#x}",
                      body.size(), offset);
  }
  std::memcpy(&bytes_[offset], body.data(), body.size());
  bytes_[offset + 1] = 0;  // next: the end of the list, until another is appended
  if (!writable.empty()) std::memcpy(&writable_[offset], writable.data(), writable.size());
  writable_[offset] = writable_[offset + 1] = 0;  // ID and next are read-only
  if (last_capability_ == 0) {
    bytes_[kCapabilitiesPointer] = offset;
    const uint16_t status = word(kStatus) | kStatusCapabilityList;
    std::memcpy(&bytes_[kStatus], &status, 2);
  } else {
    bytes_[last_capability_ + 1] = offset;
  }
  last_capability_ = offset;
  next_free_ = static_cast<uint8_t>((offset + body.size() + 3) & ~size_t{3});
  return offset;
}

uint32_t ConfigSpace::read_dword(uint16_t offset) const {
  const size_t aligned = offset & ~size_t{3};
  if (aligned + 4 > kConfigSpaceSize) return 0;
  uint32_t value;
  std::memcpy(&value, &bytes_[aligned], 4);
  return value;
}

uint16_t ConfigSpace::word(uint16_t offset) const {
  if (size_t{offset} + 2 > kConfigSpaceSize) return 0;
  uint16_t value;
  std::memcpy(&value, &bytes_[offset], 2);
  return value;
}

void ConfigSpace::write(uint16_t offset, std::span<const uint8_t> data) {
  for (size_t i = 0; i < data.size(); ++i) {
    const size_t at = offset + i;
    if (at >= kConfigSpaceSize) return;
    bytes_[at] = static_cast<uint8_t>((bytes_[at] & ~writable_[at]) | (data[i] & writable_[at]));
  }
}

void ConfigSpace::set_dword(uint16_t offset, uint32_t value) {
  if (size_t{offset} + 4 <= kConfigSpaceSize) std::memcpy(&bytes_[offset], &value, 4);
}

uint16_t ConfigSpace::command() const { return word(kCommand); }

std::optional<uint64_t> ConfigSpace::bar_address(uint8_t index) const {
  for (const BarSpec& bar : bars_) {
    if (bar.index != index) continue;
    uint64_t value;
    std::memcpy(&value, &bytes_[kBar0 + 4 * index], 8);
    return value & ~uint64_t{0xf};
  }
  return std::nullopt;
}

std::optional<uint64_t> ConfigSpace::bar_size(uint8_t index) const {
  for (const BarSpec& bar : bars_) {
    if (bar.index == index) return bar.size;
  }
  return std::nullopt;
}

}  // namespace crosvm::pci
