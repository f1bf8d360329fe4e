#include "base/memory_mapping.h"

#include <sys/mman.h>

namespace crosvm {

MemoryMapping::~MemoryMapping() {
  if (address_ != nullptr) ::munmap(address_, size_);
}

MemoryMapping& MemoryMapping::operator=(MemoryMapping&& other) noexcept {
  if (this != &other) {
    if (address_ != nullptr) ::munmap(address_, size_);
    address_ = std::exchange(other.address_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

namespace {

// mmap() at an address that is a multiple of `alignment`: reserve that much
// more address space, place the mapping inside it, give back the rest.
void* map_aligned(size_t size, int protection, int flags, int fd, off_t offset, size_t alignment) {
  if (alignment <= 4096) return ::mmap(nullptr, size, protection, flags, fd, offset);
  const size_t reserved = size + alignment;
  void* area = ::mmap(nullptr, reserved, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (area == MAP_FAILED) return MAP_FAILED;
  const auto start = reinterpret_cast<uintptr_t>(area);
  const uintptr_t aligned = (start + alignment - 1) & ~(uintptr_t{alignment} - 1);
  void* mapped = ::mmap(reinterpret_cast<void*>(aligned), size, protection, flags | MAP_FIXED, fd, offset);
  if (mapped == MAP_FAILED) {
    const int saved = errno;
    ::munmap(area, reserved);
    errno = saved;
    return MAP_FAILED;
  }
  if (aligned > start) ::munmap(area, aligned - start);
  const uintptr_t end = aligned + size;
  if (start + reserved > end) ::munmap(reinterpret_cast<void*>(end), start + reserved - end);
  return mapped;
}

}  // namespace

Result<MemoryMapping> MemoryMapping::map_shared(int fd, size_t size, off_t offset, int extra_flags,
                                                size_t alignment) {
  void* address = map_aligned(size, PROT_READ | PROT_WRITE, MAP_SHARED | extra_flags, fd, offset,
                              alignment);
  if (address == MAP_FAILED) {
    return make_errno_error(ErrorCode::kMemory, errno, "cannot map {} bytes", size);
  }
  return MemoryMapping(address, size);
}

Result<MemoryMapping> MemoryMapping::map_anonymous(size_t size, int extra_flags, size_t alignment) {
  void* address = map_aligned(size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | extra_flags,
                              -1, 0, alignment);
  if (address == MAP_FAILED) {
    return make_errno_error(ErrorCode::kMemory, errno, "cannot map {} bytes", size);
  }
  return MemoryMapping(address, size);
}

}  // namespace crosvm
