#include "vhost_user/backend.h"

#include <algorithm>
#include <functional>
#include <utility>
#include <mutex>

namespace crosvm::vhost_user {
namespace {

Error protocol_error(std::string message) { return Error{ErrorCode::kProtocol, std::move(message)}; }

using Reply = std::optional<Message>;

Reply reply_u64(uint32_t request, uint64_t value) { return Message::of(request, value, kVersion | kFlagReply); }

}  // namespace

// How the device reaches the frontend: a write to the queue's call eventfd,
// the backend channel for a configuration change, the error eventfds when
// the device needs a reset. Called from the device's worker while the
// serving thread swaps the fds (QEMU changes call fds to mask vectors).
// A call eventfd needs nothing more of this process, so it is the queue's
// direct fd: a device that hands its queues to the kernel (vhost-net)
// gives it the frontend's eventfd, and moves it when the frontend does.
class Backend::Interrupt final : public virtio::Interrupt {
 public:
  Interrupt(size_t queues, Logger logger, std::string name)
      : calls_(queues), errors_(queues), logger_(std::move(logger)), name_(std::move(name)) {}

  void signal_used(uint16_t queue) override {
    std::lock_guard lock(mutex_);
    if (queue < calls_.size() && calls_[queue]) calls_[queue]->signal();
  }

  void signal_config_change() override {
    std::lock_guard lock(mutex_);
    if (!channel_ || !config_messages_) return;
    // No reply is asked for: the serving thread reads nothing from the
    // channel, and a frontend that stopped reading must not stall us.
    Message message = Message::make(static_cast<uint32_t>(BackendRequest::kConfigChange), kVersion, {});
    if (auto sent = channel_->send(message); !sent) {
      logger_.warn("{}: the backend channel failed: {}", name_, sent.error().message);
      channel_.reset();
    }
  }

  void report_needs_reset(std::string_view why) override {
    logger_.warn("{}: {}; the device needs a reset", name_, why);
    std::lock_guard lock(mutex_);
    for (auto& error : errors_) {
      if (error) error->signal();
    }
  }

  std::optional<int> direct_queue_fd(uint16_t queue) override {
    std::lock_guard lock(mutex_);
    if (queue < calls_.size() && calls_[queue]) return calls_[queue]->fd();
    return std::nullopt;
  }

  void watch_direct_fds(std::function<void()> on_change) override {
    std::lock_guard lock(listener_mutex_);
    listener_ = std::move(on_change);
  }

  void set_call(size_t queue, std::optional<EventFd> fd) {
    std::optional<EventFd> old;
    {
      std::lock_guard lock(mutex_);
      old = std::exchange(calls_[queue], std::move(fd));
    }
    // The old eventfd closes once whoever wrote it directly has moved on.
    std::lock_guard lock(listener_mutex_);
    if (listener_) listener_();
  }
  void set_error(size_t queue, std::optional<EventFd> fd) {
    std::lock_guard lock(mutex_);
    errors_[queue] = std::move(fd);
  }
  void set_channel(std::optional<Connection> channel, bool config_messages) {
    std::lock_guard lock(mutex_);
    channel_ = std::move(channel);
    config_messages_ = config_messages;
  }
  void clear() {
    std::lock_guard lock(mutex_);
    for (auto& call : calls_) call.reset();
    for (auto& error : errors_) error.reset();
    channel_.reset();
  }

