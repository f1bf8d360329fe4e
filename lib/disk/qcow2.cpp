// qcow2: a guest's disk as clusters, found through a two-level table (L1
// points to L2 tables, L2 entries to data clusters) and counted by refcount
// blocks. See qcow2.h; the on-disk layout is QEMU's docs/interop/qcow2.txt.
//
// Crash consistency: metadata is cached and written back in an order that
// never lets a reference reach the disk before what it references, and never
// lets a count drop before the reference is gone:
//   1. data clusters and refcount blocks (counts only ever rise here),
//   2. refcount table entries for new refcount blocks,
//   3. L2 tables,
//   4. L1 entries for new L2 tables,
// each stage made durable before the next starts. Counts fall (discard, a
// compressed cluster rewritten) only after the L2 tables that dropped the
// cluster are durable. A VMM killed at any point leaves at worst leaked
// clusters (counted, unreferenced), which `qemu-img check` reports and
// `-r leaks` reclaims.
#include "disk/qcow2.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <map>
#include <mutex>
#include <set>
#include <vector>

#include "disk/decompress.h"
#include "disk/disk_io.h"

namespace crosvm::disk {
namespace {

constexpr uint64_t kOffsetMask = 0x00fffffffffffe00ull;  // bits 9-55
constexpr uint64_t kCopied = 1ull << 63;                 // refcount is exactly 1
constexpr uint64_t kCompressed = 1ull << 62;
constexpr uint64_t kZeroCluster = 1ull << 0;  // version 3: reads as zeros
constexpr uint64_t kL1Reserved = ~(kOffsetMask | kCopied);
constexpr uint64_t kL2Reserved = ~(kOffsetMask | kCopied | kCompressed | kZeroCluster);
constexpr uint64_t kRefTableReserved = 0x1ffull;

constexpr uint64_t kExternalDataFile = 1ull << 2;
constexpr uint64_t kCompressionType = 1ull << 3;
constexpr uint64_t kExtendedL2 = 1ull << 4;
constexpr uint64_t kKnownIncompatible = kQcow2Dirty | kQcow2Corrupt | kCompressionType;

// QEMU's own limits: an L1 table of 32 MiB, a refcount table of 8 MiB.
constexpr uint64_t kMaxL1Bytes = 32ull << 20;
constexpr uint64_t kMaxRefTableBytes = 8ull << 20;
constexpr uint64_t kMaxVirtualSize = 1ull << 62;
constexpr uint32_t kMaxBackingName = 1023;

constexpr uint32_t kExtensionEnd = 0;
constexpr uint32_t kExtensionExternalData = 0x44415441;

// Cached tables, bounded in bytes whatever the cluster size: 4 MiB of L2
// tables (32 GiB of a 64 KiB-cluster disk) and 1 MiB of refcount blocks.
std::atomic<int64_t> crash_after{-1};

constexpr uint64_t kL2CacheBytes = 4ull << 20;
constexpr uint64_t kRefBlockCacheBytes = 1ull << 20;

std::atomic<size_t> cache_tables_for_testing{0};
std::atomic<void (*)(bool)> transfer_hook_for_testing{nullptr};

size_t cache_tables(uint64_t bytes, uint64_t cluster_size, size_t most) {
  if (const size_t tables = cache_tables_for_testing.load(); tables != 0) return tables;
  return static_cast<size_t>(std::clamp<uint64_t>(bytes / cluster_size, 4, most));
}
// Clusters freed this session and ready for reuse; beyond this many they stay
// holes in the file (free, and counted as free).
constexpr size_t kMaxFreeList = 65536;
// Frees wait for the next flush; a guest that discards much without flushing
// makes us write back earlier rather than remember without bound.
constexpr size_t kMaxPendingFrees = 4096;
// Clusters past the end of the file an image may count as used (leaked by
// a writer that stopped) before allocation gives up on it.
constexpr uint64_t kMaxSteppedOver = 65536;

uint64_t load_be(const uint8_t* bytes, size_t width) {
  uint64_t value = 0;
  for (size_t i = 0; i < width; ++i) value = (value << 8) | bytes[i];
  return value;
}

void store_be(uint8_t* bytes, size_t width, uint64_t value) {
  for (size_t i = width; i-- > 0;) {
    bytes[i] = static_cast<uint8_t>(value);
    value >>= 8;
  }
}

uint64_t round_up(uint64_t value, uint64_t alignment) { return (value + alignment - 1) / alignment * alignment; }

Error corrupt(std::string_view path, const std::string& what) {
  return make_error(ErrorCode::kIo, "qcow2 image '{}': {}", path, what);
}

}  // namespace

Result<Qcow2Header> parse_qcow2_header(std::span<const uint8_t> bytes, uint64_t file_size, std::string_view path) {
  auto bad = [&](const std::string& what) -> Error { return corrupt(path, what); };
  if (bytes.size() < 72 || std::memcmp(bytes.data(), kQcow2Magic, 4) != 0) return bad("not a qcow2 header");
  Qcow2Header header;
  const uint8_t* raw = bytes.data();
  header.version = static_cast<uint32_t>(load_be(raw + 4, 4));
  if (header.version != 2 && header.version != 3) {
    return bad(fmt::format("version {} is not supported (2 and 3 are)", header.version));
  }
  const uint64_t backing_offset = load_be(raw + 8, 8);
  const uint32_t backing_size = static_cast<uint32_t>(load_be(raw + 16, 4));
  header.cluster_bits = static_cast<uint32_t>(load_be(raw + 20, 4));
  header.size = load_be(raw + 24, 8);
  const uint32_t crypt_method = static_cast<uint32_t>(load_be(raw + 32, 4));
  header.l1_size = static_cast<uint32_t>(load_be(raw + 36, 4));
  header.l1_table_offset = load_be(raw + 40, 8);
  header.refcount_table_offset = load_be(raw + 48, 8);
  header.refcount_table_clusters = static_cast<uint32_t>(load_be(raw + 56, 4));
  header.nb_snapshots = static_cast<uint32_t>(load_be(raw + 60, 4));
  header.snapshots_offset = load_be(raw + 64, 8);

  if (header.cluster_bits < 9 || header.cluster_bits > 21) {
    return bad(fmt::format("cluster_bits {} is outside 9 to 21", header.cluster_bits));
  }
  const uint64_t cluster_size = 1ull << header.cluster_bits;
  if (header.version == 3) {
    if (bytes.size() < 104) return bad("the version 3 header is cut short");
    header.incompatible_features = load_be(raw + 72, 8);
    header.compatible_features = load_be(raw + 80, 8);
    header.autoclear_features = load_be(raw + 88, 8);
    header.refcount_order = static_cast<uint32_t>(load_be(raw + 96, 4));
    header.header_length = static_cast<uint32_t>(load_be(raw + 100, 4));
    if (header.header_length < 104 || header.header_length % 8 != 0 || header.header_length > cluster_size ||
        header.header_length > bytes.size()) {
      return bad(fmt::format("its header claims {} bytes", header.header_length));
    }
    if ((header.incompatible_features & kCompressionType) != 0) {
      if (header.header_length < 112) return bad("a compression type flag without the field");
      const uint8_t type = raw[104];
      if (type > 1) return bad(fmt::format("compression type {} is unknown (0 is zlib, 1 zstd)", type));
      header.zstd = type == 1;
    } else if (header.header_length > 104 && raw[104] != 0) {
      return bad("a compression type without the incompatible flag that announces it");
    }
  }
  if (crypt_method != 0) return bad("encrypted images are not supported");
  if (header.refcount_order > 6) return bad(fmt::format("refcount_order {} is above 6", header.refcount_order));
  if ((header.incompatible_features & kExtendedL2) != 0) {
    return bad("extended L2 entries (subclusters) are not supported; convert it with "
               "`qemu-img convert -O qcow2 -o extended_l2=off`");
  }
  if ((header.incompatible_features & kExternalDataFile) != 0) {
    return bad("an external data file is not supported");
  }
  if (const uint64_t unknown = header.incompatible_features & ~(kKnownIncompatible | kExtendedL2 | kExternalDataFile);
      unknown != 0) {
    return bad(fmt::format("it needs incompatible features this VMM lacks (bits {:#x})", unknown));
  }

  // Sizes: the L1 table must cover the disk, and no product may overflow.
  if (header.size > kMaxVirtualSize) return bad(fmt::format("a disk of {} bytes is too large", header.size));
  const uint64_t bytes_per_l2 = cluster_size * (cluster_size / 8);
  const uint64_t needed_l1 = (header.size + bytes_per_l2 - 1) / bytes_per_l2;
  if (uint64_t{header.l1_size} < needed_l1) {
    return bad(fmt::format("its L1 table ({} entries) does not cover a disk of {} bytes", header.l1_size,
                           header.size));
  }
  if (uint64_t{header.l1_size} * 8 > kMaxL1Bytes) {
    return bad(fmt::format("an L1 table of {} entries is above the 32 MiB limit", header.l1_size));
  }
  auto check_table = [&](const char* what, uint64_t offset, uint64_t length) -> Result<void> {
    if (offset % cluster_size != 0 || offset == 0) {
      return bad(fmt::format("its {} at byte {} is not on a cluster past the header", what, offset));
    }
    if (offset > file_size || length > file_size - offset) {
      return bad(fmt::format("its {} ({} bytes at byte {}) lies past the end of the file ({} bytes)", what, length,
                             offset, file_size));
    }
    return {};
  };
  if (header.l1_size > 0) CROSVM_TRY(check_table("L1 table", header.l1_table_offset, uint64_t{header.l1_size} * 8));
  if (header.refcount_table_clusters == 0 ||
      uint64_t{header.refcount_table_clusters} * cluster_size > kMaxRefTableBytes) {
    return bad(fmt::format("a refcount table of {} clusters", header.refcount_table_clusters));
  }
  CROSVM_TRY(check_table("refcount table", header.refcount_table_offset,
                         uint64_t{header.refcount_table_clusters} * cluster_size));
  if (header.nb_snapshots > 0 && header.snapshots_offset % cluster_size != 0) {
    return bad("its snapshot table is not on a cluster boundary");
  }

  // Header extensions, then the backing file's name, all in the first cluster.
  const uint64_t first_cluster = std::min<uint64_t>(bytes.size(), cluster_size);
  uint64_t position = header.version == 3 ? header.header_length : 72;
  const uint64_t extensions_end = backing_offset != 0 ? std::min(backing_offset, first_cluster) : first_cluster;
  while (position + 8 <= extensions_end) {
    const uint32_t type = static_cast<uint32_t>(load_be(raw + position, 4));
    const uint32_t length = static_cast<uint32_t>(load_be(raw + position + 4, 4));
    if (type == kExtensionEnd) break;
    position += 8;
    if (round_up(length, 8) > extensions_end - position) return bad("a header extension runs past its cluster");
    if (type == kExtensionExternalData) return bad("an external data file is not supported");
    position += round_up(length, 8);
  }
  if (backing_offset != 0 || backing_size != 0) {
    if (backing_size == 0 || backing_size > kMaxBackingName || backing_offset > first_cluster ||
        backing_size > first_cluster - backing_offset || backing_offset < position) {
      return bad(fmt::format("its backing file name ({} bytes at byte {}) is not inside the header cluster",
                             backing_size, backing_offset));
    }
    header.backing_file.assign(reinterpret_cast<const char*>(raw + backing_offset), backing_size);
    if (header.backing_file.find('\0') != std::string::npos) return bad("its backing file name holds a NUL");
  }
  return header;
}

namespace {

// A cached metadata cluster (an L2 table or a refcount block).
struct Table {
  std::vector<uint8_t> bytes;
  bool dirty = false;
  uint64_t used = 0;
};

struct TableCache {
  explicit TableCache(size_t limit) : capacity(limit) {}
  std::map<uint64_t, Table> tables;  // by host offset
  size_t capacity;
  uint64_t clock = 0;
};


enum class Kind { kUnallocated, kZero, kData, kCompressed };

struct Mapping {
  Kind kind = Kind::kUnallocated;
  uint64_t host = 0;  // kData (and a preallocated kZero): the cluster
  bool copied = false;
  uint64_t entry = 0;  // the raw L2 entry
};

class Qcow2Disk final : public DiskFile {
 public:
  Qcow2Disk(UniqueFd fd, std::string path, Qcow2Header header, bool read_only, std::unique_ptr<DiskFile> backing,
            uint64_t file_size, UniqueFd direct)
      : fd_(std::move(fd)), direct_(std::move(direct)), path_(std::move(path)), header_(std::move(header)), read_only_(read_only),
        backing_(std::move(backing)), cluster_size_(1ull << header_.cluster_bits),
        l2_bits_(header_.cluster_bits - 3), file_size_(file_size),
        file_end_(round_up(file_size, cluster_size_)),
        refcount_bits_(1u << header_.refcount_order),
        refcounts_per_block_((cluster_size_ * 8) >> header_.refcount_order) {}

