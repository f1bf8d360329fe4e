#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <fstream>
#include <string>

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

namespace {

// The VmFlags line of the mapping that holds `address` in /proc/self/smaps.
std::string vm_flags_of(const void* address) {
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  bool inside = false;
  const auto target = reinterpret_cast<uintptr_t>(address);
  while (std::getline(smaps, line)) {
    unsigned long start = 0, end = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx ", &start, &end) == 2) {
      inside = target >= start && target < end;
    } else if (inside && line.rfind("VmFlags:", 0) == 0) {
      return line;
    }
  }
  return "";
}

bool has_flag(const std::string& flags, const std::string& flag) {
  return flags.find(" " + flag + " ") != std::string::npos || flags.ends_with(" " + flag);
}

}  // namespace

TEST_CASE("guest RAM is private, kept out of core dumps and advised for huge pages when asked", "[memory]") {
  const GuestRegion region{0, 4ull << 20};
  GuestMemory memory = std::move(GuestMemory::create(std::span(&region, 1))).value();
  CHECK(memory.fd() == -1);
  CHECK_FALSE(has_flag(vm_flags_of(memory.slice(0, 1)->data()), "hg"));
  memory.advise_huge_pages();
  const std::string flags = vm_flags_of(memory.slice(0, 1)->data());
  INFO(flags);
  CHECK(has_flag(flags, "hg"));
  CHECK(has_flag(flags, "dd"));
  CHECK_FALSE(has_flag(flags, "sh"));
}

TEST_CASE("guest RAM starts on a 2 MiB boundary, so KVM can map huge pages", "[memory]") {
  for (bool shared : {false, true}) {
    const GuestRegion region{0, 6ull << 20};
    GuestMemory memory =
        std::move(GuestMemory::create(std::span(&region, 1), {.shared = shared})).value();
    const auto start = reinterpret_cast<uintptr_t>(memory.slice(0, 1)->data());
    CHECK(start % (2 << 20) == 0);
    REQUIRE(memory.write_object<uint8_t>((6ull << 20) - 1, 0xaa).ok());  // the whole size is there
  }
}

TEST_CASE("a device process maps shared guest RAM so its huge pages stay huge there too", "[memory]") {
  const GuestRegion layout[] = {{0, 4ull << 20}, {8ull << 20, 4ull << 20}};
  GuestMemory vmm = std::move(GuestMemory::create(layout, {.shared = true})).value();
  // As a vhost-user memory table hands it over: the regions at their
  // offsets in the one file.
  const SharedRegion table[] = {{8ull << 20, 4ull << 20, vmm.fd(), 4ull << 20}, {0, 4ull << 20, vmm.fd(), 0}};
  GuestMemory device = std::move(GuestMemory::map_shared_regions(table)).value();
  for (const SharedRegion& region : table) {
    // A huge page of the file can be mapped with one entry only where the
    // address and the file offset agree modulo 2 MiB.
    const auto host = reinterpret_cast<uintptr_t>(device.slice(region.guest_address, 1)->data());
    CHECK((host - region.offset) % (2 << 20) == 0);
  }
  REQUIRE(vmm.write_object<uint32_t>((8ull << 20) + 0x10, 0xfeed).ok());
  CHECK(*device.read_object<uint32_t>((8ull << 20) + 0x10) == 0xfeed);
}

TEST_CASE("shared guest RAM is a memfd another mapping sees the same bytes through", "[memory]") {
  const GuestRegion region{0, 1ull << 20};
  GuestMemory memory =
      std::move(GuestMemory::create(std::span(&region, 1), {.shared = true})).value();
  REQUIRE(memory.fd() >= 0);
  REQUIRE(memory.write_object<uint32_t>(0x1000, 0xc0ffee).ok());
  auto other = MemoryMapping::map_shared(memory.fd(), 1ull << 20);
  REQUIRE(other.ok());
  uint32_t seen = 0;
  std::memcpy(&seen, other->data() + 0x1000, sizeof(seen));
  CHECK(seen == 0xc0ffee);
  CHECK(has_flag(vm_flags_of(memory.slice(0, 1)->data()), "sh"));
  // Every device process gets this fd: none may resize it or seal it further.
  CHECK(::fcntl(memory.fd(), F_GET_SEALS) == (F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL));
  CHECK(::ftruncate(memory.fd(), 0) != 0);
  CHECK(::fcntl(memory.fd(), F_ADD_SEALS, F_SEAL_FUTURE_WRITE) != 0);
}
