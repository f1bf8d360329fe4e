#include "devices/virtio/net/net.h"

#include <linux/if_tun.h>
#include <sys/eventfd.h>
#include <sys/random.h>

#include <algorithm>
#include <charconv>
#include <cstring>

#include "devices/virtio/chain_io.h"
#include "devices/virtio/net/passt.h"
#include "devices/virtio/net/stream.h"
#include "devices/virtio/net/tap.h"

namespace crosvm::virtio {
namespace {

struct [[gnu::packed]] NetConfig {
  uint8_t mac[6];
  uint16_t status;
  uint16_t max_virtqueue_pairs;
  uint16_t mtu;
};

// The control queue (5.1.6.5).
struct [[gnu::packed]] ControlHeader {
  uint8_t command_class;
  uint8_t command;
};
constexpr uint8_t kControlOk = 0;
constexpr uint8_t kControlError = 1;
constexpr uint8_t kControlRx = 0;
constexpr uint8_t kControlRxPromiscuous = 0;
constexpr uint8_t kControlRxAllMulticast = 1;
constexpr uint8_t kControlMac = 1;
constexpr uint8_t kControlMacTableSet = 0;
constexpr uint8_t kControlMq = 4;
constexpr uint8_t kControlMqPairsSet = 0;
constexpr uint8_t kControlGuestOffloads = 5;
constexpr uint8_t kControlGuestOffloadsSet = 0;
constexpr uint64_t kGuestOffloadFeatures =
    kNetFeatureGuestCsum | kNetFeatureGuestTso4 | kNetFeatureGuestTso6 | kNetFeatureGuestEcn | kNetFeatureGuestUfo;

std::string_view gso_name(uint8_t type) {
  switch (type) {
    case kNetGsoTcpV4: return "TCPv4";
    case kNetGsoTcpV6: return "TCPv6";
    case kNetGsoUdp: return "UDP";
    default: return "unknown";
  }
}

}  // namespace

std::optional<std::string> check_transmit_header(const NetHeader& header, uint64_t frame_bytes, uint64_t features) {
  if ((header.flags & ~(kNetHeaderNeedsCsum | kNetHeaderDataValid)) != 0) {
    return fmt::format("header flags {:#x} are not virtio's", header.flags);
  }
  if (frame_bytes < 14) return fmt::format("a {}-byte frame is shorter than an Ethernet header", frame_bytes);
  if (frame_bytes > kMaxFrameBytes) {
    return fmt::format("a {}-byte frame is larger than {} bytes", frame_bytes, kMaxFrameBytes);
  }
  if ((header.flags & kNetHeaderNeedsCsum) != 0) {
    if ((features & kNetFeatureCsum) == 0) return std::string("a partial checksum, but CSUM was not negotiated");
    if (uint64_t{header.csum_start} + header.csum_offset + 2 > frame_bytes) {
      return fmt::format("a checksum at {} + {} lies past the {}-byte frame", header.csum_start, header.csum_offset,
                         frame_bytes);
    }
  }
  const uint8_t gso = header.gso_type & ~kNetGsoEcn;
  if (gso == kNetGsoNone) {
    if ((header.gso_type & kNetGsoEcn) != 0) return std::string("ECN without segmentation");
    return std::nullopt;
  }
  const uint64_t needed = gso == kNetGsoTcpV4   ? kNetFeatureHostTso4
                          : gso == kNetGsoTcpV6 ? kNetFeatureHostTso6
                          : gso == kNetGsoUdp   ? kNetFeatureHostUfo
                                                : 0;
  if (needed == 0) return fmt::format("GSO type {} is unknown", gso);
  if ((features & needed) == 0) return fmt::format("{} segmentation was not negotiated", gso_name(gso));
  if ((header.gso_type & kNetGsoEcn) != 0 && (features & kNetFeatureHostEcn) == 0) {
    return std::string("ECN segmentation was not negotiated");
  }
  if ((header.flags & kNetHeaderNeedsCsum) == 0) return std::string("segmentation without a partial checksum");
  if (header.gso_size == 0) return std::string("segmentation into 0-byte segments");
  if (header.header_length > frame_bytes) {
    return fmt::format("a {}-byte header in a {}-byte frame", header.header_length, frame_bytes);
  }
  return std::nullopt;
}

Result<std::vector<SplitQueue::UsedElement>> write_received_frame(const GuestMemory& memory,
                                                                  std::span<const DescriptorChain> chains,
                                                                  std::span<uint8_t> frame) {
  if (frame.size() < sizeof(NetHeader)) return make_error(ErrorCode::kInvalidArgument, "a frame without its header");
  std::vector<SplitQueue::UsedElement> used;
  uint64_t room = 0;
  for (const DescriptorChain& chain : chains) {
    if (room >= frame.size()) break;
    const uint64_t piece = std::min<uint64_t>(chain.writable_bytes, frame.size() - room);
    used.push_back({chain.head, static_cast<uint32_t>(piece)});
    room += piece;
  }
  if (room < frame.size() || used.size() > UINT16_MAX) {
    return make_error(ErrorCode::kInvalidArgument, "a {}-byte frame does not fit {} bytes of buffers", frame.size(),
                      room);
  }
  const auto buffers = static_cast<uint16_t>(used.size());
  std::memcpy(frame.data() + offsetof(NetHeader, num_buffers), &buffers, sizeof(buffers));
  uint64_t offset = 0;
  for (size_t i = 0; i < used.size(); ++i) {
    ChainWriter writer(memory, chains[i].writable);
    CROSVM_TRY(writer.write(frame.subspan(offset, used[i].written)));
    offset += used[i].written;
  }
  return used;
}

unsigned offloads_for_guest(uint64_t guest_features) {
  unsigned offloads = 0;
  if ((guest_features & kNetFeatureGuestCsum) != 0) offloads |= TUN_F_CSUM;
  if ((guest_features & kNetFeatureGuestTso4) != 0) offloads |= TUN_F_TSO4;
  if ((guest_features & kNetFeatureGuestTso6) != 0) offloads |= TUN_F_TSO6;
  if ((guest_features & kNetFeatureGuestEcn) != 0) offloads |= TUN_F_TSO_ECN;
  if ((guest_features & kNetFeatureGuestUfo) != 0) offloads |= TUN_F_UFO;
  return offloads;
}

Result<MacAddress> parse_mac(std::string_view text) {
  MacAddress mac{};
  auto bad = [&] { return make_error(ErrorCode::kInvalidArgument, "net: mac must look like 52:54:00:12:34:56, not '{}'", text); };
  if (text.size() != 17) return bad();
  for (size_t i = 0; i < 6; ++i) {
    const std::string_view part = text.substr(i * 3, 2);
    if (i < 5 && text[i * 3 + 2] != ':') return bad();
    const auto [end, error] = std::from_chars(part.data(), part.data() + 2, mac[i], 16);
    if (error != std::errc{} || end != part.data() + 2) return bad();
  }
  if ((mac[0] & 1) != 0) return make_error(ErrorCode::kInvalidArgument, "net: mac {} is a multicast address", text);
  return mac;
}

std::string format_mac(const MacAddress& mac) {
  return fmt::format("{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}", mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]);
}

