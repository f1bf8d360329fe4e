/* The exit round-trip guest: 'S' on COM1, then kWrites writes to port 0x80
 * (the POST-code port Linux also writes for I/O delays; no device claims it
 * and writes vanish, as on a PC), then 'E' and the count in decimal. The
 * host times the span between the two markers. */
#include "tinyguest.h"

enum { kWrites = 100000, kIgnoredPort = 0x80 };

void guest_main(const uint8_t *boot_params) {
  (void)boot_params;
  tg_putc('S');
  for (unsigned i = 0; i < kWrites; ++i) tg_outb(kIgnoredPort, (uint8_t)i);
  tg_putc('E');
  tg_put_dec(kWrites);
  tg_putc('\n');
}
