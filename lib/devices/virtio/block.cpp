#include "devices/virtio/block.h"

#include <algorithm>
#include <cstring>

#include "devices/virtio/chain_io.h"

namespace crosvm::virtio {
namespace {

constexpr uint64_t kFeatureSegMax = 1ull << 2;
constexpr uint64_t kFeatureReadOnly = 1ull << 5;
constexpr uint64_t kFeatureBlockSize = 1ull << 6;
constexpr uint64_t kFeatureFlush = 1ull << 9;
constexpr uint64_t kFeatureDiscard = 1ull << 13;
constexpr uint64_t kFeatureWriteZeroes = 1ull << 14;

constexpr uint32_t kSegmentUnmap = 1;

struct RequestHeader {
  uint32_t type;
  uint32_t reserved;
  uint64_t sector;
};
static_assert(sizeof(RequestHeader) == 16);

struct DiscardSegment {
  uint64_t sector;
  uint32_t sectors;
  uint32_t flags;
};
static_assert(sizeof(DiscardSegment) == 16);

// virtio_blk_config as far as we fill it (5.2.4).
struct [[gnu::packed]] BlockConfig {
  uint64_t capacity;
  uint32_t size_max;
  uint32_t seg_max;
  uint16_t cylinders;
  uint8_t heads;
  uint8_t sectors;
  uint32_t blk_size;
  uint8_t physical_block_exp;
  uint8_t alignment_offset;
  uint16_t min_io_size;
  uint32_t opt_io_size;
  uint8_t writeback;
  uint8_t unused0;
  uint16_t num_queues;
  uint32_t max_discard_sectors;
  uint32_t max_discard_seg;
  uint32_t discard_sector_alignment;
  uint32_t max_write_zeroes_sectors;
  uint32_t max_write_zeroes_seg;
  uint8_t write_zeroes_may_unmap;
  uint8_t unused1[3];
};
static_assert(sizeof(BlockConfig) == 0x3c);

// A request's byte range, checked against the disk: whole sectors, no
// overflow, nothing past the end.
bool range_ok(const disk::DiskFile& disk, uint64_t sector, uint64_t bytes) {
  if (sector > UINT64_MAX / kSectorSize) return false;
  const uint64_t start = sector * kSectorSize;
  return bytes <= disk.size() && start <= disk.size() - bytes;
}

struct Outcome {
  uint8_t status;
  uint32_t written = 0;  // data bytes put into the chain
};

Outcome io_error(std::string* problem, std::string text) {
  if (problem != nullptr) *problem = std::move(text);
  return {kBlockStatusIoError};
}

Outcome serve_segments(disk::DiskFile& disk, ChainReader& reader, uint32_t type,
                       const BlockLimits& limits, std::string* problem) {
  const bool discard = type == kBlockRequestDiscard;
  const char* what = discard ? "discard" : "write-zeroes";
  if (disk.read_only()) return io_error(problem, fmt::format("{} on a read-only disk", what));
  const uint32_t max_segments = discard ? limits.max_discard_segments : limits.max_write_zeroes_segments;
  const uint32_t max_sectors = discard ? limits.max_discard_sectors : limits.max_write_zeroes_sectors;
  const uint64_t bytes = reader.remaining();
  if (bytes == 0 || bytes % sizeof(DiscardSegment) != 0 || bytes / sizeof(DiscardSegment) > max_segments) {
    return io_error(problem, fmt::format("{} with {} bytes of segments", what, bytes));
  }
  std::vector<DiscardSegment> segments(bytes / sizeof(DiscardSegment));
  if (!reader.read(std::span(reinterpret_cast<uint8_t*>(segments.data()), bytes))) {
    return io_error(problem, "unreadable segments");
  }
  // Check every segment before touching the disk: all or nothing.
  for (const DiscardSegment& segment : segments) {
    if ((segment.flags & ~kSegmentUnmap) != 0 || (discard && segment.flags != 0) ||
        (discard && !limits.may_unmap)) {
      return {kBlockStatusUnsupported};
    }
    if (segment.sectors > max_sectors || !range_ok(disk, segment.sector, uint64_t{segment.sectors} * kSectorSize)) {
      return io_error(problem, fmt::format("{} of {} sectors at sector {} is past the end", what,
                                           segment.sectors, segment.sector));
    }
  }
  for (const DiscardSegment& segment : segments) {
    const uint64_t offset = segment.sector * kSectorSize;
    const uint64_t length = uint64_t{segment.sectors} * kSectorSize;
    auto done = discard ? disk.discard(offset, length)
                        : disk.write_zeroes(offset, length, (segment.flags & kSegmentUnmap) != 0 && limits.may_unmap);
    if (!done) return io_error(problem, done.error().message);
  }
  return {kBlockStatusOk};
}

Outcome serve(disk::DiskFile& disk, ChainReader& reader, ChainWriter& writer, std::string_view id,
              const BlockLimits& limits, std::string* problem) {
  auto header = reader.read_object<RequestHeader>();
  if (!header) return io_error(problem, "a request without a full header");
  switch (header->type) {
    case kBlockRequestIn: {
      const uint64_t bytes = writer.remaining();
      if (bytes % kSectorSize != 0) return io_error(problem, fmt::format("a read of {} bytes", bytes));
      if (!range_ok(disk, header->sector, bytes)) {
        return io_error(problem, fmt::format("a read of {} bytes at sector {} is past the end",
                                             bytes, header->sector));
      }
      auto buffers = writer.take(bytes);
      if (!buffers) return io_error(problem, buffers.error().message);
      if (auto read = disk.read_at(header->sector * kSectorSize, *buffers); !read) {
        return io_error(problem, read.error().message);
      }
      return {kBlockStatusOk, static_cast<uint32_t>(bytes)};
    }
    case kBlockRequestOut: {
      if (disk.read_only()) return io_error(problem, "a write to a read-only disk");
      const uint64_t bytes = reader.remaining();
      if (bytes % kSectorSize != 0) return io_error(problem, fmt::format("a write of {} bytes", bytes));
      if (!range_ok(disk, header->sector, bytes)) {
        return io_error(problem, fmt::format("a write of {} bytes at sector {} is past the end",
                                             bytes, header->sector));
      }
      auto buffers = reader.take(bytes);
      if (!buffers) return io_error(problem, buffers.error().message);
      if (auto written = disk.write_at(header->sector * kSectorSize, *buffers); !written) {
        return io_error(problem, written.error().message);
      }
      return {kBlockStatusOk};
    }
    case kBlockRequestFlush:
      if (auto flushed = disk.flush(); !flushed) return io_error(problem, flushed.error().message);
      return {kBlockStatusOk};
    case kBlockRequestGetId: {
      uint8_t serial[kBlockIdLength] = {};
      std::memcpy(serial, id.data(), std::min(id.size(), kBlockIdLength));
      const size_t bytes = static_cast<size_t>(std::min<uint64_t>(writer.remaining(), kBlockIdLength));
      if (!writer.write(std::span(serial, bytes))) return io_error(problem, "GET_ID buffer");
      return {kBlockStatusOk, static_cast<uint32_t>(bytes)};
    }
    case kBlockRequestDiscard:
    case kBlockRequestWriteZeroes:
      return serve_segments(disk, reader, header->type, limits, problem);
    default:
      return {kBlockStatusUnsupported};
  }
}

}  // namespace

uint32_t serve_block_request(disk::DiskFile& disk, const GuestMemory& memory,
                             const DescriptorChain& chain, std::string_view id,
                             const BlockLimits& limits, std::string* problem) {
  if (chain.writable.empty()) {
    if (problem != nullptr) *problem = "a request with no room for its status byte";
    return 0;
  }
  const GuestBuffer& last = chain.writable.back();
  const uint64_t status_address = last.address + last.length - 1;
  ChainReader reader(memory, chain.readable);
  ChainWriter writer(memory, chain.writable);
  (void)writer.exclude_tail(1);  // the status byte, written last
  const Outcome outcome = serve(disk, reader, writer, id, limits, problem);
  if (!memory.write_object(status_address, outcome.status)) return 0;
  return outcome.written + 1;
}

Block::Block(std::unique_ptr<disk::DiskFile> disk, BlockOptions options, std::string name, const Logger& logger)
    : QueueDevice(std::move(name), logger),
      disk_(std::move(disk)),
      id_(std::move(options.id)),
      block_size_(options.block_size),
      capacity_sectors_(disk_->size() / kSectorSize) {
  limits_.may_unmap = options.sparse;
}

uint64_t Block::device_features() const {
  uint64_t features = kFeatureSegMax | kFeatureBlockSize | kFeatureFlush;
  if (disk_->read_only()) {
    features |= kFeatureReadOnly;
  } else {
    features |= kFeatureWriteZeroes;
    if (limits_.may_unmap) features |= kFeatureDiscard;
  }
  return features;
}

uint64_t Block::size() const {
  std::lock_guard lock(config_mutex_);
  return capacity_sectors_ * kSectorSize;
}

void Block::read_config(uint64_t offset, std::span<uint8_t> data) {
  BlockConfig config{};
  {
    std::lock_guard lock(config_mutex_);
    config.capacity = capacity_sectors_;
  }
  config.seg_max = kQueueSize - 2;  // header and status take two descriptors
  config.blk_size = block_size_;
  config.num_queues = 1;
  config.max_discard_sectors = limits_.max_discard_sectors;
  config.max_discard_seg = limits_.max_discard_segments;
  config.discard_sector_alignment = 1;
  config.max_write_zeroes_sectors = limits_.max_write_zeroes_sectors;
  config.max_write_zeroes_seg = limits_.max_write_zeroes_segments;
  config.write_zeroes_may_unmap = limits_.may_unmap ? 1 : 0;
  read_config_bytes(std::span(reinterpret_cast<const uint8_t*>(&config), sizeof(config)), offset, data);
}

void Block::write_config(uint64_t, std::span<const uint8_t>) {
  // Nothing is writable without VIRTIO_BLK_F_CONFIG_WCE, which we do not offer.
}

QueueDevice::Turn Block::on_kick(ActiveQueue& queue) {
  return serve_available(queue, [this](const DescriptorChain& chain) {
    std::string problem;
    const uint32_t written = serve_block_request(*disk_, memory(), chain, id_, limits_, &problem);
    if (!problem.empty()) report_problem(problem);
    return written;
  });
}

Result<void> Block::resize(uint64_t new_size) {
  if (disk_->read_only()) return make_error(ErrorCode::kInvalidArgument, "{} is read-only", name());
  if (new_size % kSectorSize != 0) {
    return make_error(ErrorCode::kInvalidArgument, "{} bytes is not a whole number of 512-byte sectors",
                      new_size);
  }
  std::lock_guard lock(worker().lock());  // no request runs while the size changes
  if (new_size < disk_->size()) {
    return make_error(ErrorCode::kInvalidArgument,
                      "{} holds {} bytes; shrinking it to {} would drop data the guest may use",
                      name(), disk_->size(), new_size);
  }
  CROSVM_TRY(disk_->resize(new_size));
  {
    std::lock_guard config_lock(config_mutex_);
    capacity_sectors_ = new_size / kSectorSize;
  }
  if (active()) interrupt().signal_config_change();
  return {};
}

}  // namespace crosvm::virtio
