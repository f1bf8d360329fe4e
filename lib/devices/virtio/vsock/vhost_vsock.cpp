#include "devices/virtio/vsock/vhost_vsock.h"

// Without the legacy ring layout's C helpers, which are not C++.
#define VIRTIO_RING_NO_LEGACY
#include <linux/vhost.h>
#include <sys/ioctl.h>

#include <cerrno>

namespace crosvm::virtio {

bool reserved_vsock_cid(uint64_t cid) { return cid <= 2 || cid >= 0xffffffffull; }

Result<UniqueFd> VhostVsock::open_device(const std::string& path, uint64_t cid) {
  if (reserved_vsock_cid(cid)) {
    return make_error(ErrorCode::kInvalidArgument,
                      "vsock: CID {} is reserved (0, 1, 2 and 4294967295 are not a guest's): pick 3 or above", cid);
  }
  auto opened = open_path(path, "vhost_vsock", "leave --vsock out");
  if (!opened) return make_error(opened.error().code, "vsock: {}", opened.error().message);
  uint64_t guest_cid = cid;
  if (::ioctl(opened->get(), VHOST_VSOCK_SET_GUEST_CID, &guest_cid) != 0) {
    if (errno == EADDRINUSE) {
      return make_error(ErrorCode::kInvalidArgument, "vsock: CID {} is in use by another VM on this host", cid);
    }
    return make_errno_error(ErrorCode::kDevice, errno, "vsock: {}: VHOST_VSOCK_SET_GUEST_CID {}", path, cid);
  }
  return opened;
}

Result<std::unique_ptr<VhostVsock>> VhostVsock::create(UniqueFd fd, std::string description) {
  const uint64_t features = CROSVM_TRY(take_ownership(fd.get(), description));
  return std::unique_ptr<VhostVsock>(new VhostVsock(std::move(fd), std::move(description), features));
}

VhostVsock::~VhostVsock() {
  if (running()) (void)stop();
}

Result<void> VhostVsock::attach() {
  int running = 1;
  if (::ioctl(fd(), VHOST_VSOCK_SET_RUNNING, &running) != 0) return failed("VHOST_VSOCK_SET_RUNNING 1");
  return {};
}

Result<void> VhostVsock::detach() {
  // The kernel flushes its workers and touches the rings no more.
  int running = 0;
  if (::ioctl(fd(), VHOST_VSOCK_SET_RUNNING, &running) != 0) return failed("VHOST_VSOCK_SET_RUNNING 0");
  return {};
}

}  // namespace crosvm::virtio