 private:
  std::mutex mutex_;
  std::mutex listener_mutex_;  // held while the listener runs
  std::function<void()> listener_;
  std::vector<std::optional<EventFd>> calls_;
  std::vector<std::optional<EventFd>> errors_;
  std::optional<Connection> channel_;
  bool config_messages_ = false;
  Logger logger_;
  std::string name_;
};

Backend::Backend(std::shared_ptr<virtio::VirtioDevice> device, const Logger& logger)
    : device_(std::move(device)),
      logger_(logger),
      interrupt_(std::make_shared<Interrupt>(device_->queue_max_sizes().size(), logger,
                                             std::string(device_->name()))),
      rings_(device_->queue_max_sizes().size()) {}

Backend::~Backend() { reset(); }

uint64_t Backend::offered_features() const {
  return device_->device_features() | virtio::kFeatureVersion1 |
         (device_->ring_features() & (virtio::kFeatureEventIndex | virtio::kFeatureIndirectDescriptors)) |
         kFeatureProtocolFeatures;
}

void Backend::stop_device() {
  if (running_.empty()) return;
  device_->reset();
  for (const virtio::QueuePosition& position : device_->positions_at_reset()) {
    if (position.index < rings_.size()) rings_[position.index].base = position.next_available;
  }
  running_.clear();
}

void Backend::reset() {
  stop_device();
  interrupt_->clear();
  const size_t queues = rings_.size();
  rings_.clear();
  rings_.resize(queues);
  memory_.reset();
  table_.clear();
  features_ = 0;
  protocol_features_ = 0;
  status_ = 0;
}

Result<void> Backend::serve(const Connection& connection) {
  Result<void> outcome;
  while (true) {
    auto message = connection.receive();
    if (!message) {
      // The frontend went away: the normal end of a session.
      if (message.error().code != ErrorCode::kIo) outcome = message.take_error();
      break;
    }
    const uint32_t request = message->header.request;
    auto reply = handle(std::move(message).value());
    if (!reply) {
      outcome = Error{reply.error().code, fmt::format("{}: {}", request_name(request), reply.error().message)};
      break;
    }
    if (*reply) {
      if (auto sent = connection.send(**reply); !sent) {
        outcome = sent.take_error();
        break;
      }
    }
  }
  reset();
  if (!outcome) logger_.error("{}: vhost-user frontend: {}", device_->name(), outcome.error().message);
  return outcome;
}

Result<std::optional<Message>> Backend::handle(Message message) {
  CROSVM_TRY(check_frontend_message(message));
  std::optional<Message> reply = CROSVM_TRY(dispatch(message));
  if (!reply && message.needs_reply() && (protocol_features_ & kProtocolReplyAck) != 0) {
    reply = reply_u64(message.header.request, 0);
  }
  return reply;
}

Result<Backend::Ring*> Backend::find_ring(uint32_t index) {
  if (index >= rings_.size()) {
    return protocol_error(fmt::format("queue {} does not exist (the device has {})", index, rings_.size()));
  }
  return &rings_[index];
}

Result<uint64_t> Backend::guest_address(uint64_t user_address, uint64_t length, const char* what) const {
  for (const MemoryRegion& region : table_) {
    const uint64_t offset = user_address - region.user_address;
    if (user_address >= region.user_address && offset < region.size && length <= region.size - offset) {
      return region.guest_address + offset;
    }
  }
  return protocol_error(fmt::format("the {} at {:#x} is not inside the memory table", what, user_address));
}

Result<void> Backend::set_memory_table(const Message& message) {
  std::vector<MemoryRegion> table = CROSVM_TRY(parse_memory_table(message));
  std::vector<SharedRegion> regions;
  for (size_t i = 0; i < table.size(); ++i) {
    const MemoryRegion& region = table[i];
    if (region.user_address + region.size < region.user_address) {
      return protocol_error(fmt::format("SET_MEM_TABLE: region {} wraps around", i));
    }
    regions.push_back({region.guest_address, region.size, message.fds[i].get(), region.mmap_offset});
  }
  auto memory = GuestMemory::map_shared_regions(regions);
  if (!memory) return protocol_error("SET_MEM_TABLE: " + memory.error().message);
  // The device lets go of the old memory before it is unmapped.
  const bool was_running = !running_.empty();
  stop_device();
  memory_ = std::make_shared<GuestMemory>(std::move(memory).value());
  table_ = std::move(table);
  if (was_running) CROSVM_TRY(reconcile(true));
  return {};
}

Result<void> Backend::reconcile(bool force_restart) {
  std::vector<uint16_t> wanted;
  const bool gated = (features_ & kFeatureProtocolFeatures) != 0;
  for (size_t i = 0; i < rings_.size(); ++i) {
    if (rings_[i].started && (rings_[i].enabled || !gated)) wanted.push_back(static_cast<uint16_t>(i));
  }
  if (wanted == running_ && !force_restart) return {};
  stop_device();
  if (wanted.empty()) return {};
  if (!memory_) return protocol_error("a queue was started before SET_MEM_TABLE");

  const std::vector<uint16_t> max_sizes = device_->queue_max_sizes();
  virtio::Activation activation;
  activation.memory = memory_.get();
  activation.features = features_ & ~kFeatureProtocolFeatures;
  activation.interrupt = interrupt_;
  for (uint16_t index : wanted) {
    Ring& ring = rings_[index];
    if (!ring.address) return protocol_error(fmt::format("queue {} was started without SET_VRING_ADDR", index));
    const uint64_t size = ring.size;
    virtio::QueueConfig config;
    config.size = ring.size;
    config.descriptor_table = CROSVM_TRY(guest_address(ring.address->descriptor, size * 16, "descriptor table"));
    config.available_ring = CROSVM_TRY(guest_address(ring.address->available, 6 + size * 2, "available ring"));
    config.used_ring = CROSVM_TRY(guest_address(ring.address->used, 6 + size * 8, "used ring"));
    config.next_available = ring.base;
    // The used index is where the device left it: in the used ring.
    config.next_used = CROSVM_TRY(memory_->read_object<uint16_t>(config.used_ring + 2));
    auto queue = virtio::SplitQueue::create(*memory_, config, max_sizes[index],
                                            (features_ & virtio::kFeatureEventIndex) != 0,
                                            (features_ & virtio::kFeatureIndirectDescriptors) != 0);
    if (!queue) return protocol_error(fmt::format("queue {}: {}", index, queue.error().message));
    activation.queues.push_back(
        virtio::ActiveQueue{index, std::move(queue).value(), CROSVM_TRY(ring.kick->duplicate())});
  }
  running_ = wanted;
  if (auto activated = device_->activate(std::move(activation)); !activated) {
    interrupt_->report_needs_reset(activated.error().message);
  }
  return {};
}

Result<std::optional<Message>> Backend::dispatch(Message& message) {
  const uint32_t request = message.header.request;
  const auto u64 = [&] {
    uint64_t value = 0;
    std::memcpy(&value, message.body.data(), std::min<size_t>(8, message.body.size()));
    return value;
  };
  switch (static_cast<Request>(request)) {
    case Request::kGetFeatures:
      return reply_u64(request, offered_features());
    case Request::kSetFeatures: {
      const uint64_t features = u64();
      const uint64_t unknown = features & ~offered_features();
      if (unknown != 0) return protocol_error(fmt::format("features {:#x} were not offered", unknown));
      const bool changed = features != features_;
      features_ = features;
      if (changed && !running_.empty()) CROSVM_TRY(reconcile(true));
      return Reply();
    }
    case Request::kGetProtocolFeatures:
      return reply_u64(request, kOfferedProtocolFeatures);
    case Request::kSetProtocolFeatures: {
      const uint64_t unknown = u64() & ~kOfferedProtocolFeatures;
      if (unknown != 0) return protocol_error(fmt::format("protocol features {:#x} were not offered", unknown));
      protocol_features_ = u64();
      return Reply();
    }
    case Request::kSetOwner:
      return Reply();
    case Request::kResetOwner:
    case Request::kResetDevice: {
      const uint64_t protocol = protocol_features_;
      reset();
      // RESET_DEVICE resets the device, not what was negotiated about the
      // protocol.
      if (static_cast<Request>(request) == Request::kResetDevice) protocol_features_ = protocol;
      return Reply();
    }
    case Request::kGetQueueNum:
      return reply_u64(request, rings_.size());
    case Request::kGetMaxMemSlots:
      return reply_u64(request, kMaxRegions);
    case Request::kSetMemTable:
      CROSVM_TRY(set_memory_table(message));
      return Reply();
    case Request::kSetVringNum: {
      const auto state = CROSVM_TRY(body_as<VringState>(message));
      Ring* target = CROSVM_TRY(find_ring(state.index));
      if (state.num == 0 || state.num > device_->queue_max_sizes()[state.index] || (state.num & (state.num - 1))) {
        return protocol_error(fmt::format("queue {}: size {} (a power of two up to {})", state.index, state.num,
                                          device_->queue_max_sizes()[state.index]));
      }
      target->size = static_cast<uint16_t>(state.num);
      return Reply();
    }
    case Request::kSetVringAddr: {
      const auto address = CROSVM_TRY(body_as<VringAddress>(message));
      Ring* target = CROSVM_TRY(find_ring(address.index));
      if (address.flags != 0) return protocol_error("SET_VRING_ADDR: dirty logging was not offered");
      target->address = address;
      return Reply();
    }
    case Request::kSetVringBase: {
      const auto state = CROSVM_TRY(body_as<VringState>(message));
      Ring* target = CROSVM_TRY(find_ring(state.index));
      if (state.num > 0xffff) return protocol_error(fmt::format("queue {}: base {}", state.index, state.num));
      target->base = static_cast<uint16_t>(state.num);
      return Reply();
    }
    case Request::kGetVringBase: {
      const auto state = CROSVM_TRY(body_as<VringState>(message));
      Ring* target = CROSVM_TRY(find_ring(state.index));
      target->started = false;
      target->kick.reset();
      CROSVM_TRY(reconcile());
      return Reply(Message::of(request, VringState{state.index, target->base}, kVersion | kFlagReply));
    }
    case Request::kSetVringKick:
    case Request::kSetVringCall:
    case Request::kSetVringErr: {
      const uint64_t value = u64();
      if ((value & ~(kVringIndexMask | kVringNoFd)) != 0) {
        return protocol_error(fmt::format("{}: unknown bits in {:#x}", request_name(request), value));
      }
      const uint32_t index = static_cast<uint32_t>(value & kVringIndexMask);
      Ring* target = CROSVM_TRY(find_ring(index));
      std::optional<EventFd> event;
      if ((value & kVringNoFd) == 0) {
        // check_frontend_message() counted the fd.
        auto adopted = EventFd::adopt(std::move(message.fds[0]));
        if (!adopted) return protocol_error(adopted.error().message);
        event = std::move(adopted).value();
      }
      if (static_cast<Request>(request) == Request::kSetVringKick) {
        if (!event) return protocol_error(fmt::format("queue {}: polling without a kick fd is not supported", index));
        target->kick = std::move(event);
        target->started = true;
        // A new kick fd for a running queue: the device waits on the new one.
        CROSVM_TRY(reconcile(std::find(running_.begin(), running_.end(), index) != running_.end()));
      } else if (static_cast<Request>(request) == Request::kSetVringCall) {
        interrupt_->set_call(index, std::move(event));
      } else {
        interrupt_->set_error(index, std::move(event));
      }
      return Reply();
    }
    case Request::kSetVringEnable: {
      const auto state = CROSVM_TRY(body_as<VringState>(message));
      Ring* target = CROSVM_TRY(find_ring(state.index));
      if (state.num > 1) return protocol_error(fmt::format("SET_VRING_ENABLE: {} is not 0 or 1", state.num));
      target->enabled = state.num == 1;
      CROSVM_TRY(reconcile());
      return Reply();
    }
    case Request::kSetBackendReqFd: {
      Connection channel(std::move(message.fds[0]));
      interrupt_->set_channel(std::move(channel), (protocol_features_ & kProtocolConfig) != 0);
      return Reply();
    }
    case Request::kGetConfig: {
      const ConfigBody config = CROSVM_TRY(parse_config(message));
      std::vector<uint8_t> data(config.header.size, 0);
      device_->read_config(config.header.offset, data);
      return Reply(Message::make(request, kVersion | kFlagReply, encode_config(config.header.offset, data)));
    }
    case Request::kSetConfig: {
      const ConfigBody config = CROSVM_TRY(parse_config(message));
      device_->write_config(config.header.offset, config.data);
      return Reply();
    }
    case Request::kSetStatus:
      status_ = static_cast<uint8_t>(u64());
      return Reply();
    case Request::kGetStatus:
      return reply_u64(request, status_);
    default:
      return protocol_error(fmt::format("{} is not supported", request_name(request)));
  }
}

}  // namespace crosvm::vhost_user