  ~Qcow2Disk() override {
    if (!read_only_) {
      std::lock_guard lock(mutex_);
      (void)flush_locked();
    }
  }

  Result<void> load() {
    const uint64_t cluster_size = cluster_size_;
    // The L1 and refcount tables, each entry checked, and the set of
    // clusters that hold metadata: no two may overlap and no data cluster may
    // land on one.
    std::vector<uint8_t> raw(uint64_t{header_.l1_size} * 8);
    if (!raw.empty()) CROSVM_TRY(read_bytes(header_.l1_table_offset, raw.data(), raw.size()));
    l1_.resize(header_.l1_size);
    std::vector<uint64_t> metadata{0};
    auto add_range = [&](uint64_t offset, uint64_t length) {
      for (uint64_t at = offset; at < offset + length; at += cluster_size) metadata.push_back(at);
    };
    add_range(header_.l1_table_offset, uint64_t{header_.l1_size} * 8);
    add_range(header_.refcount_table_offset, uint64_t{header_.refcount_table_clusters} * cluster_size);
    for (uint32_t i = 0; i < header_.l1_size; ++i) {
      l1_[i] = load_be(&raw[uint64_t{i} * 8], 8);
      if (l1_[i] == 0) continue;
      const uint64_t l2 = l1_[i] & kOffsetMask;
      if ((l1_[i] & kL1Reserved) != 0 || l2 % cluster_size != 0 || l2 == 0 || l2 >= file_size_ ||
          cluster_size > file_size_ - l2) {
        return corrupt(path_, fmt::format("L1 entry {} ({:#x}) points outside the image", i, l1_[i]));
      }
      metadata.push_back(l2);
    }
    raw.assign(uint64_t{header_.refcount_table_clusters} * cluster_size, 0);
    CROSVM_TRY(read_bytes(header_.refcount_table_offset, raw.data(), raw.size()));
    reftable_.resize(raw.size() / 8);
    for (size_t i = 0; i < reftable_.size(); ++i) {
      reftable_[i] = load_be(&raw[i * 8], 8);
      if (reftable_[i] == 0) continue;
      if ((reftable_[i] & kRefTableReserved) != 0 || reftable_[i] % cluster_size != 0 ||
          reftable_[i] >= file_size_ || cluster_size > file_size_ - reftable_[i]) {
        return corrupt(path_, fmt::format("refcount table entry {} ({:#x}) points outside the image", i,
                                          reftable_[i]));
      }
      metadata.push_back(reftable_[i]);
    }
    std::sort(metadata.begin(), metadata.end());
    if (auto twice = std::adjacent_find(metadata.begin(), metadata.end()); twice != metadata.end()) {
      return corrupt(path_, fmt::format("two of its tables share the cluster at byte {}", *twice));
    }
    metadata_ = std::move(metadata);

    if (!read_only_ && header_.autoclear_features != 0) {
      // Bitmaps and the like that this VMM does not keep up to date: their
      // autoclear bits tell the next reader they are stale.
      uint8_t zero[8] = {};
      CROSVM_TRY(write_bytes(88, zero, sizeof zero));
      CROSVM_TRY(sync());
      header_.autoclear_features = 0;
    }
    return {};
  }

