#include <catch2/catch.hpp>

#include "devices/legacy/cmos.h"
#include "devices/legacy/debugcon.h"
#include "devices/legacy/i8042.h"
#include "devices/legacy/power_management.h"
#include "fakes.h"

using namespace crosvm;
using crosvm::testing::RecordingPowerEvents;

namespace {

uint8_t in8(BusDevice& device, uint64_t offset) {
  uint8_t value = 0;
  device.read(offset, std::span(&value, 1));
  return value;
}

void out8(BusDevice& device, uint64_t offset, uint8_t value) {
  device.write(offset, std::span(&value, 1));
}

uint16_t in16(BusDevice& device, uint64_t offset) {
  uint8_t data[2] = {};
  device.read(offset, data);
  return static_cast<uint16_t>(data[0] | (data[1] << 8));
}

void out16(BusDevice& device, uint64_t offset, uint16_t value) {
  uint8_t bytes[2] = {static_cast<uint8_t>(value), static_cast<uint8_t>(value >> 8)};
  device.write(offset, bytes);
}

uint8_t cmos_read(Cmos& cmos, uint8_t index) {
  out8(cmos, 0, index);
  return in8(cmos, 1);
}

// 2026-11-22 13:05:09 UTC, a Sunday.
constexpr time_t kFixedTime = 1795352709;

}  // namespace

TEST_CASE("i8042 command 0xfe resets the machine", "[i8042]") {
  RecordingPowerEvents power;
  I8042 controller(power);
  out8(controller, 4, 0xfe);
  REQUIRE(power.events.size() == 1);
  CHECK(power.events[0].rfind("reset:", 0) == 0);
}

TEST_CASE("i8042 output port with the reset line low resets the machine", "[i8042]") {
  RecordingPowerEvents power;
  I8042 controller(power);
  out8(controller, 4, 0xd1);
  out8(controller, 0, 0x03);  // reset line high: nothing happens
  CHECK(power.events.empty());
  out8(controller, 4, 0xd1);
  out8(controller, 0, 0x02);
  CHECK(power.events.size() == 1);
}

TEST_CASE("i8042 answers Linux's probe: self-test, command byte, no aux port", "[i8042]") {
  RecordingPowerEvents power;
  I8042 controller(power);
  CHECK((in8(controller, 4) & 0x01) == 0);  // nothing to read
  out8(controller, 4, 0xaa);
  CHECK((in8(controller, 4) & 0x05) == 0x05);  // output full, system flag
  CHECK(in8(controller, 0) == 0x55);
  out8(controller, 4, 0x60);
  out8(controller, 0, 0x65);
  out8(controller, 4, 0x20);
  CHECK(in8(controller, 0) == 0x65);
  out8(controller, 4, 0xa9);
  CHECK(in8(controller, 0) != 0x00);  // aux test fails: no mouse port
  out8(controller, 4, 0xd3);
  out8(controller, 0, 0x5a);
  CHECK((in8(controller, 4) & 0x20) == 0);  // the loop-back byte is not aux data
  CHECK(power.events.empty());
}

TEST_CASE("i8042 holds one byte: answers that are never read do not pile up", "[i8042][hostile]") {
  // A guest that issues answering commands (a rep outsb gives 4096 a
  // time) without ever reading port 0x60 costs the host nothing.
  RecordingPowerEvents power;
  I8042 controller(power);
  for (int i = 0; i < 100000; ++i) out8(controller, 4, i % 2 == 0 ? 0xaa : 0x20);
  CHECK((in8(controller, 4) & 0x01) == 0x01);
  CHECK(in8(controller, 0) == 0x45);  // the last answer: the command byte
  CHECK((in8(controller, 4) & 0x01) == 0);  // and nothing behind it
  CHECK(in8(controller, 0) == 0);
}

