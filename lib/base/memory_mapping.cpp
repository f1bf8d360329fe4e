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

Result<MemoryMapping> MemoryMapping::map_shared(int fd, size_t size, off_t offset,
                                                int extra_flags) {
  void* address = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_SHARED | extra_flags, fd, offset);
  if (address == MAP_FAILED) {
    return make_errno_error(ErrorCode::kMemory, errno, "cannot map {} bytes", size);
  }
  return MemoryMapping(address, size);
}

Result<MemoryMapping> MemoryMapping::map_file_readonly(int fd, size_t size) {
  if (size == 0) return MemoryMapping();
  void* address = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
  if (address == MAP_FAILED) {
    return make_errno_error(ErrorCode::kIo, errno, "cannot map {} bytes of a file", size);
  }
  return MemoryMapping(address, size);
}

}  // namespace crosvm
