// What the fuzz targets share: guest RAM in three regions with holes
// between them (as RAM is split around the PCI hole), filled from the
// input, and an oracle for "inside guest RAM" that does not reuse the code
// under test.
#pragma once

#include <fuzzer/FuzzedDataProvider.h>

#include <array>
#include <cstdint>
#include <cstring>

#include "devices/virtio/queue.h"
#include "memory/guest_memory.h"

// Stops the run with a crash libFuzzer records, when an invariant breaks.
#define FUZZ_CHECK(condition) \
  do {                        \
    if (!(condition)) __builtin_trap(); \
  } while (false)

namespace crosvm::fuzz {

inline constexpr std::array<GuestRegion, 3> kRegions{{
    {0x0, 0x10000},
    {0x20000, 0x10000},
    {0x100000, 0x1000},
}};

inline GuestMemory& memory() {
  static GuestMemory guest = std::move(GuestMemory::create(kRegions)).value();
  return guest;
}

// The reference answer: [address, address + length) lies inside one region.
inline bool inside_ram(uint64_t address, uint64_t length) {
  for (const GuestRegion& region : kRegions) {
    if (address >= region.guest_address && address - region.guest_address <= region.size &&
        length <= region.size - (address - region.guest_address)) {
      return true;
    }
  }
  return false;
}

// An address a driver might use: mostly inside a region, sometimes anywhere.
inline uint64_t guest_address(FuzzedDataProvider& input) {
  if (input.ConsumeIntegralInRange<uint8_t>(0, 7) == 0) return input.ConsumeIntegral<uint64_t>();
  const GuestRegion& region = kRegions[input.ConsumeIntegralInRange<size_t>(0, kRegions.size() - 1)];
  return region.guest_address + input.ConsumeIntegralInRange<uint64_t>(0, region.size);
}

inline virtio::QueueConfig queue_config(FuzzedDataProvider& input) {
  virtio::QueueConfig config;
  const uint8_t shift = input.ConsumeIntegralInRange<uint8_t>(0, 9);
  config.size = shift == 9 ? input.ConsumeIntegral<uint16_t>() : static_cast<uint16_t>(1u << shift);
  config.descriptor_table = guest_address(input) & ~uint64_t{15};
  config.available_ring = guest_address(input) & ~uint64_t{1};
  config.used_ring = guest_address(input) & ~uint64_t{3};
  return config;
}

// Zeroes guest RAM, then writes pieces of the input at chosen addresses.
inline void fill_memory(GuestMemory& guest, FuzzedDataProvider& input) {
  for (const GuestRegion& region : kRegions) {
    std::memset(guest.slice(region.guest_address, region.size).value().data(), 0, region.size);
  }
  while (input.remaining_bytes() > 0) {
    const uint64_t address = guest_address(input);
    const std::vector<uint8_t> bytes = input.ConsumeBytes<uint8_t>(input.ConsumeIntegralInRange<size_t>(1, 512));
    if (!inside_ram(address, bytes.size())) continue;
    FUZZ_CHECK(guest.write(address, bytes).ok());
  }
}

// Every buffer of a chain that passed the queue's checks is what the rules
// say it is.
inline void check_chain(const virtio::DescriptorChain& chain, uint16_t queue_size) {
  FUZZ_CHECK(chain.readable.size() + chain.writable.size() <= queue_size);
  uint64_t readable = 0;
  uint64_t writable = 0;
  for (const virtio::GuestBuffer& buffer : chain.readable) {
    FUZZ_CHECK(buffer.length > 0 && inside_ram(buffer.address, buffer.length));
    readable += buffer.length;
  }
  for (const virtio::GuestBuffer& buffer : chain.writable) {
    FUZZ_CHECK(buffer.length > 0 && inside_ram(buffer.address, buffer.length));
    writable += buffer.length;
  }
  FUZZ_CHECK(readable == chain.readable_bytes && writable == chain.writable_bytes);
  FUZZ_CHECK(readable + writable > 0 && readable + writable <= UINT32_MAX);
}

}  // namespace crosvm::fuzz
