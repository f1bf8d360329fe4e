#include "devices/virtio/queue.h"

#include <atomic>
#include <bit>
#include <cstring>

namespace crosvm::virtio {
namespace {

constexpr uint64_t kAvailFlagsOffset = 0;
constexpr uint64_t kAvailIndexOffset = 2;
constexpr uint64_t kAvailRingOffset = 4;
constexpr uint64_t kUsedIndexOffset = 2;
constexpr uint64_t kUsedRingOffset = 4;
constexpr uint64_t kUsedElementSize = 8;
constexpr uint16_t kAvailNoInterrupt = 1;

uint64_t descriptor_table_bytes(uint16_t size) { return uint64_t{size} * SplitQueue::kDescriptorSize; }
uint64_t available_ring_bytes(uint16_t size) { return 6 + uint64_t{2} * size; }
uint64_t used_ring_bytes(uint16_t size) { return 6 + kUsedElementSize * size; }

Result<void> check_area(const GuestMemory& memory, const char* what, uint64_t address, uint64_t bytes,
                        uint64_t alignment) {
  if (address % alignment != 0) {
    return make_error(ErrorCode::kDevice, "the {} at {:#x} is not {}-byte aligned", what, address,
                      alignment);
  }
  if (!memory.contains(address, bytes)) {
    return make_error(ErrorCode::kDevice, "the {} at {:#x} ({} bytes) lies outside guest RAM", what,
                      address, bytes);
  }
  return {};
}

Error bad_chain(std::string message) { return Error{ErrorCode::kDevice, std::move(message)}; }

}  // namespace

Result<RingHostAddresses> ring_host_addresses(const GuestMemory& memory, const QueueConfig& config) {
  const auto host = [&](uint64_t guest, uint64_t length) -> Result<uint64_t> {
    std::span<uint8_t> bytes = CROSVM_TRY(memory.slice(guest, length));
    return reinterpret_cast<uint64_t>(bytes.data());
  };
  return RingHostAddresses{
      .descriptor_table = CROSVM_TRY(host(config.descriptor_table, 16ull * config.size)),
      .available_ring = CROSVM_TRY(host(config.available_ring, 6 + 2ull * config.size)),
      .used_ring = CROSVM_TRY(host(config.used_ring, 6 + 8ull * config.size)),
  };
}

Result<SplitQueue> SplitQueue::create(const GuestMemory& memory, const QueueConfig& config,
                                      uint16_t max_size, bool event_index, bool indirect) {
  if (config.size == 0) return make_error(ErrorCode::kDevice, "the queue size is 0");
  if (!std::has_single_bit(config.size)) {
    return make_error(ErrorCode::kDevice, "the queue size {} is not a power of two", config.size);
  }
  if (config.size > max_size) {
    return make_error(ErrorCode::kDevice, "the queue size {} is larger than the device's {}",
                      config.size, max_size);
  }
  CROSVM_TRY(check_area(memory, "descriptor table", config.descriptor_table,
                        descriptor_table_bytes(config.size), 16));
  CROSVM_TRY(check_area(memory, "available ring", config.available_ring,
                        available_ring_bytes(config.size), 2));
  CROSVM_TRY(check_area(memory, "used ring", config.used_ring, used_ring_bytes(config.size), 4));
  return SplitQueue(memory, config, event_index, indirect);
}

// Ring indices are shared with the guest's other vCPUs: read and written
// whole, with acquire/release ordering against the ring entries.
Result<uint16_t> SplitQueue::load_u16(uint64_t address) const {
  std::span<uint8_t> bytes = CROSVM_TRY(memory_->slice(address, 2));
  return __atomic_load_n(reinterpret_cast<const uint16_t*>(bytes.data()), __ATOMIC_ACQUIRE);
}

Result<void> SplitQueue::store_u16(uint64_t address, uint16_t value) const {
  std::span<uint8_t> bytes = CROSVM_TRY(memory_->slice(address, 2));
  __atomic_store_n(reinterpret_cast<uint16_t*>(bytes.data()), value, __ATOMIC_RELEASE);
  return {};
}

Result<SplitQueue::Descriptor> SplitQueue::read_descriptor(uint64_t table, uint16_t index) const {
  uint8_t raw[kDescriptorSize];
  CROSVM_TRY(memory_->read(table + uint64_t{index} * kDescriptorSize, raw));
  Descriptor descriptor;
  std::memcpy(&descriptor.address, raw, 8);
  std::memcpy(&descriptor.length, raw + 8, 4);
  std::memcpy(&descriptor.flags, raw + 12, 2);
  std::memcpy(&descriptor.next, raw + 14, 2);
  return descriptor;
}

Result<DescriptorChain> SplitQueue::walk_chain(uint16_t head) const {
  DescriptorChain chain;
  chain.head = head;
  uint64_t table = descriptor_table_;
  uint32_t table_entries = size_;
  bool in_indirect_table = false;
  uint32_t buffers_seen = 0;
  uint16_t index = head;
  while (true) {
    if (index >= table_entries) {
      return bad_chain(fmt::format("descriptor index {} is outside the {} of {} entries", index,
                                   in_indirect_table ? "indirect table" : "queue", table_entries));
    }
    const Descriptor descriptor = CROSVM_TRY(read_descriptor(table, index));
    if ((descriptor.flags & kDescriptorIndirect) != 0) {
      if (!indirect_) return bad_chain("an indirect descriptor, but INDIRECT_DESC was not negotiated");
      if (in_indirect_table) return bad_chain("an indirect table inside an indirect table");
      if ((descriptor.flags & kDescriptorNext) != 0) {
        return bad_chain("a descriptor with both INDIRECT and NEXT");
      }
      if (descriptor.length == 0 || descriptor.length % kDescriptorSize != 0) {
        return bad_chain(fmt::format("an indirect table of {} bytes is not a whole number of "
                                     "descriptors", descriptor.length));
      }
      if (descriptor.length / kDescriptorSize > size_) {
        return bad_chain(fmt::format("an indirect table of {} descriptors is longer than the queue ({})",
                                     descriptor.length / kDescriptorSize, size_));
      }
      if (!memory_->contains(descriptor.address, descriptor.length)) {
        return bad_chain(fmt::format("the indirect table at {:#x} ({} bytes) lies outside guest RAM",
                                     descriptor.address, descriptor.length));
      }
      table = descriptor.address;
      table_entries = descriptor.length / kDescriptorSize;
      in_indirect_table = true;
      index = 0;
      continue;
    }
    // Every buffer counts against the queue size, so a loop ends here.
    if (++buffers_seen > size_) {
      return bad_chain(fmt::format("the chain has more than {} descriptors (a loop?)", size_));
    }
    if (descriptor.length != 0) {
      if (!memory_->contains(descriptor.address, descriptor.length)) {
        return bad_chain(fmt::format("the buffer at {:#x} ({} bytes) lies outside guest RAM",
                                     descriptor.address, descriptor.length));
      }
      const GuestBuffer buffer{descriptor.address, descriptor.length};
      if ((descriptor.flags & kDescriptorWrite) != 0) {
        chain.writable.push_back(buffer);
        chain.writable_bytes += buffer.length;
      } else {
        if (!chain.writable.empty()) return bad_chain("a readable buffer after a writable one");
        chain.readable.push_back(buffer);
        chain.readable_bytes += buffer.length;
      }
      if (chain.readable_bytes + chain.writable_bytes > UINT32_MAX) {
        return bad_chain("the chain's buffers add up to more than 4 GiB");
      }
    } else if ((descriptor.flags & kDescriptorWrite) == 0 && !chain.writable.empty()) {
      return bad_chain("a readable buffer after a writable one");
    }
    if ((descriptor.flags & kDescriptorNext) == 0) break;
    index = descriptor.next;
  }
  if (chain.readable_bytes + chain.writable_bytes == 0) return bad_chain("the chain holds no bytes");
  return chain;
}

Result<std::optional<PoppedChain>> SplitQueue::pop() {
  const uint16_t available = CROSVM_TRY(load_u16(available_ring_ + kAvailIndexOffset));
  const uint16_t pending = static_cast<uint16_t>(available - next_available_);
  if (pending == 0) return std::optional<PoppedChain>();
  if (pending > size_) {
    return make_error(ErrorCode::kDevice,
                      "the driver's avail index {} is {} entries ahead of the device's {} in a "
                      "queue of {}", available, pending, next_available_, size_);
  }
  // Every chain with the device holds its head descriptor, so a driver
  // cannot have more than `size` out at once: one more is a head offered
  // again while still in use. Without this rule a driver that never waits
  // could keep the device taking work, and queueing it, without end.
  if (const uint16_t in_flight = static_cast<uint16_t>(next_available_ - next_used_); in_flight >= size_) {
    return make_error(ErrorCode::kDevice,
                      "the driver offered more chains while all {} of the queue's are still with the "
                      "device (a head offered again before it was used)", size_);
  }
  const uint64_t slot = available_ring_ + kAvailRingOffset + uint64_t{2} * (next_available_ % size_);
  const uint16_t head = CROSVM_TRY(load_u16(slot));
  if (head >= size_) {
    return make_error(ErrorCode::kDevice, "the driver offered descriptor {} in a queue of {}", head,
                      size_);
  }
  ++next_available_;
  PoppedChain popped{head, std::nullopt, {}};
  Result<DescriptorChain> chain = walk_chain(head);
  if (chain) {
    popped.chain = std::move(chain).value();
  } else {
    popped.problem = chain.error().message;
  }
  return std::optional<PoppedChain>(std::move(popped));
}

Result<void> SplitQueue::push_used(uint16_t head, uint32_t written) {
  const UsedElement element{head, written};
  return push_used(std::span(&element, 1));
}

Result<void> SplitQueue::push_used(std::span<const UsedElement> elements) {
  for (const UsedElement& used : elements) {
    const uint64_t element = used_ring_ + kUsedRingOffset + kUsedElementSize * (next_used_ % size_);
    uint8_t raw[kUsedElementSize];
    const uint32_t id = used.head;
    std::memcpy(raw, &id, 4);
    std::memcpy(raw + 4, &used.written, 4);
    CROSVM_TRY(memory_->write(element, raw));
    ++next_used_;
  }
  // The elements are visible before the index that publishes them.
  return store_u16(used_ring_ + kUsedIndexOffset, next_used_);
}

Result<bool> SplitQueue::should_notify() {
  // The used index store must be visible before we read what the driver
  // asked for, or a driver going to sleep could miss this interrupt.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  if (!event_index_) {
    const uint16_t flags = CROSVM_TRY(load_u16(available_ring_ + kAvailFlagsOffset));
    return (flags & kAvailNoInterrupt) == 0;
  }
  const uint16_t used_event =
      CROSVM_TRY(load_u16(available_ring_ + kAvailRingOffset + uint64_t{2} * size_));
  const uint16_t previous = signalled_used_;
  const bool had_previous = signalled_used_valid_;
  signalled_used_ = next_used_;
  signalled_used_valid_ = true;
  if (!had_previous) return true;
  // virtio 1.x 2.7.10: interrupt when used_event lies in (previous, next_used].
  return static_cast<uint16_t>(next_used_ - used_event - 1) < static_cast<uint16_t>(next_used_ - previous);
}

Result<bool> SplitQueue::enable_notification() {
  if (event_index_) {
    CROSVM_TRY(store_u16(used_ring_ + kUsedRingOffset + kUsedElementSize * size_, next_available_));
  }
  std::atomic_thread_fence(std::memory_order_seq_cst);
  const uint16_t available = CROSVM_TRY(load_u16(available_ring_ + kAvailIndexOffset));
  return available != next_available_;
}

}  // namespace crosvm::virtio
