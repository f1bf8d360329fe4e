/* The built-in demo guest: greets through COM1, reports the RAM it was given
 * (read from the e820 map in boot_params, as Linux reads it), powers off. */
#include "tinyguest.h"

enum {
  kE820EntriesOffset = 0x1e8,
  kE820TableOffset = 0x2d0,
  kE820EntrySize = 20,
  kE820Ram = 1,
};

void guest_main(const uint8_t *boot_params) {
  uint64_t ram = 0;
  const uint8_t entries = boot_params[kE820EntriesOffset];
  for (uint8_t i = 0; i < entries; ++i) {
    const uint8_t *entry = boot_params + kE820TableOffset + i * kE820EntrySize;
    uint64_t size;
    uint32_t type;
    memcpy(&size, entry + 8, sizeof(size));
    memcpy(&type, entry + 16, sizeof(type));
    if (type == kE820Ram) ram += size;
  }
  tg_puts("Hello from the libcrosvm demo guest!\n");
  tg_puts("I was booted like a Linux kernel and have ");
  tg_put_dec((ram + (1 << 19)) >> 20);
  tg_puts(" MiB of RAM. Powering off.\n");
}
