// The kernel's vhost-vsock (crosvm's --vsock cid=N): the guest's vsock
// packets go between its receive and transmit rings and the host's
// AF_VSOCK sockets inside the kernel. The VMM opens /dev/vhost-vsock and
// claims the guest's CID on it (so a CID another VM holds is refused before
// any device runs); the rest is KernelVhost's (vhost_kernel.h).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "base/result.h"
#include "base/unique_fd.h"
#include "devices/virtio/vhost_kernel.h"

namespace crosvm::virtio {

// The CIDs no guest may have: 0 (the hypervisor), 1 (loopback), 2 (the
// host) and 0xffffffff (any); and above 32 bits.
bool reserved_vsock_cid(uint64_t cid);

class VhostVsock final : public KernelVhost {
 public:
  // `path` (/dev/vhost-vsock unless the user names another), opened in
  // the VMM, with `cid` claimed on it (VHOST_VSOCK_SET_GUEST_CID): one
  // line for a missing device, a missing permission, a CID in use.
  static Result<UniqueFd> open_device(const std::string& path, uint64_t cid);
  // Takes an fd from open_device() and makes the calling process its owner.
  static Result<std::unique_ptr<VhostVsock>> create(UniqueFd fd, std::string description);
  ~VhostVsock() override;

 private:
  VhostVsock(UniqueFd fd, std::string description, uint64_t features)
      : KernelVhost(std::move(fd), std::move(description), features) {}
  Result<void> attach() override;
  Result<void> detach() override;
};

}  // namespace crosvm::virtio
