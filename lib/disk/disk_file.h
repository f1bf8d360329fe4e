// A disk image as a block device sees it: byte-addressed reads and writes
// (scatter-gather, straight into guest memory), flush, discard and
// write-zeroes, and the size. Raw images today; qcow2 fits behind the same
// interface.
#pragma once

#include <sys/uio.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "base/result.h"
#include "base/unique_fd.h"

namespace crosvm::disk {

class DiskFile {
 public:
  virtual ~DiskFile() = default;

  virtual uint64_t size() const = 0;
  virtual bool read_only() const = 0;

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
};

// Opens a raw image. A writable image is write-locked (an OFD lock), a
// read-only one read-locked, so no two VMMs can write an image at once and
// none writes one that another reads.
Result<std::unique_ptr<DiskFile>> open_raw(const OpenOptions& options);
// The same in two steps, for a device in another process: the VMM opens,
// checks and locks the image (open_raw_file), the device process adopts the
// fd it was given (adopt_raw; `options.path` names it in messages).
Result<UniqueFd> open_raw_file(const OpenOptions& options);
Result<std::unique_ptr<DiskFile>> adopt_raw(UniqueFd fd, const OpenOptions& options);

}  // namespace crosvm::disk
