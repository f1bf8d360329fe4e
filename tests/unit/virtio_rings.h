// Plays the driver's side of a split virtqueue in test guest memory: writes
// descriptors and the avail ring, reads the used ring.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "devices/virtio/queue.h"
#include "memory/guest_memory.h"

namespace crosvm::testing {

constexpr uint16_t kNext = virtio::SplitQueue::kDescriptorNext;
constexpr uint16_t kWrite = virtio::SplitQueue::kDescriptorWrite;
constexpr uint16_t kIndirect = virtio::SplitQueue::kDescriptorIndirect;

inline GuestMemory make_guest_memory(uint64_t size = 1 << 20) {
  const GuestRegion region{0, size};
  return std::move(GuestMemory::create(std::span(&region, 1))).value();
}

class DriverRing {
 public:
  static constexpr uint64_t kDescriptors = 0x1000;
  static constexpr uint64_t kAvailable = 0x3000;
  static constexpr uint64_t kUsed = 0x4000;

  // `base` moves the rings (a second queue in the same memory).
  DriverRing(const GuestMemory& memory, uint16_t size, uint64_t base = 0)
      : memory_(memory), size_(size), base_(base) {}

  virtio::QueueConfig config() const {
    return {size_, base_ + kDescriptors, base_ + kAvailable, base_ + kUsed};
  }

  // A descriptor in the queue's table (or, with `table`, in an indirect one).
  void descriptor(uint16_t index, uint64_t address, uint32_t length, uint16_t flags = 0,
                  uint16_t next = 0, uint64_t table = 0) const {
    if (table == 0) table = base_ + kDescriptors;
    uint8_t raw[16];
    std::memcpy(raw, &address, 8);
    std::memcpy(raw + 8, &length, 4);
    std::memcpy(raw + 12, &flags, 2);
    std::memcpy(raw + 14, &next, 2);
    (void)memory_.write(table + uint64_t{index} * 16, raw);
  }

  // Puts `head` in the avail ring and publishes it.
  void offer(uint16_t head) {
    (void)memory_.write_object<uint16_t>(base_ + kAvailable + 4 + 2 * (avail_index_ % size_), head);
    set_avail_index(static_cast<uint16_t>(avail_index_ + 1));
  }
  void set_avail_index(uint16_t index) {
    avail_index_ = index;
    (void)memory_.write_object<uint16_t>(base_ + kAvailable + 2, index);
  }
  void set_used_event(uint16_t index) const {
    (void)memory_.write_object<uint16_t>(base_ + kAvailable + 4 + 2 * size_, index);
  }
  void set_avail_flags(uint16_t flags) const { (void)memory_.write_object<uint16_t>(base_ + kAvailable, flags); }

  uint16_t used_index() const { return memory_.read_object<uint16_t>(base_ + kUsed + 2).value(); }
  struct Used {
    uint32_t id;
    uint32_t length;
  };
  Used used(uint16_t slot) const {
    const uint64_t element = base_ + kUsed + 4 + 8 * (slot % size_);
    return {memory_.read_object<uint32_t>(element).value(), memory_.read_object<uint32_t>(element + 4).value()};
  }

 private:
  const GuestMemory& memory_;
  uint16_t size_;
  uint64_t base_;
  uint16_t avail_index_ = 0;
};

}  // namespace crosvm::testing
