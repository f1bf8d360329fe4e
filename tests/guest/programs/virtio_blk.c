/* A tiny virtio-blk driver: finds the disk on PCI through 0xCF8/0xCFC,
 * parses its virtio capabilities, negotiates VERSION_1, sets up one queue,
 * and submits requests, good and malformed. The VMM must return every
 * malformed chain (or fail it with IOERR) and go on serving; a driver that
 * breaks the ring itself gets DEVICE_NEEDS_RESET, and a reset recovers.
 *
 * With "busy" on the command line it keeps the disk busy instead, forever:
 * five reads of 64 KiB in flight, each offered again the moment it comes
 * back, so the device's queue is never empty (as a second vCPU could keep
 * it); "busy N" every 100 completions shows progress. */
#include "virtio_pci.h"

#define QUEUE_SIZE 16
#define NEXT 1
#define WRITE 2
#define INDIRECT 4

/* Guest-physical (identity-mapped) scratch memory above the program. */
#define DESCRIPTORS 0x800000ul
#define AVAIL 0x801000ul
#define USED 0x802000ul
#define HEADER 0x900000ul
#define DATA 0x901000ul
#define STATUS 0x902000ul
#define TABLE 0x903000ul
#define BUSY_HEADERS 0xa00000ul
#define BUSY_STATUS 0xa01000ul
#define BUSY_DATA 0xb00000ul
#define BUSY_CHAINS 5
#define BUSY_BYTES 0x10000u

static struct virtio_pci pci;
static volatile uint8_t *common;
static volatile uint8_t *notify;
static uint16_t avail_index;
static uint16_t used_seen;

#define COMMON8(off) (*(volatile uint8_t *)(common + (off)))
#define COMMON16(off) (*(volatile uint16_t *)(common + (off)))
#define COMMON32(off) (*(volatile uint32_t *)(common + (off)))

static int map_capabilities(int slot) {
  if (virtio_pci_map(slot, &pci) != 0) return -1;
  common = pci.common;
  COMMON16(0x16) = 0;
  notify = (volatile uint8_t *)virtio_pci_queue_notify(&pci);
  return 0;
}

/* Resets the device and brings it up with VERSION_1 and one queue. */
static int initialize(void) {
  COMMON8(0x14) = 0;
  COMMON8(0x14) = 1 | 2;
  COMMON32(0x00) = 1;
  if ((COMMON32(0x04) & 1) == 0) return -1;  /* no VERSION_1 */
  COMMON32(0x08) = 0;
  COMMON32(0x0c) = 0;
  COMMON32(0x08) = 1;
  COMMON32(0x0c) = 1;
  COMMON8(0x14) = 1 | 2 | 8;
  if ((COMMON8(0x14) & 8) == 0) return -1;
  memset((void *)DESCRIPTORS, 0, 0x3000);
  avail_index = used_seen = 0;
  COMMON16(0x16) = 0;
  COMMON16(0x18) = QUEUE_SIZE;
  COMMON32(0x20) = (uint32_t)DESCRIPTORS;
  COMMON32(0x24) = 0;
  COMMON32(0x28) = (uint32_t)AVAIL;
  COMMON32(0x2c) = 0;
  COMMON32(0x30) = (uint32_t)USED;
  COMMON32(0x34) = 0;
  COMMON16(0x1c) = 1;
  COMMON8(0x14) = 1 | 2 | 8 | 4;
  return (COMMON8(0x14) & 64) ? -1 : 0;
}

static void set_descriptor(int index, uint64_t address, uint32_t length, uint16_t flags, uint16_t next) {
  volatile struct descriptor *table = (volatile struct descriptor *)DESCRIPTORS;
  table[index].address = address;
  table[index].length = length;
  table[index].flags = flags;
  table[index].next = next;
}

/* Offers `head`, kicks, and waits for it to come back, however long the
 * device takes (the test's hang guard bounds the whole run); returns the
 * length the device reported. */
static long submit(uint16_t head) {
  volatile uint16_t *avail = (volatile uint16_t *)AVAIL;
  avail[2 + avail_index % QUEUE_SIZE] = head;
  barrier();
  avail[1] = ++avail_index;
  barrier();
  *(volatile uint16_t *)notify = 0;
  while (*(volatile uint16_t *)(USED + 2) == used_seen) barrier();
  const volatile uint32_t *element = (volatile uint32_t *)(USED + 4 + 8 * (used_seen % QUEUE_SIZE));
  ++used_seen;
  return element[1];
}

