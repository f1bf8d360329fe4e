// The kernel's vhost-net serving one queue pair of a NIC (vhost-net=true):
// the frames go between the guest's rings and the TAP queue inside the
// kernel, without a system call of ours per frame. The VMM opens
// /dev/vhost-net (one per pair); the device's process (the VMM, or the
// jailed device process) makes itself its owner, so the kernel reaches
// guest RAM through that process's mapping, and at each activation gives
// it the rings, the queue's kick eventfd (KVM's ioeventfd, or the one a
// vhost-user frontend passed on), a call eventfd and an error eventfd.
// Stopping takes the TAP away first: when stop() returns the kernel
// touches guest memory no more and holds none of the activation's fds.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "base/result.h"
#include "base/unique_fd.h"
#include "devices/virtio/virtio_device.h"
#include "memory/guest_memory.h"

namespace crosvm::virtio {

class VhostNet {
 public:
  // /dev/vhost-net, opened in the VMM; a missing module or a missing
  // permission is one line saying what to do.
  static Result<UniqueFd> open_device();
  // Takes an fd from open_device() and makes the calling process its
  // owner (VHOST_SET_OWNER): in the process whose mapping of guest RAM
  // the kernel is to use.
  static Result<std::unique_ptr<VhostNet>> create(UniqueFd fd, std::string description);
  ~VhostNet();

  // The feature bits the kernel can serve (VHOST_GET_FEATURES).
  uint64_t features() const { return features_; }

  struct Queue {
    const ActiveQueue* queue;
    int call;   // signalled when the driver is to be interrupted
    int error;  // signalled when the kernel gives up on the ring
  };
  // Starts both queues of the pair (receive, then transmit) on `tap_fd`
  // with the negotiated `features` (those of features() only).
  Result<void> start(const GuestMemory& memory, uint64_t features, const std::array<Queue, 2>& queues, int tap_fd);
  // Moves queue `which` (0 receive, 1 transmit) to another call eventfd.
  Result<void> set_call(size_t which, int fd);
  // Stops both queues; where each stood (its next available index). A
  // pair that is not running stood at 0.
  Result<std::array<uint16_t, 2>> stop();
  bool running() const { return running_; }

 private:
  VhostNet(UniqueFd fd, std::string description, uint64_t features)
      : fd_(std::move(fd)), description_(std::move(description)), features_(features) {}
  UniqueFd fd_;
  std::string description_;
  uint64_t features_;
  bool running_ = false;
};

}  // namespace crosvm::virtio
