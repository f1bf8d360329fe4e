/* A freestanding runtime for tiny guest programs: port and MMIO access, a
 * polled COM1 UART, and the machine's power controls. No SSE, no int3, no
 * xsave: these programs must also run on KVMs that emulate instructions. */
#ifndef CROSVM_TINYGUEST_H
#define CROSVM_TINYGUEST_H

#include <stddef.h>
#include <stdint.h>

static inline void tg_outb(uint16_t port, uint8_t value) {
  __asm__ volatile("outb %0, %1" : : "a"(value), "Nd"(port));
}
static inline void tg_outw(uint16_t port, uint16_t value) {
  __asm__ volatile("outw %0, %1" : : "a"(value), "Nd"(port));
}
static inline void tg_outl(uint16_t port, uint32_t value) {
  __asm__ volatile("outl %0, %1" : : "a"(value), "Nd"(port));
}
static inline uint8_t tg_inb(uint16_t port) {
  uint8_t value;
  __asm__ volatile("inb %1, %0" : "=a"(value) : "Nd"(port));
  return value;
}
static inline uint16_t tg_inw(uint16_t port) {
  uint16_t value;
  __asm__ volatile("inw %1, %0" : "=a"(value) : "Nd"(port));
  return value;
}
static inline uint32_t tg_inl(uint16_t port) {
  uint32_t value;
  __asm__ volatile("inl %1, %0" : "=a"(value) : "Nd"(port));
  return value;
}
static inline uint32_t tg_mmio_read32(uint64_t address) {
  return *(volatile uint32_t *)(uintptr_t)address;
}
static inline void tg_mmio_write32(uint64_t address, uint32_t value) {
  *(volatile uint32_t *)(uintptr_t)address = value;
}
static inline uint8_t tg_mmio_read8(uint64_t address) {
  return *(volatile uint8_t *)(uintptr_t)address;
}

/* COM1, polled. */
void tg_putc(char c);
void tg_puts(const char *text);
void tg_put_hex(uint64_t value);
void tg_put_dec(uint64_t value);
/* Returns -1 when no byte is waiting. */
int tg_getc(void);
/* Waits for a line on COM1 and stores it without its newline, cut at
 * size - 1 characters, NUL-terminated. */
void tg_getline(char *line, unsigned size);

/* Whether the kernel command line (boot_params.cmd_line_ptr) holds `word`
 * as a whole word: how a test tells a program what to do. */
int tg_cmdline_has(const uint8_t *boot_params, const char *word);

/* ACPI S5 through the PM1a control block, as Linux's poweroff does. */
void tg_power_off(void) __attribute__((noreturn));
/* Pulses the CPU reset line through the i8042. */
void tg_reset(void) __attribute__((noreturn));

void *memset(void *destination, int value, size_t length);
void *memcpy(void *destination, const void *source, size_t length);

/* Provided by each program; returning powers the machine off. */
void guest_main(const uint8_t *boot_params);

#endif
