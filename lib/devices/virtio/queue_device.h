// What every queue-driven virtio device shares: the worker that runs its
// handlers on an executor of the device's own, the current activation,
// serving a queue chain by chain within a budget per turn, and telling what
// the guest did wrong without letting a hostile guest flood the log.
#pragma once

#include <functional>
#include <optional>
#include <string>

#include "base/guest_log.h"
#include "base/log.h"
#include "devices/virtio/device_worker.h"
#include "devices/virtio/virtio_device.h"

namespace crosvm::virtio {

class QueueDevice : public VirtioDevice {
 public:
  // A turn serves at most this many chains, then yields to the device's
  // other work (its other queues, host input, a reset).
  static constexpr unsigned kChainsPerTurn = 64;
  using Turn = DeviceWorker::Turn;

  QueueDevice(std::string name, const Logger& logger);

  std::string_view name() const override { return name_; }
  Result<void> activate(Activation activation) final;
  void reset() final;
  std::vector<QueuePosition> positions_at_reset() const override { return positions_; }

 protected:
  // A kick (or the start of the activation, or the rest of a turn that
  // yielded) for `queue`; runs on the device's worker under worker().lock().
  // Serves a bounded amount and says whether more is waiting.
  virtual Turn on_kick(ActiveQueue& queue) = 0;
  // Checks an activation (e.g. that the needed queues are there).
  virtual Result<void> on_activate(const Activation& activation) {
    (void)activation;
    return {};
  }
  virtual void on_reset() {}
  // The worker stopped, the activation is still there: work the device runs
  // elsewhere (a disk's I/O threads) finishes now and is returned to the
  // driver, before the queues' positions are read and guest memory may go.
  // Under the lock.
  virtual void on_stop() {}
  // Host fds the worker waits on for the device (a NIC's TAP), during each
  // activation; on_host_ready(i) runs when host_fds()[i] is readable.
  virtual std::vector<int> host_fds() const { return {}; }
  virtual Turn on_host_ready(size_t index) {
    (void)index;
    return Turn::kPaused;
  }
  // Waits on host fd `index` again after on_host_ready() returned kPaused.
  void resume_host(size_t index);
  // Whether the worker serves `queue` (waits on its kicks and calls
  // on_kick()) in this activation, asked once on_activate() succeeded:
  // false for a queue something else serves (the kernel's vhost-net).
  virtual bool served_here(uint16_t queue) const {
    (void)queue;
    return true;
  }

  // Serves the available chains of `queue`, up to kChainsPerTurn: serve()
  // returns how many bytes it wrote into the chain; a malformed chain goes
  // back unused. Tells the driver at the end if it asked to be told; kMore
  // when chains are still waiting. Under the lock.
  Turn serve_available(ActiveQueue& queue, const std::function<uint32_t(const DescriptorChain&)>& serve);
  // After chains were completed: interrupts the driver if it asked for it.
  void notify_used(ActiveQueue& queue);
  // Returns one chain to the driver and reports a broken ring. Under the lock.
  bool complete(ActiveQueue& queue, uint16_t head, uint32_t written);
  // A guest mistake that costs one request; logged within the device's
  // rate limit (GuestLog), which no reset renews.
  void report_problem(std::string_view problem);
  // A host-side failure the guest can make happen again and again (a
  // backend ioctl at each activation): within the same rate limit.
  void report_limited(std::string_view problem);
  // The next chain of `queue`; nullopt when the ring is empty, and then
  // the driver has been asked to kick for the next one (a chain that came
  // meanwhile is returned instead). An error: the ring is broken (the
  // caller fails the device). Under the lock.
  Result<std::optional<PoppedChain>> pop_or_arm(ActiveQueue& queue);
  // The driver broke a ring (or the device itself failed: an exception):
  // DEVICE_NEEDS_RESET, nothing more is served. Under the lock.
  void fail(std::string_view why);

  // The active queue with this index, if the driver enabled it. Under the lock.
  ActiveQueue* find_queue(uint16_t index);
  bool active() const { return activation_.has_value() && !broken_; }
  const GuestMemory& memory() const { return *activation_->memory; }
  Interrupt& interrupt() { return *activation_->interrupt; }
  uint64_t features() const { return activation_->features; }
  DeviceWorker& worker() { return worker_; }
  const Logger& logger() const { return logger_; }

 private:
  std::string name_;
  Logger logger_;
  DeviceWorker worker_;
  std::optional<Activation> activation_;  // guarded by worker_.lock()
  // The worker's kick sources: positions in activation_->queues.
  std::vector<size_t> served_;
  bool broken_ = false;
  GuestLog guest_log_;
  std::vector<QueuePosition> positions_;  // of the last activation reset() ended
};

}  // namespace crosvm::virtio
