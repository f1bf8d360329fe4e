// A virtio-blk request from a hostile driver, served against a disk that
// traps on any access outside it: whatever the chain says, the device
// touches only the disk's bytes and reports no more than the chain holds.
#include <vector>

#include "devices/virtio/block.h"
#include "fuzz_common.h"

using namespace crosvm;
using namespace crosvm::virtio;

namespace {

class TrapDisk final : public disk::DiskFile {
 public:
  TrapDisk(uint64_t size, bool read_only) : bytes_(size), read_only_(read_only) {}
  uint64_t size() const override { return bytes_.size(); }
  bool read_only() const override { return read_only_; }
  std::string_view format() const override { return "trap"; }
  Result<void> read_at(uint64_t offset, std::span<const iovec> buffers) override {
    for (const iovec& buffer : buffers) {
      check(offset, buffer.iov_len);
      if (buffer.iov_len > 0) std::memcpy(buffer.iov_base, bytes_.data() + offset, buffer.iov_len);
      offset += buffer.iov_len;
    }
    return {};
  }
  Result<void> write_at(uint64_t offset, std::span<const iovec> buffers) override {
    FUZZ_CHECK(!read_only_);
    for (const iovec& buffer : buffers) {
      check(offset, buffer.iov_len);
      if (buffer.iov_len > 0) std::memcpy(bytes_.data() + offset, buffer.iov_base, buffer.iov_len);
      offset += buffer.iov_len;
    }
    return {};
  }
  Result<void> flush() override { return {}; }
  Result<void> discard(uint64_t offset, uint64_t length) override {
    FUZZ_CHECK(!read_only_);
    check(offset, length);
    return {};
  }
  Result<void> write_zeroes(uint64_t offset, uint64_t length, bool) override {
    FUZZ_CHECK(!read_only_);
    check(offset, length);
    if (length > 0) std::memset(bytes_.data() + offset, 0, length);  // an empty disk's data() is null
    return {};
  }
  Result<void> resize(uint64_t) override { return make_error(ErrorCode::kIo, "no"); }

 private:
  void check(uint64_t offset, uint64_t length) const {
    FUZZ_CHECK(offset <= bytes_.size() && length <= bytes_.size() - offset);
  }
  std::vector<uint8_t> bytes_;
  bool read_only_;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider input(data, size);
  GuestMemory& memory = fuzz::memory();
  const QueueConfig config = fuzz::queue_config(input);
  const bool indirect = input.ConsumeBool();
  TrapDisk disk(input.ConsumeIntegralInRange<uint64_t>(0, 64) * 512, input.ConsumeBool());
  const BlockLimits limits{.max_discard_sectors = input.ConsumeIntegralInRange<uint32_t>(1, 1u << 22),
                           .max_discard_segments = input.ConsumeIntegralInRange<uint32_t>(1, 64),
                           .max_write_zeroes_sectors = input.ConsumeIntegralInRange<uint32_t>(1, 1u << 22),
                           .max_write_zeroes_segments = input.ConsumeIntegralInRange<uint32_t>(1, 64)};
  fuzz::fill_memory(memory, input);

  auto queue = SplitQueue::create(memory, config, 256, false, indirect);
  if (!queue) return 0;
  for (int round = 0; round < 300; ++round) {
    auto popped = queue->pop();
    if (!popped || !popped->has_value()) break;
    uint32_t written = 0;
    if (const auto& chain = (*popped)->chain) {
      fuzz::check_chain(*chain, config.size);
      std::string problem;
      written = serve_block_request(disk, memory, *chain, "fuzzed-disk", limits, &problem);
      FUZZ_CHECK(written <= chain->writable_bytes);
    }
    if (!queue->push_used((*popped)->head, written).ok()) break;
  }
  return 0;
}
