/* Reads a line from COM1 (polling the line status) and prints it back, to
 * check that host input reaches the guest. */
#include "tinyguest.h"

void guest_main(const uint8_t *boot_params) {
  (void)boot_params;
  char line[64];
  tg_puts("ready\n");
  tg_getline(line, sizeof(line));
  tg_puts("echo: ");
  tg_puts(line);
  tg_puts("\n");
}
