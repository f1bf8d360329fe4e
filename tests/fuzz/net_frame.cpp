// virtio-net's frame paths against a hostile driver. A transmitted header
// the device accepts is one a reference reading of the negotiation allows.
// A received frame written over the chains the driver posted (taken from
// a fuzzed ring, as the device takes them) changes guest memory exactly as
// a plain front-to-back copy into those buffers would, and nothing else;
// a frame that does not fit changes nothing.
#include <map>
#include <vector>

#include "devices/virtio/net/net.h"
#include "fuzz_common.h"

using namespace crosvm;
using namespace crosvm::virtio;

namespace {

void check_header(FuzzedDataProvider& input) {
  NetHeader header{};
  header.flags = input.ConsumeIntegral<uint8_t>();
  header.gso_type = input.ConsumeIntegral<uint8_t>();
  header.header_length = input.ConsumeIntegral<uint16_t>();
  header.gso_size = input.ConsumeIntegral<uint16_t>();
  header.csum_start = input.ConsumeIntegral<uint16_t>();
  header.csum_offset = input.ConsumeIntegral<uint16_t>();
  const uint64_t frame_bytes = input.ConsumeIntegralInRange<uint64_t>(0, kMaxFrameBytes + 16);
  const uint64_t features = input.ConsumeIntegral<uint64_t>();
  if (check_transmit_header(header, frame_bytes, features)) return;
  FUZZ_CHECK(frame_bytes >= 14 && frame_bytes <= kMaxFrameBytes);
  FUZZ_CHECK((header.flags & ~3) == 0);
  if (header.flags & 1) {
    FUZZ_CHECK(features & kNetFeatureCsum);
    FUZZ_CHECK(uint64_t{header.csum_start} + header.csum_offset + 2 <= frame_bytes);
  }
  const uint8_t type = header.gso_type & 0x7f;
  if (type == 0) {
    FUZZ_CHECK(header.gso_type == 0);
    return;
  }
  FUZZ_CHECK((type == 1 && (features & kNetFeatureHostTso4)) || (type == 4 && (features & kNetFeatureHostTso6)) ||
             (type == 3 && (features & kNetFeatureHostUfo)));
  FUZZ_CHECK(!(header.gso_type & 0x80) || (features & kNetFeatureHostEcn));
  FUZZ_CHECK((header.flags & 1) && header.gso_size > 0 && header.header_length <= frame_bytes);
}

// Guest RAM as plain bytes per region, for the reference copy.
std::vector<std::vector<uint8_t>> snapshot(const GuestMemory& memory) {
  std::vector<std::vector<uint8_t>> regions;
  for (const GuestRegion& region : fuzz::kRegions) {
    auto bytes = memory.slice(region.guest_address, region.size).value();
    regions.emplace_back(bytes.begin(), bytes.end());
  }
  return regions;
}

void reference_write(std::vector<std::vector<uint8_t>>& regions, uint64_t address, const uint8_t* data,
                     uint64_t length) {
  for (size_t i = 0; i < fuzz::kRegions.size(); ++i) {
    const GuestRegion& region = fuzz::kRegions[i];
    if (address >= region.guest_address && address + length <= region.guest_address + region.size) {
      std::memcpy(regions[i].data() + (address - region.guest_address), data, length);
      return;
    }
  }
  FUZZ_CHECK(false);  // a checked buffer outside RAM
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider input(data, size);
  check_header(input);

  GuestMemory& memory = fuzz::memory();
  const QueueConfig config = fuzz::queue_config(input);
  const bool indirect = input.ConsumeBool();
  const size_t frame_size = input.ConsumeIntegralInRange<size_t>(sizeof(NetHeader), sizeof(NetHeader) + 0x30000);
  const size_t wanted_chains = input.ConsumeIntegralInRange<size_t>(1, 64);
  const uint8_t fill = input.ConsumeIntegral<uint8_t>();
  fuzz::fill_memory(memory, input);

  auto queue = SplitQueue::create(memory, config, 256, false, indirect);
  if (!queue) return 0;
  std::vector<DescriptorChain> chains;
  for (int round = 0; round < 300 && chains.size() < wanted_chains; ++round) {
    auto popped = queue->pop();
    if (!popped || !popped->has_value()) break;
    auto& chain = (*popped)->chain;
    if (chain && chain->readable.empty()) {
      fuzz::check_chain(*chain, config.size);
      chains.push_back(std::move(*chain));
    }
  }

  std::vector<uint8_t> frame(frame_size);
  for (size_t i = 0; i < frame.size(); ++i) frame[i] = static_cast<uint8_t>(fill + i * 7);
  auto expected = snapshot(memory);
  auto used = write_received_frame(memory, chains, frame);
  if (!used) {
    uint64_t room = 0;
    for (const DescriptorChain& chain : chains) room += chain.writable_bytes;
    FUZZ_CHECK(room < frame.size() || chains.size() > UINT16_MAX);
    FUZZ_CHECK(snapshot(memory) == expected);
    return 0;
  }
  // The reference: buffers in order, each filled before the next.
  FUZZ_CHECK(!used->empty() && used->size() <= chains.size());
  uint16_t buffers = 0;
  std::memcpy(&buffers, frame.data() + 10, 2);
  FUZZ_CHECK(buffers == used->size());
  uint64_t offset = 0;
  for (size_t i = 0; i < used->size(); ++i) {
    FUZZ_CHECK((*used)[i].head == chains[i].head && (*used)[i].written <= chains[i].writable_bytes);
    uint64_t left = (*used)[i].written;
    for (const GuestBuffer& buffer : chains[i].writable) {
      if (left == 0) break;
      const uint64_t piece = std::min<uint64_t>(left, buffer.length);
      reference_write(expected, buffer.address, frame.data() + offset, piece);
      offset += piece;
      left -= piece;
    }
  }
  FUZZ_CHECK(offset == frame.size());
  FUZZ_CHECK(snapshot(memory) == expected);
  return 0;
}
