#include "memory/guest_memory.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "kvm/kvm.h"

namespace crosvm {
namespace {

constexpr uint64_t kPageSize = 4096;
// Guest RAM starts on a 2 MiB boundary of the VMM's address space: KVM maps
// a guest 2 MiB page with one huge page only where the guest-physical and
// the host-virtual addresses agree modulo 2 MiB.
constexpr size_t kHugePageSize = 2 << 20;

Result<void> validate_layout(std::span<const GuestRegion> regions) {
  if (regions.empty()) return make_error(ErrorCode::kMemory, "guest memory has no regions");
  uint64_t previous_end = 0;
  for (size_t i = 0; i < regions.size(); ++i) {
    const GuestRegion& region = regions[i];
    if (region.size == 0 || region.size % kPageSize != 0 || region.guest_address % kPageSize != 0) {
      return make_error(ErrorCode::kMemory, "guest memory region {} is not page-aligned", i);
    }
    if (region.guest_address + region.size < region.guest_address) {
      return make_error(ErrorCode::kMemory, "guest memory region {} wraps around", i);
    }
    if (i > 0 && region.guest_address < previous_end) {
      return make_error(ErrorCode::kMemory, "guest memory regions overlap or are unsorted");
    }
    previous_end = region.guest_address + region.size;
  }
  return {};
}

}  // namespace

Result<GuestMemory> GuestMemory::create(std::span<const GuestRegion> regions,
                                        const GuestMemoryOptions& options) {
  CROSVM_TRY(validate_layout(regions));
  uint64_t total = 0;
  std::vector<uint64_t> offsets;
  for (const GuestRegion& region : regions) {
    offsets.push_back(total);
    total += region.size;
  }

  UniqueFd memfd;
  Result<MemoryMapping> mapping = Error{ErrorCode::kInternal, "not mapped"};
  if (options.shared) {
    memfd = UniqueFd(::memfd_create("crosvm_guest", MFD_CLOEXEC | MFD_ALLOW_SEALING));
    if (!memfd) return make_errno_error(ErrorCode::kMemory, errno, "memfd_create");
    if (::ftruncate(memfd.get(), static_cast<off_t>(total)) != 0) {
      return make_errno_error(ErrorCode::kMemory, errno, "cannot size guest memory to {} MiB",
                              total >> 20);
    }
    // Growing or shrinking the file under a running guest would fault the
    // VMM. F_SEAL_SEAL: every backend is handed this fd, and one that added
    // a seal of its own (F_SEAL_FUTURE_WRITE) would make every later
    // backend's read-write mapping of it fail.
    if (::fcntl(memfd.get(), F_ADD_SEALS, F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) != 0) {
      return make_errno_error(ErrorCode::kMemory, errno, "cannot seal guest memory");
    }
    mapping = MemoryMapping::map_shared(memfd.get(), total, 0, MAP_NORESERVE, kHugePageSize);
  } else {
    mapping = MemoryMapping::map_anonymous(total, MAP_NORESERVE, kHugePageSize);
  }
  if (!mapping) {
    return make_error(ErrorCode::kMemory, "cannot map {} MiB of guest memory: {}", total >> 20,
                      mapping.error().message);
  }
  // Guest RAM stays out of the VMM's core dumps.
  ::madvise(mapping->data(), total, MADV_DONTDUMP);
  std::vector<uint8_t*> hosts;
  for (uint64_t offset : offsets) hosts.push_back(mapping->data() + offset);
  std::vector<MemoryMapping> mappings;
  mappings.push_back(std::move(mapping).value());
  return GuestMemory(std::move(memfd), std::move(mappings), std::vector<GuestRegion>(regions.begin(), regions.end()),
                     std::move(hosts), std::move(offsets));
}

Result<GuestMemory> GuestMemory::map_shared_regions(std::span<const SharedRegion> shared) {
  std::vector<SharedRegion> sorted(shared.begin(), shared.end());
  std::sort(sorted.begin(), sorted.end(),
            [](const SharedRegion& a, const SharedRegion& b) { return a.guest_address < b.guest_address; });
  std::vector<GuestRegion> regions;
  for (const SharedRegion& region : sorted) regions.push_back({region.guest_address, region.size});
  CROSVM_TRY(validate_layout(regions));
  std::vector<MemoryMapping> mappings;
  std::vector<uint8_t*> hosts;
  std::vector<uint64_t> offsets;
  for (size_t i = 0; i < sorted.size(); ++i) {
    const SharedRegion& region = sorted[i];
    const uint64_t end = region.offset + region.size;
    struct stat status {};
    if (end < region.offset || ::fstat(region.fd, &status) != 0 || static_cast<uint64_t>(status.st_size) < end) {
      return make_error(ErrorCode::kMemory, "guest memory region {} lies past the end of its file", i);
    }
    // Mapped from the file's start, so that no alignment is asked of the
    // offset; the region begins `offset` bytes in. On a 2 MiB boundary:
    // where the VMM's advice made the file's pages huge (shmem_enabled=
    // advise), this process then maps each with one page-table entry and
    // one fault, not 512 of each. No advice of its own: whether guest RAM
    // gets huge pages is the VMM's choice (hugepages=false).
    auto mapping = MemoryMapping::map_shared(region.fd, end, 0, MAP_NORESERVE, kHugePageSize);
    if (!mapping) {
      return make_error(ErrorCode::kMemory, "cannot map guest memory region {}: {}", i, mapping.error().message);
    }
    ::madvise(mapping->data(), end, MADV_DONTDUMP);
    hosts.push_back(mapping->data() + region.offset);
    offsets.push_back(region.offset);
    mappings.push_back(std::move(mapping).value());
  }
  return GuestMemory(UniqueFd(), std::move(mappings), std::move(regions), std::move(hosts), std::move(offsets));
}

uint64_t GuestMemory::total_size() const {
  uint64_t total = 0;
  for (const GuestRegion& region : regions_) total += region.size;
  return total;
}

void GuestMemory::advise_huge_pages() const {
  // Advice only: a kernel without transparent huge pages (or, for shared
  // memory, whose shmem policy says never) keeps small pages.
  for (const MemoryMapping& mapping : mappings_) ::madvise(mapping.data(), mapping.size(), MADV_HUGEPAGE);
}

std::string shared_memory_huge_page_policy() {
  // Read with a plain read(): <fstream> alone would link the C++ runtime's
  // locale machinery into the library, ~300 KB of text.
  const UniqueFd fd(::open("/sys/kernel/mm/transparent_hugepage/shmem_enabled", O_RDONLY | O_CLOEXEC));
  if (!fd) return {};
  char buffer[256];
  const ssize_t length = ::read(fd.get(), buffer, sizeof buffer);
  if (length <= 0) return {};
  const std::string line(buffer, static_cast<size_t>(length));
  const size_t open = line.find('[');
  const size_t close = line.find(']', open);
  if (open == std::string::npos || close == std::string::npos) return {};
  return line.substr(open + 1, close - open - 1);
}

Result<void> GuestMemory::register_with(const kvm::VmFd& vm) const {
  for (size_t i = 0; i < regions_.size(); ++i) {
    CROSVM_TRY(vm.set_user_memory_region(static_cast<uint32_t>(i), regions_[i].guest_address,
                                         regions_[i].size, hosts_[i]));
  }
  return {};
}

Result<std::span<uint8_t>> GuestMemory::slice(uint64_t address, uint64_t length) const {
  // The last region starting at or below `address`.
  auto after = std::upper_bound(
      regions_.begin(), regions_.end(), address,
      [](uint64_t value, const GuestRegion& region) { return value < region.guest_address; });
  if (after != regions_.begin()) {
    size_t index = static_cast<size_t>(after - regions_.begin()) - 1;
    const GuestRegion& region = regions_[index];
    uint64_t offset = address - region.guest_address;
    if (offset < region.size && length <= region.size - offset) {
      return std::span<uint8_t>(hosts_[index] + offset, length);
    }
    if (offset == region.size && length == 0) {
      return std::span<uint8_t>(hosts_[index] + offset, 0);
    }
  }
  return make_error(ErrorCode::kMemory, "guest range [{:#x}, +{:#x}) is not inside guest RAM",
                    address, length);
}

Result<void> GuestMemory::write(uint64_t address, std::span<const uint8_t> data) const {
  std::span<uint8_t> target = CROSVM_TRY(slice(address, data.size()));
  if (!data.empty()) std::memcpy(target.data(), data.data(), data.size());
  return {};
}

Result<void> GuestMemory::read(uint64_t address, std::span<uint8_t> out) const {
  std::span<uint8_t> source = CROSVM_TRY(slice(address, out.size()));
  if (!out.empty()) std::memcpy(out.data(), source.data(), out.size());
  return {};
}

}  // namespace crosvm
