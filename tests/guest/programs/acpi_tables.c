/* Finds the RSDP the way Linux does (boot_params.acpi_rsdp_addr, else a scan
 * of 0xe0000-0xfffff), checks every table's checksum and lists them. */
#include "tinyguest.h"

static int equal(const uint8_t *a, const char *b, int length) {
  for (int i = 0; i < length; ++i) {
    if (a[i] != (uint8_t)b[i]) return 0;
  }
  return 1;
}

static uint8_t sum(const uint8_t *bytes, uint32_t length) {
  uint8_t total = 0;
  for (uint32_t i = 0; i < length; ++i) total = (uint8_t)(total + bytes[i]);
  return total;
}

static uint32_t read32(const uint8_t *p) { uint32_t v; memcpy(&v, p, 4); return v; }
static uint64_t read64(const uint8_t *p) { uint64_t v; memcpy(&v, p, 8); return v; }

static void put_signature(const uint8_t *table) {
  for (int i = 0; i < 4; ++i) tg_putc((char)table[i]);
}

void guest_main(const uint8_t *boot_params) {
  const uint8_t *rsdp = (const uint8_t *)(uintptr_t)read64(boot_params + 0x70);
  const uint8_t *scanned = 0;
  for (uintptr_t address = 0xe0000; address < 0x100000 && !scanned; address += 16) {
    if (equal((const uint8_t *)address, "RSD PTR ", 8)) scanned = (const uint8_t *)address;
  }
  if (rsdp == 0 || rsdp != scanned) {
    tg_puts("rsdp missing or not where boot_params says\n");
    return;
  }
  tg_puts(sum(rsdp, 20) == 0 && sum(rsdp, 36) == 0 ? "RSDP ok\n" : "RSDP bad checksum\n");
  const uint8_t *xsdt = (const uint8_t *)(uintptr_t)read64(rsdp + 24);
  uint32_t entries = (read32(xsdt + 4) - 36) / 8;
  put_signature(xsdt);
  tg_puts(sum(xsdt, read32(xsdt + 4)) == 0 ? " ok\n" : " bad checksum\n");
  for (uint32_t i = 0; i < entries; ++i) {
    const uint8_t *table = (const uint8_t *)(uintptr_t)read64(xsdt + 36 + 8 * i);
    put_signature(table);
    tg_puts(sum(table, read32(table + 4)) == 0 ? " ok\n" : " bad checksum\n");
    if (equal(table, "FACP", 4)) {
      const uint8_t *dsdt = (const uint8_t *)(uintptr_t)read64(table + 140);
      put_signature(dsdt);
      tg_puts(sum(dsdt, read32(dsdt + 4)) == 0 ? " ok\n" : " bad checksum\n");
    }
    if (equal(table, "APIC", 4)) {
      uint32_t cpus = 0;
      for (uint32_t offset = 44; offset < read32(table + 4); offset += table[offset + 1]) {
        cpus += table[offset] == 0 ? 1 : 0;
      }
      tg_puts("cpus ");
      tg_put_dec(cpus);
      tg_putc('\n');
    }
  }
}
