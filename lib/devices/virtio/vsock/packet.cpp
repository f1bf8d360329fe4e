#include "devices/virtio/vsock/packet.h"

#include <fmt/format.h>

namespace crosvm::virtio::vsock {

GuestPacket check_guest_packet(const PacketHeader& header, uint64_t payload_bytes, uint64_t guest_cid) {
  using Verdict = GuestPacket::Verdict;
  const bool is_reset = header.op == static_cast<uint16_t>(Op::kReset);
  // A bad RST is never answered: two peers would reset each other forever.
  const Verdict refuse = is_reset ? Verdict::kDrop : Verdict::kReset;
  if (header.src_cid != guest_cid) {
    // Not the guest's own address: an answer would go nowhere it reads.
    return {Verdict::kDrop, fmt::format("a packet from CID {} (the guest is {})", header.src_cid, guest_cid)};
  }
  if (header.dst_cid != kHostCid) {
    return {refuse, fmt::format("a packet to CID {} (only the host, 2, is reachable)", header.dst_cid)};
  }
  if (header.type != kTypeStream) return {refuse, fmt::format("a packet of type {} (only streams)", header.type)};
  if (header.op < static_cast<uint16_t>(Op::kRequest) || header.op > static_cast<uint16_t>(Op::kCreditRequest)) {
    return {refuse, fmt::format("an unknown op {}", header.op)};
  }
  if (header.op == static_cast<uint16_t>(Op::kReadWrite)) {
    if (header.len == 0 || header.len > kMaxPayload) {
      return {refuse, fmt::format("a data packet of {} bytes (1 to {})", header.len, kMaxPayload)};
    }
    if (header.len > payload_bytes) {
      return {refuse, fmt::format("a data packet of {} bytes in a chain that holds {}", header.len, payload_bytes)};
    }
  } else if (header.len != 0) {
    return {refuse, fmt::format("op {} with a payload of {} bytes", header.op, header.len)};
  }
  if (header.op == static_cast<uint16_t>(Op::kShutdown) &&
      (header.flags & ~(kShutdownReceive | kShutdownSend)) != 0) {
    return {refuse, fmt::format("SHUTDOWN with flags {:#x}", header.flags)};
  }
  return {Verdict::kAccept, {}};
}

PacketHeader reset_for(const PacketHeader& header) {
  PacketHeader reset{};
  reset.src_cid = header.dst_cid;
  reset.dst_cid = header.src_cid;
  reset.src_port = header.dst_port;
  reset.dst_port = header.src_port;
  reset.type = kTypeStream;
  reset.op = static_cast<uint16_t>(Op::kReset);
  return reset;
}

}  // namespace crosvm::virtio::vsock
