/* Reads and writes an address in the MMIO hole where nothing lives: reads
 * must be all-ones, writes must vanish. */
#include "tinyguest.h"

#define UNMAPPED 0xd0000000ull

void guest_main(const uint8_t *boot_params) {
  (void)boot_params;
  tg_mmio_write32(UNMAPPED, 0x12345678);
  tg_puts("mmio ");
  tg_put_hex(tg_mmio_read32(UNMAPPED));
  tg_puts(" byte ");
  tg_put_hex(tg_mmio_read8(UNMAPPED + 3));
  tg_puts("\nstill running\n");
}