TEST_CASE("CMOS reports the clock in BCD, 24-hour form by default", "[cmos]") {
  Cmos cmos(256ull << 20, 0, [] { return kFixedTime; });
  CHECK(cmos_read(cmos, 0x00) == 0x09);
  CHECK(cmos_read(cmos, 0x02) == 0x05);
  CHECK(cmos_read(cmos, 0x04) == 0x13);
  CHECK(cmos_read(cmos, 0x06) == 0x01);  // Sunday
  CHECK(cmos_read(cmos, 0x07) == 0x22);
  CHECK(cmos_read(cmos, 0x08) == 0x11);
  CHECK(cmos_read(cmos, 0x09) == 0x26);
  CHECK(cmos_read(cmos, 0x32) == 0x20);
  CHECK((cmos_read(cmos, 0x0a) & 0x80) == 0);  // no update in progress
  CHECK(cmos_read(cmos, 0x0d) == 0x80);        // valid RAM and time
}

TEST_CASE("CMOS honours binary and 12-hour modes", "[cmos]") {
  Cmos cmos(256ull << 20, 0, [] { return kFixedTime; });
  out8(cmos, 0, 0x0b);
  out8(cmos, 1, 0x04);  // binary, 12-hour
  CHECK(cmos_read(cmos, 0x04) == (1 | 0x80));  // 1 PM
  CHECK(cmos_read(cmos, 0x07) == 22);
}

TEST_CASE("a guest that sets the CMOS clock keeps its own time", "[cmos]") {
  time_t host = kFixedTime;
  Cmos cmos(256ull << 20, 0, [&] { return host; });
  out8(cmos, 0, 0x04);
  out8(cmos, 1, 0x15);  // 15:xx
  CHECK(cmos_read(cmos, 0x04) == 0x15);
  host += 3600;
  CHECK(cmos_read(cmos, 0x04) == 0x16);  // the offset holds as host time moves
}

TEST_CASE("a guest writing CMOS years over and over keeps the clock within 1900-9999", "[cmos][hostile]") {
  // Binary mode lets a year register hold 255: each write used to move the
  // clock a century on, until the date arithmetic overflowed.
  Cmos cmos(256ull << 20, 0, [] { return kFixedTime; });
  out8(cmos, 0, 0x0b);
  out8(cmos, 1, 0x06);  // binary, 24-hour
  for (int i = 0; i < 100000; ++i) {
    out8(cmos, 0, i % 2 == 0 ? 0x09 : 0x32);
    out8(cmos, 1, 0xff);
  }
  CHECK(cmos_read(cmos, 0x09) == 26);  // out of range: ignored
  CHECK(cmos_read(cmos, 0x32) == 20);
  out8(cmos, 0, 0x32);
  out8(cmos, 1, 99);  // the latest century a clock may show
  out8(cmos, 0, 0x09);
  out8(cmos, 1, 99);
  CHECK(cmos_read(cmos, 0x32) == 99);
  CHECK(cmos_read(cmos, 0x09) == 99);
  out8(cmos, 0, 0x08);
  out8(cmos, 1, 13);  // no thirteenth month
  CHECK(cmos_read(cmos, 0x08) == 11);
}

TEST_CASE("CMOS records the memory sizes firmware would", "[cmos]") {
  Cmos cmos(3ull << 30, (4ull << 30) + (2ull << 30), [] { return kFixedTime; });
  const uint64_t above_16m = cmos_read(cmos, 0x34) | (cmos_read(cmos, 0x35) << 8);
  CHECK(above_16m == ((3ull << 30) - (16ull << 20)) >> 16);
  const uint64_t above_4g = cmos_read(cmos, 0x5b) | (cmos_read(cmos, 0x5c) << 8) |
                            (static_cast<uint64_t>(cmos_read(cmos, 0x5d)) << 16);
  CHECK(above_4g == (2ull << 30) >> 16);
}

