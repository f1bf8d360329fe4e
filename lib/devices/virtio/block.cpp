#include "devices/virtio/block.h"

#include <algorithm>
#include <cstring>
#include <exception>
#include <utility>

#include "devices/virtio/chain_io.h"

namespace crosvm::virtio {
namespace {

constexpr uint64_t kFeatureSegMax = 1ull << 2;
constexpr uint64_t kFeatureReadOnly = 1ull << 5;
constexpr uint64_t kFeatureBlockSize = 1ull << 6;
constexpr uint64_t kFeatureFlush = 1ull << 9;
constexpr uint64_t kFeatureMultiQueue = 1ull << 12;
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

void refuse(BlockRequest& request, std::string problem) {
  request.status = kBlockStatusIoError;
  request.problem = std::move(problem);
}

void prepare_segments(const disk::DiskFile& disk, ChainReader& reader, const BlockLimits& limits,
                      BlockRequest& request) {
  const bool discard = request.type == kBlockRequestDiscard;
  const char* what = discard ? "discard" : "write-zeroes";
  if (disk.read_only()) return refuse(request, fmt::format("{} on a read-only disk", what));
  const uint32_t max_segments = discard ? limits.max_discard_segments : limits.max_write_zeroes_segments;
  const uint32_t max_sectors = discard ? limits.max_discard_sectors : limits.max_write_zeroes_sectors;
  const uint64_t bytes = reader.remaining();
  if (bytes == 0 || bytes % sizeof(DiscardSegment) != 0 || bytes / sizeof(DiscardSegment) > max_segments) {
    return refuse(request, fmt::format("{} with {} bytes of segments", what, bytes));
  }
  std::vector<DiscardSegment> segments(bytes / sizeof(DiscardSegment));
  if (!reader.read(std::span(reinterpret_cast<uint8_t*>(segments.data()), bytes))) {
    return refuse(request, "unreadable segments");
  }
  // Every segment is checked before the disk is touched: all or nothing.
  for (const DiscardSegment& segment : segments) {
    if ((segment.flags & ~kSegmentUnmap) != 0 || (discard && segment.flags != 0) ||
        (discard && !limits.may_unmap)) {
      request.status = kBlockStatusUnsupported;
      return;
    }
    if (segment.sectors > max_sectors || !range_ok(disk, segment.sector, uint64_t{segment.sectors} * kSectorSize)) {
      return refuse(request, fmt::format("{} of {} sectors at sector {} is past the end", what, segment.sectors,
                                         segment.sector));
    }
    request.segments.push_back({segment.sector * kSectorSize, uint64_t{segment.sectors} * kSectorSize,
                                (segment.flags & kSegmentUnmap) != 0 && limits.may_unmap});
  }
  request.needs_disk = true;
}

void prepare(const disk::DiskFile& disk, ChainReader& reader, ChainWriter& writer, std::string_view id,
             const BlockLimits& limits, BlockRequest& request) {
  auto header = reader.read_object<RequestHeader>();
  if (!header) return refuse(request, "a request without a full header");
  request.type = header->type;
  switch (header->type) {
    case kBlockRequestIn:
    case kBlockRequestOut: {
      const bool read = header->type == kBlockRequestIn;
      const char* what = read ? "read" : "write";
      if (!read && disk.read_only()) return refuse(request, "a write to a read-only disk");
      ChainCursor& data = read ? static_cast<ChainCursor&>(writer) : reader;
      const uint64_t bytes = data.remaining();
      if (bytes % kSectorSize != 0) return refuse(request, fmt::format("a {} of {} bytes", what, bytes));
      if (!range_ok(disk, header->sector, bytes)) {
        return refuse(request, fmt::format("a {} of {} bytes at sector {} is past the end", what, bytes,
                                           header->sector));
      }
      auto buffers = data.take(bytes);
      if (!buffers) return refuse(request, buffers.error().message);
      request.offset = header->sector * kSectorSize;
      request.buffers = std::move(buffers).value();
      if (read) request.written = static_cast<uint32_t>(bytes);
      request.needs_disk = true;
      return;
    }
    case kBlockRequestFlush:
      request.needs_disk = true;
      return;
    case kBlockRequestGetId: {
      uint8_t serial[kBlockIdLength] = {};
      std::memcpy(serial, id.data(), std::min(id.size(), kBlockIdLength));
      const size_t bytes = static_cast<size_t>(std::min<uint64_t>(writer.remaining(), kBlockIdLength));
      if (!writer.write(std::span(serial, bytes))) return refuse(request, "GET_ID buffer");
      request.written = static_cast<uint32_t>(bytes);
      return;
    }
    case kBlockRequestDiscard:
    case kBlockRequestWriteZeroes:
      return prepare_segments(disk, reader, limits, request);
    default:
      request.status = kBlockStatusUnsupported;
      return;
  }
}

}  // namespace

BlockRequest prepare_block_request(const disk::DiskFile& disk, const GuestMemory& memory,
                                   const DescriptorChain& chain, std::string_view id, const BlockLimits& limits) {
  BlockRequest request;
  if (chain.writable.empty()) {
    request.problem = "a request with no room for its status byte";
    return request;
  }
  const GuestBuffer& last = chain.writable.back();
  request.status_address = last.address + last.length - 1;
  request.has_status = true;
  ChainReader reader(memory, chain.readable);
  ChainWriter writer(memory, chain.writable);
  (void)writer.exclude_tail(1);  // the status byte, written last
  prepare(disk, reader, writer, id, limits, request);
  return request;
}

void run_block_request(disk::DiskFile& disk, BlockRequest& request) {
  if (!request.needs_disk) return;
  Result<void> done;
  switch (request.type) {
    case kBlockRequestIn:
      done = disk.read_at(request.offset, request.buffers);
      break;
    case kBlockRequestOut:
      done = disk.write_at(request.offset, request.buffers);
      break;
    case kBlockRequestFlush:
      done = disk.flush();
      break;
    default:
      for (const BlockSegment& segment : request.segments) {
        done = request.type == kBlockRequestDiscard ? disk.discard(segment.offset, segment.length)
                                                   : disk.write_zeroes(segment.offset, segment.length, segment.unmap);
        if (!done) break;
      }
      break;
  }
  if (!done) {
    request.status = kBlockStatusIoError;
    request.problem = done.error().message;
  }
}

uint32_t finish_block_request(const GuestMemory& memory, const BlockRequest& request) {
  if (!request.has_status || !memory.write_object(request.status_address, request.status)) return 0;
  return (request.status == kBlockStatusOk ? request.written : 0) + 1;
}

uint32_t serve_block_request(disk::DiskFile& disk, const GuestMemory& memory,
                             const DescriptorChain& chain, std::string_view id,
                             const BlockLimits& limits, std::string* problem) {
  BlockRequest request = prepare_block_request(disk, memory, chain, id, limits);
  run_block_request(disk, request);
  if (problem != nullptr) *problem = request.problem;
  return finish_block_request(memory, request);
}

Block::Block(std::unique_ptr<disk::DiskFile> disk, BlockOptions options, std::string name, const Logger& logger)
    : QueueDevice(std::move(name), logger),
      disk_(std::move(disk)),
      id_(std::move(options.id)),
      block_size_(options.block_size),
      num_queues_(std::clamp<uint16_t>(options.num_queues, 1, kMaxBlockQueues)),
      capacity_sectors_(disk_->size() / kSectorSize),
      io_("crosvm_blk_io", kIoThreads, logger, [this]() -> std::function<void()> {
        // Started by the worker: under SCHED_BATCH only if the worker batches
        // now, which is the worker's state, not one for the I/O to keep.
        if (!batching_.batching()) return {};
        return [] { (void)set_thread_batching(false); };
      }) {
  limits_.may_unmap = options.sparse;
}

uint64_t Block::device_features() const {
  uint64_t features = kFeatureSegMax | kFeatureBlockSize | kFeatureFlush;
  if (num_queues_ > 1) features |= kFeatureMultiQueue;
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
  config.num_queues = num_queues_;
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
  // Requests are read and checked here, answered here when the disk has no
  // part in them, and otherwise handed to the I/O threads: this turn ends
  // without waiting for the disk.
  unsigned taken = 0;
  bool answered = false;
  Turn turn = Turn::kIdle;
  // This turn's disk work; one request alone, with nothing in flight, is
  // served right here (a guest waiting on each request before the next
  // gains nothing from a hand-off to another thread and back).
  std::vector<std::pair<uint16_t, BlockRequest>> disk_work;
  while (active()) {
    if (taken == kChainsPerTurn) {
      turn = Turn::kMore;
      break;
    }
    auto popped = pop_or_arm(queue);
    if (!popped) {
      fail(popped.error().message);
      return Turn::kIdle;
    }
    if (!popped->has_value()) break;
    PoppedChain& next = **popped;
    ++taken;
    if (!next.chain) {
      report_problem(fmt::format("queue {}: {}", queue.index, next.problem));
      if (!complete(queue, next.head, 0)) return Turn::kIdle;
      answered = true;
      continue;
    }
    BlockRequest request = prepare_block_request(*disk_, memory(), *next.chain, id_, limits_);
    if (request.needs_disk) {
      disk_work.emplace_back(next.head, std::move(request));
      continue;
    }
    if (!request.problem.empty()) report_problem(request.problem);
    if (!complete(queue, next.head, finish_block_request(memory(), request))) return Turn::kIdle;
    answered = true;
  }
  const size_t in_flight = io_.unfinished();
  if (batching_.after_turn(disk_work.size(), in_flight) && !batching_unavailable_) {
    if (auto applied = set_thread_batching(batching_.batching()); !applied) {
      batching_unavailable_ = true;  // answered at once, as without it
      logger().info("{}: requests are not batched: {}", name(), applied.error().message);
    }
  }
  if (disk_work.size() == 1 && turn == Turn::kIdle && in_flight == 0) {
    auto& [head, request] = disk_work.front();
    run_block_request(*disk_, request);
    if (!request.problem.empty()) report_problem(request.problem);
    if (active() && !complete(queue, head, finish_block_request(memory(), request))) return Turn::kIdle;
    answered = true;
  } else {
    for (auto& [head, request] : disk_work) start_io(queue.index, head, std::move(request));
  }
  if (answered) notify_used(queue);
  return active() ? turn : Turn::kIdle;
}

void Block::start_io(uint16_t queue, uint16_t head, BlockRequest request) {
  const bool flush = request.type == kBlockRequestFlush;
  auto shared = std::make_shared<BlockRequest>(std::move(request));
  const GuestMemory* memory = &this->memory();  // stays mapped: a reset waits for this work
  io_.submit(
      [this, queue, head, shared, memory] {
        try {
          run_block_request(*disk_, *shared);
        } catch (const std::exception& error) {
          // What the disk could not report itself (no memory): this request fails, the rest go on.
          shared->status = kBlockStatusIoError;
          shared->problem = fmt::format("internal error: {}", error.what());
        }
        Completion done{queue, head, finish_block_request(*memory, *shared), std::move(shared->problem)};
        bool post = false;
        {
          std::lock_guard lock(completions_mutex_);
          completions_.push_back(std::move(done));
          post = !std::exchange(delivery_posted_, true);
        }
        // One delivery returns every request that finished meanwhile.
        if (post) worker().post([this] { deliver_completions(); });
      },
      flush);
}

void Block::deliver_completions() {
  std::vector<Completion> done;
  {
    std::lock_guard lock(completions_mutex_);
    done.swap(completions_);
    delivery_posted_ = false;
  }
  std::vector<ActiveQueue*> returned;
  for (const Completion& completion : done) {
    if (!completion.problem.empty()) report_problem(completion.problem);
    ActiveQueue* queue = find_queue(completion.queue);
    if (queue == nullptr || !active()) continue;
    if (!complete(*queue, completion.head, completion.written)) return;
    if (std::find(returned.begin(), returned.end(), queue) == returned.end()) returned.push_back(queue);
  }
  for (ActiveQueue* queue : returned) notify_used(*queue);
}

void Block::on_stop() {
  // The session ended (a reset, or the frontend stopped the rings): what is
  // in flight finishes and goes back to the driver, so a ring that is
  // started again later has nothing outstanding.
  io_.drain();
  deliver_completions();
}

Result<void> Block::resize(uint64_t new_size) {
  if (disk_->read_only()) return make_error(ErrorCode::kInvalidArgument, "{} is read-only", name());
  if (new_size % kSectorSize != 0) {
    return make_error(ErrorCode::kInvalidArgument, "{} bytes is not a whole number of 512-byte sectors",
                      new_size);
  }
  std::lock_guard lock(worker().lock());  // no request starts while the size changes
  io_.drain();                            // and none is running
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
