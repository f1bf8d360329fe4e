// The userspace vsock's check of a guest packet's header against a
// reference reading of virtio 5.10.6: a packet it accepts is a stream
// packet from the guest's CID to the host's, with a known op, a payload
// only on RW (1 to 64 KiB, within the chain); one it answers with a RST is
// never a RST itself and never from another CID (so two peers never reset
// each other forever, and no answer goes to an address the guest does not
// own); and the RST it would send goes back to the packet's source.
#include "devices/virtio/vsock/packet.h"
#include "fuzz_common.h"

using namespace crosvm::virtio::vsock;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider input(data, size);
  PacketHeader header{};
  header.src_cid = input.ConsumeBool() ? 5 : input.ConsumeIntegral<uint64_t>();
  header.dst_cid = input.ConsumeBool() ? kHostCid : input.ConsumeIntegral<uint64_t>();
  header.src_port = input.ConsumeIntegral<uint32_t>();
  header.dst_port = input.ConsumeIntegral<uint32_t>();
  header.len = input.ConsumeBool() ? input.ConsumeIntegralInRange<uint32_t>(0, kMaxPayload + 1)
                                   : input.ConsumeIntegral<uint32_t>();
  header.type = input.ConsumeBool() ? kTypeStream : input.ConsumeIntegral<uint16_t>();
  header.op = input.ConsumeIntegralInRange<uint16_t>(0, 9);
  header.flags = input.ConsumeIntegralInRange<uint32_t>(0, 5);
  header.buf_alloc = input.ConsumeIntegral<uint32_t>();
  header.fwd_cnt = input.ConsumeIntegral<uint32_t>();
  const uint64_t payload_bytes = input.ConsumeIntegralInRange<uint64_t>(0, 2 * kMaxPayload);

  const GuestPacket checked = check_guest_packet(header, payload_bytes, 5);
  const bool is_reset = header.op == static_cast<uint16_t>(Op::kReset);
  if (checked.verdict == GuestPacket::Verdict::kAccept) {
    FUZZ_CHECK(checked.problem.empty());
    FUZZ_CHECK(header.src_cid == 5 && header.dst_cid == kHostCid && header.type == kTypeStream);
    FUZZ_CHECK(header.op >= 1 && header.op <= 7);
    if (header.op == static_cast<uint16_t>(Op::kReadWrite)) {
      FUZZ_CHECK(header.len >= 1 && header.len <= kMaxPayload && header.len <= payload_bytes);
    } else {
      FUZZ_CHECK(header.len == 0);
    }
    if (header.op == static_cast<uint16_t>(Op::kShutdown)) FUZZ_CHECK((header.flags & ~3u) == 0);
    return 0;
  }
  FUZZ_CHECK(!checked.problem.empty());
  if (checked.verdict == GuestPacket::Verdict::kReset) {
    FUZZ_CHECK(!is_reset);
    FUZZ_CHECK(header.src_cid == 5);
    const PacketHeader reset = reset_for(header);
    FUZZ_CHECK(reset.op == static_cast<uint16_t>(Op::kReset) && reset.len == 0 && reset.type == kTypeStream);
    FUZZ_CHECK(reset.dst_cid == header.src_cid && reset.dst_port == header.src_port &&
               reset.src_port == header.dst_port);
  } else {
    FUZZ_CHECK(is_reset || header.src_cid != 5);
  }
  return 0;
}
