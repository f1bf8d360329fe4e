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

}  // namespace crosvm