Result<std::shared_ptr<Net>> Net::create(std::string name, MacAddress mac, uint16_t mtu,
                                         std::vector<std::unique_ptr<NetBackend>> backends,
                                         std::vector<std::unique_ptr<VhostNet>> vhost, const Logger& logger) {
  if (backends.empty() || backends.size() > kMaxPairs) {
    return make_error(ErrorCode::kInvalidArgument, "{}: {} queue pairs", name, backends.size());
  }
  if (!vhost.empty()) {
    if (vhost.size() != backends.size()) {
      return make_error(ErrorCode::kInvalidArgument, "{}: {} vhost-net devices for {} queue pairs", name,
                        vhost.size(), backends.size());
    }
    for (const auto& backend : backends) {
      if (backend->tap_fd() < 0 || !backend->carries_header()) {
        return make_error(ErrorCode::kInvalidArgument,
                          "{}: vhost-net needs a TAP with a virtio-net header (IFF_VNET_HDR), which {} is not",
                          name, backend->describe());
      }
    }
  }
  auto net = std::make_shared<Net>(std::move(name), mac, mtu, std::move(backends), logger);
  for (size_t i = 0; i < vhost.size(); ++i) {
    net->kernel_.add(std::move(vhost[i]), {static_cast<uint16_t>(2 * i), static_cast<uint16_t>(2 * i + 1)});
  }
  return net;
}

