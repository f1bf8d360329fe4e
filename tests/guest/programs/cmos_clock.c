/* Prints the date and time from the CMOS RTC, and the memory size it records. */
#include "tinyguest.h"

static uint8_t cmos(uint8_t index) {
  tg_outb(0x70, index);
  return tg_inb(0x71);
}

static void put_bcd(uint8_t value) {
  tg_putc((char)('0' + (value >> 4)));
  tg_putc((char)('0' + (value & 0xf)));
}

void guest_main(const uint8_t *boot_params) {
  (void)boot_params;
  while (cmos(0x0a) & 0x80) {
  }
  tg_puts("rtc ");
  put_bcd(cmos(0x32));
  put_bcd(cmos(0x09));
  tg_putc('-');
  put_bcd(cmos(0x08));
  tg_putc('-');
  put_bcd(cmos(0x07));
  tg_putc(' ');
  put_bcd(cmos(0x04));
  tg_putc(':');
  put_bcd(cmos(0x02));
  tg_puts("\nabove 16M ");
  tg_put_dec((uint64_t)(cmos(0x34) | (cmos(0x35) << 8)) * 64);
  tg_puts(" KiB\n");
}
