// Small helpers for host files: whole writes that survive EINTR/EAGAIN, and
// opening with errors that name the file.
#pragma once

#include <signal.h>

#include <cstdint>
#include <span>
#include <string>

#include "base/result.h"
#include "base/unique_fd.h"

namespace crosvm {

// Blocks SIGPIPE on this thread while it lives. A SIGPIPE raised meanwhile
// (our own writes to a pipe whose reader left) is taken off the thread
// before the old mask comes back, so it is never delivered; one that was
// pending before is left. For library code on an embedder's thread.
class SigpipeBlocked {
 public:
  SigpipeBlocked();
  ~SigpipeBlocked();
  SigpipeBlocked(const SigpipeBlocked&) = delete;
  SigpipeBlocked& operator=(const SigpipeBlocked&) = delete;

 private:
  sigset_t pipe_;
  sigset_t saved_;
  bool was_pending_ = false;
};

// Writes all of `data`, waiting for the fd to become writable if it is
// non-blocking. Returns false if the fd is gone (EPIPE, EBADF...). Never
// raises SIGPIPE, on whatever thread it runs (an embedder's included): a
// reader that went away is an error here, not the end of the process.
bool write_all(int fd, std::span<const uint8_t> data);

// Opens a file for the VMM, naming `what` ("kernel", "initrd"...) in errors.
Result<UniqueFd> open_file(const std::string& path, int flags, const char* what);

}  // namespace crosvm
