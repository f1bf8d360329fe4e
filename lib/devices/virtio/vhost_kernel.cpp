#include "devices/virtio/vhost_kernel.h"

#include <fcntl.h>
#include <sys/eventfd.h>
// Without the legacy ring layout's C helpers, which are not C++.
#define VIRTIO_RING_NO_LEGACY
#include <linux/vhost.h>
#include <sys/ioctl.h>

#include <cerrno>

#include "devices/virtio/queue.h"

namespace crosvm::virtio {

Result<UniqueFd> KernelVhost::open_path(const std::string& path, std::string_view module, std::string_view instead) {
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (fd) return fd;
  const int error = errno;
  if (error == ENOENT || error == ENODEV || error == ENXIO) {
    return make_errno_error(ErrorCode::kDevice, error, "{} is missing (load the kernel's {} module: modprobe {})",
                            path, module, module);
  }
  if (error == EACCES || error == EPERM) {
    return make_errno_error(ErrorCode::kDevice, error,
                            "{} is not open to this user (it needs read and write access to it, or {})", path,
                            instead);
  }
  return make_errno_error(ErrorCode::kDevice, error, "cannot open {}", path);
}

Result<uint64_t> KernelVhost::take_ownership(int fd, std::string_view description) {
  if (::ioctl(fd, VHOST_SET_OWNER) != 0) {
    return make_errno_error(ErrorCode::kDevice, errno, "{}: VHOST_SET_OWNER", description);
  }
  uint64_t features = 0;
  if (::ioctl(fd, VHOST_GET_FEATURES, &features) != 0) {
    return make_errno_error(ErrorCode::kDevice, errno, "{}: VHOST_GET_FEATURES", description);
  }
  if ((features & kFeatureVersion1) == 0) {
    return make_error(ErrorCode::kDevice, "{}: this kernel does not serve virtio 1.0 rings", description);
  }
  return features;
}

Error KernelVhost::failed(std::string_view request) const {
  return make_errno_error(ErrorCode::kDevice, errno, "{}: {}", description_, request);
}

Result<void> KernelVhost::start(const GuestMemory& memory, uint64_t features, std::span<const Queue> queues) {
  if (running_) CROSVM_TRY(stop());
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

  for (unsigned which = 0; which < queues.size(); ++which) {
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
  queue_count_ = static_cast<unsigned>(queues.size());
  running_ = true;
  if (auto attached = attach(); !attached) {
    (void)stop();
    return attached;
  }
  return {};
}

Result<void> KernelVhost::set_call(unsigned which, int fd) {
  vhost_vring_file call{which, fd};
  if (::ioctl(fd_.get(), VHOST_SET_VRING_CALL, &call) != 0) return failed("VHOST_SET_VRING_CALL");
  return {};
}

Result<std::vector<uint16_t>> KernelVhost::stop() {
  std::vector<uint16_t> positions(queue_count_, 0);
  if (!running_) return positions;
  running_ = false;
  Result<void> result = detach();
  for (unsigned which = 0; which < queue_count_; ++which) {
    vhost_vring_state base{which, 0};
    if (::ioctl(fd_.get(), VHOST_GET_VRING_BASE, &base) != 0) {
      if (result) result = failed("VHOST_GET_VRING_BASE");
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

KernelQueues::~KernelQueues() { stop(); }

void KernelQueues::add(std::unique_ptr<KernelVhost> vhost, std::vector<uint16_t> queues) {
  const size_t group = groups_.size();
  groups_.push_back({std::move(vhost)});
  for (unsigned which = 0; which < queues.size(); ++which) {
    rings_.push_back({.group = group, .which = which, .queue = queues[which], .relay = {}, .error = {}, .target = -1});
  }
}

Result<void> KernelQueues::start(const Activation& activation, uint64_t features, const Logger& logger,
                                 std::string_view device_name) {
  {
    std::lock_guard lock(mutex_);
    interrupt_ = activation.interrupt;
    positions_.clear();
    for (Ring& ring : rings_) {
      ring.relay = CROSVM_TRY(EventFd::create(EFD_NONBLOCK));
      ring.error = CROSVM_TRY(EventFd::create(EFD_NONBLOCK));
      ring.target = activation.interrupt->direct_queue_fd(ring.queue).value_or(ring.relay->fd());
    }
    for (size_t group = 0; group < groups_.size(); ++group) {
      std::vector<KernelVhost::Queue> queues;
      bool enabled = true;
      for (const Ring& ring : rings_) {
        if (ring.group != group) continue;
        const ActiveQueue* found = nullptr;
        for (const ActiveQueue& active : activation.queues) {
          if (active.index == ring.queue) found = &active;
        }
        enabled = enabled && found != nullptr;
        queues.push_back({found, ring.target, ring.error->fd()});
      }
      if (!enabled) {
        logger.debug("{}: {} has a queue the driver did not enable: it carries nothing", device_name,
                     groups_[group].vhost->description());
        continue;
      }
      if (auto started = groups_[group].vhost->start(*activation.memory, features, queues); !started) {
        for (Group& other : groups_) (void)other.vhost->stop();
        interrupt_.reset();
        return started.take_error();
      }
    }
  }
  // Masking or unmasking a vector moves its queues' calls. The listener
  // takes mutex_ only (the transport calls it under a lock of its own,
  // which stop() takes without holding mutex_).
  activation.interrupt->watch_direct_fds([this] {
    std::lock_guard lock(mutex_);
    route();
  });
  std::lock_guard lock(mutex_);
  route();  // what changed before the listener was there
  return {};
}

void KernelQueues::route() {
  if (!interrupt_) return;
  for (Ring& ring : rings_) {
    KernelVhost& vhost = *groups_[ring.group].vhost;
    if (!vhost.running()) continue;
    const int target = interrupt_->direct_queue_fd(ring.queue).value_or(ring.relay->fd());
    if (target == ring.target) continue;
    if (auto moved = vhost.set_call(ring.which, target); !moved) {
      report_(moved.error().message);
      continue;
    }
    ring.target = target;
  }
}

void KernelQueues::stop() {
  std::shared_ptr<Interrupt> interrupt;
  {
    std::lock_guard lock(mutex_);
    interrupt = interrupt_;
  }
  // Not under mutex_: a listener that runs now may be waiting for it.
  if (interrupt) interrupt->watch_direct_fds({});
  std::lock_guard lock(mutex_);
  interrupt_.reset();
  for (size_t group = 0; group < groups_.size(); ++group) {
    KernelVhost& vhost = *groups_[group].vhost;
    if (!vhost.running()) continue;
    auto stopped = vhost.stop();
    if (!stopped) {
      report_(stopped.error().message);
      continue;
    }
    for (const Ring& ring : rings_) {
      if (ring.group == group && ring.which < stopped->size()) {
        positions_.push_back({ring.queue, (*stopped)[ring.which]});
      }
    }
  }
}

std::vector<QueuePosition> KernelQueues::with_kernel_positions(std::vector<QueuePosition> positions) const {
  for (QueuePosition& position : positions) {
    for (const QueuePosition& kernel : positions_) {
      if (kernel.index == position.index) position.next_available = kernel.next_available;
    }
  }
  return positions;
}

std::vector<int> KernelQueues::host_fds() const {
  std::vector<int> fds;
  for (const Ring& ring : rings_) fds.push_back(ring.relay ? ring.relay->fd() : -1);
  for (const Ring& ring : rings_) fds.push_back(ring.error ? ring.error->fd() : -1);
  return fds;
}

KernelQueues::Event KernelQueues::take_event(size_t index) {
  if (index >= 2 * rings_.size()) return {};
  const Ring& ring = rings_[index % rings_.size()];
  const std::optional<EventFd>& source = index < rings_.size() ? ring.relay : ring.error;
  if (!source || source->drain() == 0) return {};
  return {index < rings_.size() ? Event::Kind::kUsed : Event::Kind::kBroken, ring.queue};
}

}  // namespace crosvm::virtio
