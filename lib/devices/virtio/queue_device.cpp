#include "devices/virtio/queue_device.h"

#include <vector>

namespace crosvm::virtio {

QueueDevice::QueueDevice(boost::asio::io_context& context, std::string name, const Logger& logger)
    : name_(std::move(name)), logger_(logger), worker_(context, name_, logger) {}

Result<void> QueueDevice::activate(Activation activation) {
  CROSVM_TRY(on_activate(activation));
  worker_.stop();
  std::vector<const EventFd*> kicks;
  {
    std::lock_guard lock(worker_.lock());
    activation_ = std::move(activation);
    broken_ = false;
    problems_ = 0;
    for (const ActiveQueue& queue : activation_->queues) kicks.push_back(&queue.kick);
  }
  // Positions in `kicks` are positions in activation_->queues, which stays
  // put until the next reset.
  return worker_.start(kicks, [this](size_t position) {
    if (active()) on_kick(activation_->queues[position]);
  });
}

void QueueDevice::reset() {
  worker_.stop();
  std::lock_guard lock(worker_.lock());
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

void QueueDevice::serve_all(ActiveQueue& queue,
                            const std::function<uint32_t(const DescriptorChain&)>& serve) {
  bool served = false;
  do {
    while (active()) {
      auto popped = queue.queue.pop();
      if (!popped) {
        fail(popped.error().message);
        return;
      }
      if (!popped->has_value()) break;
      const PoppedChain& next = **popped;
      uint32_t written = 0;
      if (next.chain) {
        written = serve(*next.chain);
      } else {
        report_problem(fmt::format("queue {}: {}", queue.index, next.problem));
      }
      if (!complete(queue, next.head, written)) return;
      served = true;
    }
    if (!active()) return;
    auto more = queue.queue.enable_notification();
    if (!more) {
      fail(more.error().message);
      return;
    }
    if (!*more) break;
  } while (true);
  if (!served) return;
  auto notify = queue.queue.should_notify();
  if (!notify) {
    fail(notify.error().message);
  } else if (*notify) {
    interrupt().signal_used(queue.index);
  }
}

void QueueDevice::report_problem(std::string_view problem) {
  if (problems_ < kProblemsLogged) {
    logger_.warn("{}: bad request from the guest: {}", name_, problem);
  } else if (problems_ == kProblemsLogged) {
    logger_.warn("{}: more bad requests; no longer logged until the device is reset", name_);
  }
  ++problems_;
}

void QueueDevice::fail(std::string_view why) {
  if (broken_) return;
  broken_ = true;
  interrupt().report_needs_reset(why);
}

}  // namespace crosvm::virtio
