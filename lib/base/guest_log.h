// Logs about what a guest did (a malformed request, a refused negotiation,
// a broken ring) go through one GuestLog per device: a token bucket of
// kBurst lines that refills one line per kRefill, which lives as long as
// the device. No reset of the device and no flood from the guest makes the
// host write more than kBurst + (seconds elapsed) lines for it; the next
// line that gets through says how many were left out.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>

#include "base/log.h"

namespace crosvm {

class GuestLog {
 public:
  static constexpr unsigned kBurst = 10;
  static constexpr std::chrono::seconds kRefill{1};
  using Clock = std::function<std::chrono::steady_clock::time_point()>;

  // `subject` starts every line ("virtio-blk 0 (disk.img)").
  GuestLog(const Logger& logger, std::string subject, Clock clock = {});

  template <typename... Args>
  void warn(fmt::format_string<Args...> format, Args&&... args) {
    uint64_t left_out = 0;
    if (!logger_.enabled(LogLevel::kWarn) || !admit(left_out)) return;
    std::string line = fmt::format("{}: {}", subject_, fmt::format(format, std::forward<Args>(args)...));
    if (left_out > 0) {
      line += fmt::format(" ({} more such message{} from the guest were not logged)", left_out,
                          left_out == 1 ? "" : "s");
    }
    logger_.log(LogLevel::kWarn, line);
  }

  // A line another process wrote (a jailed device process's log, which a
  // device exploited by its guest could flood), at the level it gave, under
  // the same bucket: "SUBJECT: message".
  void relay(LogLevel level, std::string_view message);

  const Logger& logger() const { return logger_; }

 private:
  // Takes a token if there is one; says how many lines were dropped since
  // the last one that got through.
  bool admit(uint64_t& left_out);

  Logger logger_;
  std::string subject_;
  Clock clock_;
  std::mutex mutex_;
  double tokens_ = kBurst;
  std::chrono::steady_clock::time_point last_refill_;
  uint64_t dropped_ = 0;
};

}  // namespace crosvm
