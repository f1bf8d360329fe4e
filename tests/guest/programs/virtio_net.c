/* A tiny virtio-net driver: finds the NIC on PCI, negotiates VERSION_1 and
 * nothing else (no offloads, no mergeable buffers, no control queue), sets
 * up the receive and transmit queues, and posts chains, good and
 * malformed, to both. The VMM must return every malformed chain and go on
 * serving: the host sees only the good frame, and the guest receives the
 * host's frame whole in the one buffer large enough for it. */
#include "virtio_pci.h"

#define NEXT 1
#define WRITE 2

#define RX_RING 0x800000ul
#define TX_RING 0x810000ul
#define FRAMES 0x900000ul  /* one page per descriptor */
#define ETHERTYPE_LOCAL 0x88b5

static struct virtio_pci pci;
static volatile uint8_t *device_config;
static struct virtq rx = {RX_RING, 0, 0, 0};
static struct virtq tx = {TX_RING, 0, 0, 0};
static struct virtq *const queues[] = {&rx, &tx};

static int map_capabilities(int slot) {
  if (virtio_pci_map(slot, &pci) != 0 || pci.device_config == 0) return -1;
  device_config = pci.device_config;
  return 0;
}

static uint64_t frame_page(int index) { return FRAMES + 0x1000ul * (uint64_t)index; }

/* A 12-byte header and a broadcast frame of ours carrying `text`. */
static uint32_t make_frame(uint64_t at, uint8_t gso_type, const char *text) {
  volatile uint8_t *bytes = (volatile uint8_t *)at;
  memset((void *)at, 0, 12 + 60);
  bytes[0] = gso_type ? 1 : 0; /* NEEDS_CSUM with segmentation */
  bytes[1] = gso_type;
  bytes[4] = 0x40;           /* gso_size 64 */
  bytes[6] = 34;             /* csum_start */
  bytes[8] = 16;             /* csum_offset */
  for (int i = 0; i < 6; ++i) bytes[12 + i] = 0xff;
  for (int i = 0; i < 6; ++i) bytes[12 + 6 + i] = (uint8_t)device_config[i];
  bytes[12 + 12] = ETHERTYPE_LOCAL >> 8;
  bytes[12 + 13] = ETHERTYPE_LOCAL & 0xff;
  for (int i = 0; text[i] != 0; ++i) bytes[12 + 14 + i] = (uint8_t)text[i];
  return 12 + 60;
}

static void report(const char *what, uint32_t length) {
  tg_puts(what);
  tg_puts(": length ");
  tg_put_dec(length);
  tg_putc('\n');
}

static void transmit(void) {
  uint32_t id, length;
  /* A chain of 4 bytes: no room for the header. */
  virtq_descriptor(&tx, 0, frame_page(0), 4, 0, 0);
  virtq_offer(&tx, 0);
  /* TCPv4 segmentation, which was not negotiated. */
  virtq_descriptor(&tx, 1, frame_page(1), make_frame(frame_page(1), 1, "crosvm-tx-bad"), 0, 0);
  virtq_offer(&tx, 1);
  /* A loop: 2 -> 3 -> 2. */
  virtq_descriptor(&tx, 2, frame_page(2), 12, NEXT, 3);
  virtq_descriptor(&tx, 3, frame_page(3), 60, NEXT, 2);
  virtq_offer(&tx, 2);
  /* A frame outside RAM. */
  virtq_descriptor(&tx, 4, frame_page(4), 12, NEXT, 5);
  virtq_descriptor(&tx, 5, 0xfffffff00000ull, 60, 0, 0);
  virtq_offer(&tx, 4);
  /* The good one, header and frame in two descriptors. */
  make_frame(frame_page(6), 0, "crosvm-tx-ok");
  virtq_descriptor(&tx, 6, frame_page(6), 12, NEXT, 7);
  virtq_descriptor(&tx, 7, frame_page(6) + 12, 60, 0, 0);
  virtq_offer(&tx, 6);
  *tx.notify = 1;
  for (int i = 0; i < 5; ++i) {
    virtq_next_used(&tx, &id, &length);
    tg_puts("tx chain ");
    tg_put_dec(id);
    tg_puts(" returned\n");
  }
}

static void receive(void) {
  uint32_t id, length;
  /* A buffer the device would have to read, one outside RAM, one too
   * small for any frame with its header, then one that fits. */
  virtq_descriptor(&rx, 0, frame_page(8), 2048, 0, 0);
  virtq_offer(&rx, 0);
  virtq_descriptor(&rx, 1, 0xfffffff00000ull, 2048, WRITE, 0);
  virtq_offer(&rx, 1);
  virtq_descriptor(&rx, 2, frame_page(9), 20, WRITE, 0);
  virtq_offer(&rx, 2);
  memset((void *)frame_page(10), 0, 2048);
  virtq_descriptor(&rx, 3, frame_page(10), 2048, WRITE, 0);
  virtq_offer(&rx, 3);
  *rx.notify = 0;
  tg_puts("rx ready\n");
  for (int i = 0; i < 4; ++i) {
    virtq_next_used(&rx, &id, &length);
    if (id != 3) {
      tg_puts("rx chain ");
      tg_put_dec(id);
      report(" returned", length);
      continue;
    }
    report("rx chain 3", length);
    const volatile char *text = (const volatile char *)(frame_page(10) + 12 + 14);
    tg_puts("rx payload: ");
    for (int j = 0; j < 32 && text[j] >= ' ' && text[j] < 127; ++j) tg_putc(text[j]);
    tg_putc('\n');
  }
}

void guest_main(const uint8_t *boot_params) {
  (void)boot_params;
  const int slot = pci_find(0x10411af4u);
  if (slot < 0 || map_capabilities(slot) != 0 || virtio_pci_start(&pci, queues, 2) != 0) {
    tg_puts("no usable virtio-net device\n");
    return;
  }
  tg_puts("mac");
  for (int i = 0; i < 6; ++i) {
    tg_putc(i == 0 ? ' ' : ':');
    const uint8_t byte = device_config[i];
    tg_putc("0123456789abcdef"[byte >> 4]);
    tg_putc("0123456789abcdef"[byte & 15]);
  }
  tg_puts(" link ");
  tg_put_dec(*(volatile uint16_t *)(device_config + 6));
  tg_putc('\n');
  transmit();
  receive();
  tg_puts("done\n");
}
