/* A tiny virtio-vsock driver for the userspace vsock: negotiates
 * VERSION_1 alone, sets up the receive and transmit queues, and sends
 * packets a hostile guest would: no payload, a len past its chain, an
 * unknown op, a datagram, another destination CID, another source CID, a
 * RST, credit asked for no connection, and 256 KiB and one byte on a
 * connection that allowed 256 KiB. Each must cost only its own
 * connection a RST (and a forged source or a RST gets no answer). Then a
 * good connection to the host carries bytes both ways and closes. */
#include "virtio_pci.h"

#define NEXT 1
#define WRITE 2

#define RX_RING 0x800000ul
#define TX_RING 0x810000ul
#define RX_BUFFERS 0x900000ul /* 4 KiB each, one per descriptor */
#define TX_PACKETS 0xa00000ul /* a header, then at +0x100 up to 64 KiB */
#define PACKET_STRIDE 0x11000ul
#define HOST_PORT 1234

enum { OP_REQUEST = 1, OP_RESPONSE = 2, OP_RST = 3, OP_SHUTDOWN = 4, OP_RW = 5, OP_CREDIT_UPDATE = 6,
       OP_CREDIT_REQUEST = 7 };

struct __attribute__((packed)) header {
  uint64_t src_cid;
  uint64_t dst_cid;
  uint32_t src_port;
  uint32_t dst_port;
  uint32_t len;
  uint16_t type;
  uint16_t op;
  uint32_t flags;
  uint32_t buf_alloc;
  uint32_t fwd_cnt;
};

static struct virtio_pci pci;
static struct virtq rx = {RX_RING, 0, 0, 0};
static struct virtq tx = {TX_RING, 0, 0, 0};
static struct virtq *const queues[] = {&rx, &tx};
static uint64_t guest_cid;
static int next_slot;

static void post_receive_buffer(int index) {
  virtq_descriptor(&rx, index, RX_BUFFERS + 0x1000ul * (uint64_t)index, 0x1000, WRITE, 0);
  virtq_offer(&rx, (uint16_t)index);
}

static struct header packet(uint16_t op, uint32_t src_port, uint32_t len) {
  struct header h;
  memset(&h, 0, sizeof(h));
  h.src_cid = guest_cid;
  h.dst_cid = 2;
  h.src_port = src_port;
  h.dst_port = HOST_PORT;
  h.len = len;
  h.type = 1;
  h.op = op;
  h.buf_alloc = 4096;
  return h;
}

/* Puts a packet in the next transmit slot (two descriptors when it has a
 * payload: `chain_payload` bytes at +0x100, `text` or else `fill`); no
 * kick. */
static void queue_packet(struct header h, uint32_t chain_payload, uint8_t fill, const char *text) {
  const int slot = next_slot++ % (VIRTQ_SIZE / 2);
  const uint64_t at = TX_PACKETS + PACKET_STRIDE * (uint64_t)slot;
  *(volatile struct header *)at = h;
  const uint16_t head = (uint16_t)(2 * slot);
  if (chain_payload > 0) {
    memset((void *)(at + 0x100), fill, chain_payload);
    for (uint32_t i = 0; text != 0 && i < chain_payload; ++i) ((volatile char *)(at + 0x100))[i] = text[i];
    virtq_descriptor(&tx, head, at, sizeof(h), NEXT, (uint16_t)(head + 1));
    virtq_descriptor(&tx, head + 1, at + 0x100, chain_payload, 0, 0);
  } else {
    virtq_descriptor(&tx, head, at, sizeof(h), 0, 0);
  }
  virtq_offer(&tx, head);
}

static void transmit(int count) {
  uint32_t id, length;
  *tx.notify = 1;
  for (int i = 0; i < count; ++i) virtq_next_used(&tx, &id, &length);
}

static void send(struct header h, uint32_t chain_payload) {
  queue_packet(h, chain_payload, 'x', 0);
  transmit(1);
}

/* The next packet from the device; its buffer goes back to the ring. */
static struct header receive(char *payload, uint32_t capacity) {
  uint32_t id, length;
  virtq_next_used(&rx, &id, &length);
  const uint64_t at = RX_BUFFERS + 0x1000ul * id;
  struct header h = *(const volatile struct header *)at;
  for (uint32_t i = 0; i < h.len && i + 1 < capacity; ++i) payload[i] = ((const volatile char *)at)[sizeof(h) + i];
  if (capacity > 0) payload[h.len < capacity ? h.len : capacity - 1] = 0;
  post_receive_buffer((int)id);
  *rx.notify = 0;
  return h;
}

static void report(void) {
  char payload[64];
  struct header h = receive(payload, sizeof(payload));
  switch (h.op) {
    case OP_RST: tg_puts("reset "); break;
    case OP_RESPONSE: tg_puts("response "); break;
    case OP_RW: tg_puts("data "); break;
    default:
      tg_puts("op ");
      tg_put_dec(h.op);
      tg_putc(' ');
  }
  tg_put_dec(h.dst_port);
  if (h.op == OP_RW) {
    tg_putc(' ');
    tg_puts(payload);
  }
  tg_putc('\n');
}

void guest_main(const uint8_t *boot_params) {
  (void)boot_params;
  const int slot = pci_find(0x10531af4u);
  if (slot < 0 || virtio_pci_map(slot, &pci) != 0 || pci.device_config == 0 ||
      virtio_pci_start(&pci, queues, 2) != 0) {
    tg_puts("no usable virtio-vsock device\n");
    return;
  }
  guest_cid = *(volatile uint64_t *)pci.device_config;
  tg_puts("cid ");
  tg_put_dec(guest_cid);
  tg_putc('\n');
  for (int i = 0; i < VIRTQ_SIZE; ++i) post_receive_buffer(i);
  *rx.notify = 0;

  send(packet(OP_RW, 101, 0), 0);        /* data of no bytes */
  report();
  send(packet(OP_RW, 102, 100), 5);      /* a len past its chain */
  report();
  send(packet(42, 103, 0), 0);           /* an unknown op */
  report();
  struct header datagram = packet(OP_REQUEST, 104, 0);
  datagram.type = 2;
  send(datagram, 0);
  report();
  struct header elsewhere = packet(OP_REQUEST, 105, 0);
  elsewhere.dst_cid = 99;
  send(elsewhere, 0);
  report();
  struct header forged = packet(OP_REQUEST, 106, 0);
  forged.src_cid = guest_cid + 1; /* never answered: the next answer is 107's */
  send(forged, 0);
  send(packet(OP_RW, 107, 4), 4);        /* data for no connection */
  report();
  send(packet(OP_RST, 108, 0), 0);       /* never answered either */
  send(packet(OP_CREDIT_REQUEST, 109, 0), 0);
  report();

  /* 256 KiB of credit, and one byte more, in one kick. */
  send(packet(OP_REQUEST, 200, 0), 0);
  report();
  for (int i = 0; i < 4; ++i) queue_packet(packet(OP_RW, 200, 65536), 65536, 'c', 0);
  queue_packet(packet(OP_RW, 200, 1), 1, '!', 0);
  transmit(5);
  report();

  /* A good connection. */
  send(packet(OP_REQUEST, 300, 0), 0);
  report();
  queue_packet(packet(OP_RW, 300, 8), 8, 0, "guest-ok");
  transmit(1);
  report();
  struct header close = packet(OP_SHUTDOWN, 300, 0);
  close.flags = 3;
  send(close, 0);
  report();
  tg_puts("done\n");
}
