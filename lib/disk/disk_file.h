// A disk image as a block device sees it: byte-addressed reads and writes
// (scatter-gather, straight into guest memory), flush, discard and
// write-zeroes, and the size. Raw and qcow2 images (lib/disk/qcow2.h); the
// format comes from the image's first bytes, never from its name.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"

namespace crosvm::disk {

class DiskFile {
 public:
  virtual ~DiskFile() = default;

  virtual uint64_t size() const = 0;
  virtual bool read_only() const = 0;
  virtual std::string_view format() const = 0;  // "raw" or "qcow2"

  // Reads or writes exactly the iovecs' total at `offset`; a short transfer
  // is an error. The caller keeps offset + length within size().
  virtual Result<void> read_at(uint64_t offset, std::span<const iovec> buffers) = 0;
  virtual Result<void> write_at(uint64_t offset, std::span<const iovec> buffers) = 0;
  // Everything written so far is durable on the host when this returns.
  virtual Result<void> flush() = 0;
  // The range may be dropped (reads then return zeros or the old data).
  virtual Result<void> discard(uint64_t offset, uint64_t length) = 0;
  // The range reads as zeros afterwards; `unmap` allows freeing the space.
  virtual Result<void> write_zeroes(uint64_t offset, uint64_t length, bool unmap) = 0;
  // Grows (or shrinks) the image; a read-only image refuses.
  virtual Result<void> resize(uint64_t new_size) = 0;
};

struct OpenOptions {
  std::string path;
  bool read_only = false;
  // qcow2: follow the image's backing file (read-only, and its own, at most
  // kMaxBackingDepth deep, no file twice). Off by default: the name of a
  // backing file is the image's choice, and following it reads a host file.
  bool allow_backing = false;
  // crosvm's lock=false: no OFD lock (the user vouches no one else writes).
  bool lock = true;
  // crosvm's direct=true: the image's data moves past the host's page
  // cache (O_DIRECT) where a request is aligned (disk_io.h); backing files
  // are read through the cache.
  bool direct = false;
};

inline constexpr size_t kMaxBackingDepth = 8;

// The image and its backing files, opened, checked and locked: a writable
// image is write-locked (an OFD lock), a read-only one and every backing
// file read-locked, so no two VMMs write an image at once and none writes
// one that another reads. The lock belongs to the open file: a process the
// fds are passed to (a device process) holds it as long as it keeps them.
struct ImageFiles {
  std::vector<UniqueFd> fds;  // the image, then each backing file in turn
  std::string format;         // the image's: "raw" or "qcow2"
  uint64_t size = 0;          // what the guest sees, in bytes
  UniqueFd direct;            // direct=true: the image opened again with O_DIRECT
};
Result<ImageFiles> open_image_files(const OpenOptions& options);

// A disk from the fds open_image_files gave (in a device process, which
// opens nothing); `options.path` names it in messages. `direct`: the
// image's O_DIRECT description (ImageFiles::direct), or none.
Result<std::unique_ptr<DiskFile>> adopt_image(std::vector<UniqueFd> fds, const OpenOptions& options,
                                              UniqueFd direct = {});

// Both steps in one process.
Result<std::unique_ptr<DiskFile>> open_disk(const OpenOptions& options);

// A raw image on an open file or block device (no lock taken here), with
// its O_DIRECT description if direct=true.
Result<std::unique_ptr<DiskFile>> open_raw_disk(UniqueFd fd, std::string path, bool read_only,
                                                UniqueFd direct = {});

// The name of an image format other than raw whose signature `start` (the
// file's first bytes) carries, or an empty view.
std::string_view image_signature(std::span<const uint8_t> start);

enum class Format { kRaw, kQcow2 };

// The format of the image open on `fd`, from its first bytes: an error
// names any other format (and how to convert it) or a qcow version 1.
Result<Format> detect_format(int fd, const std::string& path);

}  // namespace crosvm::disk