Net::Net(std::string name, MacAddress mac, uint16_t mtu, std::vector<std::unique_ptr<NetBackend>> backends,
         const Logger& logger)
    : QueueDevice(std::move(name), logger), mac_(mac), mtu_(mtu) {
  for (auto& backend : backends) {
    Pair& pair = pairs_.emplace_back();
    pair.backend = std::move(backend);
    pair.rx_buffer.resize(sizeof(NetHeader) + kMaxFrameBytes);
  }
}

std::vector<uint16_t> Net::queue_max_sizes() const {
  return std::vector<uint16_t>(2 * pairs_.size() + 1, kQueueSize);
}

std::vector<int> Net::host_fds() const {
  // With vhost-net, the kernel's relays and error eventfds (start() made
  // them, whether or not a pair runs).
  if (uses_vhost()) return kernel_.host_fds();
  std::vector<int> fds;
  for (const Pair& pair : pairs_) fds.push_back(pair.backend->wait_fd());
  return fds;
}

bool Net::served_here(uint16_t queue) const {
  // Under vhost-net a pair's queues are the kernel's, or nobody's.
  return queue >= control_queue() || !uses_vhost();
}

uint64_t Net::device_features() const {
  uint64_t features = kNetFeatureMac | kNetFeatureMtu | kNetFeatureStatus | kNetFeatureCtrlQueue | kNetFeatureCtrlRx |
                      kNetFeatureMergeableBuffers;
  if (pairs_.size() > 1) features |= kNetFeatureMq;
  const NetBackend& backend = *pairs_.front().backend;
  if (!backend.carries_header()) return features;
  // What the guest sends: the TAP takes partial checksums and TCP
  // segmentation whatever its offloads (those say what it may send us).
  features |= kNetFeatureCsum | kNetFeatureHostTso4 | kNetFeatureHostTso6 | kNetFeatureHostEcn;
  const unsigned offloads = backend.supported_offloads();
  if ((offloads & TUN_F_CSUM) != 0) features |= kNetFeatureGuestCsum | kNetFeatureCtrlGuestOffloads;
  if ((offloads & TUN_F_TSO4) != 0) features |= kNetFeatureGuestTso4;
  if ((offloads & TUN_F_TSO6) != 0) features |= kNetFeatureGuestTso6;
  if ((offloads & TUN_F_TSO_ECN) != 0) features |= kNetFeatureGuestEcn;
  // Merging receive buffers is the kernel's to do under vhost-net.
  if (uses_vhost() && (kernel_.front().features() & kNetFeatureMergeableBuffers) == 0) {
    features &= ~kNetFeatureMergeableBuffers;
  }
  return features;
}

uint64_t Net::ring_features() const {
  const uint64_t ours = QueueDevice::ring_features();
  return uses_vhost() ? ours & kernel_.front().features() : ours;
}

std::vector<QueuePosition> Net::positions_at_reset() const {
  return kernel_.with_kernel_positions(QueueDevice::positions_at_reset());
}

void Net::read_config(uint64_t offset, std::span<uint8_t> data) {
  NetConfig config{};
  std::memcpy(config.mac, mac_.data(), mac_.size());
  config.status = status_.load();
  config.max_virtqueue_pairs = static_cast<uint16_t>(pairs_.size());
  config.mtu = mtu_;
  read_config_bytes(std::span(reinterpret_cast<const uint8_t*>(&config), sizeof(config)), offset, data);
}

Result<void> Net::on_activate(const Activation& activation) {
  // Until the driver says otherwise, the first pair alone (5.1.6.5.5).
  offloads_ = offloads_for_guest(activation.features);
  active_pairs_ = static_cast<uint16_t>(pairs_.size());
  if (!use_pairs(1)) report_limited("the backends of pairs past the first would not stop");
  // Only the ring's and the header's bits are the kernel's: the offloads
  // are the TAP's, which carries the header.
  if (uses_vhost()) {
    CROSVM_TRY(kernel_.start(activation, activation.features & kernel_.front().features(), logger(), name()));
  }
  return {};
}