  uint64_t size() const override { return header_.size; }
  bool read_only() const override { return read_only_; }
  std::string_view format() const override { return "qcow2"; }

  Result<void> read_at(uint64_t offset, std::span<const iovec> buffers) override {
    std::unique_lock lock(mutex_);
    IovecCursor cursor(buffers);
    uint64_t left = total_bytes(buffers);
    while (left > 0) {
      const uint64_t within = offset & (cluster_size_ - 1);
      uint64_t length = std::min(left, cluster_size_ - within);
      const Mapping mapping = CROSVM_TRY(lookup(offset));
      switch (mapping.kind) {
        case Kind::kUnallocated:
          CROSVM_TRY(read_backing(offset, cursor, length));
          break;
        case Kind::kZero:
          cursor.fill_zeros(length);
          break;
        case Kind::kCompressed: {
          const uint8_t* cluster = CROSVM_TRY(decompress(mapping.entry));
          cursor.copy_from(cluster + within, length);
          break;
        }
        case Kind::kData: {
          length = CROSVM_TRY(run_length(offset, length, left, mapping, false));
          const std::vector<iovec> pieces = cursor.take(length);
          CROSVM_TRY(transfer_unlocked(lock, mapping.host + within, pieces, false));
          break;
        }
      }
      offset += length;
      left -= length;
    }
    return {};
  }

  Result<void> write_at(uint64_t offset, std::span<const iovec> buffers) override {
    std::unique_lock lock(mutex_);
    CROSVM_TRY(writable());
    IovecCursor cursor(buffers);
    uint64_t left = total_bytes(buffers);
    while (left > 0) {
      const uint64_t within = offset & (cluster_size_ - 1);
      uint64_t length = std::min(left, cluster_size_ - within);
      const Mapping mapping = CROSVM_TRY(lookup(offset));
      if (mapping.kind == Kind::kData && mapping.copied) {
        // Ours alone: written in place, with the clusters that follow on.
        length = CROSVM_TRY(run_length(offset, length, left, mapping, true));
        const std::vector<iovec> pieces = cursor.take(length);
        CROSVM_TRY(transfer_unlocked(lock, mapping.host + within, pieces, true));
      } else {
        CROSVM_TRY(write_new_cluster(offset, within, length, mapping, cursor));
      }
      offset += length;
      left -= length;
    }
    return {};
  }

  Result<void> flush() override {
    std::lock_guard lock(mutex_);
    if (read_only_) return {};
    return flush_locked();
  }

  Result<void> discard(uint64_t offset, uint64_t length) override {
    std::lock_guard lock(mutex_);
    CROSVM_TRY(writable());
    // Advice: only whole clusters are dropped. With a backing file the
    // cluster becomes a zero cluster, so the backing file's data does not
    // show through.
    const uint64_t first = round_up(offset, cluster_size_);
    const uint64_t end = (offset + length) & ~(cluster_size_ - 1);
    for (uint64_t at = first; at < end; at += cluster_size_) {
      CROSVM_TRY(drop_cluster(at, backing_ ? kZeroCluster : 0));
    }
    return {};
  }

  Result<void> write_zeroes(uint64_t offset, uint64_t length, bool unmap) override {
    std::lock_guard lock(mutex_);
    CROSVM_TRY(writable());
    const uint64_t end = offset + length;
    while (offset < end) {
      const uint64_t within = offset & (cluster_size_ - 1);
      const uint64_t piece = std::min(end - offset, cluster_size_ - within);
      if (piece < cluster_size_) {
        std::vector<uint8_t> zeros(piece, 0);
        const iovec buffer{zeros.data(), zeros.size()};
        IovecCursor cursor(std::span(&buffer, 1));
        const Mapping mapping = CROSVM_TRY(lookup(offset));
        if (mapping.kind == Kind::kData && mapping.copied) {
          CROSVM_TRY(write_buffers(mapping.host + within, std::span(&buffer, 1)));
        } else if (mapping.kind != Kind::kZero && (mapping.kind != Kind::kUnallocated || backing_)) {
          CROSVM_TRY(write_new_cluster(offset, within, piece, mapping, cursor));
        }
      } else if (unmap) {
        CROSVM_TRY(drop_cluster(offset, kZeroCluster));
      } else {
        // Without unmap the space stays allocated: a preallocated zero cluster.
        const Mapping mapping = CROSVM_TRY(lookup(offset));
        if (mapping.kind == Kind::kZero) {
          // Already zeros.
        } else if (mapping.kind == Kind::kData && mapping.copied) {
          CROSVM_TRY(set_l2_entry(offset, mapping.host | kCopied | kZeroCluster));
        } else {
          CROSVM_TRY(drop_cluster(offset, kZeroCluster));
        }
      }
      offset += piece;
    }
    return {};
  }

