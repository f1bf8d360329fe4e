#include "vm/host_output.h"

#include "base/file_io.h"

namespace crosvm {

HostOutput::~HostOutput() { flush(); }

void HostOutput::write(std::span<const uint8_t> bytes) {
  bool post = false;
  bool full = false;
  {
    std::lock_guard lock(pending_mutex_);
    pending_.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    full = pending_.size() >= kMaxPending;
    if (!full && !flush_posted_) flush_posted_ = post = true;
  }
  if (full) {
    flush();  // the guest waits for a slow reader, as for a slow UART
  } else if (post) {
    loop_.post([weak = weak_from_this()] {
      if (auto self = weak.lock()) self->flush();
    });
  }
}

void HostOutput::flush() {
  std::lock_guard writing(write_mutex_);
  std::string batch;
  {
    std::lock_guard lock(pending_mutex_);
    batch.swap(pending_);
    flush_posted_ = false;
  }
  if (!batch.empty()) {
    (void)write_all(fd_, std::span(reinterpret_cast<const uint8_t*>(batch.data()), batch.size()));
  }
}

}  // namespace crosvm
