#include "vm/line_timestamps.h"

#include <fmt/format.h>

namespace crosvm {

LineTimestamps::LineTimestamps(Clock clock) : clock_(std::move(clock)) {
  if (!clock_) {
    clock_ = [] {
      timespec now{};
      ::clock_gettime(CLOCK_REALTIME, &now);
      return now;
    };
  }
}

std::string LineTimestamps::prefix(const timespec& when) {
  tm utc{};
  const time_t seconds = when.tv_sec;
  ::gmtime_r(&seconds, &utc);
  return fmt::format("[ {:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:09} ]: ", utc.tm_year + 1900, utc.tm_mon + 1,
                     utc.tm_mday, utc.tm_hour, utc.tm_min, utc.tm_sec, when.tv_nsec);
}

std::string LineTimestamps::stamp(std::span<const uint8_t> bytes) {
  std::string out;
  out.reserve(bytes.size());
  std::lock_guard lock(mutex_);
  for (const uint8_t byte : bytes) {
    if (at_line_start_) out += prefix(clock_());
    out += static_cast<char>(byte);
    at_line_start_ = byte == '\n';
  }
  return out;
}

}  // namespace crosvm