  Result<void> resize(uint64_t new_size) override {
    std::lock_guard lock(mutex_);
    CROSVM_TRY(writable());
    if (new_size < header_.size) {
      return make_error(ErrorCode::kInvalidArgument, "qcow2 image '{}': shrinking it is not supported", path_);
    }
    if (new_size > kMaxVirtualSize) {
      return make_error(ErrorCode::kInvalidArgument, "qcow2 image '{}': {} bytes is too large", path_, new_size);
    }
    const uint64_t bytes_per_l2 = cluster_size_ << l2_bits_;
    const uint64_t needed_l1 = (new_size + bytes_per_l2 - 1) / bytes_per_l2;
    if (needed_l1 * 8 > kMaxL1Bytes) {
      return make_error(ErrorCode::kInvalidArgument, "qcow2 image '{}': {} bytes needs an L1 table above 32 MiB",
                        path_, new_size);
    }
    uint8_t fields[24];  // size, crypt_method, l1_size, l1_table_offset: bytes 24-47
    store_be(fields, 8, new_size);
    store_be(fields + 8, 4, 0);
    store_be(fields + 12, 4, header_.l1_size);
    store_be(fields + 16, 8, header_.l1_table_offset);
    std::vector<uint64_t> old_l1_clusters;
    if (needed_l1 > l1_.size()) {
      // A larger L1 table in new clusters; the header switches to it in one
      // write once the table and its counts are durable.
      CROSVM_TRY(write_metadata());
      const uint64_t l1_bytes = needed_l1 * 8;
      const uint64_t clusters = round_up(l1_bytes, cluster_size_) / cluster_size_;
      const uint64_t table = CROSVM_TRY(take_end_clusters(clusters));
      for (uint64_t i = 0; i < clusters; ++i) {
        CROSVM_TRY(add_refcount(table + i * cluster_size_, +1));
        add_metadata(table + i * cluster_size_);
      }
      std::vector<uint8_t> raw(clusters * cluster_size_, 0);
      for (size_t i = 0; i < l1_.size(); ++i) store_be(&raw[i * 8], 8, l1_[i]);
      CROSVM_TRY(write_bytes(table, raw.data(), raw.size()));
      CROSVM_TRY(write_metadata());
      CROSVM_TRY(sync());
      for (uint64_t at = header_.l1_table_offset; at < header_.l1_table_offset + uint64_t{header_.l1_size} * 8;
           at += cluster_size_) {
        old_l1_clusters.push_back(at);
      }
      store_be(fields + 12, 4, needed_l1);
      store_be(fields + 16, 8, table);
      l1_.resize(needed_l1, 0);
      header_.l1_size = static_cast<uint32_t>(needed_l1);
      header_.l1_table_offset = table;
    }
    CROSVM_TRY(write_bytes(24, fields, sizeof fields));
    CROSVM_TRY(sync());
    header_.size = new_size;
    if (!old_l1_clusters.empty()) {
      // Nothing refers to the old table once the header is durable.
      for (uint64_t cluster : old_l1_clusters) {
        remove_metadata(cluster);
        CROSVM_TRY(add_refcount(cluster, -1));
      }
      CROSVM_TRY(write_metadata());
      CROSVM_TRY(sync());
    }
    return {};
  }

 private:
  static uint64_t total_bytes(std::span<const iovec> buffers) {
    uint64_t total = 0;
    for (const iovec& buffer : buffers) total += buffer.iov_len;
    return total;
  }

  // `length` bytes at `offset` lie in the data cluster `first`; extends
  // them, up to `left`, over the clusters that follow it in the file too
  // (and, for a write, are the image's alone), so that they move in one
  // transfer.
  Result<uint64_t> run_length(uint64_t offset, uint64_t length, uint64_t left, const Mapping& first, bool own) {
    const uint64_t start = first.host + (offset & (cluster_size_ - 1));
    while (length < left) {
      const Mapping next = CROSVM_TRY(lookup(offset + length));
      if (next.kind != Kind::kData || (own && !next.copied) || next.host != start + length) break;
      length += std::min(left - length, cluster_size_);
    }
    return length;
  }

  // Guest data to or from clusters already allocated moves without the
  // lock, so that requests to different clusters overlap (a lock held
  // across the transfer served one request at a time). The clusters stay
  // pinned meanwhile: a discard may free one mid-transfer, but none is
  // handed out again (allocate_cluster) before the transfer is over, so a
  // late write can never land in another block's new cluster. `lock` is
  // held again on return.
  Result<void> transfer_unlocked(std::unique_lock<std::mutex>& lock, uint64_t at, std::span<const iovec> pieces,
                                 bool write) {
    // One entry per transfer, however many clusters it spans (a request
    // may cover gigabytes of 512-byte clusters).
    const std::pair<uint64_t, uint64_t> range{at & ~(cluster_size_ - 1), at + total_bytes(pieces)};
    pinned_.push_back(range);
    lock.unlock();
    if (auto hook = transfer_hook_for_testing.load()) hook(write);
    Result<void> result = write ? crash_point() : Result<void>{};
    if (result) {
      result = transfer_at(data_fd(fd_.get(), direct_, at, pieces), at, pieces, write, path_,
                           write ? PastEnd::kError : PastEnd::kZeros);
    }
    lock.lock();
    pinned_.erase(std::find(pinned_.begin(), pinned_.end(), range));
    // Only now: a flush that ran during the transfer did not cover it.
    if (write) unsynced_ = true;
    return result;
  }

  bool pinned(uint64_t cluster) const {
    return std::any_of(pinned_.begin(), pinned_.end(),
                       [&](const auto& range) { return cluster >= range.first && cluster < range.second; });
  }

  Result<void> writable() const {
    if (read_only_) return make_error(ErrorCode::kInvalidArgument, "'{}' is read-only", path_);
    return {};
  }

  Result<void> read_bytes(uint64_t offset, uint8_t* data, uint64_t length) {
    const iovec buffer{data, static_cast<size_t>(length)};
    return transfer_at(fd_.get(), offset, std::span(&buffer, 1), false, path_);
  }

  // Every write and flush of the file passes here (and the crash point of
  // the tests, set_qcow2_crash_after_for_testing).
  Result<void> write_buffers(uint64_t offset, std::span<const iovec> buffers) {
    CROSVM_TRY(crash_point());
    CROSVM_TRY(transfer_at(data_fd(fd_.get(), direct_, offset, buffers), offset, buffers, true, path_));
    unsynced_ = true;
    return {};
  }

  Result<void> write_bytes(uint64_t offset, const uint8_t* data, uint64_t length) {
    const iovec buffer{const_cast<uint8_t*>(data), static_cast<size_t>(length)};
    return write_buffers(offset, std::span(&buffer, 1));
  }

  Result<void> crash_point() const {
    if (crash_after.load() < 0) return {};
    if (crash_after.fetch_sub(1) > 0) return {};
    crash_after.store(0);
    return make_error(ErrorCode::kIo, "qcow2 image '{}': the test's crash point", path_);
  }

  Result<void> sync() {
    CROSVM_TRY(crash_point());
    if (::fdatasync(fd_.get()) != 0) return make_errno_error(ErrorCode::kIo, errno, "flushing '{}'", path_);
    unsynced_ = false;
    return {};
  }

  bool is_metadata(uint64_t cluster) const { return std::binary_search(metadata_.begin(), metadata_.end(), cluster); }
  void add_metadata(uint64_t cluster) {
    metadata_.insert(std::upper_bound(metadata_.begin(), metadata_.end(), cluster), cluster);
  }
  void remove_metadata(uint64_t cluster) {
    auto found = std::lower_bound(metadata_.begin(), metadata_.end(), cluster);
    if (found != metadata_.end() && *found == cluster) metadata_.erase(found);
  }

