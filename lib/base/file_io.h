// Small helpers for host files: whole writes that survive EINTR/EAGAIN, and
// read-only views of files the VMM loads (kernel, initrd).
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "base/memory_mapping.h"
#include "base/result.h"
#include "base/unique_fd.h"

namespace crosvm {

// Writes all of `data`, waiting for the fd to become writable if it is
// non-blocking. Returns false if the fd is gone (EPIPE, EBADF...).
bool write_all(int fd, std::span<const uint8_t> data);

// Opens a file for the VMM, naming `what` ("kernel", "initrd"...) in errors.
Result<UniqueFd> open_file(const std::string& path, int flags, const char* what);

// A regular file mapped read-only; `bytes()` is empty for an empty file.
class MappedFile {
 public:
  static Result<MappedFile> open(const std::string& path, const char* what);
  std::span<const uint8_t> bytes() const { return {mapping_.data(), mapping_.size()}; }

 private:
  explicit MappedFile(MemoryMapping mapping) : mapping_(std::move(mapping)) {}
  MemoryMapping mapping_;
};

}  // namespace crosvm
