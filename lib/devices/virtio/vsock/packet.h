// virtio-vsock's packets (virtio 1.x, 5.10.6): the 44-byte header every
// packet on the receive and transmit queues starts with, and the check a
// packet from the guest passes before the userspace vsock acts on it. One
// function decides what a guest packet may be, so the fuzz target and the
// device agree on it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

namespace crosvm::virtio::vsock {

inline constexpr uint64_t kHostCid = 2;
inline constexpr uint16_t kTypeStream = 1;
// The largest payload a packet may carry (the kernel's
// VIRTIO_VSOCK_MAX_PKT_BUF_SIZE): a larger len is a malformed packet.
inline constexpr uint32_t kMaxPayload = 64 * 1024;

enum class Op : uint16_t {
  kRequest = 1,
  kResponse = 2,
  kReset = 3,
  kShutdown = 4,
  kReadWrite = 5,
  kCreditUpdate = 6,
  kCreditRequest = 7,
};

// SHUTDOWN's flags: the sender receives no more, sends no more.
inline constexpr uint32_t kShutdownReceive = 1;
inline constexpr uint32_t kShutdownSend = 2;

#pragma pack(push, 1)
struct PacketHeader {
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
#pragma pack(pop)
static_assert(sizeof(PacketHeader) == 44);

// What a packet from the guest is, once checked.
struct GuestPacket {
  enum class Verdict {
    kAccept,  // act on it
    kReset,   // answer with RST (to its source) and end any connection it names
    kDrop,    // ignore: a RST that is itself bad, or one we cannot answer
  };
  Verdict verdict;
  std::string problem;  // for kReset/kDrop: what was wrong
};

// Checks `header` from a guest whose CID is `guest_cid`, with
// `payload_bytes` readable after the header in its chain: the source is
// the guest's CID, the destination the host's, a stream, a known op, a len
// only on RW (1 to kMaxPayload) and no larger than what the chain holds,
// SHUTDOWN flags within the two bits.
GuestPacket check_guest_packet(const PacketHeader& header, uint64_t payload_bytes, uint64_t guest_cid);

// A RST answering `header` (its source and destination swapped).
PacketHeader reset_for(const PacketHeader& header);

}  // namespace crosvm::virtio::vsock