  // A cached table, read from the file unless `fresh` (a new, zeroed one).
  // The pointer holds until the next call on the same cache.
  Result<Table*> table(TableCache& cache, uint64_t offset, bool fresh = false) {
    if (auto found = cache.tables.find(offset); found != cache.tables.end()) {
      found->second.used = ++cache.clock;
      return &found->second;
    }
    if (cache.tables.size() >= cache.capacity) {
      auto oldest_clean = [&] {
        auto oldest = cache.tables.end();
        for (auto it = cache.tables.begin(); it != cache.tables.end(); ++it) {
          if (!it->second.dirty && (oldest == cache.tables.end() || it->second.used < oldest->second.used)) {
            oldest = it;
          }
        }
        return oldest;
      };
      auto victim = oldest_clean();
      if (victim == cache.tables.end()) {
        CROSVM_TRY(write_metadata());
        victim = oldest_clean();
      }
      if (victim != cache.tables.end()) cache.tables.erase(victim);
    }
    Table loaded;
    loaded.bytes.assign(cluster_size_, 0);
    if (fresh) {
      loaded.dirty = true;
    } else {
      CROSVM_TRY(read_bytes(offset, loaded.bytes.data(), cluster_size_));
    }
    loaded.used = ++cache.clock;
    return &cache.tables.insert_or_assign(offset, std::move(loaded)).first->second;
  }

  // Where a guest offset lives, every field checked.
  Result<Mapping> lookup(uint64_t guest) {
    const uint64_t l1_index = guest >> (header_.cluster_bits + l2_bits_);
    const uint64_t l2_index = (guest >> header_.cluster_bits) & ((1ull << l2_bits_) - 1);
    if (l1_index >= l1_.size()) return corrupt(path_, fmt::format("byte {} is past its L1 table", guest));
    const uint64_t l2 = l1_[l1_index] & kOffsetMask;
    if (l2 == 0) return Mapping{};
    Table* l2_table = CROSVM_TRY(table(l2_cache_, l2));
    Mapping mapping;
    mapping.entry = load_be(&l2_table->bytes[l2_index * 8], 8);
    mapping.copied = (mapping.entry & kCopied) != 0;
    if ((mapping.entry & kCompressed) != 0) {
      mapping.kind = Kind::kCompressed;
      return mapping;
    }
    if ((mapping.entry & kL2Reserved) != 0 || (header_.version == 2 && (mapping.entry & kZeroCluster) != 0)) {
      return corrupt(path_, fmt::format("the L2 entry for byte {} ({:#x}) has reserved bits set", guest,
                                        mapping.entry));
    }
    mapping.host = mapping.entry & kOffsetMask;
    if (mapping.host != 0) {
      if (mapping.host % cluster_size_ != 0 || mapping.host >= file_end_ || is_metadata(mapping.host)) {
        return corrupt(path_, fmt::format("the cluster for byte {} ({:#x}) is {}", guest, mapping.host,
                                          mapping.host % cluster_size_ != 0 ? "not aligned"
                                          : mapping.host >= file_end_     ? "past the end of the file"
                                                                          : "one of its tables"));
      }
    }
    if ((mapping.entry & kZeroCluster) != 0) {
      mapping.kind = Kind::kZero;
    } else if (mapping.host != 0) {
      mapping.kind = Kind::kData;
    }
    return mapping;
  }

  Result<void> read_backing(uint64_t offset, IovecCursor& cursor, uint64_t length) {
    uint64_t from_backing = 0;
    if (backing_ && offset < backing_->size()) from_backing = std::min(length, backing_->size() - offset);
    if (from_backing > 0) {
      const std::vector<iovec> pieces = cursor.take(from_backing);
      CROSVM_TRY(backing_->read_at(offset, pieces));
    }
    cursor.fill_zeros(length - from_backing);
    return {};
  }

  // The host clusters a compressed cluster's bytes touch, as QEMU counts them.
  void compressed_range(uint64_t entry, uint64_t& offset, uint64_t& length) const {
    const uint32_t shift = 62 - (header_.cluster_bits - 8);
    offset = entry & ((1ull << shift) - 1);
    const uint64_t sectors = ((entry & ~(kCopied | kCompressed)) >> shift) + 1;
    length = sectors * 512;
  }

  Result<const uint8_t*> decompress(uint64_t entry) {
    if (inflated_entry_ == entry && !inflated_.empty()) return inflated_.data();
    uint64_t offset = 0;
    uint64_t span = 0;
    compressed_range(entry, offset, span);
    const uint64_t end = (offset & ~511ull) + span;
    if (offset < cluster_size_ || offset >= file_size_now()) {
      return corrupt(path_, fmt::format("a compressed cluster at byte {} is outside the image", offset));
    }
    std::vector<uint8_t> input(std::min(end, file_size_now()) - offset);
    CROSVM_TRY(read_bytes(offset, input.data(), input.size()));
    inflated_.assign(cluster_size_, 0);
    inflated_entry_ = 0;
    const bool whole = CROSVM_TRY(decompress_cluster(header_.zstd ? Compression::kZstd : Compression::kDeflate,
                                                     input, inflated_));
    if (!whole) {
      inflated_.clear();
      return corrupt(path_, fmt::format("the compressed cluster at byte {} does not decompress to a cluster", offset));
    }
    inflated_entry_ = entry;
    return inflated_.data();
  }

  uint64_t file_size_now() const { return std::max(file_size_, file_end_); }

  // The current contents of the cluster at `guest` (aligned), into `out`.
  Result<void> read_cluster(uint64_t guest, const Mapping& mapping, uint8_t* out) {
    const iovec buffer{out, static_cast<size_t>(cluster_size_)};
    IovecCursor cursor(std::span(&buffer, 1));
    switch (mapping.kind) {
      case Kind::kUnallocated:
        return read_backing(guest, cursor, cluster_size_);
      case Kind::kZero:
        std::memset(out, 0, cluster_size_);
        return {};
      case Kind::kCompressed:
        std::memcpy(out, CROSVM_TRY(decompress(mapping.entry)), cluster_size_);
        return {};
      case Kind::kData:
        return transfer_at(fd_.get(), mapping.host, std::span(&buffer, 1), false, path_, PastEnd::kZeros);
    }
    return {};
  }

  // A write to a cluster that is not ours alone (unallocated, zero,
  // compressed, or shared): the merged cluster goes to a new one.
  Result<void> write_new_cluster(uint64_t guest, uint64_t within, uint64_t length, const Mapping& mapping,
                                 IovecCursor& cursor) {
    const uint64_t base = guest - within;
    CROSVM_TRY(ensure_l2(base));
    const bool preallocated = mapping.kind == Kind::kZero && mapping.host != 0 && mapping.copied;
    const uint64_t host = preallocated ? mapping.host : CROSVM_TRY(allocate_cluster());
    if (length == cluster_size_) {
      const std::vector<iovec> pieces = cursor.take(length);
      CROSVM_TRY(write_buffers(host, pieces));
    } else {
      std::vector<uint8_t> merged(cluster_size_);
      CROSVM_TRY(read_cluster(base, mapping, merged.data()));
      cursor.copy_to(merged.data() + within, length);
      CROSVM_TRY(write_bytes(host, merged.data(), merged.size()));
    }
    CROSVM_TRY(set_l2_entry(base, host | kCopied));
    if (!preallocated) CROSVM_TRY(release(mapping));
    return {};
  }

  // Replaces a whole cluster's entry with `entry` (0: unallocated, or a zero
  // cluster) and frees what it held.
  Result<void> drop_cluster(uint64_t guest, uint64_t entry) {
    const Mapping mapping = CROSVM_TRY(lookup(guest));
    if (mapping.kind == Kind::kUnallocated && entry == 0) return {};
    if (mapping.kind == Kind::kZero && mapping.host == 0 && entry == kZeroCluster) return {};
    CROSVM_TRY(ensure_l2(guest));
    CROSVM_TRY(set_l2_entry(guest, entry));
    return release(mapping);
  }

