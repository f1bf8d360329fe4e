#include "devices/virtio/queue_device.h"

#include <vector>

namespace crosvm::virtio {

namespace {

// The worker's thread, as the VM's own are named ("crosvm_vcpu0"): the
// device "virtio-blk 0 (disk.img)" runs on "crosvm_blk0" (a thread name
// shows 15 characters).
std::string thread_name(const std::string& device) {
  std::string kind = device.substr(0, device.find(" ("));
  if (kind.starts_with("virtio-")) kind.erase(0, 7);
  std::erase(kind, ' ');
  return "crosvm_" + kind;
}

}  // namespace

QueueDevice::QueueDevice(std::string name, const Logger& logger)
    : name_(std::move(name)), logger_(logger), worker_(thread_name(name_), logger), guest_log_(logger, name_) {}

Result<void> QueueDevice::activate(Activation activation) {
  CROSVM_TRY(on_activate(activation));
  worker_.stop();
  std::vector<const EventFd*> kicks;
  {
    std::lock_guard lock(worker_.lock());
    if (activation_) on_stop();
    activation_ = std::move(activation);
    broken_ = false;
    served_.clear();
    for (size_t i = 0; i < activation_->queues.size(); ++i) {
      const ActiveQueue& queue = activation_->queues[i];
      if (!served_here(queue.index)) continue;
      served_.push_back(i);
      kicks.push_back(&queue.kick);
    }
  }
  // Kick sources come first, each standing for a position in
  // activation_->queues (which stays put until the next reset); the host
  // fds come after them.
  const std::vector<int> hosts = host_fds();
  return worker_.start(
      kicks,
      [this](size_t position) {
        const bool queue = position < served_.size();
        if (!active()) return queue ? Turn::kIdle : Turn::kPaused;
        if (queue) return on_kick(activation_->queues[served_[position]]);
        return on_host_ready(position - served_.size());
      },
      [this](std::string_view what) { fail(fmt::format("internal error: {}", what)); }, hosts);
}

void QueueDevice::resume_host(size_t index) {
  if (activation_) worker_.resume(served_.size() + index);
}

void QueueDevice::reset() {
  worker_.stop();
  std::lock_guard lock(worker_.lock());
  if (activation_) on_stop();
  positions_.clear();
  if (activation_) {
    for (const ActiveQueue& queue : activation_->queues) {
      positions_.push_back({queue.index, queue.queue.next_available()});
    }
  }
  activation_.reset();
  broken_ = false;
  on_reset();
}

ActiveQueue* QueueDevice::find_queue(uint16_t index) {
  if (!activation_) return nullptr;
  for (ActiveQueue& queue : activation_->queues) {
    if (queue.index == index) return &queue;
  }
  return nullptr;
}

bool QueueDevice::complete(ActiveQueue& queue, uint16_t head, uint32_t written) {
  if (auto pushed = queue.queue.push_used(head, written); !pushed) {
    fail(pushed.error().message);
    return false;
  }
  return true;
}

QueueDevice::Turn QueueDevice::serve_available(
    ActiveQueue& queue, const std::function<uint32_t(const DescriptorChain&)>& serve) {
  unsigned served = 0;
  Turn turn = Turn::kIdle;
  while (active()) {
    if (served == kChainsPerTurn) {
      turn = Turn::kMore;
      break;
    }
    auto popped = pop_or_arm(queue);
    if (!popped) {
      fail(popped.error().message);
      return Turn::kIdle;
    }
    if (!popped->has_value()) break;
    const PoppedChain& next = **popped;
    uint32_t written = 0;
    if (next.chain) {
      written = serve(*next.chain);
    } else {
      report_problem(fmt::format("queue {}: {}", queue.index, next.problem));
    }
    if (!complete(queue, next.head, written)) return Turn::kIdle;
    ++served;
  }
  if (served > 0) notify_used(queue);
  return active() ? turn : Turn::kIdle;
}

void QueueDevice::notify_used(ActiveQueue& queue) {
  if (!active()) return;
  auto notify = queue.queue.should_notify();
  if (!notify) {
    fail(notify.error().message);
  } else if (*notify) {
    interrupt().signal_used(queue.index);
  }
}

void QueueDevice::report_problem(std::string_view problem) {
  guest_log_.warn("bad request from the guest: {}", problem);
}

void QueueDevice::report_limited(std::string_view problem) { guest_log_.warn("{}", problem); }

Result<std::optional<PoppedChain>> QueueDevice::pop_or_arm(ActiveQueue& queue) {
  while (true) {
    auto popped = CROSVM_TRY(queue.queue.pop());
    if (popped) return popped;
    // Empty: ask for a kick for what comes next, unless something came.
    if (!CROSVM_TRY(queue.queue.enable_notification())) return std::optional<PoppedChain>();
  }
}

void QueueDevice::fail(std::string_view why) {
  if (broken_ || !activation_) return;
  broken_ = true;
  interrupt().report_needs_reset(why);
}

}  // namespace crosvm::virtio