QueueDevice::Turn Net::on_vhost_event(size_t index) {
  const KernelQueues::Event event = kernel_.take_event(index);
  if (event.kind == KernelQueues::Event::Kind::kUsed) {
    // A masked vector (or INTx): the transport records what is pending.
    interrupt().signal_used(event.queue);
  } else if (event.kind == KernelQueues::Event::Kind::kBroken) {
    fail(fmt::format("the kernel's vhost-net gave up on queue {}: a malformed ring or chain", event.queue));
    return Turn::kPaused;
  }
  return Turn::kIdle;
}

bool Net::use_pairs(uint16_t count) {
  bool ok = true;
  for (size_t i = 0; i < pairs_.size(); ++i) {
    NetBackend& backend = *pairs_[i].backend;
    if (auto enabled = backend.set_enabled(i < count); !enabled) {
      report_limited(enabled.error().message);
      ok = false;
      continue;
    }
    // A TAP queue takes offloads only while it is attached.
    if (i < count) {
      if (auto set = backend.set_offloads(offloads_); !set) {
        report_limited(fmt::format("{} (the guest's receive offloads are off)", set.error().message));
      }
    }
  }
  const uint16_t before = active_pairs_;
  active_pairs_ = count;
  if (!uses_vhost()) {
    for (size_t i = before; i < count; ++i) resume_host(i);
  }
  return ok;
}

void Net::on_reset() {
  if (uses_vhost()) kernel_.stop();
  for (Pair& pair : pairs_) {
    pair.rx_length = 0;
    pair.rx_held.clear();
    pair.rx_held_bytes = 0;
  }
  active_pairs_ = 1;
}

QueueDevice::Turn Net::on_kick(ActiveQueue& queue) {
  if (queue.index == control_queue()) {
    return serve_available(queue, [this](const DescriptorChain& chain) { return control(chain); });
  }
  const size_t pair = queue.index / 2;
  if (pair >= pairs_.size()) return Turn::kIdle;
  if (queue.index % 2 == kReceiveQueue) {
    // New buffers: a frame waiting for them, or the backend, goes on.
    resume_host(pair);
    return Turn::kIdle;
  }
  return serve_available(queue, [this, pair](const DescriptorChain& chain) { return transmit(pair, chain); });
}

QueueDevice::Turn Net::on_host_ready(size_t index) {
  return uses_vhost() ? on_vhost_event(index) : receive(index);
}

QueueDevice::Turn Net::receive(size_t index) {
  if (index >= active_pairs_ || !link_up()) return Turn::kPaused;
  ActiveQueue* queue = find_queue(static_cast<uint16_t>(2 * index + kReceiveQueue));
  if (queue == nullptr) return Turn::kPaused;
  Pair& pair = pairs_[index];
  const size_t header_gap = pair.backend->carries_header() ? 0 : sizeof(NetHeader);
  unsigned frames = 0;
  bool delivered = false;
  Turn turn = Turn::kIdle;
  while (active()) {
    if (pair.rx_length == 0) {
      if (frames == kFramesPerTurn) {
        turn = Turn::kMore;
        break;
      }
      auto got = pair.backend->receive(std::span(pair.rx_buffer).subspan(header_gap));
      if (!got) {
        backend_failed(got.error());
        turn = Turn::kPaused;
        break;
      }
      if (*got == 0) break;  // nothing waits: wait until something does
      ++frames;
      if (header_gap > 0) {
        std::memset(pair.rx_buffer.data(), 0, header_gap);
      } else if (*got < sizeof(NetHeader)) {
        ++dropped_;
        continue;
      }
      pair.rx_length = *got + header_gap;
    }
    const Placed placed = place_frame(pair, *queue);
    if (placed == Placed::kBroken) return Turn::kPaused;
    if (placed == Placed::kWaiting) {
      turn = Turn::kPaused;  // until the guest posts buffers (its kick)
      break;
    }
    delivered = true;
  }
  if (delivered) notify_used(*queue);
  return active() ? turn : Turn::kPaused;
}

