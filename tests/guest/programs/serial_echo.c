/* Reads a line from COM1 (polling the line status) and prints it back, to
 * check that host input reaches the guest. */
#include "tinyguest.h"

void guest_main(const uint8_t *boot_params) {
  (void)boot_params;
  char line[64];
  unsigned length = 0;
  tg_puts("ready\n");
  for (;;) {
    int c = tg_getc();
    if (c < 0) continue;
    if (c == '\n' || length == sizeof(line) - 1) break;
    line[length++] = (char)c;
  }
  line[length] = '\0';
  tg_puts("echo: ");
  tg_puts(line);
  tg_puts("\n");
}
