/* Prints through COM1 and powers off. */
#include "tinyguest.h"

void guest_main(const uint8_t *boot_params) {
  (void)boot_params;
  tg_puts("hello from a tiny guest\n");
}
