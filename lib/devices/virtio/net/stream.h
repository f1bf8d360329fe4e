// A NIC's frames on a connected stream socket, each after its length as 4
// bytes in network order: passt's protocol (QEMU's "-netdev stream"). No
// virtio_net_hdr: the guest gets no offloads, and the MTU (passt's 65520)
// is what makes it fast.
//
// The peer is a host program, not the guest, but a stream out of step or a
// length no NIC can carry still ends in an error (the link goes down), never
// in a read past a buffer. A frame is sent whole or not at all: one the
// socket has no room for is dropped (as a full NIC queue drops); one the
// socket took in part is finished, waiting at most kSendTimeout for room,
// so the stream never holds half a frame.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "base/unique_fd.h"
#include "devices/virtio/net/net_backend.h"

namespace crosvm::virtio {

class FrameStream final : public NetBackend {
 public:
  static constexpr std::chrono::milliseconds kSendTimeout{5000};

  // Takes a connected SOCK_STREAM socket (made non-blocking here).
  static Result<std::unique_ptr<FrameStream>> create(UniqueFd socket, std::string description);

  std::string describe() const override { return description_; }
  int wait_fd() const override { return socket_.get(); }
  bool carries_header() const override { return false; }
  unsigned supported_offloads() const override { return 0; }
  Result<void> set_offloads(unsigned) override { return {}; }
  Result<size_t> receive(std::span<uint8_t> buffer) override;
  Result<Sent> send(std::span<const iovec> frame) override;

 private:
  FrameStream(UniqueFd socket, std::string description);
  // Reads up to `length` bytes into `into`: how many came, 0 when none wait.
  Result<size_t> read_some(uint8_t* into, size_t length);
  Result<void> finish_send(std::span<iovec> rest);

  UniqueFd socket_;
  std::string description_;
  // The frame being read: its length prefix, then its bytes.
  uint8_t prefix_[4] = {};
  size_t prefix_got_ = 0;
  std::vector<uint8_t> frame_;
  size_t frame_length_ = 0;
  size_t frame_got_ = 0;
  std::vector<iovec> send_iovecs_;
};

}  // namespace crosvm::virtio
