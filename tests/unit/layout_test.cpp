#include <catch2/catch.hpp>

#include "arch/x86_64/boot_setup.h"
#include "arch/x86_64/layout.h"

using namespace crosvm;
using namespace crosvm::x86_64;

namespace {

constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kGiB = 1ull << 30;

uint64_t e820_ram(const std::vector<E820Entry>& map) {
  uint64_t total = 0;
  for (const E820Entry& entry : map) total += entry.type == kE820Ram ? entry.size : 0;
  return total;
}

bool overlaps_hole(const E820Entry& entry) {
  return entry.address < kFourGiB && entry.address + entry.size > kMmioHoleStart;
}

}  // namespace

TEST_CASE("a small guest has one RAM region below the hole", "[layout]") {
  auto layout = plan_memory(256 * kMiB, 46);
  REQUIRE(layout.ok());
  REQUIRE(layout->ram.size() == 1);
  CHECK(layout->ram[0].guest_address == 0);
  CHECK(layout->ram[0].size == 256 * kMiB);
  CHECK(layout->low_ram_end == 256 * kMiB);
  CHECK(layout->high_ram_end == 0);
}

TEST_CASE("a 3.5 GiB guest continues above 4 GiB after the MMIO hole", "[layout]") {
  auto layout = plan_memory(3584 * kMiB, 46);
  REQUIRE(layout.ok());
  REQUIRE(layout->ram.size() == 2);
  CHECK(layout->low_ram_end == kMmioHoleStart);
  CHECK(layout->ram[1].guest_address == kFourGiB);
  CHECK(layout->ram[1].size == 512 * kMiB);
  CHECK(layout->high_ram_end == kFourGiB + 512 * kMiB);
}

TEST_CASE("a 5 GiB guest has 3 GiB low and 2 GiB high", "[layout]") {
  auto layout = plan_memory(5 * kGiB, 46);
  REQUIRE(layout.ok());
  REQUIRE(layout->ram.size() == 2);
  CHECK(layout->ram[0].size == 3 * kGiB);
  CHECK(layout->ram[1].size == 2 * kGiB);
  CHECK(layout->top_of_ram() == 6 * kGiB);
}

TEST_CASE("impossible memory sizes are refused", "[layout]") {
  CHECK(plan_memory(0, 46).error().code == ErrorCode::kMemory);
  CHECK_FALSE(plan_memory(kMiB, 46).ok());
  CHECK_FALSE(plan_memory(256 * kMiB + 1, 46).ok());
  auto too_large = plan_memory(1ull << 40, 39);
  REQUIRE_FALSE(too_large.ok());
  CHECK(too_large.error().message.find("39-bit") != std::string::npos);
}

TEST_CASE("the e820 map and the memory layout agree", "[layout]") {
  for (uint64_t size : {64 * kMiB, 256 * kMiB, 3584 * kMiB, 5 * kGiB}) {
    auto layout = plan_memory(size, 46);
    REQUIRE(layout.ok());
    const std::vector<E820Entry> map = build_e820_map(*layout);

    // All RAM but the EBDA and BIOS area (below 1 MiB) is reported usable.
    CHECK(e820_ram(map) == size - (kHighMemoryStart - kEbdaAddress));
    for (const E820Entry& entry : map) {
      if (entry.type == kE820Ram) CHECK_FALSE(overlaps_hole(entry));
    }
    // Sorted and disjoint, as Linux expects.
    for (size_t i = 1; i < map.size(); ++i) {
      const uint64_t next = map[i].address;  // a value: the packed field may be misaligned
      CHECK(map[i - 1].address + map[i - 1].size <= next);
    }
    // The ECAM window is reserved so Linux trusts MMCONFIG.
    CHECK(std::any_of(map.begin(), map.end(), [](const E820Entry& entry) {
      return entry.address == kEcamAddress && entry.size == kEcamSize && entry.type == kE820Reserved;
    }));
  }
}
