/* Reads and writes a port no device claims: reads must be all-ones at every
 * width, writes must vanish, and the VM must carry on. */
#include "tinyguest.h"

enum { kUnclaimed = 0x1234 };

void guest_main(const uint8_t *boot_params) {
  (void)boot_params;
  tg_outb(kUnclaimed, 0x12);
  tg_outw(kUnclaimed, 0x3456);
  tg_outl(kUnclaimed, 0x789abcde);
  tg_puts("byte ");
  tg_put_hex(tg_inb(kUnclaimed));
  tg_puts(" word ");
  tg_put_hex(tg_inw(kUnclaimed));
  tg_puts(" long ");
  tg_put_hex(tg_inl(kUnclaimed));
  tg_puts("\nstill running\n");
}
