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

Console::Console(std::string name, std::shared_ptr<OutputStream> output, const Logger& logger)
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
  return transmit(queue);
}

void Console::on_reset() {
  transmitting_.reset();
  output_->when_writable({});
}

QueueDevice::Turn Console::transmit(ActiveQueue& queue) {
  uint64_t budget = kTransmitBytesPerTurn;
  unsigned completed = 0;
  Turn turn = Turn::kIdle;
  while (active()) {
    if (!transmitting_) {
      if (completed == kChainsPerTurn) {
        turn = Turn::kMore;
        break;
      }
      auto popped = pop_or_arm(queue);
      if (!popped) {
        fail(popped.error().message);
        return Turn::kIdle;
      }
      if (!popped->has_value()) break;
      PoppedChain& next = **popped;
      if (!next.chain) {
        report_problem(fmt::format("transmit queue: {}", next.problem));
        if (!complete(queue, next.head, 0)) return Turn::kIdle;
        ++completed;
        continue;
      }
      transmitting_ = Transmitting{std::move(*next.chain), 0};
    }
    const Sent sent = send_transmitting(budget);
    if (!active()) return Turn::kIdle;
    if (sent == Sent::kOutputFull) {
      // The chain waits; a kick (ours, once there is room, or the driver's)
      // goes on with it.
      output_->when_writable([this] {
        worker().post([this] {
          if (ActiveQueue* transmit_queue = find_queue(kTransmitQueue)) transmit_queue->kick.signal();
        });
      });
      break;
    }
    if (sent == Sent::kBudgetUsed) {
      turn = Turn::kMore;
      break;
    }
    const uint16_t head = transmitting_->chain.head;
    transmitting_.reset();
    if (!complete(queue, head, 0)) return Turn::kIdle;
    ++completed;
  }
  if (completed > 0) notify_used(queue);
  return active() ? turn : Turn::kIdle;
}

Console::Sent Console::send_transmitting(uint64_t& budget) {
  ChainReader reader(memory(), transmitting_->chain.readable);
  if (auto skipped = reader.skip(transmitting_->sent); !skipped) {
    fail(skipped.error().message);
    return Sent::kAll;
  }
  while (reader.remaining() > 0) {
    if (budget == 0) return Sent::kBudgetUsed;
    auto piece = reader.peek(std::min<uint64_t>(budget, kPieceBytes));
    if (!piece) {
      fail(piece.error().message);
      return Sent::kAll;
    }
    const size_t taken = output_->write_some(*piece);
    (void)reader.skip(taken);
    transmitting_->sent += taken;
    budget -= taken;
    if (taken < piece->size()) return Sent::kOutputFull;
  }
  return Sent::kAll;
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
    auto popped = pop_or_arm(*queue);  // no buffer posted: a kick when there is one
    if (!popped) {
      fail(popped.error().message);
      return;
    }
    if (!popped->has_value()) break;
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
