// Raw images: the file is the disk, byte for byte.
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <vector>

#include "base/unique_fd.h"
#include "disk/disk_file.h"

namespace crosvm::disk {
namespace {

// Moves every byte of `buffers` to or from `fd` at `offset`, resuming after
// short transfers and EINTR.
Result<void> transfer(int fd, uint64_t offset, std::span<const iovec> buffers, bool is_write,
                      const std::string& path) {
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
      return make_error(ErrorCode::kIo, "reading '{}' at byte {}: the image ends early", path, offset);
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

class RawDisk final : public DiskFile {
 public:
  RawDisk(UniqueFd fd, std::string path, uint64_t size, bool read_only, bool regular_file)
      : fd_(std::move(fd)), path_(std::move(path)), size_(size), read_only_(read_only),
        regular_file_(regular_file) {}

  uint64_t size() const override { return size_; }
  bool read_only() const override { return read_only_; }

  Result<void> read_at(uint64_t offset, std::span<const iovec> buffers) override {
    return transfer(fd_.get(), offset, buffers, false, path_);
  }

  Result<void> write_at(uint64_t offset, std::span<const iovec> buffers) override {
    CROSVM_TRY(writable());
    return transfer(fd_.get(), offset, buffers, true, path_);
  }

  Result<void> flush() override {
    if (read_only_) return {};
    if (::fdatasync(fd_.get()) != 0) return make_errno_error(ErrorCode::kIo, errno, "flushing '{}'", path_);
    return {};
  }

  Result<void> discard(uint64_t offset, uint64_t length) override {
    CROSVM_TRY(writable());
    // Discarding is advice: a file system that cannot punch holes keeps the data.
    if (punch_hole(offset, length) || errno == EOPNOTSUPP) return {};
    return make_errno_error(ErrorCode::kIo, errno, "discarding {} bytes of '{}'", length, path_);
  }

  Result<void> write_zeroes(uint64_t offset, uint64_t length, bool unmap) override {
    CROSVM_TRY(writable());
    if (unmap && punch_hole(offset, length)) return {};
    if (::fallocate(fd_.get(), FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                    static_cast<off_t>(length)) == 0) {
      return {};
    }
    // No ZERO_RANGE here (a block device, an old file system): write zeros.
    static const std::vector<uint8_t> zeros(1 << 16, 0);
    while (length > 0) {
      const size_t step = static_cast<size_t>(std::min<uint64_t>(length, zeros.size()));
      const iovec piece{const_cast<uint8_t*>(zeros.data()), step};
      CROSVM_TRY(transfer(fd_.get(), offset, std::span(&piece, 1), true, path_));
      offset += step;
      length -= step;
    }
    return {};
  }

  Result<void> resize(uint64_t new_size) override {
    CROSVM_TRY(writable());
    if (!regular_file_) return make_error(ErrorCode::kInvalidArgument, "'{}' is not a file; it cannot be resized", path_);
    if (::ftruncate(fd_.get(), static_cast<off_t>(new_size)) != 0) {
      return make_errno_error(ErrorCode::kIo, errno, "resizing '{}' to {} bytes", path_, new_size);
    }
    size_ = new_size;
    return {};
  }

 private:
  Result<void> writable() const {
    if (read_only_) return make_error(ErrorCode::kInvalidArgument, "'{}' is read-only", path_);
    return {};
  }
  bool punch_hole(uint64_t offset, uint64_t length) {
    return ::fallocate(fd_.get(), FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(offset),
                       static_cast<off_t>(length)) == 0;
  }

  UniqueFd fd_;
  std::string path_;
  uint64_t size_;
  bool read_only_;
  bool regular_file_;
};

}  // namespace

Result<UniqueFd> open_raw_file(const OpenOptions& options) {
  UniqueFd fd(::open(options.path.c_str(), (options.read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC));
  if (!fd) return make_errno_error(ErrorCode::kIo, errno, "disk image '{}'", options.path);
  // Checked and locked here, so that a mistake is reported by whoever opens.
  (void)CROSVM_TRY(adopt_raw(UniqueFd(::fcntl(fd.get(), F_DUPFD_CLOEXEC, 0)), options));
  return fd;
}

Result<std::unique_ptr<DiskFile>> adopt_raw(UniqueFd fd, const OpenOptions& options) {
  const std::string& path = options.path;
  if (!fd) return make_errno_error(ErrorCode::kIo, errno, "disk image '{}'", path);
  struct stat info{};
  if (::fstat(fd.get(), &info) != 0) return make_errno_error(ErrorCode::kIo, errno, "disk image '{}'", path);
  uint64_t size = 0;
  const bool regular_file = S_ISREG(info.st_mode);
  if (regular_file) {
    size = static_cast<uint64_t>(info.st_size);
  } else if (S_ISBLK(info.st_mode)) {
    if (::ioctl(fd.get(), BLKGETSIZE64, &size) != 0) {
      return make_errno_error(ErrorCode::kIo, errno, "disk image '{}': cannot read its size", path);
    }
  } else {
    return make_error(ErrorCode::kIo, "disk image '{}' is neither a file nor a block device", path);
  }
  const int mode = ::fcntl(fd.get(), F_GETFL);
  if (!options.read_only && (mode & O_ACCMODE) != O_RDWR) {
    return make_error(ErrorCode::kIo, "disk image '{}' was opened read-only", path);
  }

  // The lock belongs to the open file: a process the fd is passed to (a
  // device process) holds it as long as it keeps the fd.
  struct flock lock{};
  lock.l_type = options.read_only ? F_RDLCK : F_WRLCK;
  lock.l_whence = SEEK_SET;
  if (::fcntl(fd.get(), F_OFD_SETLK, &lock) != 0) {
    if (errno == EAGAIN || errno == EACCES) {
      return make_error(ErrorCode::kIo, "disk image '{}' is in use: another process {} it", path,
                        options.read_only ? "is writing" : "is using");
    }
    return make_errno_error(ErrorCode::kIo, errno, "disk image '{}': cannot lock it", path);
  }
  return std::unique_ptr<DiskFile>(new RawDisk(std::move(fd), path, size, options.read_only, regular_file));
}

Result<std::unique_ptr<DiskFile>> open_raw(const OpenOptions& options) {
  return adopt_raw(CROSVM_TRY(open_raw_file(options)), options);
}

}  // namespace crosvm::disk
