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
