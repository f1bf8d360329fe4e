/* Acts as a shell on COM1 does: a coloured prompt followed by a
 * cursor-position query (ESC [6n, as busybox ash sends), then it echoes the
 * line it reads and powers off. */
#include "tinyguest.h"

void guest_main(const uint8_t *boot_params) {
  (void)boot_params;
  char line[64];
  tg_puts("\x1b[1;32mguest\x1b[0m# \x1b[6n");
  tg_getline(line, sizeof(line));
  tg_puts("\r\nran: ");
  tg_puts(line);
  tg_puts("\r\n");
}
