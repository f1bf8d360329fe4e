/* Prints "tick N" lines forever, a busy loop apart, so that a test can see
 * whether the guest makes progress (paused or not). */
#include "tinyguest.h"

void guest_main(const uint8_t *boot_params) {
  (void)boot_params;
  for (uint64_t tick = 0;; ++tick) {
    tg_puts("tick ");
    tg_put_dec(tick);
    tg_puts("\n");
    for (volatile uint32_t spin = 0; spin < 200000; ++spin) {
    }
  }
}
