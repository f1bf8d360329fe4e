// Cursors over a descriptor chain's buffers: a device reads the readable
// part front to back and fills the writable part front to back, either by
// copying or as iovecs that point into guest RAM (for preadv/pwritev with no
// copy). The buffers were checked by SplitQueue; the cursors never step past
// them, so a short chain is an error, not an overrun.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <span>
#include <type_traits>
#include <vector>

#include "base/result.h"
#include "devices/virtio/queue.h"
#include "memory/guest_memory.h"

namespace crosvm::virtio {

class ChainCursor {
 public:
  ChainCursor(const GuestMemory& memory, std::span<const GuestBuffer> buffers);

  uint64_t remaining() const { return remaining_; }
  uint64_t consumed() const { return consumed_; }

  // The next `length` bytes as host iovecs, consumed; fails (consuming
  // nothing) when fewer remain.
  Result<std::vector<iovec>> take(uint64_t length);
  // Drops the last `length` bytes from what remains (e.g. a status byte that
  // is written separately); fails when fewer remain.
  Result<void> exclude_tail(uint64_t length);
  // The next contiguous piece of what remains, at most `max` bytes, as host
  // memory, without consuming it (empty when nothing remains): for a device
  // that streams a chain through a bounded window instead of copying it.
  Result<std::span<uint8_t>> peek(uint64_t max);
  // Consumes `length` bytes; fails (consuming nothing) when fewer remain.
  Result<void> skip(uint64_t length);

 protected:
  const GuestMemory& memory_;
  std::span<const GuestBuffer> buffers_;
  size_t buffer_index_ = 0;
  uint64_t buffer_offset_ = 0;
  uint64_t remaining_ = 0;
  uint64_t consumed_ = 0;
};

class ChainReader : public ChainCursor {
 public:
  using ChainCursor::ChainCursor;
  Result<void> read(std::span<uint8_t> out);
  template <typename T>
  Result<T> read_object() {
    static_assert(std::is_trivially_copyable_v<T>);
    T object;
    CROSVM_TRY(read(std::span(reinterpret_cast<uint8_t*>(&object), sizeof(T))));
    return object;
  }
};

class ChainWriter : public ChainCursor {
 public:
  using ChainCursor::ChainCursor;
  Result<void> write(std::span<const uint8_t> data);
  template <typename T>
  Result<void> write_object(const T& object) {
    static_assert(std::is_trivially_copyable_v<T>);
    return write(std::span(reinterpret_cast<const uint8_t*>(&object), sizeof(T)));
  }
};

}  // namespace crosvm::virtio
