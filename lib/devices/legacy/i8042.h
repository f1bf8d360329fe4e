// The PC keyboard controller, as far as a VMM needs it: enough of the command
// set for Linux's i8042 driver to probe it quickly (self-test, the command
// byte, port tests; no keyboard or mouse behind it), and the CPU reset line:
// command 0xfe, or bit 0 cleared in the output port, resets the machine.
// Like the real controller it holds one byte for the host to read: a new
// answer replaces one that was never read, so a guest that issues commands
// without reading costs nothing.
#pragma once

#include <cstdint>
#include <optional>
#include <mutex>

#include "devices/bus.h"
#include "devices/power_events.h"

namespace crosvm {

class I8042 final : public BusDevice {
 public:
  static constexpr uint16_t kBasePort = 0x60;  // data at 0x60, status/command at 0x64
  static constexpr uint64_t kLength = 5;

  explicit I8042(PowerEvents& power) : power_(power) {}

  std::string_view name() const override { return "i8042"; }
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

 private:
  void command(uint8_t value);
  void respond(uint8_t value) { output_ = value; }
  void data(uint8_t value);
  uint8_t status() const;

  PowerEvents& power_;
  std::mutex mutex_;
  std::optional<uint8_t> output_;  // the output buffer: one byte
  uint8_t command_byte_ = 0x45;  // keyboard interrupt on, system flag, translation
  uint8_t pending_command_ = 0;  // a command waiting for its data byte
  bool last_write_was_command_ = false;
  bool self_tested_ = false;
};

}  // namespace crosvm
