#include "devices/virtio/console.h"

#include <algorithm>
#include <vector>

#include "devices/virtio/chain_io.h"

namespace crosvm::virtio {
namespace {

struct [[gnu::packed]] ConsoleConfig {
  uint16_t cols;
  uint16_t rows;
  uint32_t max_nr_ports;
  uint32_t emerg_wr;
};

}  // namespace

Console::Console(std::string name, OutputSink output, const Logger& logger)
    : QueueDevice(std::move(name), logger), output_(std::move(output)) {}

void Console::read_config(uint64_t offset, std::span<uint8_t> data) {
  const ConsoleConfig config{0, 0, 1, 0};
  read_config_bytes(std::span(reinterpret_cast<const uint8_t*>(&config), sizeof(config)), offset, data);
}

size_t Console::queue_input(std::span<const uint8_t> bytes) {
  size_t accepted;
  {
    std::lock_guard lock(input_mutex_);
    accepted = std::min(bytes.size(), kInputCapacity - input_.size());
    input_.insert(input_.end(), bytes.begin(), bytes.begin() + static_cast<ptrdiff_t>(accepted));
    if (accepted < bytes.size()) input_was_full_ = true;
  }
  if (accepted > 0) worker().post([this] { deliver_input(); });
  return accepted;
}

void Console::set_input_space_listener(std::function<void()> listener) {
  std::lock_guard lock(input_mutex_);
  input_space_listener_ = std::move(listener);
}

QueueDevice::Turn Console::on_kick(ActiveQueue& queue) {
  if (queue.index == kReceiveQueue) {
    deliver_input();
    return Turn::kIdle;
  }
  if (queue.index != kTransmitQueue) return Turn::kIdle;
  return serve_available(queue, [this](const DescriptorChain& chain) -> uint32_t {
    ChainReader reader(memory(), chain.readable);
    std::vector<uint8_t> bytes(reader.remaining());
    if (reader.read(bytes) && output_) output_(bytes);
    return 0;
  });
}

void Console::deliver_input() {
  ActiveQueue* queue = find_queue(kReceiveQueue);
  if (queue == nullptr || !active()) return;
  bool delivered = false;
  std::function<void()> listener;
  while (active()) {
    {
      std::lock_guard lock(input_mutex_);
      if (input_.empty()) break;
    }
    auto popped = queue->queue.pop();
    if (!popped) {
      fail(popped.error().message);
      return;
    }
    if (!popped->has_value()) {
      // No buffer posted: ask for a kick when there is one, unless one came.
      auto more = queue->queue.enable_notification();
      if (!more) {
        fail(more.error().message);
        return;
      }
      if (*more) continue;
      break;
    }
    const PoppedChain& next = **popped;
    uint32_t written = 0;
    if (next.chain) {
      ChainWriter writer(memory(), next.chain->writable);
      std::vector<uint8_t> bytes;
      {
        std::lock_guard lock(input_mutex_);
        const size_t count = static_cast<size_t>(std::min<uint64_t>(input_.size(), writer.remaining()));
        bytes.assign(input_.begin(), input_.begin() + static_cast<ptrdiff_t>(count));
        input_.erase(input_.begin(), input_.begin() + static_cast<ptrdiff_t>(count));
        if (input_was_full_ && input_.size() < kInputCapacity) {
          input_was_full_ = false;
          listener = input_space_listener_;
        }
      }
      if (writer.write(bytes)) written = static_cast<uint32_t>(bytes.size());
    } else {
      report_problem(fmt::format("receive queue: {}", next.problem));
    }
    if (!complete(*queue, next.head, written)) return;
    delivered = true;
  }
  if (delivered) {
    auto notify = queue->queue.should_notify();
    if (!notify) {
      fail(notify.error().message);
    } else if (*notify) {
      interrupt().signal_used(kReceiveQueue);
    }
  }
  if (listener) listener();
}

}  // namespace crosvm::virtio
