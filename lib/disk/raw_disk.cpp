// Raw images: the file is the disk, byte for byte.
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "base/unique_fd.h"
#include "disk/disk_file.h"
#include "disk/disk_io.h"

namespace crosvm::disk {
namespace {

class RawDisk final : public DiskFile {
 public:
  static constexpr size_t kFirstBlock = 4096;

  RawDisk(UniqueFd fd, std::string path, uint64_t size, bool read_only, bool regular_file, UniqueFd direct)
      : fd_(std::move(fd)), direct_(std::move(direct)), path_(std::move(path)), size_(size), read_only_(read_only),
        regular_file_(regular_file) {}

  uint64_t size() const override { return size_; }
  bool read_only() const override { return read_only_; }
  std::string_view format() const override { return "raw"; }

  Result<void> read_at(uint64_t offset, std::span<const iovec> buffers) override {
    return transfer_at(data_fd(fd_.get(), direct_, offset, buffers), offset, buffers, false, path_);
  }

  Result<void> write_at(uint64_t offset, std::span<const iovec> buffers) override {
    CROSVM_TRY(writable());
    if (offset == 0) return write_first_block(buffers);
    return transfer_at(data_fd(fd_.get(), direct_, offset, buffers), offset, buffers, true, path_);
  }

  // The format is read from the first bytes: a guest that wrote another
  // format's header there would have the next open read its disk as that
  // format (a qcow2 header could name a host file as its backing file).
  // Refused, as QEMU refuses it for a probed raw image. The first block is
  // checked and written from one copy of the guest's bytes: from guest
  // memory, another vCPU could change them between the check and the write.
  Result<void> write_first_block(std::span<const iovec> buffers) {
    uint64_t total = 0;
    for (const iovec& buffer : buffers) total += buffer.iov_len;
    const size_t head = static_cast<size_t>(std::min<uint64_t>(total, kFirstBlock));
    // Aligned, so that an O_DIRECT write stays one.
    std::unique_ptr<uint8_t, decltype(&std::free)> first(
        static_cast<uint8_t*>(std::aligned_alloc(kFirstBlock, kFirstBlock)), &std::free);
    if (!first) return make_error(ErrorCode::kIo, "no memory for the first block of '{}'", path_);
    std::memset(first.get(), 0, kFirstBlock);
    IovecCursor cursor(buffers);
    cursor.copy_to(first.get(), head);
    if (const std::string_view format = image_signature(std::span<const uint8_t>(first.get(), kFirstBlock));
        !format.empty()) {
      return make_error(ErrorCode::kIo,
                        "refusing a write of a {} header to the first sector of raw image '{}' (it would be "
                        "read as {} when next opened)", format, path_, format);
    }
    std::vector<iovec> pieces{{first.get(), head}};
    const std::vector<iovec> rest = cursor.take(total - head);
    pieces.insert(pieces.end(), rest.begin(), rest.end());
    return transfer_at(data_fd(fd_.get(), direct_, 0, pieces), 0, pieces, true, path_);
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
      CROSVM_TRY(transfer_at(fd_.get(), offset, std::span(&piece, 1), true, path_));
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
  UniqueFd direct_;  // direct=true: the O_DIRECT description
  std::string path_;
  uint64_t size_;
  bool read_only_;
  bool regular_file_;
};

}  // namespace

Result<std::unique_ptr<DiskFile>> open_raw_disk(UniqueFd fd, std::string path, bool read_only, UniqueFd direct) {
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
  return std::unique_ptr<DiskFile>(new RawDisk(std::move(fd), std::move(path), size, read_only, regular_file, std::move(direct)));
}

}  // namespace crosvm::disk
