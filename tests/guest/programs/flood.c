/* Prints to COM1 as fast as it can, forever: for a host that stops reading. */
#include "tinyguest.h"

void guest_main(const uint8_t *boot_params) {
  (void)boot_params;
  for (;;) tg_puts("flood flood flood flood flood flood flood flood flood flood\n");
}
