// Opening an image: its format from its first bytes, its lock, and (qcow2,
// when allowed) its chain of backing files.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <set>
#include <utility>

#include "disk/disk_file.h"
#include "disk/disk_io.h"
#include "disk/qcow2.h"

namespace crosvm::disk {
namespace {

struct Signature {
  size_t offset;
  std::string_view bytes;
  std::string_view format;
};

// Formats this VMM does not read, refused by name rather than served as raw
// bytes (the guest would see garbage, and its writes would land on the
// image's own metadata).
constexpr Signature kSignatures[] = {
    {0, std::string_view("QFI\xfb", 4), "qcow2"},
    {0, "KDMV", "VMDK"},
    {0, "# Disk DescriptorFile", "VMDK"},
    {0, "conectix", "VHD (vpc)"},
    {0, "vhdxfile", "VHDX"},
    {0, std::string_view("QED\0", 4), "QED"},
    {0, std::string_view("LUKS\xba\xbe", 6), "LUKS"},
    {0x40, std::string_view("\x7f\x10\xda\xbe", 4), "VDI"},
};

Result<void> lock_image(int fd, bool read_only, const std::string& path, bool lock_it) {
  if (!lock_it) return {};
  struct flock lock{};
  lock.l_type = read_only ? F_RDLCK : F_WRLCK;
  lock.l_whence = SEEK_SET;
  if (::fcntl(fd, F_OFD_SETLK, &lock) != 0) {
    if (errno == EAGAIN || errno == EACCES) {
      return make_error(ErrorCode::kIo, "disk image '{}' is in use: another process {} it", path,
                        read_only ? "is writing" : "is using");
    }
    return make_errno_error(ErrorCode::kIo, errno, "disk image '{}': cannot lock it", path);
  }
  return {};
}

}  // namespace

Result<Format> detect_format(int fd, const std::string& path) {
  uint8_t start[72] = {};
  const ssize_t got = ::pread(fd, start, sizeof start, 0);
  if (got < 0) return make_errno_error(ErrorCode::kIo, errno, "reading disk image '{}'", path);
  const std::string_view format = image_signature(std::span(start, static_cast<size_t>(got)));
  if (format.empty()) return Format::kRaw;
  if (format == "qcow2") {
    const uint32_t version = (uint32_t{start[4]} << 24) | (uint32_t{start[5]} << 16) | (uint32_t{start[6]} << 8) |
                             start[7];
    if (version == 1) {
      return make_error(ErrorCode::kIo, "disk image '{}' is a qcow (version 1) image, which is not supported; "
                        "`qemu-img convert -O qcow2` converts it", path);
    }
    return Format::kQcow2;
  }
  return make_error(ErrorCode::kIo, "disk image '{}' is a {} image, which this VMM does not read; "
                    "`qemu-img convert -O qcow2 '{}' NEW.qcow2` converts it", path, format, path);
}

namespace {

std::string backing_name(const OpenOptions& options, size_t depth) {
  return depth == 0 ? options.path : fmt::format("{} (backing file {})", options.path, depth);
}

Result<UniqueFd> duplicate(const UniqueFd& fd) {
  UniqueFd copy(::fcntl(fd.get(), F_DUPFD_CLOEXEC, 0));
  if (!copy) return make_errno_error(ErrorCode::kIo, errno, "duplicating a disk image's fd");
  return copy;
}

}  // namespace

std::string_view image_signature(std::span<const uint8_t> start) {
  for (const Signature& signature : kSignatures) {
    if (start.size() >= signature.offset + signature.bytes.size() &&
        std::memcmp(start.data() + signature.offset, signature.bytes.data(), signature.bytes.size()) == 0) {
      return signature.format;
    }
  }
  return {};
}

namespace {

// The image and its backing chain, opened and locked, not yet read.
Result<std::vector<UniqueFd>> open_chain(const OpenOptions& options) {
  std::vector<UniqueFd> fds;
  std::set<std::pair<dev_t, ino_t>> seen;
  std::string path = options.path;
  bool read_only = options.read_only;
  for (;;) {
    UniqueFd fd(::open(path.c_str(), (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC));
    if (!fd) {
      if (fds.empty()) return make_errno_error(ErrorCode::kIo, errno, "disk image '{}'", path);
      return make_errno_error(ErrorCode::kIo, errno, "disk image '{}': its backing file '{}'", options.path, path);
    }
    struct stat info{};
    if (::fstat(fd.get(), &info) != 0) return make_errno_error(ErrorCode::kIo, errno, "disk image '{}'", path);
    if (!seen.insert({info.st_dev, info.st_ino}).second) {
      return make_error(ErrorCode::kIo, "disk image '{}': its backing files loop back to '{}'", options.path, path);
    }
    CROSVM_TRY(lock_image(fd.get(), read_only, path, options.lock));
    const Format format = CROSVM_TRY(detect_format(fd.get(), path));
    std::string backing;
    if (format == Format::kQcow2) backing = CROSVM_TRY(read_qcow2_header(fd.get(), path)).backing_file;
    fds.push_back(std::move(fd));
    if (backing.empty()) break;
    if (!options.allow_backing) {
      return make_error(ErrorCode::kIo, "disk image '{}' has a backing file ('{}'), which is not followed unless "
                        "the disk's options say allow-backing=true (the image chooses which host file it reads)",
                        path, backing);
    }
    if (fds.size() > kMaxBackingDepth) {
      return make_error(ErrorCode::kIo, "disk image '{}': its backing files go deeper than {}", options.path,
                        kMaxBackingDepth);
    }
    if (backing.front() != '/') {
      const size_t slash = path.rfind('/');
      backing = (slash == std::string::npos ? std::string() : path.substr(0, slash + 1)) + backing;
    }
    path = std::move(backing);
    read_only = true;
  }
  return fds;
}

}  // namespace

Result<ImageFiles> open_image_files(const OpenOptions& options) {
  ImageFiles files;
  files.fds = CROSVM_TRY(open_chain(options));
  // Built once here, so that every mistake is reported by whoever opens.
  std::vector<UniqueFd> copies;
  for (const UniqueFd& fd : files.fds) copies.push_back(CROSVM_TRY(duplicate(fd)));
  auto disk = CROSVM_TRY(adopt_image(std::move(copies), options));
  files.format = std::string(disk->format());
  files.size = disk->size();
  if (options.direct) files.direct = CROSVM_TRY(reopen_direct(files.fds.front().get(), options.path));
  return files;
}

Result<std::unique_ptr<DiskFile>> adopt_image(std::vector<UniqueFd> fds, const OpenOptions& options,
                                              UniqueFd direct) {
  if (fds.empty() || !fds.front()) return make_error(ErrorCode::kIo, "disk image '{}': no file", options.path);
  if (fds.size() > kMaxBackingDepth + 1) {
    return make_error(ErrorCode::kIo, "disk image '{}': more than {} backing files", options.path, kMaxBackingDepth);
  }
  std::unique_ptr<DiskFile> backing;
  for (size_t depth = fds.size(); depth-- > 0;) {
    const std::string name = backing_name(options, depth);
    const bool read_only = depth > 0 || options.read_only;
    UniqueFd& fd = fds[depth];
    const int mode = ::fcntl(fd.get(), F_GETFL);
    if (mode < 0) return make_errno_error(ErrorCode::kIo, errno, "disk image '{}'", name);
    if (!read_only && (mode & O_ACCMODE) != O_RDWR) {
      return make_error(ErrorCode::kIo, "disk image '{}' was opened read-only", name);
    }
    CROSVM_TRY(lock_image(fd.get(), read_only, name, options.lock));
    const Format format = CROSVM_TRY(detect_format(fd.get(), name));
    if (format == Format::kRaw) {
      if (backing) return make_error(ErrorCode::kIo, "disk image '{}' is raw and has no backing file", name);
      backing = CROSVM_TRY(open_raw_disk(std::move(fd), name, read_only, depth == 0 ? std::move(direct) : UniqueFd()));
      continue;
    }
    if (!options.allow_backing && backing) {
      return make_error(ErrorCode::kIo, "disk image '{}': a backing file without allow-backing=true", name);
    }
    backing = CROSVM_TRY(open_qcow2(std::move(fd), name, read_only, std::move(backing),
                                    depth == 0 ? std::move(direct) : UniqueFd()));
  }
  return backing;
}

Result<std::unique_ptr<DiskFile>> open_disk(const OpenOptions& options) {
  std::vector<UniqueFd> fds = CROSVM_TRY(open_chain(options));
  UniqueFd direct;
  if (options.direct) direct = CROSVM_TRY(reopen_direct(fds.front().get(), options.path));
  return adopt_image(std::move(fds), options, std::move(direct));
}

}  // namespace crosvm::disk
