// Positioned transfers between a file and scatter-gather buffers, shared by
// the image formats.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"

namespace crosvm::disk {

enum class PastEnd {
  kError,  // a read that meets the end of the file fails
  kZeros,  // the bytes past the end read as zeros (a sparse image's tail)
};

// Moves every byte of `buffers` to or from `fd` at `offset`, resuming after
// short transfers and EINTR.
Result<void> transfer_at(int fd, uint64_t offset, std::span<const iovec> buffers, bool is_write,
                         const std::string& path, PastEnd past_end = PastEnd::kError);

// crosvm's direct=true: the image is open a second time with O_DIRECT
// (another open file description). A transfer whose memory, offset and
// length are all multiples of kDirectAlignment goes through it, past the
// host's page cache; any other through the buffered one, which the kernel
// keeps coherent with it (so a guest's unaligned request still works, and
// never needs a read-modify-write that could race with its neighbours).
inline constexpr uint64_t kDirectAlignment = 4096;
int data_fd(int buffered, const UniqueFd& direct, uint64_t offset, std::span<const iovec> buffers);
// `fd`'s file opened again, by the fd (not the name), with O_DIRECT and the
// same access mode. A file system without O_DIRECT is a clear error.
Result<UniqueFd> reopen_direct(int fd, const std::string& path);

// Walks a list of buffers a piece at a time.
class IovecCursor {
 public:
  explicit IovecCursor(std::span<const iovec> buffers) : buffers_(buffers) {}

  // The next `length` bytes as buffers of their own (fewer when the list ends).
  std::vector<iovec> take(uint64_t length);
  void fill_zeros(uint64_t length);
  void copy_from(const uint8_t* source, uint64_t length);  // into the buffers
  void copy_to(uint8_t* destination, uint64_t length);     // out of the buffers

 private:
  template <typename Step>
  void walk(uint64_t length, Step step);

  std::span<const iovec> buffers_;
  size_t index_ = 0;
  size_t offset_ = 0;  // into buffers_[index_]
};

}  // namespace crosvm::disk
