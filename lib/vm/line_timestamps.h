// crosvm's `--serial out-timestamp=true`: each line a UART writes out starts
// with the host's UTC time, "[ 2026-12-05 02:40:50.123456789 ]: ", taken
// when the line's first byte is written. The prefix goes before the first
// byte of a line, not after a newline, so a line's stamp is its own start
// even when the guest pauses between lines.
#pragma once

#include <time.h>

#include <cstdint>
#include <functional>
#include <mutex>
#include <span>
#include <string>

namespace crosvm {

class LineTimestamps {
 public:
  using Clock = std::function<timespec()>;
  // `clock`: CLOCK_REALTIME unless a test gives its own.
  explicit LineTimestamps(Clock clock = {});

  // `bytes` with the stamp before each line's first byte. From any thread
  // (several vCPUs may write one UART).
  std::string stamp(std::span<const uint8_t> bytes);

  // The prefix for `when`.
  static std::string prefix(const timespec& when);

 private:
  Clock clock_;
  std::mutex mutex_;
  bool at_line_start_ = true;
};

}  // namespace crosvm
