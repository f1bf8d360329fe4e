#include "vhost_user/frontend.h"

#include <poll.h>
#include <sys/eventfd.h>

#include <algorithm>
#include <array>
#include <cstring>

namespace crosvm::vhost_user {
namespace {

constexpr size_t kFsTagLength = 36;

constexpr std::array kFrontendKinds = {
    FrontendKind{"block", virtio::DeviceType::kBlock, 0x018000, 1, 60},
    // The tag and the request queue count are the frontend's to say, as in
    // QEMU's vhost-user-fs-pci: virtiofsd has no configuration space.
    FrontendKind{"fs", virtio::DeviceType::kFs, 0x018000, 2, 0},
    FrontendKind{"rng", virtio::DeviceType::kRng, 0xff0000, 1, 0},
    // virtio_net_config up to mtu: mac, status, max_virtqueue_pairs, mtu;
    // rx, tx and the control queue.
    FrontendKind{"net", virtio::DeviceType::kNet, 0x020000, 3, 12},
    // virtio_console_config: cols, rows, max_nr_ports, emerg_wr.
    FrontendKind{"console", virtio::DeviceType::kConsole, 0x078000, 2, 12},
    // virtio_vsock_config: guest_cid; rx, tx and the event queue.
    FrontendKind{"vsock", virtio::DeviceType::kVsock, 0x078000, 3, 8},
};

// The device-specific feature bits (0 to 23); the transport's own are
// negotiated by the transport and passed on at activation.
constexpr uint64_t kDeviceFeatureMask = (1ull << 24) - 1;

}  // namespace

const FrontendKind* find_frontend_kind(std::string_view name) {
  for (const FrontendKind& kind : kFrontendKinds) {
    if (kind.name == name) return &kind;
  }
  return nullptr;
}

std::string frontend_kind_names() {
  std::string names;
  for (const FrontendKind& kind : kFrontendKinds) names += (names.empty() ? "" : ", ") + std::string(kind.name);
  return names;
}

Frontend::Frontend(const FrontendKind& kind, Connection connection, FrontendOptions options, const Logger& logger)
    : kind_(kind), options_(std::move(options)), logger_(logger), connection_(std::move(connection)) {}

Frontend::~Frontend() { stop_watcher(); }

Result<std::shared_ptr<Frontend>> Frontend::connect(const FrontendKind& kind, FrontendOptions options,
                                                    const Logger& logger) {
  auto connection = Connection::connect(options.socket);
  if (!connection) return Error{ErrorCode::kDevice, connection.error().message};
  return create(kind, std::move(connection).value(), std::move(options), logger);
}

Result<std::shared_ptr<Frontend>> Frontend::create(const FrontendKind& kind, Connection connection,
                                                   FrontendOptions options, const Logger& logger) {
  if (kind.type == virtio::DeviceType::kFs && (options.tag.empty() || options.tag.size() > kFsTagLength)) {
    return make_error(ErrorCode::kInvalidArgument, "vhost-user fs: tag= must be 1 to {} bytes", kFsTagLength);
  }
  if (options.queue_size == 0 || (options.queue_size & (options.queue_size - 1)) != 0 ||
      options.queue_size > 32768) {
    return make_error(ErrorCode::kInvalidArgument, "vhost-user: a queue size of {} (a power of two up to 32768)",
                      options.queue_size);
  }
  auto frontend = std::shared_ptr<Frontend>(new Frontend(kind, std::move(connection), std::move(options), logger));
  if (auto negotiated = frontend->negotiate(); !negotiated) {
    return make_error(ErrorCode::kDevice, "vhost-user backend at {}: {}", frontend->options_.socket,
                      negotiated.error().message);
  }
  return frontend;
}

Result<std::optional<Message>> Frontend::call(Message message, std::span<const int> fds, bool reply) {
  if (broken_) return make_error(ErrorCode::kDevice, "the backend is gone");
  const bool ack = !reply && (protocol_features_ & kProtocolReplyAck) != 0;
  if (ack) message.header.flags |= kFlagNeedReply;
  CROSVM_TRY(connection_.send(message, fds));
  if (!reply && !ack) return std::optional<Message>();
  Message answer = CROSVM_TRY(connection_.receive(kReplyTimeoutMs));
  const std::string name = request_name(message.header.request);
  if (answer.header.request != message.header.request || !answer.is_reply() ||
      (answer.header.flags & kVersionMask) != kVersion) {
    return make_error(ErrorCode::kProtocol, "{}: the answer was {}", name, request_name(answer.header.request));
  }
  if (!answer.fds.empty()) return make_error(ErrorCode::kProtocol, "{}: fds came with the answer", name);
  if (ack) {
    const uint64_t status = CROSVM_TRY(body_as<uint64_t>(answer));
    if (status != 0) return make_error(ErrorCode::kDevice, "{} failed (status {})", name, status);
    return std::optional<Message>();
  }
  return std::optional<Message>(std::move(answer));
}

Result<uint64_t> Frontend::get_u64(Request request) {
  std::optional<Message> answer = CROSVM_TRY(call(Message::make(static_cast<uint32_t>(request), kVersion, {}), {}, true));
  return body_as<uint64_t>(*answer);
}

Result<void> Frontend::set_u64(Request request, uint64_t value, std::span<const int> fds) {
  CROSVM_TRY(call(Message::of(static_cast<uint32_t>(request), value), fds));
  return {};
}

Result<void> Frontend::negotiate() {
  std::lock_guard lock(socket_mutex_);
  backend_features_ = CROSVM_TRY(get_u64(Request::kGetFeatures));
  if ((backend_features_ & virtio::kFeatureVersion1) == 0) {
    return make_error(ErrorCode::kDevice, "the backend does not offer VIRTIO_F_VERSION_1");
  }
  if ((backend_features_ & kFeatureProtocolFeatures) != 0) {
    const uint64_t theirs = CROSVM_TRY(get_u64(Request::kGetProtocolFeatures));
    const uint64_t wanted = kProtocolMultiQueue | kProtocolReplyAck | kProtocolConfig | kProtocolBackendRequests;
    // REPLY_ACK applies from the message after this one.
    CROSVM_TRY(set_u64(Request::kSetProtocolFeatures, theirs & wanted));
    protocol_features_ = theirs & wanted;
  }
  CROSVM_TRY(call(Message::make(static_cast<uint32_t>(Request::kSetOwner), kVersion, {})));

  queue_count_ = kind_.default_queues;
  if ((protocol_features_ & kProtocolMultiQueue) != 0 && kind_.type != virtio::DeviceType::kFs) {
    const uint64_t queues = CROSVM_TRY(get_u64(Request::kGetQueueNum));
    if (queues == 0 || queues > 64) {
      return make_error(ErrorCode::kDevice, "the backend has {} queues (1 to 64 are supported)", queues);
    }
    queue_count_ = static_cast<uint16_t>(queues);
  }

  if ((protocol_features_ & kProtocolBackendRequests) != 0) {
    auto [ours, theirs] = CROSVM_TRY(Connection::pair());
    const int fd = theirs.fd();
    CROSVM_TRY(call(Message::make(static_cast<uint32_t>(Request::kSetBackendReqFd), kVersion, {}),
                    std::span(&fd, 1)));
    channel_ = std::move(ours);
  }

  if (kind_.type == virtio::DeviceType::kFs) {
    // struct virtio_fs_config: the tag, then the number of request queues.
    std::vector<uint8_t> config(kFsTagLength + 4, 0);
    std::memcpy(config.data(), options_.tag.data(), options_.tag.size());
    const uint32_t request_queues = queue_count_ - 1u;
    std::memcpy(config.data() + kFsTagLength, &request_queues, 4);
    std::lock_guard config_lock(config_mutex_);
    config_ = std::move(config);
    return {};
  }
  return refresh_config();
}

Result<void> Frontend::refresh_config() {
  if (kind_.config_size == 0 || (protocol_features_ & kProtocolConfig) == 0) return {};
  std::vector<uint8_t> zeros(kind_.config_size, 0);
  std::optional<Message> answer = CROSVM_TRY(
      call(Message::make(static_cast<uint32_t>(Request::kGetConfig), kVersion, encode_config(0, zeros)), {}, true));
  ConfigBody config = CROSVM_TRY(parse_config(*answer));
  if (config.header.offset != 0 || config.header.size != kind_.config_size) {
    return make_error(ErrorCode::kProtocol, "GET_CONFIG: {} bytes at {} where {} at 0 were asked for",
                      config.header.size, config.header.offset, kind_.config_size);
  }
  std::lock_guard config_lock(config_mutex_);
  config_ = std::move(config.data);
  return {};
}

uint64_t Frontend::device_features() const { return backend_features_ & kDeviceFeatureMask; }

uint64_t Frontend::ring_features() const {
  return backend_features_ & (virtio::kFeatureEventIndex | virtio::kFeatureIndirectDescriptors);
}

void Frontend::read_config(uint64_t offset, std::span<uint8_t> data) {
  std::lock_guard lock(config_mutex_);
  virtio::read_config_bytes(config_, offset, data);
}

void Frontend::write_config(uint64_t offset, std::span<const uint8_t> data) {
  {
    std::lock_guard lock(config_mutex_);
    if (offset >= config_.size() || data.size() > config_.size() - offset) return;
    std::memcpy(config_.data() + offset, data.data(), data.size());
  }
  if ((protocol_features_ & kProtocolConfig) == 0 || kind_.config_size == 0) return;
  std::lock_guard lock(socket_mutex_);
  auto sent = call(Message::make(static_cast<uint32_t>(Request::kSetConfig), kVersion,
                                 encode_config(static_cast<uint32_t>(offset), data)));
  if (!sent) fail("SET_CONFIG: " + sent.error().message);
}

Result<void> Frontend::start_rings(const virtio::Activation& activation) {
  const GuestMemory& memory = *activation.memory;
  if (memory.fd() < 0) {
    return make_error(ErrorCode::kDevice, "guest memory is not shared (a memfd), so no backend can map it");
  }
  const uint64_t protocol = (backend_features_ & kFeatureProtocolFeatures) != 0 ? kFeatureProtocolFeatures : 0;
  CROSVM_TRY(set_u64(Request::kSetFeatures, activation.features | protocol));

  std::vector<MemoryRegion> table;
  std::vector<int> fds;
  for (size_t i = 0; i < memory.regions().size(); ++i) {
    const RegionMapping mapping = memory.region_mapping(i);
    table.push_back({mapping.region.guest_address, mapping.region.size, reinterpret_cast<uint64_t>(mapping.host),
                     mapping.fd_offset});
    fds.push_back(memory.fd());
  }
  if (table.size() > kMaxRegions) return make_error(ErrorCode::kDevice, "{} memory regions", table.size());
  CROSVM_TRY(call(Message::make(static_cast<uint32_t>(Request::kSetMemTable), kVersion, encode_memory_table(table)),
                  fds));

  for (size_t i = 0; i < activation.queues.size(); ++i) {
    const virtio::ActiveQueue& queue = activation.queues[i];
    const virtio::QueueConfig config = queue.queue.config();
    const uint32_t index = queue.index;
    CROSVM_TRY(call(Message::of(static_cast<uint32_t>(Request::kSetVringNum), VringState{index, config.size})));
    CROSVM_TRY(call(Message::of(static_cast<uint32_t>(Request::kSetVringBase), VringState{index, config.next_available})));
    const virtio::RingHostAddresses rings = CROSVM_TRY(virtio::ring_host_addresses(memory, config));
    const VringAddress address{
        .index = index,
        .flags = 0,
        .descriptor = rings.descriptor_table,
        .used = rings.used_ring,
        .available = rings.available_ring,
        .log = 0,
    };
    CROSVM_TRY(call(Message::of(static_cast<uint32_t>(Request::kSetVringAddr), address)));
    const int kick = queue.kick.fd();
    CROSVM_TRY(set_u64(Request::kSetVringKick, index, std::span(&kick, 1)));
    const int error_fd = errors_[i].fd();
    CROSVM_TRY(set_u64(Request::kSetVringErr, index, std::span(&error_fd, 1)));
  }
  call_targets_.assign(activation.queues.size(), -1);
  routing_ = true;
  CROSVM_TRY(route_calls());
  if (protocol != 0) {
    for (const virtio::ActiveQueue& queue : activation.queues) {
      CROSVM_TRY(call(Message::of(static_cast<uint32_t>(Request::kSetVringEnable), VringState{queue.index, 1})));
    }
  }
  return {};
}

Result<void> Frontend::route_calls() {
  if (!routing_ || broken_) return {};
  for (size_t i = 0; i < active_queues_.size(); ++i) {
    const int target = interrupt_->direct_queue_fd(active_queues_[i]).value_or(calls_[i].fd());
    if (target == call_targets_[i]) continue;
    CROSVM_TRY(set_u64(Request::kSetVringCall, active_queues_[i], std::span(&target, 1)));
    call_targets_[i] = target;
  }
  return {};
}

Result<void> Frontend::activate(virtio::Activation activation) {
  if (broken_) return make_error(ErrorCode::kDevice, "{}: the vhost-user backend is gone", options_.name);
  stop_watcher();
  calls_.clear();
  errors_.clear();
  active_queues_.clear();
  for (size_t i = 0; i < activation.queues.size(); ++i) {
    calls_.push_back(CROSVM_TRY(EventFd::create(EFD_NONBLOCK)));
    errors_.push_back(CROSVM_TRY(EventFd::create(EFD_NONBLOCK)));
    active_queues_.push_back(activation.queues[i].index);
  }
  interrupt_ = activation.interrupt;
  stop_ = CROSVM_TRY(EventFd::create(EFD_NONBLOCK));
  // The watcher first: the backend may use a queue as soon as it has it.
  auto thread = Thread::start(
      "crosvm_vhu_" + std::string(kind_.name).substr(0, 4), [this] { watch(); },
      [this](std::string_view what) { fail(fmt::format("internal error: {}", what)); });
  if (!thread) return thread.take_error();
  watcher_ = std::move(thread).value();
  // The guest masking or unmasking a vector moves the queue's call.
  activation.interrupt->watch_direct_fds([this] {
    std::lock_guard lock(socket_mutex_);
    if (auto routed = route_calls(); !routed) fail("SET_VRING_CALL: " + routed.error().message);
  });
  Result<void> started;
  {
    std::lock_guard lock(socket_mutex_);
    started = start_rings(activation);
  }
  if (!started) {
    activation.interrupt->watch_direct_fds({});
    fail(started.error().message);
    return make_error(ErrorCode::kDevice, "{}: {}", options_.name, started.error().message);
  }
  return {};
}

void Frontend::reset() {
  // Not under socket_mutex_: a listener that runs now may be waiting for it.
  if (interrupt_) interrupt_->watch_direct_fds({});
  stop_watcher();
  {
    std::lock_guard lock(socket_mutex_);
    routing_ = false;
  }
  if (!active_queues_.empty() && !broken_) {
    std::lock_guard lock(socket_mutex_);
    const bool gated = (backend_features_ & kFeatureProtocolFeatures) != 0;
    for (uint16_t index : active_queues_) {
      if (gated) {
        if (auto disabled = call(Message::of(static_cast<uint32_t>(Request::kSetVringEnable),
                                             VringState{index, 0}));
            !disabled) {
          fail("SET_VRING_ENABLE: " + disabled.error().message);
          break;
        }
      }
      // GET_VRING_BASE stops the queue: the backend touches it no more.
      auto stopped = call(Message::of(static_cast<uint32_t>(Request::kGetVringBase), VringState{index, 0}), {}, true);
      if (!stopped) {
        fail("GET_VRING_BASE: " + stopped.error().message);
        break;
      }
    }
  }
  active_queues_.clear();
  calls_.clear();
  errors_.clear();
  interrupt_.reset();
}

void Frontend::fail(std::string_view why) {
  if (broken_.exchange(true)) return;
  logger_.error("{}: vhost-user backend at {}: {}", options_.name, options_.socket, why);
  // A backend that broke is not asked anything more: closing the socket
  // also tells it so.
  if (auto interrupt = interrupt_) interrupt->report_needs_reset("the vhost-user backend failed");
}

void Frontend::stop_watcher() {
  if (!watcher_.joinable()) return;
  if (stop_) stop_->signal();
  watcher_.join();
  watcher_ = Thread();
}

void Frontend::watch() {
  std::vector<pollfd> entries;
  const size_t queues = calls_.size();
  for (const EventFd& call : calls_) entries.push_back({call.fd(), POLLIN, 0});
  for (const EventFd& error : errors_) entries.push_back({error.fd(), POLLIN, 0});
  const size_t socket_entry = entries.size();
  // Only hang-ups: the socket's answers are read by whoever asked.
  entries.push_back({connection_.fd(), POLLRDHUP, 0});
  const size_t channel_entry = entries.size();
  entries.push_back({channel_ ? channel_->fd() : -1, POLLIN, 0});
  const size_t stop_entry = entries.size();
  entries.push_back({stop_->fd(), POLLIN, 0});
  while (true) {
    if (::poll(entries.data(), entries.size(), -1) < 0) {
      if (errno == EINTR) continue;
      fail(fmt::format("poll: {}", std::strerror(errno)));
      return;
    }
    if (entries[stop_entry].revents != 0) return;
    for (size_t i = 0; i < queues; ++i) {
      if (entries[i].revents != 0) {
        calls_[i].drain();
        interrupt_->signal_used(active_queues_[i]);
      }
      if (entries[queues + i].revents != 0) {
        // The device (not the backend) failed: e.g. the driver broke a
        // ring. A reset of the device recovers, as in the VMM.
        errors_[i].drain();
        interrupt_->report_needs_reset(fmt::format("{}: the backend reported an error on queue {}", options_.name,
                                                   active_queues_[i]));
      }
    }
    if (entries[socket_entry].revents != 0) {
      fail("it closed the connection");
      entries[socket_entry].fd = -1;
    }
    if (entries[channel_entry].revents != 0) {
      auto request = channel_->receive(kReplyTimeoutMs);
      if (!request || request->header.request != static_cast<uint32_t>(BackendRequest::kConfigChange)) {
        fail(request ? fmt::format("backend request {} is not supported", request->header.request)
                     : "backend channel: " + request.error().message);
        entries[channel_entry].fd = -1;
        continue;
      }
      if (request->needs_reply()) {
        // A backend that asks for replies and does not read them is broken:
        // the send gives up at its deadline, and so does this channel.
        if (auto replied = channel_->send(Message::of(request->header.request, uint64_t{0}, kVersion | kFlagReply));
            !replied) {
          fail("backend channel: " + replied.error().message);
          entries[channel_entry].fd = -1;
          continue;
        }
      }
      Result<void> refreshed;
      {
        std::lock_guard lock(socket_mutex_);
        refreshed = refresh_config();
      }
      if (!refreshed) {
        fail("GET_CONFIG: " + refreshed.error().message);
      } else {
        interrupt_->signal_config_change();
      }
    }
    if (broken_) {
      // Nothing more comes from a broken backend; wait for the reset.
      for (size_t i = 0; i < stop_entry; ++i) entries[i].fd = -1;
    }
  }
}

}  // namespace crosvm::vhost_user
