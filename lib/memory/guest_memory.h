// Guest RAM: one memfd, mapped once in the VMM, carved into regions that KVM
// sees at their guest-physical addresses. Every access by the VMM goes
// through slice(), which checks that the range lies inside one region and
// does not wrap, so no guest-supplied address can reach host memory outside.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <type_traits>
#include <vector>

#include "base/memory_mapping.h"
#include "base/result.h"
#include "base/unique_fd.h"

namespace crosvm {

namespace kvm {
class VmFd;
}

struct GuestRegion {
  uint64_t guest_address;
  uint64_t size;
};

class GuestMemory {
 public:
  // `regions` must be non-empty, page-aligned and must not overlap.
  static Result<GuestMemory> create(std::span<const GuestRegion> regions);

  // Gives every region to KVM, one memory slot each, from slot 0.
  Result<void> register_with(const kvm::VmFd& vm) const;

  // The host view of [address, address + length); empty length is allowed.
  Result<std::span<uint8_t>> slice(uint64_t address, uint64_t length) const;
  bool contains(uint64_t address, uint64_t length) const { return slice(address, length).ok(); }

  Result<void> write(uint64_t address, std::span<const uint8_t> data) const;
  Result<void> read(uint64_t address, std::span<uint8_t> out) const;

  template <typename T>
  Result<void> write_object(uint64_t address, const T& object) const {
    static_assert(std::is_trivially_copyable_v<T>);
    return write(address, std::span(reinterpret_cast<const uint8_t*>(&object), sizeof(T)));
  }
  template <typename T>
  Result<T> read_object(uint64_t address) const {
    static_assert(std::is_trivially_copyable_v<T>);
    T object;
    CROSVM_TRY(read(address, std::span(reinterpret_cast<uint8_t*>(&object), sizeof(T))));
    return object;
  }

  std::span<const GuestRegion> regions() const { return regions_; }
  uint64_t total_size() const { return mapping_.size(); }
  // The memfd behind guest RAM, for sharing it with device processes.
  int fd() const { return memfd_.get(); }

 private:
  GuestMemory(UniqueFd memfd, MemoryMapping mapping, std::vector<GuestRegion> regions,
              std::vector<uint64_t> offsets)
      : memfd_(std::move(memfd)),
        mapping_(std::move(mapping)),
        regions_(std::move(regions)),
        offsets_(std::move(offsets)) {}

  UniqueFd memfd_;
  MemoryMapping mapping_;
  std::vector<GuestRegion> regions_;  // sorted by guest_address
  std::vector<uint64_t> offsets_;     // each region's offset in mapping_
};

}  // namespace crosvm