Net::Placed Net::place_frame(Pair& pair, ActiveQueue& queue) {
  const bool mergeable = (features() & kNetFeatureMergeableBuffers) != 0;
  const size_t max_buffers = mergeable ? queue.queue.size() : 1;
  while (pair.rx_held_bytes < pair.rx_length) {
    if (pair.rx_held.size() >= max_buffers) {
      // Every buffer the guest could give at once is too small: the frame
      // goes. Mergeable buffers stay for the next frame (which takes them
      // first); a single buffer goes back unused, or a guest whose buffers
      // are all too small would stop receiving at its first one.
      ++dropped_;
      report_problem(fmt::format("a {}-byte frame does not fit the {} bytes of receive buffers: dropped",
                                 pair.rx_length, pair.rx_held_bytes));
      pair.rx_length = 0;
      if (!mergeable) {
        for (const DescriptorChain& chain : pair.rx_held) {
          if (!complete(queue, chain.head, 0)) return Placed::kBroken;
        }
        pair.rx_held.clear();
        pair.rx_held_bytes = 0;
      }
      return Placed::kDone;
    }
    auto popped = pop_or_arm(queue);
    if (!popped) {
      fail(popped.error().message);
      return Placed::kBroken;
    }
    if (!popped->has_value()) return Placed::kWaiting;
    PoppedChain& next = **popped;
    if (!next.chain || !next.chain->readable.empty()) {
      report_problem(next.chain ? std::string("receive queue: a buffer the device would have to read")
                                : fmt::format("receive queue: {}", next.problem));
      if (!complete(queue, next.head, 0)) return Placed::kBroken;
      continue;
    }
    pair.rx_held_bytes += next.chain->writable_bytes;
    pair.rx_held.push_back(std::move(*next.chain));
  }
  auto used = write_received_frame(memory(), pair.rx_held, std::span(pair.rx_buffer.data(), pair.rx_length));
  if (!used) {
    fail(used.error().message);
    return Placed::kBroken;
  }
  for (size_t i = 0; i < used->size(); ++i) pair.rx_held_bytes -= pair.rx_held[i].writable_bytes;
  pair.rx_held.erase(pair.rx_held.begin(), pair.rx_held.begin() + static_cast<ptrdiff_t>(used->size()));
  pair.rx_length = 0;
  if (auto pushed = queue.queue.push_used(*used); !pushed) {
    fail(pushed.error().message);
    return Placed::kBroken;
  }
  return Placed::kDone;
}

uint32_t Net::transmit(size_t pair, const DescriptorChain& chain) {
  ChainReader reader(memory(), chain.readable);
  auto header = reader.read_object<NetHeader>();
  if (!header) {
    ++dropped_;
    report_problem(fmt::format("transmit queue: a {}-byte chain has no header", chain.readable_bytes));
    return 0;
  }
  if (auto problem = check_transmit_header(*header, reader.remaining(), features())) {
    ++dropped_;
    report_problem(fmt::format("transmit queue: {}: dropped", *problem));
    return 0;
  }
  if (!link_up()) {
    ++dropped_;
    return 0;
  }
  if (pair >= active_pairs_) {
    ++dropped_;
    report_problem(fmt::format("transmit queue of pair {}, which the driver did not enable: dropped", pair));
    return 0;
  }
  NetBackend& backend = *pairs_[pair].backend;
  auto frame = reader.take(reader.remaining());
  if (!frame) {
    ++dropped_;
    return 0;
  }
  // The checked copy of the header goes out, not the guest's memory.
  NetHeader checked = *header;
  checked.num_buffers = 0;
  tx_iovecs_.clear();
  if (backend.carries_header()) tx_iovecs_.push_back({&checked, sizeof(checked)});
  tx_iovecs_.insert(tx_iovecs_.end(), frame->begin(), frame->end());
  auto sent = backend.send(tx_iovecs_);
  if (!sent) {
    ++dropped_;
    backend_failed(sent.error());
  } else if (*sent != NetBackend::Sent::kSent) {
    ++dropped_;
    if (*sent == NetBackend::Sent::kRefused) {
      report_problem(fmt::format("transmit queue: {} refused a {}-byte frame (GSO type {}, segment size {}): dropped",
                                 backend.describe(), reader.consumed() - sizeof(NetHeader), uint8_t{header->gso_type},
                                 uint16_t{header->gso_size}));
    }
  }
  return 0;
}

