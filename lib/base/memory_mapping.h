// RAII for mmap(2): guest RAM, the vCPU run structures, files mapped read-only.
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

  // Shared read-write mapping of `size` bytes of `fd` from `offset`.
  static Result<MemoryMapping> map_shared(int fd, size_t size, off_t offset = 0,
                                          int extra_flags = 0);
  // Private read-only mapping of a whole file (a kernel image, say).
  static Result<MemoryMapping> map_file_readonly(int fd, size_t size);

  uint8_t* data() const { return static_cast<uint8_t*>(address_); }
  size_t size() const { return size_; }
  std::span<uint8_t> bytes() const { return {data(), size_}; }

 private:
  MemoryMapping(void* address, size_t size) : address_(address), size_(size) {}
  void* address_ = nullptr;
  size_t size_ = 0;
};

}  // namespace crosvm
