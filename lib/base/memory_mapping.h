// RAII for mmap(2): guest RAM and the vCPU run structures.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <utility>

#include "base/result.h"

namespace crosvm {

class MemoryMapping {
 public:
  MemoryMapping() = default;
  ~MemoryMapping();
  MemoryMapping(MemoryMapping&& other) noexcept
      : address_(std::exchange(other.address_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  MemoryMapping& operator=(MemoryMapping&& other) noexcept;
  MemoryMapping(const MemoryMapping&) = delete;
  MemoryMapping& operator=(const MemoryMapping&) = delete;

  // Shared read-write mapping of `size` bytes of `fd` from `offset`,
  // starting at a multiple of `alignment` (a power of two).
  static Result<MemoryMapping> map_shared(int fd, size_t size, off_t offset = 0,
                                          int extra_flags = 0, size_t alignment = 0);
  // Private read-write anonymous memory of `size` bytes, zero-filled.
  static Result<MemoryMapping> map_anonymous(size_t size, int extra_flags = 0,
                                             size_t alignment = 0);

  uint8_t* data() const { return static_cast<uint8_t*>(address_); }
  size_t size() const { return size_; }
  std::span<uint8_t> bytes() const { return {data(), size_}; }

 private:
  MemoryMapping(void* address, size_t size) : address_(address), size_(size) {}
  void* address_ = nullptr;
  size_t size_ = 0;
};

}  // namespace crosvm
