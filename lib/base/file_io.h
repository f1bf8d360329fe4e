// Small helpers for host files: whole writes that survive EINTR/EAGAIN, and
// opening with errors that name the file.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "base/result.h"
#include "base/unique_fd.h"

namespace crosvm {

// Writes all of `data`, waiting for the fd to become writable if it is
// non-blocking. Returns false if the fd is gone (EPIPE, EBADF...). Never
// raises SIGPIPE, on whatever thread it runs (an embedder's included): a
// reader that went away is an error here, not the end of the process.
bool write_all(int fd, std::span<const uint8_t> data);

// Opens a file for the VMM, naming `what` ("kernel", "initrd"...) in errors.
Result<UniqueFd> open_file(const std::string& path, int flags, const char* what);

}  // namespace crosvm
