// qcow2 images (QEMU's format, docs/interop/qcow2.txt in QEMU's tree):
// versions 2 and 3 read, version 3 written. The parser trusts nothing in the
// file: every offset, size and table is checked before it is used.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "base/result.h"
#include "base/unique_fd.h"
#include "disk/disk_file.h"

namespace crosvm::disk {

inline constexpr uint8_t kQcow2Magic[4] = {'Q', 'F', 'I', 0xfb};

struct Qcow2Header {
  uint32_t version = 0;
  uint32_t cluster_bits = 0;
  uint64_t size = 0;  // the guest's disk, in bytes
  uint32_t l1_size = 0;
  uint64_t l1_table_offset = 0;
  uint64_t refcount_table_offset = 0;
  uint32_t refcount_table_clusters = 0;
  uint32_t nb_snapshots = 0;
  uint64_t snapshots_offset = 0;
  uint64_t incompatible_features = 0;
  uint64_t compatible_features = 0;
  uint64_t autoclear_features = 0;
  uint32_t refcount_order = 4;  // refcounts are 2^order bits wide
  uint32_t header_length = 72;
  bool zstd = false;            // compressed clusters are zstd, not deflate
  std::string backing_file;     // as written in the image, empty when none
};

inline constexpr uint64_t kQcow2Dirty = 1ull << 0;
inline constexpr uint64_t kQcow2Corrupt = 1ull << 1;

// Parses and checks the header at the start of `bytes` (the image's first
// cluster, or all of a smaller file) against the file's size.
Result<Qcow2Header> parse_qcow2_header(std::span<const uint8_t> bytes, uint64_t file_size,
                                       std::string_view path);

// Reads and parses the header of the qcow2 image open on `fd`.
Result<Qcow2Header> read_qcow2_header(int fd, std::string_view path);

// Builds a qcow2 disk on an open image. `backing` serves the clusters the
// image does not hold; it must be given exactly when the header names a
// backing file. A writable image must be version 3, without internal
// snapshots, and neither dirty nor marked corrupt. `direct`: the image's
// O_DIRECT description (direct=true), which carries aligned guest data.
Result<std::unique_ptr<DiskFile>> open_qcow2(UniqueFd fd, std::string path, bool read_only,
                                             std::unique_ptr<DiskFile> backing, UniqueFd direct = {});

// Writes a new, empty version 3 image at `path` (which must not exist) with
// 64 KiB clusters: `size` bytes, or with a backing file the size of that
// file (`size` 0), which is named as given (a relative name is found beside
// the new image) together with its format. crosvm's `create_qcow2`.
Result<void> create_qcow2(const std::string& path, uint64_t size, const std::string& backing_file);

// Tests: every write and flush of a qcow2 image after the next `count`
// fails, as if the host stopped there with the earlier writes on disk; a
// negative count lifts the limit. Returns what was left of the last count.
int64_t set_qcow2_crash_after_for_testing(int64_t count);
// Tests: each cache holds this many tables (0: the normal bound), so that
// write-back on eviction happens in a small test.
void set_qcow2_cache_tables_for_testing(size_t tables);
// Tests: called (with whether it writes) by every transfer of guest data
// that runs without the image's lock, before it moves a byte; nullptr: none.
void set_qcow2_transfer_hook_for_testing(void (*hook)(bool write));

}  // namespace crosvm::disk