TEST_CASE("writing S5 with SLP_EN to PM1a control powers off", "[pm]") {
  RecordingPowerEvents power;
  PowerManagement pm(power, nullptr);
  out16(pm, 4, PowerManagement::kSleepTypeS5 << PowerManagement::kSleepTypeShift);
  CHECK(power.events.empty());  // no SLP_EN yet
  out16(pm, 4, (PowerManagement::kSleepTypeS5 << PowerManagement::kSleepTypeShift) | PowerManagement::kSleepEnable);
  REQUIRE(power.events.size() == 1);
  CHECK(power.events[0].rfind("poweroff:", 0) == 0);
}

TEST_CASE("other sleep states do not power off", "[pm]") {
  RecordingPowerEvents power;
  PowerManagement pm(power, nullptr);
  out16(pm, 4, (3 << PowerManagement::kSleepTypeShift) | PowerManagement::kSleepEnable);
  CHECK(power.events.empty());
  CHECK((in8(pm, 4) & 0x01) == 0x01);  // SCI_EN: ACPI mode
}

TEST_CASE("PM1 enable is read-write and status is write-one-to-clear", "[pm]") {
  RecordingPowerEvents power;
  PowerManagement pm(power, nullptr);
  out16(pm, 2, 0x0120);
  CHECK(in8(pm, 2) == 0x20);
  CHECK(in8(pm, 3) == 0x01);
  out16(pm, 0, 0xffff);
  CHECK(in8(pm, 0) == 0);
}

TEST_CASE("the power button raises the SCI while the guest has it enabled and unacknowledged", "[pm]") {
  RecordingPowerEvents power;
  auto sci = std::make_shared<crosvm::testing::RecordingLevelIrq>();
  PowerManagement pm(power, sci);
  // A guest that has not enabled the button (no driver) hears nothing, but
  // the press is kept, as a real PM1 status bit is.
  CHECK_FALSE(pm.press_power_button());
  CHECK((in16(pm, 0) & PowerManagement::kPowerButton) != 0);
  CHECK(sci->levels.empty());
  // Enabling it with the status set raises the line.
  out16(pm, 2, PowerManagement::kPowerButton);
  REQUIRE(sci->levels.size() == 1);
  CHECK(sci->levels.back());
  // Writing 1 to the status bit acknowledges it: the line drops.
  out16(pm, 0, PowerManagement::kPowerButton);
  CHECK((in16(pm, 0) & PowerManagement::kPowerButton) == 0);
  REQUIRE(sci->levels.size() == 2);
  CHECK_FALSE(sci->levels.back());
  // A press with the button enabled raises it at once; a second press
  // before the guest acknowledges changes nothing.
  CHECK(pm.press_power_button());
  CHECK(pm.press_power_button());
  REQUIRE(sci->levels.size() == 3);
  CHECK(sci->levels.back());
  // Disabling it drops the line; no power event ever comes from the button.
  out16(pm, 2, 0);
  CHECK_FALSE(sci->levels.back());
  CHECK(power.events.empty());
  // Events the machine does not have, enabled, raise nothing.
  out16(pm, 2, 0xfeff);
  CHECK(sci->levels.size() == 4);
}

TEST_CASE("the reset control register resets on the reset-CPU bit", "[pm]") {
  RecordingPowerEvents power;
  ResetControl reset(power);
  out8(reset, 0, 0x02);
  CHECK(power.events.empty());
  out8(reset, 0, ResetControl::kResetValue);
  CHECK(power.events.size() == 1);
}

TEST_CASE("a debugcon reads as 0xe9 and passes each byte written to its output", "[debugcon]") {
  std::string printed;
  crosvm::Debugcon debugcon("debugcon 1", [&](std::span<const uint8_t> bytes) { printed.append(bytes.begin(), bytes.end()); });
  uint8_t value = 0;
  debugcon.read(0, std::span(&value, 1));
  CHECK(value == 0xe9);  // how a guest tells that the port is there
  for (char c : std::string("OVMF\n")) {
    const uint8_t byte = static_cast<uint8_t>(c);
    debugcon.write(0, std::span(&byte, 1));
  }
  CHECK(printed == "OVMF\n");
}
