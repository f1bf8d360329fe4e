// The MC146818 CMOS RTC at ports 0x70/0x71: the time comes from the host's
// clock (UTC) when the guest reads it, in BCD or binary and 12- or 24-hour
// form as register B asks; a guest that sets the clock keeps its own offset.
// The memory-size bytes firmware would leave are filled in.
#pragma once

#include <cstdint>
#include <ctime>
#include <functional>
#include <mutex>

#include "devices/bus.h"

namespace crosvm {

class Cmos final : public BusDevice {
 public:
  static constexpr uint16_t kBasePort = 0x70;
  static constexpr uint64_t kLength = 2;
  using Clock = std::function<time_t()>;

  // `low_memory_end` / `high_memory_end`: ends of RAM below the hole and
  // above 4 GiB (0 if none). `clock` defaults to the host's real time.
  Cmos(uint64_t low_memory_end, uint64_t high_memory_end, Clock clock = {});

  std::string_view name() const override { return "cmos"; }
  void read(uint64_t offset, std::span<uint8_t> data) override;
  void write(uint64_t offset, std::span<const uint8_t> data) override;

 private:
  uint8_t read_register(uint8_t index) const;
  void write_register(uint8_t index, uint8_t value);
  time_t now() const;
  uint8_t encode(int value) const;
  int decode(uint8_t value) const;

  Clock clock_;
  std::mutex mutex_;
  uint8_t index_ = 0;
  uint8_t ram_[128] = {};
  time_t guest_offset_ = 0;  // guest time minus host time, after the guest sets the clock
};

}  // namespace crosvm
