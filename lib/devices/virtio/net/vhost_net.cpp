#include "devices/virtio/net/vhost_net.h"

// Without the legacy ring layout's C helpers, which are not C++.
#define VIRTIO_RING_NO_LEGACY
#include <linux/vhost.h>
#include <sys/ioctl.h>

#include <cerrno>

namespace crosvm::virtio {

Result<UniqueFd> VhostNet::open_device() {
  auto opened = open_path("/dev/vhost-net", "vhost_net", "leave vhost-net=true out");
  if (!opened) return make_error(opened.error().code, "vhost-net: {}", opened.error().message);
  return opened;
}

Result<std::unique_ptr<VhostNet>> VhostNet::create(UniqueFd fd, std::string description, int tap_fd) {
  const uint64_t features = CROSVM_TRY(take_ownership(fd.get(), description));
  return std::unique_ptr<VhostNet>(new VhostNet(std::move(fd), std::move(description), features, tap_fd));
}

VhostNet::~VhostNet() {
  if (running()) (void)stop();
}

Result<void> VhostNet::attach() {
  for (unsigned which = 0; which < queue_count(); ++which) {
    vhost_vring_file backend{which, tap_fd_};
    if (::ioctl(fd(), VHOST_NET_SET_BACKEND, &backend) != 0) return failed("VHOST_NET_SET_BACKEND");
  }
  return {};
}

Result<void> VhostNet::detach() {
  // Without its TAP a queue is idle: the kernel flushes what it was doing
  // and touches the ring no more.
  Result<void> result;
  for (unsigned which = 0; which < queue_count(); ++which) {
    vhost_vring_file backend{which, -1};
    if (::ioctl(fd(), VHOST_NET_SET_BACKEND, &backend) != 0 && result) result = failed("VHOST_NET_SET_BACKEND");
  }
  return result;
}

}  // namespace crosvm::virtio