uint32_t Net::control(const DescriptorChain& chain) {
  ChainReader reader(memory(), chain.readable);
  ChainWriter writer(memory(), chain.writable);
  if (writer.remaining() == 0) {
    report_problem("control queue: a command with no room for its answer");
    return 0;
  }
  uint8_t answer = kControlError;
  auto header = reader.read_object<ControlHeader>();
  if (header) {
    const uint64_t data = reader.remaining();
    if (header->command_class == kControlRx && (features() & kNetFeatureCtrlRx) != 0 &&
        (header->command == kControlRxPromiscuous || header->command == kControlRxAllMulticast) && data == 1) {
      // The TAP hands over whatever reaches it; the guest's stack filters.
      answer = kControlOk;
    } else if (header->command_class == kControlMac && header->command == kControlMacTableSet) {
      // Two tables (unicast, multicast): a count and that many addresses.
      bool valid = true;
      for (int table = 0; table < 2 && valid; ++table) {
        auto entries = reader.read_object<uint32_t>();
        valid = entries && uint64_t{*entries} * 6 <= reader.remaining() && reader.skip(uint64_t{*entries} * 6);
      }
      if (valid && reader.remaining() == 0) answer = kControlOk;
    } else if (header->command_class == kControlMq && header->command == kControlMqPairsSet &&
               (features() & kNetFeatureMq) != 0 && data == 2) {
      auto count = reader.read_object<uint16_t>();
      if (count && *count >= 1 && *count <= pairs_.size() && use_pairs(*count)) answer = kControlOk;
    } else if (header->command_class == kControlGuestOffloads && header->command == kControlGuestOffloadsSet &&
               (features() & kNetFeatureCtrlGuestOffloads) != 0 && data == 8) {
      auto offloads = reader.read_object<uint64_t>();
      if (offloads && (*offloads & ~(features() & kGuestOffloadFeatures)) == 0) {
        offloads_ = offloads_for_guest(*offloads);
        answer = kControlOk;
        for (size_t i = 0; i < active_pairs_; ++i) {
          if (auto set = pairs_[i].backend->set_offloads(offloads_); !set) {
            report_limited(set.error().message);
            answer = kControlError;
          }
        }
      }
    }
  }
  if (answer != kControlOk) {
    report_problem(header ? fmt::format("control queue: command {}.{} refused", header->command_class,
                                        header->command)
                          : std::string("control queue: a command without its header"));
  }
  return writer.write_object(answer) ? 1 : 0;
}

void Net::backend_failed(const Error& error) {
  if (status_.exchange(0) == 0) return;
  logger().warn("{}: {}: the link is down", name(), error.message);
  interrupt().signal_config_change();
}

