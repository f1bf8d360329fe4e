#include "disk/disk_io.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>

namespace crosvm::disk {

int data_fd(int buffered, const UniqueFd& direct, uint64_t offset, std::span<const iovec> buffers) {
  if (!direct || offset % kDirectAlignment != 0) return buffered;
  for (const iovec& buffer : buffers) {
    if (reinterpret_cast<uintptr_t>(buffer.iov_base) % kDirectAlignment != 0 ||
        buffer.iov_len % kDirectAlignment != 0) {
      return buffered;
    }
  }
  return direct.get();
}

Result<UniqueFd> reopen_direct(int fd, const std::string& path) {
  const int mode = ::fcntl(fd, F_GETFL);
  if (mode < 0) return make_errno_error(ErrorCode::kIo, errno, "disk image '{}'", path);
  const std::string link = fmt::format("/proc/self/fd/{}", fd);
  UniqueFd direct(::open(link.c_str(), (mode & O_ACCMODE) | O_DIRECT | O_CLOEXEC));
  if (!direct) {
    if (errno == EINVAL) {
      return make_error(ErrorCode::kIo, "disk image '{}': direct=true, but its file system does not support "
                        "O_DIRECT", path);
    }
    return make_errno_error(ErrorCode::kIo, errno, "disk image '{}': opening it with O_DIRECT", path);
  }
  return direct;
}

Result<void> transfer_at(int fd, uint64_t offset, std::span<const iovec> buffers, bool is_write,
                         const std::string& path, PastEnd past_end) {
  std::vector<iovec> pending(buffers.begin(), buffers.end());
  size_t first = 0;
  while (first < pending.size()) {
    if (pending[first].iov_len == 0) {
      ++first;
      continue;
    }
    const int count = static_cast<int>(std::min<size_t>(pending.size() - first, IOV_MAX));
    const ssize_t done = is_write ? ::pwritev(fd, &pending[first], count, static_cast<off_t>(offset))
                                  : ::preadv(fd, &pending[first], count, static_cast<off_t>(offset));
    if (done < 0) {
      if (errno == EINTR) continue;
      return make_errno_error(ErrorCode::kIo, errno, "{} '{}' at byte {}", is_write ? "writing" : "reading",
                              path, offset);
    }
    if (done == 0) {
      if (is_write || past_end == PastEnd::kError) {
        return make_error(ErrorCode::kIo, "reading '{}' at byte {}: the image ends early", path, offset);
      }
      for (size_t i = first; i < pending.size(); ++i) std::memset(pending[i].iov_base, 0, pending[i].iov_len);
      return {};
    }
    offset += static_cast<uint64_t>(done);
    size_t left = static_cast<size_t>(done);
    while (left > 0) {
      iovec& piece = pending[first];
      const size_t step = std::min(left, piece.iov_len);
      piece.iov_base = static_cast<uint8_t*>(piece.iov_base) + step;
      piece.iov_len -= step;
      left -= step;
      if (piece.iov_len == 0) ++first;
    }
  }
  return {};
}

template <typename Step>
void IovecCursor::walk(uint64_t length, Step step) {
  while (length > 0 && index_ < buffers_.size()) {
    const iovec& buffer = buffers_[index_];
    const size_t piece = static_cast<size_t>(std::min<uint64_t>(length, buffer.iov_len - offset_));
    if (piece > 0) step(static_cast<uint8_t*>(buffer.iov_base) + offset_, piece);
    offset_ += piece;
    length -= piece;
    if (offset_ == buffer.iov_len) {
      ++index_;
      offset_ = 0;
    }
  }
}

std::vector<iovec> IovecCursor::take(uint64_t length) {
  std::vector<iovec> taken;
  walk(length, [&](uint8_t* data, size_t size) { taken.push_back({data, size}); });
  return taken;
}

void IovecCursor::fill_zeros(uint64_t length) {
  walk(length, [](uint8_t* data, size_t size) { std::memset(data, 0, size); });
}

void IovecCursor::copy_from(const uint8_t* source, uint64_t length) {
  walk(length, [&](uint8_t* data, size_t size) {
    std::memcpy(data, source, size);
    source += size;
  });
}

void IovecCursor::copy_to(uint8_t* destination, uint64_t length) {
  walk(length, [&](uint8_t* data, size_t size) {
    std::memcpy(destination, data, size);
    destination += size;
  });
}

}  // namespace crosvm::disk
