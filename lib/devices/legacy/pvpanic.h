// The pvpanic device (QEMU's ISA variant, ACPI ID QEMU0001): the guest
// kernel writes "panicked" to its port when it panics, which ends the VM
// with the panic reason. Linux's pvpanic driver finds it through the DSDT.
#pragma once

#include <cstdint>

#include "devices/bus.h"
#include "devices/power_events.h"

namespace crosvm {

class PvPanic final : public BusDevice {
 public:
  static constexpr uint16_t kPort = 0x505;
  static constexpr uint8_t kPanicked = 1 << 0;
  static constexpr uint8_t kCrashLoaded = 1 << 1;  // a kdump kernel takes over: not an exit

  explicit PvPanic(PowerEvents& power) : power_(power) {}

  std::string_view name() const override { return "pvpanic"; }
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

 private:
  PowerEvents& power_;
};

}  // namespace crosvm