  // The clusters an old entry held, freed once the new entry is durable.
  Result<void> release(const Mapping& mapping) {
    if (mapping.kind == Kind::kCompressed) {
      uint64_t offset = 0;
      uint64_t length = 0;
      compressed_range(mapping.entry, offset, length);
      const uint64_t start = (offset & ~511ull) & ~(cluster_size_ - 1);
      for (uint64_t at = start; at < (offset & ~511ull) + length; at += cluster_size_) {
        // A hostile entry may name the header or a table: those are never
        // the compressed cluster's to free.
        if (at != 0 && at < file_end_ && !is_metadata(at)) pending_frees_.push_back(at);
      }
    } else if (mapping.host != 0) {
      pending_frees_.push_back(mapping.host);
    }
    if (pending_frees_.size() > kMaxPendingFrees) CROSVM_TRY(flush_locked());
    return {};
  }

  Result<void> ensure_l2(uint64_t guest) {
    const uint64_t l1_index = guest >> (header_.cluster_bits + l2_bits_);
    if (l1_index >= l1_.size()) return corrupt(path_, fmt::format("byte {} is past its L1 table", guest));
    if (l1_[l1_index] != 0) {
      if ((l1_[l1_index] & kCopied) == 0) {
        return corrupt(path_, fmt::format("the L2 table for byte {} is shared (an internal snapshot?)", guest));
      }
      return {};
    }
    const uint64_t l2 = CROSVM_TRY(allocate_cluster());
    add_metadata(l2);
    (void)CROSVM_TRY(table(l2_cache_, l2, true));
    l1_[l1_index] = l2 | kCopied;
    dirty_l1_.insert(l1_index);
    return {};
  }

  Result<void> set_l2_entry(uint64_t guest, uint64_t entry) {
    const uint64_t l1_index = guest >> (header_.cluster_bits + l2_bits_);
    const uint64_t l2_index = (guest >> header_.cluster_bits) & ((1ull << l2_bits_) - 1);
    Table* l2_table = CROSVM_TRY(table(l2_cache_, l1_[l1_index] & kOffsetMask));
    store_be(&l2_table->bytes[l2_index * 8], 8, entry);
    l2_table->dirty = true;
    inflated_entry_ = 0;
    return {};
  }

  // A cluster for new data or metadata: one this session freed, else the
  // end of the file. Counted before anything can point to it.
  Result<uint64_t> allocate_cluster() {
    uint64_t host = 0;
    std::vector<uint64_t> busy;  // freed, but a transfer is still on them: later
    while (!free_list_.empty() && host == 0) {
      host = free_list_.back();
      free_list_.pop_back();
      if (is_metadata(host)) host = 0;  // never: a table's cluster is not freed
      if (host != 0 && pinned(host)) {
        busy.push_back(host);
        host = 0;
      }
    }
    free_list_.insert(free_list_.end(), busy.begin(), busy.end());
    if (host == 0) {
      host = CROSVM_TRY(take_end_clusters(1));
    }
    CROSVM_TRY(add_refcount(host, +1));
    return host;
  }

  // `count` clusters in a row at the end of the file. A cluster there that
  // the image already counts (a leak past the end: an allocation whose data
  // never reached the file) is stepped over, never counted twice.
  Result<uint64_t> take_end_clusters(uint64_t count) {
    uint64_t stepped_over = 0;
    for (;;) {
      const uint64_t start = file_end_;
      bool free = true;
      for (uint64_t i = 0; i < count && free; ++i) {
        const uint64_t host = start + i * cluster_size_;
        if (CROSVM_TRY(refcount_of(host)) != 0) {
          free = false;
          file_end_ = host + cluster_size_;
          if (++stepped_over > kMaxSteppedOver) {
            return corrupt(path_, "more than 65536 clusters past the end of the file are counted as used");
          }
        }
      }
      if (free) {
        file_end_ = start + count * cluster_size_;
        return start;
      }
    }
  }

  Result<uint64_t> refcount_of(uint64_t host) {
    const uint64_t cluster = host / cluster_size_;
    const uint64_t slot = cluster / refcounts_per_block_;
    if (slot >= reftable_.size() || reftable_[slot] == 0) return uint64_t{0};
    Table* block = CROSVM_TRY(table(refblock_cache_, reftable_[slot]));
    return get_refcount(*block, cluster % refcounts_per_block_);
  }

  uint64_t get_refcount(const Table& block, uint64_t index) const {
    if (refcount_bits_ >= 8) return load_be(&block.bytes[index * (refcount_bits_ / 8)], refcount_bits_ / 8);
    const uint64_t bit = index * refcount_bits_;
    return (block.bytes[bit / 8] >> (bit % 8)) & ((1u << refcount_bits_) - 1);
  }

  void set_refcount(Table& block, uint64_t index, uint64_t value) const {
    if (refcount_bits_ >= 8) {
      store_be(&block.bytes[index * (refcount_bits_ / 8)], refcount_bits_ / 8, value);
    } else {
      const uint64_t bit = index * refcount_bits_;
      const uint8_t mask = static_cast<uint8_t>(((1u << refcount_bits_) - 1) << (bit % 8));
      block.bytes[bit / 8] = static_cast<uint8_t>((block.bytes[bit / 8] & ~mask) | ((value << (bit % 8)) & mask));
    }
    block.dirty = true;
  }

  // Makes sure a refcount block covers refcount table slot `slot`: a new one
  // goes at the end of the file and counts itself (or is counted by another
  // new block, which this makes in turn).
  Result<void> ensure_refcount_block(uint64_t slot) {
    if (slot >= reftable_.size()) CROSVM_TRY(grow_refcount_table(slot));
    if (reftable_[slot] != 0) return {};
    const uint64_t block = CROSVM_TRY(take_end_clusters(1));
    add_metadata(block);
    (void)CROSVM_TRY(table(refblock_cache_, block, true));
    reftable_[slot] = block;
    dirty_reftable_.insert(slot);
    return add_refcount(block, +1);
  }