/* A request: header, one data buffer, the status byte. */
static long request(uint32_t type, uint64_t sector) {
  volatile uint32_t *header = (volatile uint32_t *)HEADER;
  header[0] = type;
  header[1] = 0;
  header[2] = (uint32_t)sector;
  header[3] = (uint32_t)(sector >> 32);
  *(volatile uint8_t *)STATUS = 0xee;
  set_descriptor(0, HEADER, 16, NEXT, 1);
  set_descriptor(1, DATA, 512, NEXT | WRITE, 2);
  set_descriptor(2, STATUS, 1, WRITE, 0);
  return submit(0);
}

static void report_read(const char *what, uint64_t sector) {
  memset((void *)DATA, 0, 16);
  const long length = request(0, sector);
  tg_puts(what);
  tg_puts(": length ");
  tg_put_dec((uint64_t)length);
  tg_puts(" status ");
  tg_put_dec(*(volatile uint8_t *)STATUS);
  tg_puts(" data ");
  for (int i = 0; i < 12; ++i) tg_putc(((volatile char *)DATA)[i]);
  tg_putc('\n');
}

static void report_unused(const char *what, uint16_t head) {
  tg_puts(what);
  tg_puts(submit(head) == 0 ? ": returned unused\n" : ": NOT returned unused\n");
}

static void offer(uint16_t head) {
  volatile uint16_t *avail = (volatile uint16_t *)AVAIL;
  avail[2 + avail_index % QUEUE_SIZE] = head;
  barrier();
  avail[1] = ++avail_index;
  barrier();
}

static void keep_busy(void) {
  for (int i = 0; i < BUSY_CHAINS; ++i) {
    volatile uint32_t *header = (volatile uint32_t *)(BUSY_HEADERS + 16 * i);
    header[0] = header[1] = header[2] = header[3] = 0;  /* read sector 0 */
    set_descriptor(3 * i, BUSY_HEADERS + 16 * i, 16, NEXT, (uint16_t)(3 * i + 1));
    set_descriptor(3 * i + 1, BUSY_DATA + (uint64_t)BUSY_BYTES * i, BUSY_BYTES, NEXT | WRITE,
                   (uint16_t)(3 * i + 2));
    set_descriptor(3 * i + 2, BUSY_STATUS + i, 1, WRITE, 0);
    offer((uint16_t)(3 * i));
  }
  *(volatile uint16_t *)notify = 0;
  for (uint64_t completed = 1;; ++completed) {
    while (*(volatile uint16_t *)(USED + 2) == used_seen) barrier();
    const volatile uint32_t *element = (volatile uint32_t *)(USED + 4 + 8 * (used_seen % QUEUE_SIZE));
    ++used_seen;
    offer((uint16_t)element[0]);
    *(volatile uint16_t *)notify = 0;
    if (completed % 100 == 0) {
      tg_puts("busy ");
      tg_put_dec(completed);
      tg_putc('\n');
    }
  }
}

void guest_main(const uint8_t *boot_params) {
  const int slot = pci_find(0x10421af4u);
  if (slot < 0 || map_capabilities(slot) != 0 || initialize() != 0) {
    tg_puts("no usable virtio-blk device\n");
    return;
  }
  if (tg_cmdline_has(boot_params, "busy")) keep_busy();
  report_read("read sector 0", 0);

  set_descriptor(3, HEADER, 16, NEXT, 4);  /* 3 -> 4 -> 3 -> ... */
  set_descriptor(4, DATA, 512, NEXT | WRITE, 3);
  report_unused("descriptor loop", 3);

  set_descriptor(5, HEADER, 16, NEXT, 6);
  set_descriptor(6, 0xfffffff00000ull, 512, NEXT | WRITE, 7);
  set_descriptor(7, STATUS, 1, WRITE, 0);
  report_unused("buffer outside RAM", 5);

  set_descriptor(8, TABLE, 24, INDIRECT, 0);
  report_unused("indirect table of 24 bytes", 8);

  set_descriptor(9, HEADER, 16, NEXT, 20);  /* next beyond the queue */
  report_unused("next index 20", 9);

  const long past = request(0, 1ull << 40);
  tg_puts("read past the end: length ");
  tg_put_dec((uint64_t)past);
  tg_puts(" status ");
  tg_put_dec(*(volatile uint8_t *)STATUS);
  tg_putc('\n');

  report_read("read sector 1", 1);

  /* Break the ring itself: an avail index far ahead. */
  volatile uint16_t *avail = (volatile uint16_t *)AVAIL;
  avail[1] = (uint16_t)(avail_index + 100);
  barrier();
  *(volatile uint16_t *)notify = 0;
  while ((COMMON8(0x14) & 64) == 0) barrier();  /* as long as the device takes */
  tg_puts("avail index jump: needs reset\n");

  if (initialize() != 0) {
    tg_puts("reset failed\n");
    return;
  }
  report_read("after reset", 1);
}
