// The kernel's vhost-net serving one queue pair of a NIC (vhost-net=true):
// the frames go between the guest's rings and the TAP queue inside the
// kernel. The VMM opens /dev/vhost-net (one per pair); the rest is
// KernelVhost's (vhost_kernel.h). Starting gives the kernel the TAP queue;
// stopping takes it away first.
#pragma once

#include <memory>
#include <string>

#include "base/result.h"
#include "base/unique_fd.h"
#include "devices/virtio/vhost_kernel.h"

namespace crosvm::virtio {

class VhostNet final : public KernelVhost {
 public:
  // /dev/vhost-net, opened in the VMM; a missing module or a missing
  // permission is one line saying what to do.
  static Result<UniqueFd> open_device();
  // Takes an fd from open_device() and makes the calling process its
  // owner; the pair's queues (receive, then transmit) will carry the
  // frames of `tap_fd`, which the caller keeps open as long as this.
  static Result<std::unique_ptr<VhostNet>> create(UniqueFd fd, std::string description, int tap_fd);
  ~VhostNet() override;

 private:
  VhostNet(UniqueFd fd, std::string description, uint64_t features, int tap_fd)
      : KernelVhost(std::move(fd), std::move(description), features), tap_fd_(tap_fd) {}
  Result<void> attach() override;
  Result<void> detach() override;
  int tap_fd_;
};

}  // namespace crosvm::virtio
