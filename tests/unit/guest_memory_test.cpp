#include <catch2/catch.hpp>

#include "memory/guest_memory.h"

using namespace crosvm;

namespace {

GuestMemory two_regions() {
  const GuestRegion regions[] = {{0, 0x10000}, {0x100000000ull, 0x10000}};
  return std::move(GuestMemory::create(regions)).value();
}

}  // namespace

TEST_CASE("slices inside a region are granted", "[memory]") {
  GuestMemory memory = two_regions();
  CHECK(memory.slice(0, 0x10000).ok());
  CHECK(memory.slice(0xfff0, 0x10).ok());
  CHECK(memory.slice(0x100000000ull + 0x8000, 0x8000).ok());
  CHECK(memory.slice(0x10000, 0).ok());  // an empty slice at the very end
}

TEST_CASE("slices outside RAM, across regions or wrapping are refused", "[memory]") {
  GuestMemory memory = two_regions();
  CHECK_FALSE(memory.slice(0xfff0, 0x11).ok());            // past the region's end
  CHECK_FALSE(memory.slice(0x20000, 1).ok());              // in the hole
  CHECK_FALSE(memory.slice(0x0fff0, 0x100000000ull).ok()); // spans the hole
  CHECK_FALSE(memory.slice(0x100010000ull, 1).ok());       // past the last region
  CHECK_FALSE(memory.slice(~0ull - 4, 16).ok());           // wraps around
  CHECK_FALSE(memory.slice(0x8000, ~0ull).ok());
  CHECK(memory.slice(0x20000, 1).error().code == ErrorCode::kMemory);
}

TEST_CASE("writes and reads round-trip and reach the same bytes", "[memory]") {
  GuestMemory memory = two_regions();
  REQUIRE(memory.write_object<uint64_t>(0x100000008ull, 0x1122334455667788ull).ok());
  auto value = memory.read_object<uint64_t>(0x100000008ull);
  REQUIRE(value.ok());
  CHECK(*value == 0x1122334455667788ull);
  CHECK_FALSE(memory.write_object<uint64_t>(0xfffc, 1).ok());
}

TEST_CASE("bad region layouts are refused", "[memory]") {
  const GuestRegion unaligned[] = {{0, 0x1001}};
  CHECK_FALSE(GuestMemory::create(unaligned).ok());
  const GuestRegion overlapping[] = {{0, 0x2000}, {0x1000, 0x1000}};
  CHECK_FALSE(GuestMemory::create(overlapping).ok());
  CHECK_FALSE(GuestMemory::create({}).ok());
}
