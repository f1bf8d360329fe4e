// Feeds a host file descriptor (usually stdin) into a guest device (a UART,
// a virtio console) on the event loop. Reading pauses while the device's
// input buffer is full and resumes when the guest has drained it, so no
// byte is lost and none waits in the kernel longer than needed.
#pragma once

#include <memory>

#include "base/result.h"
#include "devices/host_input.h"
#include "base/event_loop.h"

namespace crosvm {

class SerialInput {
 public:
  // Duplicates `fd`; the original stays the caller's. Its O_NONBLOCK flag is
  // restored on shutdown (it is shared with every copy of the descriptor).
  static Result<std::unique_ptr<SerialInput>> create(EventLoop& loop, int fd,
                                                     std::shared_ptr<HostInput> device);
  ~SerialInput();

  void start();
  // Cancels reading; call on the loop thread or once the loop is stopped.
  void shutdown();

 private:
  struct State;
  SerialInput() = default;
  std::shared_ptr<State> shared_;  // shared with the pending read's handler
};

}  // namespace crosvm