namespace {

constexpr DeviceKey kNetKeys[] = {
    {"tap-name", "an existing TAP by name (one the user owns, or any with CAP_NET_ADMIN)"},
    {"tap-fd", "a TAP the caller opened: its fd number (duplicated; the caller keeps it)"},
    {"host-ip", "a new TAP with this IPv4 address on the host side (needs CAP_NET_ADMIN)"},
    {"netmask", "with host-ip: the host side's netmask"},
    {"passt", "user-mode networking through passt: DHCP, DNS, TCP and UDP over the host's sockets, no root",
     true},
    {"tcp-ports", "with passt: host TCP ports forwarded to the guest, in passt's -t syntax (\"2222:22,8080\")"},
    {"udp-ports", "with passt: host UDP ports forwarded to the guest, in passt's -u syntax"},
    {"passt-path", "with passt: the program (default: passt on PATH)"},
    {"mac", "the guest's MAC address (default: a random locally administered one)"},
    {"mtu", "the MTU the guest is told (default: the TAP's; passt's 65520)"},
    {"vq-pairs", "queue pairs (default 1): a multi-queue TAP with that many queues, each pair's own"},
    {"vhost-net", "the kernel's vhost-net carries the TAP's frames (needs /dev/vhost-net; default false)", true},
};

// The fd of the TAP's queue `index`, as open() names it.
std::string tap_fd_name(size_t index) { return index == 0 ? "tap" : fmt::format("tap{}", index); }
// Pair `index`'s /dev/vhost-net, likewise.
std::string vhost_fd_name(size_t index) { return index == 0 ? "vhost-net" : fmt::format("vhost-net{}", index); }

bool flag_set(const DeviceOptions& options, std::string_view key) {
  auto value = options.flag(key, false);
  return value && *value;
}

Result<void> check_net(const DeviceOptions& options) {
  const bool passt = CROSVM_TRY(options.flag("passt", false));
  const bool vhost = CROSVM_TRY(options.flag("vhost-net", false));
  const int sources = (options.text("tap-name") ? 1 : 0) + (options.text("tap-fd") ? 1 : 0) +
                      (options.text("host-ip") ? 1 : 0) + (passt ? 1 : 0);
  if (sources != 1) return options.invalid("needs exactly one of tap-name=, tap-fd=, host-ip= and passt");
  if (options.text("host-ip").has_value() != options.text("netmask").has_value()) {
    return options.invalid("host-ip= and netmask= go together");
  }
  for (const std::string_view key : {"tcp-ports", "udp-ports", "passt-path"}) {
    if (!passt && options.text(key)) return options.invalid(fmt::format("{}= goes with passt", key));
  }
  for (const std::string_view key : {"tcp-ports", "udp-ports"}) {
    const auto spec = options.text(key);
    if (auto checked = check_port_spec(spec.value_or("")); !checked) {
      return options.invalid(fmt::format("{}: {}", key, checked.error().message));
    }
  }
  CROSVM_TRY(options.number("tap-fd", 0, 65535, 0));
  CROSVM_TRY(options.number("mtu", 68, passt ? kPasstMaxMtu : 65535, 1500));
  const uint64_t pairs = CROSVM_TRY(options.number("vq-pairs", 1, Net::kMaxPairs, 1));
  if (pairs > 1 && options.text("tap-fd")) return options.invalid("tap-fd= is one queue: it takes no vq-pairs=");
  if (pairs > 1 && passt) return options.invalid("passt is one queue: it takes no vq-pairs=");
  if (vhost && passt) return options.invalid("vhost-net needs a TAP: passt's socket is not one");
  if (auto mac = options.text("mac")) CROSVM_TRY(parse_mac(*mac));
  return {};
}

MacAddress random_mac() {
  MacAddress mac{};
  if (::getrandom(mac.data(), mac.size(), 0) != static_cast<ssize_t>(mac.size())) mac = {0, 0, 0, 0, 0, 1};
  mac[0] = static_cast<uint8_t>((mac[0] & 0xfe) | 0x02);  // unicast, locally administered
  return mac;
}

bool uses_passt(const DeviceOptions& options) { return flag_set(options, "passt"); }

std::string net_source(const DeviceOptions& options) {
  if (uses_passt(options)) {
    std::string source = "passt";
    if (auto ports = options.text("tcp-ports")) source += ", tcp " + *ports;
    if (auto ports = options.text("udp-ports")) source += ", udp " + *ports;
    return source;
  }
  if (auto name = options.text("tap-name")) return "tap " + *name;
  if (auto fd = options.text("tap-fd")) return "tap fd " + *fd;
  return fmt::format("new tap, host {}/{}", options.text("host-ip").value_or(""), options.text("netmask").value_or(""));
}

}  // namespace

