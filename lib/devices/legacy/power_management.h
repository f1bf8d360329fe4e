// ACPI fixed-hardware power management: the PM1a event block (status and
// enable) and control block at port 0x600, as the FADT describes them. A
// write of SLP_EN with the S5 sleep type powers the machine off. The fixed
// power button: a press sets PWRBTN_STS, and the SCI is asserted while a
// status bit the guest has enabled is set (it clears it by writing 1).
// Also the PC reset control register (port 0xcf9), the FADT's reset
// register.
#pragma once

#include <cstdint>
#include <mutex>

#include <memory>

#include "devices/bus.h"
#include "devices/irq.h"
#include "devices/power_events.h"

namespace crosvm {

class PowerManagement final : public BusDevice {
 public:
  static constexpr uint16_t kBasePort = 0x600;
  static constexpr uint64_t kLength = 6;          // PM1a_EVT (4) + PM1a_CNT (2)
  static constexpr uint16_t kEventBlockPort = 0x600;
  static constexpr uint16_t kControlBlockPort = 0x604;
  static constexpr uint8_t kEventBlockLength = 4;
  static constexpr uint8_t kControlBlockLength = 2;
  static constexpr uint16_t kSleepTypeS5 = 5;   // \_S5 in the DSDT says the same
  static constexpr uint16_t kSleepEnable = 1 << 13;
  static constexpr unsigned kSleepTypeShift = 10;
  static constexpr uint16_t kPowerButton = 1 << 8;  // PWRBTN_STS / PWRBTN_EN

  // `sci`: the level-triggered line of the FADT's SCI_INT.
  PowerManagement(PowerEvents& power, std::shared_ptr<LevelIrqLine> sci)
      : power_(power), sci_(std::move(sci)) {}

  std::string_view name() const override { return "acpi-pm"; }
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

  // A press of the power button. Returns whether the guest listens to it
  // (has set PWRBTN_EN): a guest without an ACPI button driver does not.
  bool press_power_button();

 private:
  void update_sci_locked();

  PowerEvents& power_;
  std::shared_ptr<LevelIrqLine> sci_;
  bool sci_asserted_ = false;
  std::mutex mutex_;
  uint16_t status_ = 0;
  uint16_t enable_ = 0;
  uint16_t control_ = 0;
};

class ResetControl final : public BusDevice {
 public:
  static constexpr uint16_t kPort = 0xcf9;
  static constexpr uint8_t kResetValue = 0x06;  // system reset | reset CPU

  explicit ResetControl(PowerEvents& power) : power_(power) {}

  std::string_view name() const override { return "reset-control"; }
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

 private:
  PowerEvents& power_;
  std::mutex mutex_;
  uint8_t value_ = 0;
};

}  // namespace crosvm
