/* Reports a kernel panic through the pvpanic port, as Linux's driver does. */
#include "tinyguest.h"

void guest_main(const uint8_t *boot_params) {
  (void)boot_params;
  tg_puts("capabilities ");
  tg_put_hex(tg_inb(0x505));
  tg_puts("\npanicking\n");
  tg_outb(0x505, 1);
  for (;;) __asm__ volatile("hlt");
}
