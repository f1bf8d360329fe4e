// crosvm's out-timestamp: the stamp before each line's first byte.
#include <catch2/catch.hpp>

#include <string>

#include "vm/line_timestamps.h"

using namespace crosvm;

namespace {

std::span<const uint8_t> bytes_of(const std::string& text) {
  return {reinterpret_cast<const uint8_t*>(text.data()), text.size()};
}

}  // namespace

TEST_CASE("the prefix is crosvm's: UTC date, time and nanoseconds", "[line-timestamps]") {
  CHECK(LineTimestamps::prefix(timespec{1796432061, 5}) == "[ 2026-12-05 00:54:21.000000005 ]: ");
  CHECK(LineTimestamps::prefix(timespec{0, 999999999}) == "[ 1970-01-01 00:00:00.999999999 ]: ");
}

TEST_CASE("each line gets one stamp, taken at its first byte, however it is split", "[line-timestamps]") {
  long tick = 0;
  LineTimestamps stamps([&tick] { return timespec{++tick, 0}; });
  const std::string one = "[ 1970-01-01 00:00:01.000000000 ]: ";
  const std::string two = "[ 1970-01-01 00:00:02.000000000 ]: ";
  const std::string three = "[ 1970-01-01 00:00:03.000000000 ]: ";
  CHECK(stamps.stamp(bytes_of("he")) == one + "he");
  CHECK(stamps.stamp(bytes_of("llo\n")) == "llo\n");  // the same line: no stamp
  CHECK(tick == 1);
  // The next line is stamped when its first byte comes, not at the newline.
  CHECK(stamps.stamp(bytes_of("a\nb")) == two + "a\n" + three + "b");
  CHECK(stamps.stamp(bytes_of("")).empty());
  CHECK(tick == 3);
}
