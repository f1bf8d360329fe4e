// The split virtqueue (virtio 1.x, 2.7), seen from the device. This is the
// one place where values from the guest's rings are checked before use:
//
//   - set-up: size a non-zero power of two no larger than the device allows;
//     the descriptor table, avail and used rings aligned and inside RAM;
//   - avail index: at most `size` entries ahead of what the device consumed,
//     and at most `size` chains with the device (popped, not yet used);
//   - chains: every index below the table's size, at most `size` descriptors
//     in all (so loops end), each buffer's [addr, addr + len) inside RAM and
//     not wrapping, no readable buffer after a writable one, the total length
//     within 4 GiB and not zero;
//   - indirect tables: only when negotiated, whole descriptors, not empty,
//     not nested, and never together with NEXT.
//
// A malformed chain is returned to the driver unused (length 0) so the queue
// keeps moving; a driver that breaks the ring protocol itself (an avail index
// that jumps, a head outside the table) makes the queue unusable and the
// device asks for a reset.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "memory/guest_memory.h"

namespace crosvm::virtio {

// What the driver programmed for one queue through the transport.
struct QueueConfig {
  uint16_t size = 0;
  uint64_t descriptor_table = 0;
  uint64_t available_ring = 0;  // "driver area"
  uint64_t used_ring = 0;       // "device area"
  // Where the ring stands when the device takes it: 0 for a fresh ring; a
  // vhost-user backend resuming a ring gets them from its frontend
  // (SET_VRING_BASE) and from the used ring.
  uint16_t next_available = 0;
  uint16_t next_used = 0;
};

// Where a queue's three areas are in this process's mapping of guest RAM:
// what the kernel's vhost and a vhost-user backend are given.
struct RingHostAddresses {
  uint64_t descriptor_table;
  uint64_t available_ring;
  uint64_t used_ring;
};
Result<RingHostAddresses> ring_host_addresses(const GuestMemory& memory, const QueueConfig& config);

// A guest buffer that passed the checks: inside RAM, not wrapping.
struct GuestBuffer {
  uint64_t address;
  uint32_t length;
};

// One request: the device reads `readable` in order, then writes `writable`.
struct DescriptorChain {
  uint16_t head = 0;
  std::vector<GuestBuffer> readable;
  std::vector<GuestBuffer> writable;
  uint64_t readable_bytes = 0;
  uint64_t writable_bytes = 0;
};

// What pop() found at the front of the avail ring.
struct PoppedChain {
  uint16_t head;
  // Empty when the chain broke a rule; `problem` then says which. The head
  // is still the driver's and must go back through push_used(head, 0).
  std::optional<DescriptorChain> chain;
  std::string problem;
};

class SplitQueue {
 public:
  static constexpr uint16_t kDescriptorNext = 1;
  static constexpr uint16_t kDescriptorWrite = 2;
  static constexpr uint16_t kDescriptorIndirect = 4;
  static constexpr size_t kDescriptorSize = 16;

  // Fails with a sentence when the driver's set-up breaks a rule above.
  static Result<SplitQueue> create(const GuestMemory& memory, const QueueConfig& config,
                                   uint16_t max_size, bool event_index, bool indirect);

  uint16_t size() const { return size_; }

  // The next chain, nullopt when the ring is empty. An error means the ring
  // itself is broken (avail index or head out of range): stop using it.
  Result<std::optional<PoppedChain>> pop();

  // Returns a chain to the driver with `written` bytes filled in.
  Result<void> push_used(uint16_t head, uint32_t written);
  // Returns several chains that the driver must see together (a received
  // frame spread over mergeable buffers): one used index store for all.
  struct UsedElement {
    uint16_t head;
    uint32_t written;
  };
  Result<void> push_used(std::span<const UsedElement> elements);

  // After push_used(): whether the driver wants an interrupt now (avail flags
  // or, with EVENT_IDX, its used_event). Resets the tracking when true.
  Result<bool> should_notify();

  // Before waiting for the next kick: with EVENT_IDX, asks the driver to
  // kick for anything after what was consumed. Returns true when more chains
  // arrived meanwhile (process them instead of waiting, or a kick is lost).
  Result<bool> enable_notification();

  const GuestMemory& memory() const { return *memory_; }
  // Where the driver put the ring (a vhost-user frontend passes it on).
  QueueConfig config() const {
    return {size_, descriptor_table_, available_ring_, used_ring_, next_available_, next_used_};
  }
  // The next avail ring slot the device would consume.
  uint16_t next_available() const { return next_available_; }

 private:
  SplitQueue(const GuestMemory& memory, const QueueConfig& config, bool event_index, bool indirect)
      : memory_(&memory),
        size_(config.size),
        descriptor_table_(config.descriptor_table),
        available_ring_(config.available_ring),
        used_ring_(config.used_ring),
        event_index_(event_index),
        indirect_(indirect),
        next_available_(config.next_available),
        next_used_(config.next_used) {}

  struct Descriptor {
    uint64_t address;
    uint32_t length;
    uint16_t flags;
    uint16_t next;
  };
  Result<uint16_t> load_u16(uint64_t address) const;
  Result<void> store_u16(uint64_t address, uint16_t value) const;
  Result<Descriptor> read_descriptor(uint64_t table, uint16_t index) const;
  // Walks and checks the chain at `head`; an Error here is a bad chain.
  Result<DescriptorChain> walk_chain(uint16_t head) const;

  const GuestMemory* memory_;
  uint16_t size_;
  uint64_t descriptor_table_;
  uint64_t available_ring_;
  uint64_t used_ring_;
  bool event_index_;
  bool indirect_;

  uint16_t next_available_;  // the next avail ring slot to consume
  uint16_t next_used_;       // the device's used index
  uint16_t signalled_used_ = 0;  // used index at the last notification
  bool signalled_used_valid_ = false;
};

}  // namespace crosvm::virtio
