// The split virtqueue as a hostile driver sets it up: any queue size and
// ring addresses, any descriptors, rings and indirect tables in guest RAM
// with holes. Every chain that passes must lie inside RAM and within the
// rules; readers and writers never step outside it.
#include <algorithm>

#include "devices/virtio/chain_io.h"
#include "fuzz_common.h"

using namespace crosvm;
using namespace crosvm::virtio;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider input(data, size);
  GuestMemory& memory = fuzz::memory();
  const QueueConfig config = fuzz::queue_config(input);
  const bool event_index = input.ConsumeBool();
  const bool indirect = input.ConsumeBool();
  fuzz::fill_memory(memory, input);

  auto queue = SplitQueue::create(memory, config, 256, event_index, indirect);
  if (!queue) return 0;
  FUZZ_CHECK(fuzz::inside_ram(config.descriptor_table, uint64_t{16} * config.size));
  for (int round = 0; round < 600; ++round) {
    auto popped = queue->pop();
    if (!popped || !popped->has_value()) break;
    const PoppedChain& next = **popped;
    FUZZ_CHECK(next.head < config.size);
    uint32_t written = 0;
    if (next.chain) {
      fuzz::check_chain(*next.chain, config.size);
      ChainReader reader(memory, next.chain->readable);
      uint8_t sink[4096];
      for (int piece = 0; piece < 16 && reader.remaining() > 0; ++piece) {
        auto slice = reader.peek(sizeof(sink));
        FUZZ_CHECK(slice.ok() && !slice->empty());
        std::memcpy(sink, slice->data(), slice->size());
        FUZZ_CHECK(reader.skip(slice->size()).ok());
      }
      ChainWriter writer(memory, next.chain->writable);
      const uint8_t pattern[512] = {0xa5};
      while (writer.remaining() > 0 && writer.consumed() < (64u << 10)) {
        const size_t step = static_cast<size_t>(std::min<uint64_t>(writer.remaining(), sizeof(pattern)));
        FUZZ_CHECK(writer.write(std::span(pattern, step)).ok());
      }
      FUZZ_CHECK(!writer.take(writer.remaining() + 1).ok());  // never past the end
      written = static_cast<uint32_t>(writer.consumed());
    }
    if (!queue->push_used(next.head, written).ok()) break;
    (void)queue->should_notify();
    (void)queue->enable_notification();
  }
  return 0;
}
