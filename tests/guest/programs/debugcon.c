/* Probes Bochs's debug port at 0x402 as firmware does (a read answers
 * 0xe9 when it is there), prints a line through it, and says on COM1 what
 * the probe read. */
#include "tinyguest.h"

enum { kDebugconPort = 0x402, kReadback = 0xe9 };

void guest_main(const uint8_t *boot_params) {
  (void)boot_params;
  const uint8_t probe = tg_inb(kDebugconPort);
  tg_puts("debugcon probe: ");
  tg_put_hex(probe);
  tg_puts("\n");
  if (probe != kReadback) return;
  for (const char *c = "hello through the debug port\n"; *c != '\0'; ++c) tg_outb(kDebugconPort, (uint8_t)*c);
}
