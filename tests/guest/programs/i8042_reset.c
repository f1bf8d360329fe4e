/* Resets the machine through the keyboard controller, as Linux's reboot=k. */
#include "tinyguest.h"

void guest_main(const uint8_t *boot_params) {
  (void)boot_params;
  tg_puts("resetting\n");
  tg_reset();
}
