#include "base/guest_log.h"

#include <algorithm>
#include <utility>

namespace crosvm {

GuestLog::GuestLog(const Logger& logger, std::string subject, Clock clock)
    : logger_(logger),
      subject_(std::move(subject)),
      clock_(clock ? std::move(clock) : Clock([] { return std::chrono::steady_clock::now(); })),
      last_refill_(clock_()) {}

bool GuestLog::admit(uint64_t& left_out) {
  std::lock_guard lock(mutex_);
  const auto now = clock_();
  const std::chrono::duration<double> elapsed = now - last_refill_;
  last_refill_ = now;
  tokens_ = std::min<double>(kBurst, tokens_ + elapsed / kRefill);
  if (tokens_ < 1) {
    ++dropped_;
    return false;
  }
  tokens_ -= 1;
  left_out = std::exchange(dropped_, 0);
  return true;
}

void GuestLog::relay(LogLevel level, std::string_view message) {
  uint64_t left_out = 0;
  if (!logger_.enabled(level) || !admit(left_out)) return;
  std::string line = fmt::format("{}: {}", subject_, message);
  if (left_out > 0) line += fmt::format(" ({} more message{} were not logged)", left_out, left_out == 1 ? "" : "s");
  logger_.log(level, line);
}

}  // namespace crosvm