const VirtioKind kNetKind{
    .name = "net",
    .summary = "a virtio-net NIC on a TAP (tap-name=, tap-fd=, or host-ip=,netmask= for a new one) or on passt",
    .keys = kNetKeys,
    .positional = "",
    .check = check_net,
    .open = [](DeviceOptions& options, const Logger& logger) -> Result<OpenedResources> {
      if (!options.text("mac")) options.set("mac", format_mac(random_mac()));
      if (uses_passt(options)) {
        if (!options.text("mtu")) options.set("mtu", std::to_string(kPasstMaxMtu));
        StartedPasst passt = CROSVM_TRY(start_passt(
            {.program = options.text("passt-path").value_or("passt"),
             .tcp_ports = options.text("tcp-ports").value_or(""),
             .udp_ports = options.text("udp-ports").value_or(""),
             .mtu = static_cast<uint16_t>(CROSVM_TRY(options.number("mtu", 68, kPasstMaxMtu, kPasstMaxMtu))),
             .name = "virtio-net"},
            logger));
        OpenedResources opened;
        opened.fds.push_back({"passt", std::move(passt.connection)});
        opened.companions.push_back(std::move(passt.process));
        return opened;
      }
      const auto pairs = static_cast<unsigned>(CROSVM_TRY(options.number("vq-pairs", 1, Net::kMaxPairs, 1)));
      OpenedTap tap;
      if (auto name = options.text("tap-name")) {
        tap = CROSVM_TRY(open_tap(*name, pairs));
      } else if (options.text("tap-fd")) {
        tap = CROSVM_TRY(adopt_tap_fd(static_cast<int>(CROSVM_TRY(options.number("tap-fd", 0, 65535, 0)))));
      } else {
        tap = CROSVM_TRY(create_tap(*options.text("host-ip"), *options.text("netmask"), pairs));
      }
      // Decided here, once (the MAC above too): a device process is told them.
      if (!options.text("mtu")) options.set("mtu", std::to_string(tap.mtu));
      OpenedResources opened;
      for (size_t i = 0; i < tap.queues.size(); ++i) opened.fds.push_back({tap_fd_name(i), std::move(tap.queues[i])});
      if (flag_set(options, "vhost-net")) {
        for (size_t i = 0; i < tap.queues.size(); ++i) {
          opened.fds.push_back({vhost_fd_name(i), CROSVM_TRY(VhostNet::open_device())});
        }
      }
      return opened;
    },
    .create = [](const DeviceOptions& options, DeviceEnvironment& environment)
        -> Result<std::shared_ptr<VirtioDevice>> {
      const auto pairs = static_cast<unsigned>(CROSVM_TRY(options.number("vq-pairs", 1, Net::kMaxPairs, 1)));
      const std::string name = fmt::format("virtio-net {} ({})", environment.index, net_source(options));
      std::vector<std::unique_ptr<NetBackend>> backends;
      std::vector<std::unique_ptr<VhostNet>> vhost;
      if (uses_passt(options)) {
        UniqueFd fd = environment.take_fd("passt");
        if (!fd) return options.invalid("no connection to passt was opened for the device");
        backends.push_back(CROSVM_TRY(FrameStream::create(std::move(fd), "passt")));
      } else {
        for (unsigned i = 0; i < pairs; ++i) {
          UniqueFd fd = environment.take_fd(tap_fd_name(i));
          if (!fd) return options.invalid(fmt::format("no TAP queue {} was opened for the device", i));
          const std::string queue = pairs > 1 ? fmt::format(" queue {}", i) : "";
          backends.push_back(CROSVM_TRY(Tap::create(std::move(fd), net_source(options) + queue)));
          if (flag_set(options, "vhost-net")) {
            UniqueFd device = environment.take_fd(vhost_fd_name(i));
            if (!device) return options.invalid(fmt::format("no /dev/vhost-net was opened for queue pair {}", i));
            vhost.push_back(CROSVM_TRY(VhostNet::create(std::move(device), fmt::format("vhost-net{}", queue),
                                                        backends.back()->tap_fd())));
          }
        }
      }
      const MacAddress mac = CROSVM_TRY(parse_mac(options.text("mac").value_or("")));
      const auto mtu = static_cast<uint16_t>(CROSVM_TRY(options.number("mtu", 68, 65535, 1500)));
      return std::shared_ptr<VirtioDevice>(
          CROSVM_TRY(Net::create(name, mac, mtu, std::move(backends), std::move(vhost), environment.logger)));
    },
    .describe = [](const DeviceOptions& options, uint32_t index) -> std::string {
      const std::string pairs = options.text("vq-pairs").value_or("1");
      return fmt::format("net{} (virtio-net, {}, mac {}, mtu {}{}{})", index, net_source(options),
                         options.text("mac").value_or("?"), options.text("mtu").value_or("?"),
                         pairs == "1" ? "" : ", " + pairs + " queue pairs",
                         flag_set(options, "vhost-net") ? ", vhost-net" : "");
    },
};

}  // namespace crosvm::virtio
