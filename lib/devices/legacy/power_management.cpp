#include "devices/legacy/power_management.h"

#include <algorithm>
#include <cstring>

namespace crosvm {
namespace {

constexpr uint64_t kStatusOffset = 0;
constexpr uint64_t kEnableOffset = 2;
constexpr uint64_t kControlOffset = 4;
constexpr uint16_t kControlSciEnabled = 1;  // ACPI mode is always on: no SMI handshake
constexpr uint16_t kControlWritable = 0x1c06;  // SLP_TYP, GBL_RLS, BM_RLD
// The events this machine has: the power button. Other bits read as 0.
constexpr uint16_t kEvents = PowerManagement::kPowerButton;

// The registers are 16 bits wide; accept byte and word accesses to them.
bool fits_register(uint64_t offset, size_t size) {
  return (size == 1 || (size == 2 && offset % 2 == 0)) && offset + size <= PowerManagement::kLength;
}

}  // namespace

void PowerManagement::read(uint64_t offset, std::span<uint8_t> data) {
  std::fill(data.begin(), data.end(), 0xff);
  if (!fits_register(offset, data.size())) return;
  std::lock_guard lock(mutex_);
  uint16_t registers[3] = {status_, enable_, static_cast<uint16_t>(control_ | kControlSciEnabled)};
  std::memcpy(data.data(), reinterpret_cast<const uint8_t*>(registers) + offset, data.size());
}

void PowerManagement::write(uint64_t offset, std::span<const uint8_t> data) {
  if (!fits_register(offset, data.size())) return;
  uint16_t value = 0;
  std::memcpy(&value, data.data(), data.size());
  const unsigned shift = (offset % 2) * 8;
  const uint16_t mask = static_cast<uint16_t>((data.size() == 2 ? 0xffff : 0xff) << shift);
  value = static_cast<uint16_t>(value << shift);

  bool power_off = false;
  {
    std::lock_guard lock(mutex_);
    switch (offset & ~1ull) {
      case kStatusOffset:  // write 1 to clear
        status_ &= static_cast<uint16_t>(~(value & mask));
        update_sci_locked();
        break;
      case kEnableOffset:
        enable_ = static_cast<uint16_t>((enable_ & ~mask) | (value & mask));
        update_sci_locked();
        break;
      case kControlOffset: {
        const uint16_t written = static_cast<uint16_t>((control_ & ~mask) | (value & mask));
        control_ = written & kControlWritable;
        const uint16_t sleep_type = (written >> kSleepTypeShift) & 0x7;
        power_off = (written & kSleepEnable) != 0 && sleep_type == kSleepTypeS5;
        break;
      }
      default: break;
    }
  }
  if (power_off) power_.request_power_off("ACPI S5");
}

bool PowerManagement::press_power_button() {
  std::lock_guard lock(mutex_);
  status_ |= kPowerButton;
  update_sci_locked();
  return (enable_ & kPowerButton) != 0;
}

void PowerManagement::update_sci_locked() {
  const bool asserted = (status_ & enable_ & kEvents) != 0;
  if (asserted == sci_asserted_) return;
  sci_asserted_ = asserted;
  if (sci_) sci_->set_level(asserted);
}

void ResetControl::read(uint64_t /*offset*/, std::span<uint8_t> data) {
  std::fill(data.begin(), data.end(), 0xff);
  if (data.size() != 1) return;
  std::lock_guard lock(mutex_);
  data[0] = value_;
}

void ResetControl::write(uint64_t /*offset*/, std::span<const uint8_t> data) {
  if (data.size() != 1) return;
  bool reset;
  {
    std::lock_guard lock(mutex_);
    value_ = data[0] & 0x0e;
    // Setting "reset CPU" (bit 2) performs the reset; bit 1 picks a hard one.
    reset = (data[0] & 0x04) != 0;
  }
  if (reset) power_.request_reset("reset control register");
}

}  // namespace crosvm
