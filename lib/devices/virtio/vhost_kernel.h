// The kernel's vhost devices (/dev/vhost-net, /dev/vhost-vsock): the
// kernel serves some of a device's queues itself, straight between guest
// RAM and its own end (a TAP, the host's vsock sockets), with no system
// call of ours per request.
//
// KernelVhost is one such fd. The VMM opens it; the device's process (the
// VMM, or the jailed device process) makes itself its owner, so the kernel
// reaches guest RAM through that process's mapping, and at each activation
// gives it the memory table, the rings, each queue's kick eventfd (KVM's
// ioeventfd, or the one a vhost-user frontend passed on), a call eventfd
// and an error eventfd. What starts and stops the queues is the kind's
// own (VHOST_NET_SET_BACKEND, VHOST_VSOCK_SET_RUNNING).
//
// KernelQueues is what a device does around them: where each queue's
// interrupts go (the transport's own eventfd, the MSI-X vector's irqfd,
// while it has one; else a relay the device's worker forwards), which
// eventfds the worker waits on, and where the kernel's queues stood when
// the driver reset the device.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/event_fd.h"
#include "base/log.h"
#include "base/result.h"
#include "base/unique_fd.h"
#include "devices/virtio/virtio_device.h"
#include "memory/guest_memory.h"

namespace crosvm::virtio {

class KernelVhost {
 public:
  // A derived class's destructor stops a running device (stop() calls
  // detach(), which is the derived class's).
  virtual ~KernelVhost() = default;
  KernelVhost(const KernelVhost&) = delete;
  KernelVhost& operator=(const KernelVhost&) = delete;

  // The feature bits the kernel can serve (VHOST_GET_FEATURES).
  uint64_t features() const { return features_; }
  const std::string& description() const { return description_; }

  struct Queue {
    const ActiveQueue* queue;
    int call;   // signalled when the driver is to be interrupted
    int error;  // signalled when the kernel gives up on the ring
  };
  // Gives the kernel the negotiated `features` (those of features() only),
  // guest RAM and the queues (the kernel's queue i is queues[i]), then
  // starts them (attach()).
  Result<void> start(const GuestMemory& memory, uint64_t features, std::span<const Queue> queues);
  // Moves the kernel's queue `which` to another call eventfd.
  Result<void> set_call(unsigned which, int fd);
  // Stops the queues (detach()) and says where each stood (its next
  // available index); the activation's eventfds are no longer held. When
  // it returns the kernel touches guest memory no more.
  Result<std::vector<uint16_t>> stop();
  bool running() const { return running_; }

 protected:
  // Opens `path`; a missing module (`module`) or a missing permission is
  // one line saying what to do, `instead` naming the way around it.
  static Result<UniqueFd> open_path(const std::string& path, std::string_view module, std::string_view instead);
  // VHOST_SET_OWNER, then VHOST_GET_FEATURES (which must offer virtio 1.0):
  // in the process whose mapping of guest RAM the kernel is to use.
  static Result<uint64_t> take_ownership(int fd, std::string_view description);

  KernelVhost(UniqueFd fd, std::string description, uint64_t features)
      : fd_(std::move(fd)), description_(std::move(description)), features_(features) {}

  // The queues begin serving; they stop, and with them every use of guest
  // RAM. Both are given `queue_count()` queues.
  virtual Result<void> attach() = 0;
  virtual Result<void> detach() = 0;

  int fd() const { return fd_.get(); }
  unsigned queue_count() const { return queue_count_; }
  // An error naming the device, the request and errno.
  Error failed(std::string_view request) const;

 private:
  UniqueFd fd_;
  std::string description_;
  uint64_t features_;
  unsigned queue_count_ = 0;
  bool running_ = false;
};

class KernelQueues {
 public:
  // `report` tells of a failure the guest can repeat (a call that could
  // not be moved): the device's rate-limited log.
  explicit KernelQueues(std::function<void(std::string_view)> report) : report_(std::move(report)) {}
  ~KernelQueues();
  KernelQueues(const KernelQueues&) = delete;
  KernelQueues& operator=(const KernelQueues&) = delete;

  // `vhost` serves the device's queues `queues` (the kernel's queue i is
  // the device's queues[i]).
  void add(std::unique_ptr<KernelVhost> vhost, std::vector<uint16_t> queues);
  bool empty() const { return groups_.empty(); }
  // The first device's (every one is the same kind on the same kernel).
  const KernelVhost& front() const { return *groups_.front().vhost; }

  // Starts every device whose queues the driver all enabled; one with
  // a queue missing carries nothing (a vhost-user frontend enables queues
  // one at a time, so this passes while a jailed device starts). The
  // eventfds of host_fds() are made here, for every queue.
  Result<void> start(const Activation& activation, uint64_t features, const Logger& logger,
                     std::string_view device_name);
  // Stops every device and records where its queues stood.
  void stop();
  // `positions` (the device's own, at its last reset) with those of the
  // kernel's queues replaced by where the kernel left them.
  std::vector<QueuePosition> with_kernel_positions(std::vector<QueuePosition> positions) const;
  // The eventfds a device's worker waits on: each queue's relay, then each
  // queue's error eventfd, in the order add() gave the queues.
  std::vector<int> host_fds() const;

  // What host_fds()[index] being readable meant.
  struct Event {
    enum class Kind { kNothing, kUsed, kBroken } kind = Kind::kNothing;
    uint16_t queue = 0;  // the device's queue
  };
  // The worker calls every source once as a session starts: only a count
  // that is there says something happened.
  Event take_event(size_t index);

 private:
  struct Ring {
    size_t group;
    unsigned which;  // the kernel's queue number
    uint16_t queue;  // the device's
    std::optional<EventFd> relay;
    std::optional<EventFd> error;
    int target = -1;  // where its calls go now
  };
  struct Group {
    std::unique_ptr<KernelVhost> vhost;
  };
  // Each running queue's calls to the transport's own eventfd when it has
  // one now, else to the relay. Under mutex_.
  void route();

  std::function<void(std::string_view)> report_;
  std::vector<Group> groups_;
  std::vector<Ring> rings_;
  std::vector<QueuePosition> positions_;
  // The calls move from any thread (a vCPU masking a vector).
  std::mutex mutex_;
  std::shared_ptr<Interrupt> interrupt_;  // under mutex_
};

}  // namespace crosvm::virtio
