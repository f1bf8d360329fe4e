#include "tinyguest.h"

enum {
  kCom1 = 0x3f8,
  kLineStatus = 5,
  kLineStatusDataReady = 0x01,
  kLineStatusThrEmpty = 0x20,
  kPm1aControl = 0x604,
  kSleepTypeS5 = 5,
  kSleepEnable = 1 << 13,
  kI8042Command = 0x64,
  kI8042PulseReset = 0xfe,
};

void tg_putc(char c) {
  while ((tg_inb(kCom1 + kLineStatus) & kLineStatusThrEmpty) == 0) {
  }
  tg_outb(kCom1, (uint8_t)c);
}

void tg_puts(const char *text) {
  while (*text != '\0') tg_putc(*text++);
}

void tg_put_hex(uint64_t value) {
  static const char kDigits[] = "0123456789abcdef";
  tg_puts("0x");
  for (int shift = 60; shift >= 0; shift -= 4) tg_putc(kDigits[(value >> shift) & 0xf]);
}

void tg_put_dec(uint64_t value) {
  char digits[20];
  int count = 0;
  do {
    digits[count++] = (char)('0' + value % 10);
    value /= 10;
  } while (value != 0);
  while (count > 0) tg_putc(digits[--count]);
}

int tg_getc(void) {
  if ((tg_inb(kCom1 + kLineStatus) & kLineStatusDataReady) == 0) return -1;
  return tg_inb(kCom1);
}

void tg_getline(char *line, unsigned size) {
  unsigned length = 0;
  for (;;) {
    const int c = tg_getc();
    if (c < 0) continue;
    if (c == '\n' || length + 1 >= size) break;
    line[length++] = (char)c;
  }
  line[length] = '\0';
}

int tg_cmdline_has(const uint8_t *boot_params, const char *word) {
  uint32_t pointer;
  memcpy(&pointer, boot_params + 0x228, sizeof(pointer));
  const char *cmdline = (const char *)(uintptr_t)pointer;
  if (cmdline == 0) return 0;
  for (const char *at = cmdline; *at != '\0';) {
    while (*at == ' ') ++at;
    unsigned length = 0;
    while (word[length] != '\0' && at[length] == word[length]) ++length;
    if (word[length] == '\0' && (at[length] == ' ' || at[length] == '\0')) return 1;
    while (*at != ' ' && *at != '\0') ++at;
  }
  return 0;
}

void tg_power_off(void) {
  tg_outw(kPm1aControl, (uint16_t)((kSleepTypeS5 << 10) | kSleepEnable));
  for (;;) __asm__ volatile("hlt");
}

void tg_reset(void) {
  tg_outb(kI8042Command, kI8042PulseReset);
  for (;;) __asm__ volatile("hlt");
}

void *memset(void *destination, int value, size_t length) {
  uint8_t *bytes = destination;
  for (size_t i = 0; i < length; ++i) bytes[i] = (uint8_t)value;
  return destination;
}

void *memcpy(void *destination, const void *source, size_t length) {
  uint8_t *to = destination;
  const uint8_t *from = source;
  for (size_t i = 0; i < length; ++i) to[i] = from[i];
  return destination;
}
