/* Loads an empty IDT and faults: with nowhere to deliver the exception the
 * CPU triple-faults, which the VMM must report as a crash. */
#include "tinyguest.h"

void guest_main(const uint8_t *boot_params) {
  (void)boot_params;
  struct __attribute__((packed)) {
    uint16_t limit;
    uint64_t base;
  } empty = {0, 0};
  tg_puts("faulting\n");
  __asm__ volatile("lidt %0" : : "m"(empty));
  /* A non-canonical address: #GP, then #DF, then a triple fault. */
  tg_mmio_write32(0x8000000000000000ull, 0);
  tg_puts("not reached\n");
}
