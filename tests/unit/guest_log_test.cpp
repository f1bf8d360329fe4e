// Guest-triggered logs: a burst, then a line a second, for the device's life.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "base/guest_log.h"

using namespace crosvm;

namespace {

struct Captured {
  std::vector<std::string> lines;
  Logger logger() {
    return Logger([this](LogLevel, std::string_view line) { lines.emplace_back(line); }, LogLevel::kInfo);
  }
};

}  // namespace

TEST_CASE("a flood of guest mistakes is logged as a burst, then one line per second", "[log][hostile]") {
  Captured captured;
  auto now = std::chrono::steady_clock::time_point{};
  GuestLog log(captured.logger(), "virtio-blk 0", [&] { return now; });
  for (int i = 0; i < 100000; ++i) log.warn("bad request {}", i);
  REQUIRE(captured.lines.size() == GuestLog::kBurst);
  CHECK(captured.lines.front() == "virtio-blk 0: bad request 0");

  now += std::chrono::seconds(1);
  log.warn("bad request {}", 100000);
  REQUIRE(captured.lines.size() == GuestLog::kBurst + 1);
  CHECK(captured.lines.back() ==
        "virtio-blk 0: bad request 100000 (99990 more such messages from the guest were not logged)");

  now += std::chrono::hours(1);  // a quiet hour refills the burst, no more
  for (int i = 0; i < 1000; ++i) log.warn("again");
  CHECK(captured.lines.size() == 2 * GuestLog::kBurst + 1);
}

TEST_CASE("guest logs below the logger's level cost nothing and are not counted", "[log]") {
  Captured captured;
  GuestLog log(Logger([&](LogLevel, std::string_view line) { captured.lines.emplace_back(line); }, LogLevel::kError),
               "virtio-rng");
  for (int i = 0; i < 100; ++i) log.warn("ignored");
  CHECK(captured.lines.empty());
}

TEST_CASE("lines relayed from another process keep their level, under the same bound", "[log][hostile]") {
  std::vector<std::pair<LogLevel, std::string>> lines;
  const Logger logger([&](LogLevel level, std::string_view line) { lines.emplace_back(level, line); },
                      LogLevel::kInfo);
  auto now = std::chrono::steady_clock::time_point{};
  GuestLog log(logger, "[pid 7]", [&] { return now; });
  log.relay(LogLevel::kDebug, "below the level: not counted");
  for (int i = 0; i < 100000; ++i) log.relay(LogLevel::kError, "flood");
  REQUIRE(lines.size() == GuestLog::kBurst);
  CHECK(lines.front() == std::pair{LogLevel::kError, std::string("[pid 7]: flood")});
  now += std::chrono::seconds(1);
  log.relay(LogLevel::kWarn, "later");
  REQUIRE(lines.size() == GuestLog::kBurst + 1);
  CHECK(lines.back() == std::pair{LogLevel::kWarn, std::string("[pid 7]: later (99990 more messages were not logged)")});
}