  // A refcount table with room for `slot` (and as many again), in new
  // clusters at the end of the file together with the refcount blocks that
  // count them; the header switches to it in one write once it and its
  // blocks are durable, and the old table's clusters are freed after.
  Result<void> grow_refcount_table(uint64_t slot) {
    const uint64_t per_cluster = cluster_size_ / 8;
    const uint64_t clusters = round_up(std::max<uint64_t>((slot + 1) * 2, reftable_.size() * 2), per_cluster) /
                              per_cluster;
    if (clusters * cluster_size_ > kMaxRefTableBytes) {
      return corrupt(path_, "its refcount table would grow past 8 MiB");
    }
    CROSVM_TRY(write_metadata());
    std::vector<uint64_t> grown = reftable_;
    grown.resize(clusters * per_cluster, 0);
    const uint64_t start = CROSVM_TRY(take_end_clusters(clusters));
    // The new table's clusters need counting in blocks the table lists; a
    // new block goes at the end too, and needs counting in turn.
    std::vector<uint64_t> ours;
    for (uint64_t i = 0; i < clusters; ++i) ours.push_back(start + i * cluster_size_);
    std::vector<uint64_t> new_blocks;
    for (size_t i = 0; i < ours.size(); ++i) {
      const uint64_t covering = (ours[i] / cluster_size_) / refcounts_per_block_;
      if (covering >= grown.size()) return corrupt(path_, "its refcount table cannot cover its own growth");
      if (grown[covering] == 0) {
        grown[covering] = CROSVM_TRY(take_end_clusters(1));
        new_blocks.push_back(grown[covering]);
        ours.push_back(grown[covering]);
        (void)CROSVM_TRY(table(refblock_cache_, grown[covering], true));
      }
    }
    for (uint64_t host : ours) {
      const uint64_t cluster = host / cluster_size_;
      Table* block = CROSVM_TRY(table(refblock_cache_, grown[cluster / refcounts_per_block_]));
      if (get_refcount(*block, cluster % refcounts_per_block_) != 0) {
        return corrupt(path_, fmt::format("the cluster at byte {} past its end is already counted", host));
      }
      set_refcount(*block, cluster % refcounts_per_block_, 1);
    }
    CROSVM_TRY(write_dirty(refblock_cache_));
    std::vector<uint8_t> raw(clusters * cluster_size_, 0);
    for (size_t i = 0; i < grown.size(); ++i) store_be(&raw[i * 8], 8, grown[i]);
    CROSVM_TRY(write_bytes(start, raw.data(), raw.size()));
    CROSVM_TRY(sync());
    uint8_t fields[12];  // refcount_table_offset, refcount_table_clusters: bytes 48-59
    store_be(fields, 8, start);
    store_be(fields + 8, 4, clusters);
    CROSVM_TRY(write_bytes(48, fields, sizeof fields));
    CROSVM_TRY(sync());

    const uint64_t old_start = header_.refcount_table_offset;
    const uint64_t old_clusters = header_.refcount_table_clusters;
    header_.refcount_table_offset = start;
    header_.refcount_table_clusters = static_cast<uint32_t>(clusters);
    reftable_ = std::move(grown);
    for (uint64_t i = 0; i < clusters; ++i) add_metadata(start + i * cluster_size_);
    for (uint64_t block : new_blocks) add_metadata(block);
    for (uint64_t i = 0; i < old_clusters; ++i) {
      remove_metadata(old_start + i * cluster_size_);
      CROSVM_TRY(add_refcount(old_start + i * cluster_size_, -1));
    }
    return {};
  }

  Result<void> add_refcount(uint64_t host, int delta) {
    const uint64_t cluster = host / cluster_size_;
    const uint64_t slot = cluster / refcounts_per_block_;
    CROSVM_TRY(ensure_refcount_block(slot));
    Table* block = CROSVM_TRY(table(refblock_cache_, reftable_[slot]));
    const uint64_t index = cluster % refcounts_per_block_;
    const uint64_t count = get_refcount(*block, index);
    const uint64_t limit = refcount_bits_ == 64 ? UINT64_MAX : (1ull << refcount_bits_) - 1;
    if (delta > 0 && count == limit) {
      return corrupt(path_, fmt::format("the refcount of the cluster at byte {} would overflow", host));
    }
    if (delta < 0 && (host == 0 || is_metadata(host))) {
      return corrupt(path_, fmt::format("the cluster at byte {} holds a table and cannot be freed", host));
    }
    if (delta < 0 && count == 0) {
      return corrupt(path_, fmt::format("the cluster at byte {} is freed but its refcount is already 0", host));
    }
    set_refcount(*block, index, delta > 0 ? count + 1 : count - 1);
    if (delta < 0 && count == 1) {
      // Free now: its space goes back to the host, the cluster to our list.
      if (crash_point()) {
        (void)::fallocate(fd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(host),
                          static_cast<off_t>(cluster_size_));
      }
      if (free_list_.size() < kMaxFreeList) free_list_.push_back(host);
    }
    return {};
  }

  // Writes every dirty table back, stage by stage (see the top of the file).
  Result<void> write_dirty(TableCache& cache) {
    for (auto& [offset, entry] : cache.tables) {
      if (!entry.dirty) continue;
      CROSVM_TRY(write_bytes(offset, entry.bytes.data(), entry.bytes.size()));
      entry.dirty = false;
    }
    return {};
  }

  Result<void> write_metadata() {
    auto any_dirty = [](const TableCache& cache) {
      return std::any_of(cache.tables.begin(), cache.tables.end(), [](const auto& item) { return item.second.dirty; });
    };
    CROSVM_TRY(write_dirty(refblock_cache_));
    CROSVM_TRY(write_entries(dirty_reftable_, reftable_, header_.refcount_table_offset));
    if (any_dirty(l2_cache_)) {
      if (unsynced_) CROSVM_TRY(sync());
      CROSVM_TRY(write_dirty(l2_cache_));
    }
    CROSVM_TRY(write_entries(dirty_l1_, l1_, header_.l1_table_offset));
    return {};
  }

  // One stage of write_metadata: the dirty entries of an in-memory table
  // (the refcount table or L1), after what came before is durable.
  Result<void> write_entries(std::set<uint64_t>& dirty, const std::vector<uint64_t>& entries, uint64_t table) {
    if (dirty.empty()) return {};
    if (unsynced_) CROSVM_TRY(sync());
    for (uint64_t index : dirty) {
      uint8_t raw[8];
      store_be(raw, 8, entries[index]);
      CROSVM_TRY(write_bytes(table + index * 8, raw, 8));
    }
    dirty.clear();
    return {};
  }

  Result<void> flush_locked() {
    CROSVM_TRY(write_metadata());
    if (!pending_frees_.empty()) {
      // The tables that dropped these clusters must be durable first.
      if (unsynced_) CROSVM_TRY(sync());
      std::vector<uint64_t> frees;
      frees.swap(pending_frees_);
      for (uint64_t host : frees) CROSVM_TRY(add_refcount(host, -1));
      CROSVM_TRY(write_metadata());
    }
    if (unsynced_) CROSVM_TRY(sync());
    return {};
  }

  UniqueFd fd_;
  UniqueFd direct_;  // direct=true: the O_DIRECT description, for aligned data
  std::string path_;
  Qcow2Header header_;
  bool read_only_;
  std::unique_ptr<DiskFile> backing_;
  const uint64_t cluster_size_;
  const uint32_t l2_bits_;  // log2 of the entries in an L2 table
  const uint64_t file_size_;  // at open
  uint64_t file_end_;         // where the next new cluster goes
  const uint32_t refcount_bits_;
  const uint64_t refcounts_per_block_;

