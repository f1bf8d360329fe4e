// A device that takes bytes from the host for the guest (a UART's receiver,
// a console's receive queue). Input arrives from the host's stdin or from
// the embedder; the device buffers a bounded amount, and says when room
// opens again so the reader can resume without losing a byte.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>

namespace crosvm {

class HostInput {
 public:
  virtual ~HostInput() = default;
  // Queues bytes for the guest; returns how many fit.
  virtual size_t queue_input(std::span<const uint8_t> bytes) = 0;
  // Called (from any thread; it must only post work) when room has opened
  // after queue_input() ran out of it.
  virtual void set_input_space_listener(std::function<void()> listener) = 0;
};

}  // namespace crosvm
