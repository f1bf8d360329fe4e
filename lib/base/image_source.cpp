#include "base/image_source.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include "base/file_io.h"

namespace crosvm {

Result<ImageSource> ImageSource::open(const std::string& path, const char* what) {
  UniqueFd fd = CROSVM_TRY(open_file(path, O_RDONLY, what));
  struct stat info {};
  if (::fstat(fd.get(), &info) != 0) {
    return make_errno_error(ErrorCode::kIo, errno, "cannot stat {} '{}'", what, path);
  }
  if (!S_ISREG(info.st_mode)) {
    return make_error(ErrorCode::kIo, "{} '{}' is not a regular file", what, path);
  }
  return ImageSource(std::move(fd), static_cast<uint64_t>(info.st_size),
                     fmt::format("{} '{}'", what, path));
}

Result<void> ImageSource::read(uint64_t offset, std::span<uint8_t> out) const {
  if (offset > size_ || out.size() > size_ - offset) {
    return make_error(ErrorCode::kInternal, "read of {} bytes at {} past the image's {} bytes",
                      out.size(), offset, size_);
  }
  if (!fd_) {
    std::memcpy(out.data(), bytes_.data() + offset, out.size());
    return {};
  }
  if (offset + out.size() <= kHeadSize) {
    if (head_.empty()) {
      std::vector<uint8_t> head(static_cast<size_t>(std::min<uint64_t>(size_, kHeadSize)));
      CROSVM_TRY(read_file(0, head));
      head_ = std::move(head);
    }
    if (offset + out.size() <= head_.size()) {
      std::memcpy(out.data(), head_.data() + offset, out.size());
      return {};
    }
  }
  return read_file(offset, out);
}

Result<void> ImageSource::read_file(uint64_t offset, std::span<uint8_t> out) const {
  size_t done = 0;
  while (done < out.size()) {
    const ssize_t got = ::pread(fd_.get(), out.data() + done, out.size() - done,
                                static_cast<off_t>(offset + done));
    if (got > 0) {
      done += static_cast<size_t>(got);
    } else if (got == 0) {
      return make_error(ErrorCode::kIo, "{} shrank while it was read", description_);
    } else if (errno != EINTR) {
      return make_errno_error(ErrorCode::kIo, errno, "cannot read {}", description_);
    }
  }
  return {};
}

}  // namespace crosvm
