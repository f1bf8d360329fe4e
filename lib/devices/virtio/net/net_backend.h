// What carries a NIC's frames on the host (a TAP; user-mode networking
// later): frames in and out, each with the 12-byte virtio_net_hdr in front
// when the backend takes one (a TAP opened with IFF_VNET_HDR), and the
// offloads it can hand to the guest. A device's backend lives in the
// device's process and is built from an fd the VMM opened.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "base/result.h"

namespace crosvm::virtio {

class NetBackend {
 public:
  virtual ~NetBackend() = default;

  // For the log and the status: "tap vmtap0".
  virtual std::string describe() const = 0;
  // Readable when a frame waits.
  virtual int wait_fd() const = 0;
  // The TAP queue itself, for the kernel's vhost-net to carry frames
  // through; -1 for a backend that is not a TAP.
  virtual int tap_fd() const { return -1; }
  // Whether frames carry a virtio_net_hdr (then offloads are possible).
  virtual bool carries_header() const = 0;
  // The TUN_F_* offloads the backend can deliver to the guest.
  virtual unsigned supported_offloads() const = 0;
  // Which of them it may use from now on (a subset of supported_offloads()).
  virtual Result<void> set_offloads(unsigned offloads) = 0;
  // A queue pair the driver does not use: the backend stops taking frames
  // for it (a multi-queue TAP steers flows to its attached queues only).
  virtual Result<void> set_enabled(bool enabled) {
    (void)enabled;
    return {};
  }
  // One frame into `buffer`: its length, 0 when none waits. An error: the
  // backend failed or went away.
  virtual Result<size_t> receive(std::span<uint8_t> buffer) = 0;
  // One frame. kNoRoom: the backend cannot take it now (it is dropped, as
  // a full NIC queue drops); kRefused: the backend refused this frame (a
  // header the kernel does not accept). An error: the backend failed or
  // went away.
  enum class Sent { kSent, kNoRoom, kRefused };
  virtual Result<Sent> send(std::span<const iovec> frame) = 0;
};

}  // namespace crosvm::virtio