  std::mutex mutex_;
  std::vector<uint64_t> l1_;
  std::vector<uint64_t> reftable_;
  std::vector<uint64_t> metadata_;  // sorted: the clusters holding tables (and the header)
  TableCache l2_cache_{cache_tables(kL2CacheBytes, cluster_size_, 512)};
  TableCache refblock_cache_{cache_tables(kRefBlockCacheBytes, cluster_size_, 128)};
  std::set<uint64_t> dirty_l1_;
  std::set<uint64_t> dirty_reftable_;
  std::vector<uint64_t> pending_frees_;
  std::vector<uint64_t> free_list_;
  // [first cluster, end) of each transfer running without the lock: at
  // most one per thread in the disk at once.
  std::vector<std::pair<uint64_t, uint64_t>> pinned_;
  bool unsynced_ = false;  // written since the last fdatasync
  std::vector<uint8_t> inflated_;  // the last compressed cluster read
  uint64_t inflated_entry_ = 0;
};

}  // namespace

Result<void> create_qcow2(const std::string& path, uint64_t size, const std::string& backing_file) {
  constexpr uint32_t kClusterBits = 16;
  constexpr uint64_t kCluster = 1ull << kClusterBits;
  std::string backing_format;
  if (!backing_file.empty()) {
    if (size != 0) return make_error(ErrorCode::kInvalidArgument, "a size and a backing file: the size is the backing file's");
    if (backing_file.size() > kMaxBackingName) {
      return make_error(ErrorCode::kInvalidArgument, "the backing file's name is longer than {} bytes", kMaxBackingName);
    }
    const size_t slash = path.rfind('/');
    const std::string resolved = backing_file.front() == '/' || slash == std::string::npos
                                     ? backing_file
                                     : path.substr(0, slash + 1) + backing_file;
    // Opened as a VM would open it, backing files of its own allowed: the
    // user named it.
    auto backing = open_disk({.path = resolved, .read_only = true, .allow_backing = true});
    if (!backing) return backing.take_error();
    size = (*backing)->size();
    backing_format = std::string((*backing)->format());
  }
  if (size == 0) return make_error(ErrorCode::kInvalidArgument, "a qcow2 image needs a size (or a backing file)");
  if (size > kMaxVirtualSize) return make_error(ErrorCode::kInvalidArgument, "{} bytes is too large", size);
  const uint64_t bytes_per_l2 = kCluster * (kCluster / 8);
  const uint64_t l1_size = (size + bytes_per_l2 - 1) / bytes_per_l2;
  if (l1_size * 8 > kMaxL1Bytes) {
    return make_error(ErrorCode::kInvalidArgument, "{} bytes needs an L1 table above 32 MiB (at most 2 PiB)", size);
  }
  const uint64_t l1_clusters = round_up(l1_size * 8, kCluster) / kCluster;
  // Header, refcount table, refcount block, L1 table.
  const uint64_t clusters = 3 + l1_clusters;
  std::vector<uint8_t> image(clusters * kCluster, 0);
  uint8_t* header = image.data();
  std::memcpy(header, kQcow2Magic, 4);
  store_be(header + 4, 4, 3);
  store_be(header + 20, 4, kClusterBits);
  store_be(header + 24, 8, size);
  store_be(header + 36, 4, l1_size);
  store_be(header + 40, 8, 3 * kCluster);
  store_be(header + 48, 8, kCluster);
  store_be(header + 56, 4, 1);
  store_be(header + 96, 4, 4);
  store_be(header + 100, 4, 104);
  uint64_t position = 104;
  if (!backing_format.empty()) {
    constexpr uint32_t kExtensionBackingFormat = 0xe2792aca;
    store_be(header + position, 4, kExtensionBackingFormat);
    store_be(header + position + 4, 4, backing_format.size());
    std::memcpy(header + position + 8, backing_format.data(), backing_format.size());
    position += 8 + round_up(backing_format.size(), 8);
  }
  position += 8;  // the end of the extensions (type 0, length 0)
  if (!backing_file.empty()) {
    store_be(header + 8, 8, position);
    store_be(header + 16, 4, backing_file.size());
    std::memcpy(header + position, backing_file.data(), backing_file.size());
  }
  store_be(image.data() + kCluster, 8, 2 * kCluster);  // refcount table[0]: the block
  for (uint64_t cluster = 0; cluster < clusters; ++cluster) store_be(image.data() + 2 * kCluster + cluster * 2, 2, 1);

  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644));
  if (!fd) return make_errno_error(ErrorCode::kIo, errno, "creating '{}'", path);
  const iovec buffer{image.data(), image.size()};
  auto written = transfer_at(fd.get(), 0, std::span(&buffer, 1), true, path);
  if (written && ::fsync(fd.get()) != 0) written = make_errno_error(ErrorCode::kIo, errno, "flushing '{}'", path);
  if (!written) {
    ::unlink(path.c_str());
    return written;
  }
  return {};
}

void set_qcow2_cache_tables_for_testing(size_t tables) { cache_tables_for_testing.store(tables); }

void set_qcow2_transfer_hook_for_testing(void (*hook)(bool write)) { transfer_hook_for_testing.store(hook); }

int64_t set_qcow2_crash_after_for_testing(int64_t count) { return crash_after.exchange(count); }

Result<Qcow2Header> read_qcow2_header(int fd, std::string_view path) {
  struct stat info{};
  if (::fstat(fd, &info) != 0) return make_errno_error(ErrorCode::kIo, errno, "disk image '{}'", path);
  const uint64_t file_size = static_cast<uint64_t>(info.st_size);
  if (file_size < 72) return corrupt(path, "the file is shorter than a qcow2 header");
  uint8_t start[24] = {};
  const std::string name(path);
  const iovec head{start, sizeof start};
  CROSVM_TRY(transfer_at(fd, 0, std::span(&head, 1), false, name));
  const uint32_t cluster_bits = static_cast<uint32_t>(load_be(start + 20, 4));
  if (cluster_bits < 9 || cluster_bits > 21) {
    return corrupt(path, fmt::format("cluster_bits {} is outside 9 to 21", cluster_bits));
  }
  std::vector<uint8_t> first(std::min<uint64_t>(file_size, 1ull << cluster_bits));
  const iovec buffer{first.data(), first.size()};
  CROSVM_TRY(transfer_at(fd, 0, std::span(&buffer, 1), false, name));
  return parse_qcow2_header(first, file_size, path);
}

Result<std::unique_ptr<DiskFile>> open_qcow2(UniqueFd fd, std::string path, bool read_only,
                                             std::unique_ptr<DiskFile> backing, UniqueFd direct) {
  Qcow2Header header = CROSVM_TRY(read_qcow2_header(fd.get(), path));
  struct stat info{};
  if (::fstat(fd.get(), &info) != 0) return make_errno_error(ErrorCode::kIo, errno, "disk image '{}'", path);
  const uint64_t file_size = static_cast<uint64_t>(info.st_size);
  if (!header.backing_file.empty() && !backing) {
    return corrupt(path, fmt::format("its backing file '{}' was not opened", header.backing_file));
  }
  if (header.backing_file.empty() && backing) return corrupt(path, "a backing file for an image that names none");
  if (!read_only) {
    if (header.version != 3) {
      return corrupt(path, "version 2 images are read-only here (`qemu-img amend -f qcow2 -o compat=1.1` "
                           "upgrades it)");
    }
    if (header.nb_snapshots != 0) return corrupt(path, "an image with internal snapshots can only be read");
    if ((header.incompatible_features & kQcow2Dirty) != 0) {
      return corrupt(path, "it was not closed cleanly; `qemu-img check -r all` repairs its refcounts");
    }
    if ((header.incompatible_features & kQcow2Corrupt) != 0) {
      return corrupt(path, "it is marked corrupt; `qemu-img check -r all` may repair it");
    }
  }
  auto disk = std::make_unique<Qcow2Disk>(std::move(fd), std::move(path), std::move(header), read_only,
                                          std::move(backing), file_size, std::move(direct));
  CROSVM_TRY(disk->load());
  return std::unique_ptr<DiskFile>(std::move(disk));
}

}  // namespace crosvm::disk
