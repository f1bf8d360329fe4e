// Guest RAM: one mapping in the VMM, carved into regions that KVM sees at
// their guest-physical addresses. Every access by the VMM goes through
// slice(), which checks that the range lies inside one region and does not
// wrap, so no guest-supplied address can reach host memory outside.
//
// The mapping is private anonymous memory by default; shared memory (a
// memfd) is for when another process must map guest RAM too (a device
// process). It starts on a 2 MiB boundary so that advise_huge_pages() can
// work: from then on a guest's first touch of a 2 MiB range costs one fault
// instead of 512, and its TLB misses get cheaper (under nested KVM a Linux
// guest boots in about 60% of the time; docs/benchmarks.md). Shared memory
// gets huge pages only where the host's shmem_enabled policy allows.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
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

struct GuestMemoryOptions {
  bool shared = false;  // a memfd that other processes can map (fd())
};

// A region of another process's guest RAM, as a vhost-user frontend
// describes it: `size` bytes of `fd` from `offset` appear at
// `guest_address`.
struct SharedRegion {
  uint64_t guest_address;
  uint64_t size;
  int fd;
  uint64_t offset;
};

// Where a region of this process's guest RAM lives: its host address and,
// for shared memory, its place in fd().
struct RegionMapping {
  GuestRegion region;
  uint8_t* host;
  uint64_t fd_offset;
};

class GuestMemory {
 public:
  // `regions` must be non-empty, page-aligned and must not overlap.
  static Result<GuestMemory> create(std::span<const GuestRegion> regions,
                                    const GuestMemoryOptions& options = {});

  // Maps guest RAM that another process shares (a device process's view).
  // Refused: regions that overlap, wrap, are empty, or lie past the end of
  // their fd (touching them would fault this process).
  static Result<GuestMemory> map_shared_regions(std::span<const SharedRegion> regions);

  // Gives every region to KVM, one memory slot each, from slot 0.
  Result<void> register_with(const kvm::VmFd& vm) const;

  // Asks the host for transparent huge pages behind guest RAM from now on
  // (advice: a kernel without THP keeps small pages). Pages already present
  // stay small, which is why the builder calls it once the kernel and the
  // initrd are loaded: those are buffers the guest reads once, and getting
  // huge pages for them at set-up can stall the VMM (direct compaction,
  // seen at 50 ms) where small pages cost a steady few milliseconds.
  void advise_huge_pages() const;

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
  RegionMapping region_mapping(size_t index) const {
    return {regions_[index], hosts_[index], offsets_[index]};
  }
  uint64_t total_size() const;
  // The memfd behind shared guest RAM, for device processes; -1 when private.
  int fd() const { return memfd_.get(); }

 private:
  GuestMemory(UniqueFd memfd, std::vector<MemoryMapping> mappings, std::vector<GuestRegion> regions,
              std::vector<uint8_t*> hosts, std::vector<uint64_t> offsets)
      : memfd_(std::move(memfd)),
        mappings_(std::move(mappings)),
        regions_(std::move(regions)),
        hosts_(std::move(hosts)),
        offsets_(std::move(offsets)) {}

  UniqueFd memfd_;
  // One mapping for the VM's own RAM; one per region for shared regions.
  std::vector<MemoryMapping> mappings_;
  std::vector<GuestRegion> regions_;  // sorted by guest_address
  std::vector<uint8_t*> hosts_;       // each region's host address
  std::vector<uint64_t> offsets_;     // each region's offset in memfd_ (or its own fd)
};

// The host's policy for huge pages in shared memory (memfds): the word
// selected in /sys/kernel/mm/transparent_hugepage/shmem_enabled ("never",
// "advise", "within_size", "always", ...), or "" when it cannot be read.
std::string shared_memory_huge_page_policy();

}  // namespace crosvm
