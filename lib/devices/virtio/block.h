// virtio-blk (virtio 1.x, 5.2) over a DiskFile: reads and writes straight
// between the image and guest memory, FLUSH (durable on the host before the
// guest hears of it), DISCARD and WRITE_ZEROES, GET_ID, read-only disks and
// resizing, and several queues (VIRTIO_BLK_F_MQ). A request that is
// malformed, reaches past the end of the disk or writes a read-only disk
// gets VIRTIO_BLK_S_IOERR (UNSUPP for unknown types) and nothing is written.
//
// The device's worker reads and checks each request; the disk work runs on
// a pool of threads (kIoThreads), so requests from every queue are served
// concurrently and complete in the order the host finishes them. A FLUSH
// starts only after every request the device took before it has finished,
// so it covers whatever the guest had seen completed and more. A reset (or
// a resize) waits for what is in flight, so no I/O touches guest memory
// after the driver was told the device stopped. While the guest keeps
// several requests in flight, the worker lets it queue them before it
// answers (request_batching.h).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/work_pool.h"

#include "devices/virtio/queue_device.h"
#include "devices/virtio/request_batching.h"
#include "disk/disk_file.h"

namespace crosvm::virtio {

inline constexpr uint8_t kBlockStatusOk = 0;
inline constexpr uint8_t kBlockStatusIoError = 1;
inline constexpr uint8_t kBlockStatusUnsupported = 2;

inline constexpr uint32_t kBlockRequestIn = 0;
inline constexpr uint32_t kBlockRequestOut = 1;
inline constexpr uint32_t kBlockRequestFlush = 4;
inline constexpr uint32_t kBlockRequestGetId = 8;
inline constexpr uint32_t kBlockRequestDiscard = 11;
inline constexpr uint32_t kBlockRequestWriteZeroes = 13;

inline constexpr uint64_t kSectorSize = 512;
inline constexpr size_t kBlockIdLength = 20;

struct BlockLimits {
  uint32_t max_discard_sectors = 1u << 22;  // 2 GiB per segment
  uint32_t max_discard_segments = 32;
  uint32_t max_write_zeroes_sectors = 1u << 22;
  uint32_t max_write_zeroes_segments = 32;
  // crosvm's sparse=: discard is offered and write-zeroes may free space.
  bool may_unmap = true;
};

// A disk's options beyond its image (crosvm's --block keys).
struct BlockOptions {
  std::string id;               // what VIRTIO_BLK_T_GET_ID returns (up to 20 bytes)
  uint32_t block_size = 512;    // the logical block size the guest is told
  bool sparse = true;           // discard offered, write-zeroes may punch holes
  uint16_t num_queues = 1;      // request queues (1 to kMaxBlockQueues)
};

inline constexpr uint16_t kMaxBlockQueues = 16;

// One segment of a DISCARD or WRITE_ZEROES request, in bytes.
struct BlockSegment {
  uint64_t offset;
  uint64_t length;
  bool unmap;
};

// A request read from its chain and checked, whose disk work may run on
// another thread: serve_block_request in three steps.
struct BlockRequest {
  uint32_t type = 0;
  bool needs_disk = false;        // false: the outcome is known already
  uint8_t status = kBlockStatusOk;
  uint64_t offset = 0;            // reads and writes
  std::vector<iovec> buffers;     // guest memory the disk reads into or writes from
  std::vector<BlockSegment> segments;
  uint32_t written = 0;           // data bytes the chain gets on success
  uint64_t status_address = 0;
  bool has_status = false;        // false: no room for a status byte
  std::string problem;            // the guest's mistake or the disk's failure
};

// Reads `chain`'s header and checks it against the disk (and answers
// GET_ID and what is refused outright).
BlockRequest prepare_block_request(const disk::DiskFile& disk, const GuestMemory& memory,
                                   const DescriptorChain& chain, std::string_view id, const BlockLimits& limits);
// The disk's part (when needs_disk): any thread, concurrently with others.
void run_block_request(disk::DiskFile& disk, BlockRequest& request);
// Writes the status byte. Returns how many bytes went into the chain's
// writable part (data and status), 0 when it has no room for a status.
uint32_t finish_block_request(const GuestMemory& memory, const BlockRequest& request);

// Serves one request against `disk` and writes its status byte. Returns how
// many bytes went into the chain's writable part (data and status), 0 when
// the chain has no room for a status.
uint32_t serve_block_request(disk::DiskFile& disk, const GuestMemory& memory,
                             const DescriptorChain& chain, std::string_view id,
                             const BlockLimits& limits, std::string* problem);

class Block final : public QueueDevice {
 public:
  static constexpr uint16_t kQueueSize = 256;
  // Threads doing a disk's I/O: what the guest can keep busy at once.
  static constexpr unsigned kIoThreads = 8;

  Block(std::unique_ptr<disk::DiskFile> disk, BlockOptions options, std::string name, const Logger& logger);

  DeviceType type() const override { return DeviceType::kBlock; }
  uint32_t pci_class() const override { return 0x018000; }  // mass storage, other
  std::vector<uint16_t> queue_max_sizes() const override {
    return std::vector<uint16_t>(num_queues_, kQueueSize);
  }
  uint64_t device_features() const override;
  void read_config(uint64_t offset, std::span<uint8_t> data) override;
  void write_config(uint64_t offset, std::span<const uint8_t> data) override;

  bool read_only() const { return disk_->read_only(); }
  std::string_view disk_format() const { return disk_->format(); }
  uint64_t size() const;
  // Grows the image to `new_size` bytes (a multiple of 512, not smaller than
  // now) and tells the driver through a configuration change.
  Result<void> resize(uint64_t new_size);

 private:
  struct Completion {
    uint16_t queue;
    uint16_t head;
    uint32_t written;
    std::string problem;
  };

  Turn on_kick(ActiveQueue& queue) override;
  void on_stop() override;
  // Queues the disk work of a request taken from `queue`.
  void start_io(uint16_t queue, uint16_t head, BlockRequest request);
  // Returns finished requests to their queues. On the worker, under its lock.
  void deliver_completions();

  std::unique_ptr<disk::DiskFile> disk_;
  std::string id_;
  uint32_t block_size_;
  uint16_t num_queues_;
  BlockLimits limits_;
  mutable std::mutex config_mutex_;  // the capacity, read by vCPUs while a resize runs
  uint64_t capacity_sectors_;
  std::mutex completions_mutex_;
  std::vector<Completion> completions_;  // finished, not yet returned to the driver
  bool delivery_posted_ = false;         // a deliver_completions() is queued on the worker
  // How the worker runs between kicks (request_batching.h); on the worker.
  RequestBatching batching_;
  bool batching_unavailable_ = false;  // the host refused the policy once
  // Last: it goes first, waiting for its work, while what that work uses lives.
  WorkPool io_;
};

}  // namespace crosvm::virtio
