#include "devices/virtio/net/vhost_net.h"

#include <fcntl.h>
// Without the legacy ring layout's C helpers, which are not C++.
#define VIRTIO_RING_NO_LEGACY
#include <linux/vhost.h>
#include <sys/ioctl.h>

#include <cerrno>
#include <cstring>
#include <vector>

namespace crosvm::virtio {
namespace {

constexpr const char* kDevicePath = "/dev/vhost-net";

}  // namespace

Result<UniqueFd> VhostNet::open_device() {
  UniqueFd fd(::open(kDevicePath, O_RDWR | O_CLOEXEC));
  if (fd) return fd;
  const int error = errno;
  if (error == ENOENT || error == ENODEV || error == ENXIO) {
    return make_errno_error(ErrorCode::kDevice, error,
                            "vhost-net: {} is missing (load the kernel's vhost_net module: modprobe vhost_net)",
                            kDevicePath);
  }
  if (error == EACCES || error == EPERM) {
    return make_errno_error(ErrorCode::kDevice, error,
                            "vhost-net: {} is not open to this user (it needs read and write access to it, "
                            "or leave vhost-net=true out)",
                            kDevicePath);
  }
  return make_errno_error(ErrorCode::kDevice, error, "vhost-net: cannot open {}", kDevicePath);
}

Result<std::unique_ptr<VhostNet>> VhostNet::create(UniqueFd fd, std::string description) {
  if (::ioctl(fd.get(), VHOST_SET_OWNER) != 0) {
    return make_errno_error(ErrorCode::kDevice, errno, "{}: VHOST_SET_OWNER", description);
  }
  uint64_t features = 0;
  if (::ioctl(fd.get(), VHOST_GET_FEATURES, &features) != 0) {
    return make_errno_error(ErrorCode::kDevice, errno, "{}: VHOST_GET_FEATURES", description);
  }
  if ((features & kFeatureVersion1) == 0) {
    return make_error(ErrorCode::kDevice, "{}: this kernel's vhost-net does not serve virtio 1.0 rings", description);
  }
  return std::unique_ptr<VhostNet>(new VhostNet(std::move(fd), std::move(description), features));
}

VhostNet::~VhostNet() {
  if (running_) (void)stop();
}

Result<void> VhostNet::start(const GuestMemory& memory, uint64_t features, const std::array<Queue, 2>& queues,
                             int tap_fd) {
  if (running_) CROSVM_TRY(stop());
  auto failed = [&](std::string_view what) {
    return make_errno_error(ErrorCode::kDevice, errno, "{}: {}", description_, what);
  };
  if ((features & ~features_) != 0) {
    return make_error(ErrorCode::kInternal, "{}: features {:#x} are not the kernel's", description_,
                      features & ~features_);
  }
  if (::ioctl(fd_.get(), VHOST_SET_FEATURES, &features) != 0) return failed("VHOST_SET_FEATURES");

  const size_t count = memory.regions().size();
  std::vector<uint8_t> table(sizeof(vhost_memory) + count * sizeof(vhost_memory_region), 0);
  auto* header = reinterpret_cast<vhost_memory*>(table.data());
  header->nregions = static_cast<uint32_t>(count);
  for (size_t i = 0; i < count; ++i) {
    const RegionMapping mapping = memory.region_mapping(i);
    header->regions[i] = {.guest_phys_addr = mapping.region.guest_address,
                          .memory_size = mapping.region.size,
                          .userspace_addr = reinterpret_cast<uint64_t>(mapping.host),
                          .flags_padding = 0};
  }
  if (::ioctl(fd_.get(), VHOST_SET_MEM_TABLE, table.data()) != 0) return failed("VHOST_SET_MEM_TABLE");

  for (unsigned which = 0; which < 2; ++which) {
    const QueueConfig config = queues[which].queue->queue.config();
    vhost_vring_state size{which, config.size};
    if (::ioctl(fd_.get(), VHOST_SET_VRING_NUM, &size) != 0) return failed("VHOST_SET_VRING_NUM");
    vhost_vring_state base{which, config.next_available};
    if (::ioctl(fd_.get(), VHOST_SET_VRING_BASE, &base) != 0) return failed("VHOST_SET_VRING_BASE");
    const RingHostAddresses rings = CROSVM_TRY(ring_host_addresses(memory, config));
    vhost_vring_addr address{
        .index = which,
        .flags = 0,
        .desc_user_addr = rings.descriptor_table,
        .used_user_addr = rings.used_ring,
        .avail_user_addr = rings.available_ring,
        .log_guest_addr = 0,
    };
    if (::ioctl(fd_.get(), VHOST_SET_VRING_ADDR, &address) != 0) return failed("VHOST_SET_VRING_ADDR");
    vhost_vring_file kick{which, queues[which].queue->kick.fd()};
    if (::ioctl(fd_.get(), VHOST_SET_VRING_KICK, &kick) != 0) return failed("VHOST_SET_VRING_KICK");
    vhost_vring_file call{which, queues[which].call};
    if (::ioctl(fd_.get(), VHOST_SET_VRING_CALL, &call) != 0) return failed("VHOST_SET_VRING_CALL");
    vhost_vring_file error{which, queues[which].error};
    if (::ioctl(fd_.get(), VHOST_SET_VRING_ERR, &error) != 0) return failed("VHOST_SET_VRING_ERR");
  }
  running_ = true;
  for (unsigned which = 0; which < 2; ++which) {
    vhost_vring_file backend{which, tap_fd};
    if (::ioctl(fd_.get(), VHOST_NET_SET_BACKEND, &backend) != 0) {
      Error error = failed("VHOST_NET_SET_BACKEND");
      (void)stop();
      return error;
    }
  }
  return {};
}

Result<void> VhostNet::set_call(size_t which, int fd) {
  vhost_vring_file call{static_cast<unsigned>(which), fd};
  if (::ioctl(fd_.get(), VHOST_SET_VRING_CALL, &call) != 0) {
    return make_errno_error(ErrorCode::kDevice, errno, "{}: VHOST_SET_VRING_CALL", description_);
  }
  return {};
}

Result<std::array<uint16_t, 2>> VhostNet::stop() {
  std::array<uint16_t, 2> positions{0, 0};
  if (!running_) return positions;
  running_ = false;
  // Without its TAP a queue is idle: the kernel flushes what it was doing
  // and touches the ring no more.
  Result<void> result;
  for (unsigned which = 0; which < 2; ++which) {
    vhost_vring_file backend{which, -1};
    if (::ioctl(fd_.get(), VHOST_NET_SET_BACKEND, &backend) != 0 && result) {
      result = make_errno_error(ErrorCode::kDevice, errno, "{}: VHOST_NET_SET_BACKEND", description_);
    }
  }
  for (unsigned which = 0; which < 2; ++which) {
    vhost_vring_state base{which, 0};
    if (::ioctl(fd_.get(), VHOST_GET_VRING_BASE, &base) != 0) {
      if (result) result = make_errno_error(ErrorCode::kDevice, errno, "{}: VHOST_GET_VRING_BASE", description_);
    } else {
      positions[which] = static_cast<uint16_t>(base.num);
    }
    // The activation's eventfds go: nothing of it stays open in the kernel.
    for (const unsigned long request : {VHOST_SET_VRING_KICK, VHOST_SET_VRING_CALL, VHOST_SET_VRING_ERR}) {
      vhost_vring_file unbound{which, -1};
      (void)::ioctl(fd_.get(), request, &unbound);
    }
  }
  if (!result) return result.take_error();
  return positions;
}

}  // namespace crosvm::virtio
