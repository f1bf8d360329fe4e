// The bytes of a kernel or an initrd as the loaders read them: a host file,
// read with pread() straight into guest memory (nothing of it is mapped in
// the VMM, so a 50 MiB initrd costs one copy, no page-table churn and no
// resident memory beyond the guest's own), or bytes already in memory (the
// built-in demo guest, tests).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"

namespace crosvm {

class ImageSource {
 public:
  // A regular file; `what` ("kernel", "initrd") names it in errors.
  static Result<ImageSource> open(const std::string& path, const char* what);
  // Bytes in memory, which must outlive the source.
  explicit ImageSource(std::span<const uint8_t> bytes) : bytes_(bytes), size_(bytes.size()) {}

  uint64_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

  // Fills `out` with the image's bytes from `offset`. Fails when the image
  // holds fewer (a file that shrank since it was opened) or a read fails.
  // A file's first kHeadSize bytes are read once and kept: the loaders look
  // at a kernel's headers several times (its format, then its setup header
  // or ELF headers), and each look then sees the same bytes.
  Result<void> read(uint64_t offset, std::span<uint8_t> out) const;

  static constexpr size_t kHeadSize = 4096;

 private:
  ImageSource(UniqueFd fd, uint64_t size, std::string description)
      : fd_(std::move(fd)), size_(size), description_(std::move(description)) {}

  Result<void> read_file(uint64_t offset, std::span<uint8_t> out) const;

  UniqueFd fd_;
  std::span<const uint8_t> bytes_;
  mutable std::vector<uint8_t> head_;  // a file's first bytes, once read
  uint64_t size_ = 0;
  std::string description_;  // "kernel 'PATH'"
};

}  // namespace crosvm
