// virtio-blk (virtio 1.x, 5.2) over a DiskFile: reads and writes straight
// between the image and guest memory, FLUSH (durable on the host before the
// guest hears of it), DISCARD and WRITE_ZEROES, GET_ID, read-only disks and
// resizing. A request that is malformed, reaches past the end of the disk or
// writes a read-only disk gets VIRTIO_BLK_S_IOERR (UNSUPP for unknown
// types) and nothing is written.
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "devices/virtio/queue_device.h"
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
};

// Serves one request against `disk` and writes its status byte. Returns how
// many bytes went into the chain's writable part (data and status), 0 when
// the chain has no room for a status.
uint32_t serve_block_request(disk::DiskFile& disk, const GuestMemory& memory,
                             const DescriptorChain& chain, std::string_view id,
                             const BlockLimits& limits, std::string* problem);

class Block final : public QueueDevice {
 public:
  static constexpr uint16_t kQueueSize = 256;

  Block(std::unique_ptr<disk::DiskFile> disk, BlockOptions options, std::string name, const Logger& logger);

  DeviceType type() const override { return DeviceType::kBlock; }
  uint32_t pci_class() const override { return 0x018000; }  // mass storage, other
  std::vector<uint16_t> queue_max_sizes() const override { return {kQueueSize}; }
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
  Turn on_kick(ActiveQueue& queue) override;

  std::unique_ptr<disk::DiskFile> disk_;
  std::string id_;
  uint32_t block_size_;
  BlockLimits limits_;
  mutable std::mutex config_mutex_;  // the capacity, read by vCPUs while a resize runs
  uint64_t capacity_sectors_;
};

}  // namespace crosvm::virtio
