/* What the tiny virtio drivers share: PCI configuration space through
 * 0xCF8/0xCFC, a device found by its vendor and device ids, and its
 * virtio-pci capabilities mapped (common configuration, notifications,
 * device configuration) from its 64-bit BAR. */
#pragma once

#include "tinyguest.h"

struct descriptor {
  uint64_t address;
  uint32_t length;
  uint16_t flags;
  uint16_t next;
};

struct virtio_pci {
  volatile uint8_t *common;
  volatile uint8_t *device_config;
  uint64_t notify_base;
  uint32_t notify_multiplier;
};

static inline uint32_t pci_read32(int slot, int reg) {
  tg_outl(0xcf8, 0x80000000u | ((uint32_t)slot << 11) | (uint32_t)(reg & 0xfc));
  return tg_inl(0xcfc);
}

static inline uint8_t pci_read8(int slot, int reg) { return (uint8_t)(pci_read32(slot, reg) >> (8 * (reg & 3))); }

/* x86 keeps stores in order and the kick is an MMIO write: a compiler
 * barrier is all the ordering a ring needs here. */
static inline void barrier(void) { __asm__ volatile("" ::: "memory"); }

/* The slot of the first function with these ids (0x1af4 is virtio's
 * vendor), or -1. */
static inline int pci_find(uint32_t ids) {
  for (int slot = 1; slot < 32; ++slot) {
    if (pci_read32(slot, 0) == ids) return slot;
  }
  return -1;
}

/* 0 when the common configuration and the notifications were found. */
static inline int virtio_pci_map(int slot, struct virtio_pci *pci) {
  const uint64_t bar = (pci_read32(slot, 0x10) & ~0xfull) | ((uint64_t)pci_read32(slot, 0x14) << 32);
  pci->common = 0;
  pci->device_config = 0;
  pci->notify_multiplier = 0;
  for (int at = pci_read8(slot, 0x34); at != 0; at = pci_read8(slot, at + 1)) {
    if (pci_read8(slot, at) != 0x09) continue;
    const uint32_t offset = pci_read32(slot, at + 8);
    switch (pci_read8(slot, at + 3)) {
      case 1: pci->common = (volatile uint8_t *)(uintptr_t)(bar + offset); break;
      case 2:
        pci->notify_base = bar + offset;
        pci->notify_multiplier = pci_read32(slot, at + 16);
        break;
      case 4: pci->device_config = (volatile uint8_t *)(uintptr_t)(bar + offset); break;
    }
  }
  return pci->common != 0 && pci->notify_multiplier != 0 ? 0 : -1;
}

/* The notification address of the queue selected in the common
 * configuration (its queue_notify_off). */
static inline volatile uint16_t *virtio_pci_queue_notify(const struct virtio_pci *pci) {
  const uint16_t offset = *(volatile uint16_t *)(pci->common + 0x1e);
  return (volatile uint16_t *)(uintptr_t)(pci->notify_base + (uint64_t)offset * pci->notify_multiplier);
}

/* A split virtqueue of VIRTQ_SIZE entries that the driver owns: its
 * descriptor table at `ring`, the avail ring at +0x1000, the used ring at
 * +0x2000. */
#define VIRTQ_SIZE 16

struct virtq {
  uint64_t ring;
  volatile uint16_t *notify;
  uint16_t avail_index;
  uint16_t used_seen;
};

/* Programs queue `index` in the common configuration and enables it. */
static inline void virtq_set_up(const struct virtio_pci *pci, uint16_t index, struct virtq *queue) {
  volatile uint8_t *common = pci->common;
  memset((void *)queue->ring, 0, 0x3000);
  *(volatile uint16_t *)(common + 0x16) = index;
  *(volatile uint16_t *)(common + 0x18) = VIRTQ_SIZE;
  *(volatile uint32_t *)(common + 0x20) = (uint32_t)queue->ring;
  *(volatile uint32_t *)(common + 0x24) = 0;
  *(volatile uint32_t *)(common + 0x28) = (uint32_t)(queue->ring + 0x1000);
  *(volatile uint32_t *)(common + 0x2c) = 0;
  *(volatile uint32_t *)(common + 0x30) = (uint32_t)(queue->ring + 0x2000);
  *(volatile uint32_t *)(common + 0x34) = 0;
  queue->notify = virtio_pci_queue_notify(pci);
  *(volatile uint16_t *)(common + 0x1c) = 1;
}

/* Resets the device, negotiates VERSION_1 and nothing else, sets up
 * queues 0 .. count-1 and sets DRIVER_OK: 0, or -1 when the device
 * refused. */
static inline int virtio_pci_start(const struct virtio_pci *pci, struct virtq *const *queues, int count) {
  volatile uint8_t *common = pci->common;
  volatile uint8_t *status = common + 0x14;
  volatile uint32_t *feature_select = (volatile uint32_t *)(common + 0x00);
  volatile uint32_t *driver_select = (volatile uint32_t *)(common + 0x08);
  volatile uint32_t *driver_features = (volatile uint32_t *)(common + 0x0c);
  *status = 0;
  *status = 1 | 2;
  *feature_select = 1;
  if ((*(volatile uint32_t *)(common + 0x04) & 1) == 0) return -1; /* no VERSION_1 */
  *driver_select = 0;
  *driver_features = 0;
  *driver_select = 1;
  *driver_features = 1;
  *status = 1 | 2 | 8;
  if ((*status & 8) == 0) return -1;
  for (int i = 0; i < count; ++i) virtq_set_up(pci, (uint16_t)i, queues[i]);
  *status = 1 | 2 | 8 | 4;
  return (*status & 64) ? -1 : 0;
}

static inline void virtq_descriptor(struct virtq *queue, int index, uint64_t address, uint32_t length,
                                    uint16_t flags, uint16_t next) {
  volatile struct descriptor *table = (volatile struct descriptor *)queue->ring;
  table[index].address = address;
  table[index].length = length;
  table[index].flags = flags;
  table[index].next = next;
}

/* Puts `head` in the avail ring and publishes it. */
static inline void virtq_offer(struct virtq *queue, uint16_t head) {
  volatile uint16_t *avail = (volatile uint16_t *)(queue->ring + 0x1000);
  avail[2 + queue->avail_index % VIRTQ_SIZE] = head;
  barrier();
  avail[1] = ++queue->avail_index;
  barrier();
}

/* Waits for the next used element (the test's hang guard bounds it). */
static inline void virtq_next_used(struct virtq *queue, uint32_t *id, uint32_t *length) {
  while (*(volatile uint16_t *)(queue->ring + 0x2002) == queue->used_seen) barrier();
  const volatile uint32_t *element =
      (const volatile uint32_t *)(queue->ring + 0x2004 + 8 * (queue->used_seen % VIRTQ_SIZE));
  ++queue->used_seen;
  *id = element[0];
  *length = element[1];
}
