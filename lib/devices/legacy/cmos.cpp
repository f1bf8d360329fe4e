#include "devices/legacy/cmos.h"

#include <algorithm>

namespace crosvm {
namespace {

constexpr uint8_t kSeconds = 0x00;
constexpr uint8_t kMinutes = 0x02;
constexpr uint8_t kHours = 0x04;
constexpr uint8_t kDayOfWeek = 0x06;
constexpr uint8_t kDayOfMonth = 0x07;
constexpr uint8_t kMonth = 0x08;
constexpr uint8_t kYear = 0x09;
constexpr uint8_t kRegisterA = 0x0a;
constexpr uint8_t kRegisterB = 0x0b;
constexpr uint8_t kRegisterC = 0x0c;
constexpr uint8_t kRegisterD = 0x0d;
constexpr uint8_t kCentury = 0x32;

constexpr uint8_t kIndexMask = 0x7f;  // bit 7 of port 0x70 masks NMI

constexpr uint8_t kRegisterADivider = 0x26;   // 32.768 kHz base, 1024 Hz rate; never "update in progress"
constexpr uint8_t kRegisterB24Hour = 0x02;
constexpr uint8_t kRegisterBBinary = 0x04;
constexpr uint8_t kRegisterDValid = 0x80;  // battery good
constexpr uint8_t kHourPm = 0x80;

bool is_time_register(uint8_t index) {
  return index <= kYear || index == kCentury;
}

// The clock the guest may set: 1900-01-01 to 9999-12-31 (time_t seconds).
// The offset from the host's clock stays within it, so nothing a guest
// writes, however often, overflows the date arithmetic.
constexpr time_t kEarliest = -2208988800;
constexpr time_t kLatest = 253402300799;

// Whether `value` is one a clock field can hold; a write of anything else
// is ignored (a value no real clock would show).
bool in_range(uint8_t index, int value, bool twelve_hour) {
  switch (index) {
    case kSeconds:
    case kMinutes: return value >= 0 && value <= 59;
    case kHours: return twelve_hour ? value >= 1 && value <= 12 : value >= 0 && value <= 23;
    case kDayOfMonth: return value >= 1 && value <= 31;
    case kMonth: return value >= 1 && value <= 12;
    case kYear: return value >= 0 && value <= 99;
    case kCentury: return value >= 19 && value <= 99;
    default: return false;
  }
}

}  // namespace

Cmos::Cmos(uint64_t low_memory_end, uint64_t high_memory_end, Clock clock)
    : clock_(clock ? std::move(clock) : Clock([] { return ::time(nullptr); })) {
  ram_[kRegisterA] = kRegisterADivider;
  ram_[kRegisterB] = kRegisterB24Hour;
  ram_[kRegisterD] = kRegisterDValid;

  // Memory sizes as a PC BIOS records them: KiB from 1 MiB up to 64 MiB,
  // 64 KiB blocks from 16 MiB to the hole, 64 KiB blocks above 4 GiB.
  const uint64_t extended_kib = std::min<uint64_t>(
      low_memory_end > (1 << 20) ? (low_memory_end - (1 << 20)) >> 10 : 0, 0xfc00);
  ram_[0x15] = 0x80;  // 640 KiB base memory
  ram_[0x16] = 0x02;
  ram_[0x17] = ram_[0x30] = static_cast<uint8_t>(extended_kib);
  ram_[0x18] = ram_[0x31] = static_cast<uint8_t>(extended_kib >> 8);
  const uint64_t above_16m = low_memory_end > (16 << 20) ? (low_memory_end - (16 << 20)) >> 16 : 0;
  ram_[0x34] = static_cast<uint8_t>(std::min<uint64_t>(above_16m, 0xffff));
  ram_[0x35] = static_cast<uint8_t>(std::min<uint64_t>(above_16m, 0xffff) >> 8);
  const uint64_t above_4g = high_memory_end != 0 ? (high_memory_end - (1ull << 32)) >> 16 : 0;
  ram_[0x5b] = static_cast<uint8_t>(above_4g);
  ram_[0x5c] = static_cast<uint8_t>(above_4g >> 8);
  ram_[0x5d] = static_cast<uint8_t>(above_4g >> 16);
}

void Cmos::read(uint64_t offset, std::span<uint8_t> data) {
  std::fill(data.begin(), data.end(), 0xff);
  if (data.size() != 1) return;
  std::lock_guard lock(mutex_);
  data[0] = offset == 0 ? index_ : read_register(index_);
  if (offset == 1 && index_ == kRegisterC) ram_[kRegisterC] = 0;  // reading C acknowledges
}

void Cmos::write(uint64_t offset, std::span<const uint8_t> data) {
  if (data.size() != 1) return;
  std::lock_guard lock(mutex_);
  if (offset == 0) {
    index_ = data[0] & kIndexMask;
  } else {
    write_register(index_, data[0]);
  }
}

time_t Cmos::now() const { return clock_() + guest_offset_; }

uint8_t Cmos::encode(int value) const {
  if ((ram_[kRegisterB] & kRegisterBBinary) != 0) return static_cast<uint8_t>(value);
  return static_cast<uint8_t>(((value / 10) << 4) | (value % 10));
}

int Cmos::decode(uint8_t value) const {
  if ((ram_[kRegisterB] & kRegisterBBinary) != 0) return value;
  return (value >> 4) * 10 + (value & 0x0f);
}

uint8_t Cmos::read_register(uint8_t index) const {
  if (!is_time_register(index) || index == 0x01 || index == 0x03 || index == 0x05) {
    return ram_[index];  // alarm registers and plain CMOS memory
  }
  const time_t seconds = now();
  struct tm time {};
  ::gmtime_r(&seconds, &time);
  switch (index) {
    case kSeconds: return encode(time.tm_sec);
    case kMinutes: return encode(time.tm_min);
    case kHours:
      if ((ram_[kRegisterB] & kRegisterB24Hour) != 0) return encode(time.tm_hour);
      {
        const int hour12 = time.tm_hour % 12 == 0 ? 12 : time.tm_hour % 12;
        return static_cast<uint8_t>(encode(hour12) | (time.tm_hour >= 12 ? kHourPm : 0));
      }
    case kDayOfWeek: return encode(time.tm_wday + 1);
    case kDayOfMonth: return encode(time.tm_mday);
    case kMonth: return encode(time.tm_mon + 1);
    case kYear: return encode(time.tm_year % 100);
    case kCentury: return encode((time.tm_year + 1900) / 100);
    default: return ram_[index];
  }
}

void Cmos::write_register(uint8_t index, uint8_t value) {
  if (index == kRegisterC || index == kRegisterD) return;  // read-only
  if (index == kRegisterA) {
    ram_[kRegisterA] = value & 0x7f;  // the update-in-progress bit is read-only
    return;
  }
  if (!is_time_register(index) || index == 0x01 || index == 0x03 || index == 0x05 ||
      index == kDayOfWeek) {
    ram_[index] = value;
    return;
  }
  // The guest sets one field of the clock: keep the others, move the offset.
  const time_t seconds = now();
  struct tm time {};
  ::gmtime_r(&seconds, &time);
  int field = decode(static_cast<uint8_t>(index == kHours ? value & ~kHourPm : value));
  if (!in_range(index, field, (ram_[kRegisterB] & kRegisterB24Hour) == 0)) return;
  switch (index) {
    case kSeconds: time.tm_sec = field; break;
    case kMinutes: time.tm_min = field; break;
    case kHours:
      if ((ram_[kRegisterB] & kRegisterB24Hour) == 0) {
        field %= 12;
        if ((value & kHourPm) != 0) field += 12;
      }
      time.tm_hour = field;
      break;
    case kDayOfMonth: time.tm_mday = field; break;
    case kMonth: time.tm_mon = field - 1; break;
    case kYear: time.tm_year = (time.tm_year + 1900) / 100 * 100 + field - 1900; break;
    case kCentury: time.tm_year = field * 100 + time.tm_year % 100 - 1900; break;
    default: break;
  }
  const time_t wanted = ::timegm(&time);
  if (wanted < kEarliest || wanted > kLatest) return;
  guest_offset_ += wanted - seconds;
}

}  // namespace crosvm
