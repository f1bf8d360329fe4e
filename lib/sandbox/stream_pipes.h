// A jailed virtio-console's host streams cross the process boundary as two
// pipes: what the guest writes comes from the device process in one
// (OutputPump: into the VM's own OutputStream, stdout, a file or the
// embedder's callback), host input goes to it in the other (PipeInput: a
// HostInput whose queue_input() writes into the pipe). Inside the device
// the console writes to a HostOutput on its pipe and reads a SerialInput
// from the other: the same classes as in the VMM.
//
// Flow control carries across: the pump reads only while the VM's stream
// takes bytes, so a stalled reader fills the pipe and then the device's
// bounded output, and the guest's buffers wait in its ring; PipeInput
// takes what the pipe takes at once and says when it has room again. No
// side waits on the other, and nothing grows without a bound.
#pragma once

#include <functional>
#include <memory>
#include <span>

#include "base/event_loop.h"
#include "base/result.h"
#include "base/unique_fd.h"
#include "devices/host_input.h"
#include "devices/output_stream.h"

namespace crosvm::sandbox {

// Moves what arrives on `pipe` to `output`, on `loop`.
class OutputPump {
 public:
  static Result<std::unique_ptr<OutputPump>> create(EventLoop& loop, UniqueFd pipe,
                                                    std::shared_ptr<OutputStream> output);
  ~OutputPump();
  // Hands what is in the pipe now to the output, waiting for it if it must
  // (the VM's last words, when it stops), and stops reading. On the loop's
  // thread, or once it is stopped.
  void drain_and_stop();

 private:
  struct State;
  OutputPump() = default;
  std::shared_ptr<State> state_;
};

// Host input for a device in another process, written into `pipe`.
class PipeInput final : public HostInput {
 public:
  static Result<std::shared_ptr<PipeInput>> create(EventLoop& loop, UniqueFd pipe);
  ~PipeInput() override;
  size_t queue_input(std::span<const uint8_t> bytes) override;
  void set_input_space_listener(std::function<void()> listener) override;
  // Stops waiting for room; on the loop's thread, or once it is stopped.
  void stop();

 private:
  struct State;
  PipeInput() = default;
  std::shared_ptr<State> state_;
};

}  // namespace crosvm::sandbox
