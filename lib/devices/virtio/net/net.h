// virtio-net (virtio 1.x, 5.1): receive/transmit queue pairs (one per
// backend: a multi-queue TAP's queues) and the control queue.
//
// Transmit: each chain is a virtio_net_hdr and a frame; the header is
// checked against what was negotiated (check_transmit_header) and passed
// on from a copy, the frame goes to the backend straight from guest RAM.
// Receive: a frame is read into one bounded buffer of the device's, then
// copied into the guest's buffers: one chain, or with MRG_RXBUF as many as
// it needs, all published together. A frame larger than every buffer the
// guest could post is dropped, never truncated (without MRG_RXBUF the
// buffer it did not fit goes back unused). While the guest posts no
// buffer the device stops reading the backend (its own queue fills and
// the kernel drops) and spends nothing until the guest kicks.
// Offloads: what the backend supports is offered; what the guest takes is
// set on the backend (and again by the control queue's GUEST_OFFLOADS).
// A backend that fails or goes away is logged once and the link goes down.
//
// With vhost-net (one per pair) the kernel serves the pairs' rings itself,
// between guest RAM and the TAP queue: the device's worker waits on the
// control queue only, the kernel on the pairs' kicks, and the kernel's
// interrupts go to the transport's own eventfd (the MSI-X vector's irqfd)
// whenever it can deliver by itself, else (a masked vector) to an eventfd
// the worker relays. Frames are then checked by the kernel's TAP, not here.
#pragma once

#include <atomic>
#include <array>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "devices/registry.h"
#include "devices/virtio/net/net_backend.h"
#include "devices/virtio/net/vhost_net.h"
#include "devices/virtio/queue_device.h"

namespace crosvm::virtio {

// Feature bits (5.1.3).
inline constexpr uint64_t kNetFeatureCsum = 1ull << 0;
inline constexpr uint64_t kNetFeatureGuestCsum = 1ull << 1;
inline constexpr uint64_t kNetFeatureCtrlGuestOffloads = 1ull << 2;
inline constexpr uint64_t kNetFeatureMtu = 1ull << 3;
inline constexpr uint64_t kNetFeatureMac = 1ull << 5;
inline constexpr uint64_t kNetFeatureGuestTso4 = 1ull << 7;
inline constexpr uint64_t kNetFeatureGuestTso6 = 1ull << 8;
inline constexpr uint64_t kNetFeatureGuestEcn = 1ull << 9;
inline constexpr uint64_t kNetFeatureGuestUfo = 1ull << 10;
inline constexpr uint64_t kNetFeatureHostTso4 = 1ull << 11;
inline constexpr uint64_t kNetFeatureHostTso6 = 1ull << 12;
inline constexpr uint64_t kNetFeatureHostEcn = 1ull << 13;
inline constexpr uint64_t kNetFeatureHostUfo = 1ull << 14;
inline constexpr uint64_t kNetFeatureMergeableBuffers = 1ull << 15;
inline constexpr uint64_t kNetFeatureStatus = 1ull << 16;
inline constexpr uint64_t kNetFeatureCtrlQueue = 1ull << 17;
inline constexpr uint64_t kNetFeatureCtrlRx = 1ull << 18;
inline constexpr uint64_t kNetFeatureMq = 1ull << 22;

// struct virtio_net_hdr with num_buffers (always there in virtio 1.x).
struct [[gnu::packed]] NetHeader {
  uint8_t flags;
  uint8_t gso_type;
  uint16_t header_length;
  uint16_t gso_size;
  uint16_t csum_start;
  uint16_t csum_offset;
  uint16_t num_buffers;
};
static_assert(sizeof(NetHeader) == 12);
inline constexpr uint8_t kNetHeaderNeedsCsum = 1;
inline constexpr uint8_t kNetHeaderDataValid = 2;
inline constexpr uint8_t kNetGsoNone = 0;
inline constexpr uint8_t kNetGsoTcpV4 = 1;
inline constexpr uint8_t kNetGsoUdp = 3;
inline constexpr uint8_t kNetGsoTcpV6 = 4;
inline constexpr uint8_t kNetGsoEcn = 0x80;

// The largest frame either way, without its header: a 64 KiB GSO frame with
// its Ethernet and VLAN headers.
inline constexpr size_t kMaxFrameBytes = 65535 + 14 + 4;

// Why a transmitted frame with `header` and `frame_bytes` after it may not
// go to the backend under the negotiated `features`; nullopt when it may.
std::optional<std::string> check_transmit_header(const NetHeader& header, uint64_t frame_bytes, uint64_t features);

// Writes a received `frame` (its header first) into `chains` front to back,
// each filled before the next, and sets the header's num_buffers to how
// many it took: what goes to the used ring. Fails, writing nothing, when
// the chains hold less than the frame.
Result<std::vector<SplitQueue::UsedElement>> write_received_frame(const GuestMemory& memory,
                                                                  std::span<const DescriptorChain> chains,
                                                                  std::span<uint8_t> frame);

// The TUN_F_* offloads a driver that negotiated `features` can take.
unsigned offloads_for_guest(uint64_t guest_features);

using MacAddress = std::array<uint8_t, 6>;
Result<MacAddress> parse_mac(std::string_view text);
std::string format_mac(const MacAddress& mac);

class Net final : public QueueDevice {
 public:
  static constexpr uint16_t kQueueSize = 256;
  // Queues 2p and 2p + 1 are pair p's receive and transmit queues; the
  // control queue comes after the last pair.
  static constexpr uint16_t kReceiveQueue = 0;
  static constexpr uint16_t kTransmitQueue = 1;
  static constexpr uint16_t kMaxPairs = 16;
  // Frames received per turn before the device yields.
  static constexpr unsigned kFramesPerTurn = 64;

  // One backend per queue pair (a multi-queue TAP's queues), at least one;
  // `vhost`: none, or the kernel's vhost-net for each pair (TAP backends
  // with a virtio_net_hdr only).
  static Result<std::shared_ptr<Net>> create(std::string name, MacAddress mac, uint16_t mtu,
                                             std::vector<std::unique_ptr<NetBackend>> backends,
                                             std::vector<std::unique_ptr<VhostNet>> vhost, const Logger& logger);
  Net(std::string name, MacAddress mac, uint16_t mtu, std::vector<std::unique_ptr<NetBackend>> backends,
      const Logger& logger);

  DeviceType type() const override { return DeviceType::kNet; }
  uint32_t pci_class() const override { return 0x020000; }  // Ethernet controller
  std::vector<uint16_t> queue_max_sizes() const override;
  uint64_t device_features() const override;
  uint64_t ring_features() const override;
  std::vector<QueuePosition> positions_at_reset() const override;
  void read_config(uint64_t offset, std::span<uint8_t> data) override;
  void write_config(uint64_t, std::span<const uint8_t>) override {}

  uint16_t control_queue() const { return static_cast<uint16_t>(2 * pairs_.size()); }
  bool link_up() const { return status_.load() != 0; }
  // Frames dropped either way: too large, a refused header, no room in
  // the backend.
  uint64_t dropped_frames() const { return dropped_.load(); }

 private:
  // A queue pair's backend and receive state (under the worker's lock):
  // the frame read from the backend (with its header) and the guest
  // buffers taken for it so far.
  struct Pair {
    std::unique_ptr<NetBackend> backend;
    std::vector<uint8_t> rx_buffer;
    size_t rx_length = 0;
    std::vector<DescriptorChain> rx_held;
    uint64_t rx_held_bytes = 0;
  };

  Result<void> on_activate(const Activation& activation) override;
  Turn on_kick(ActiveQueue& queue) override;
  void on_reset() override;
  std::vector<int> host_fds() const override;
  Turn on_host_ready(size_t index) override;
  bool served_here(uint16_t queue) const override;

  bool uses_vhost() const { return !kernel_.empty(); }
  // The kernel's interrupt for a queue came to the relay, or it gave up on a ring.
  Turn on_vhost_event(size_t index);

  // Under the worker's lock.
  Turn receive(size_t pair);
  // Places the pair's frame into the guest's buffers, or drops it.
  enum class Placed { kDone, kWaiting, kBroken };
  Placed place_frame(Pair& pair, ActiveQueue& queue);
  uint32_t transmit(size_t pair, const DescriptorChain& chain);
  uint32_t control(const DescriptorChain& chain);
  // The driver's VQ_PAIRS_SET: the backends of pairs past `count` stop.
  bool use_pairs(uint16_t count);
  void backend_failed(const Error& error);

  MacAddress mac_;
  uint16_t mtu_;
  std::vector<Pair> pairs_;
  static constexpr uint16_t kStatusLinkUp = 1;  // VIRTIO_NET_S_LINK_UP
  std::atomic<uint16_t> status_{kStatusLinkUp};
  std::atomic<uint64_t> dropped_{0};
  // Under the worker's lock (or before the worker starts).
  uint16_t active_pairs_ = 1;
  unsigned offloads_ = 0;  // TUN_F_* the guest takes
  std::vector<iovec> tx_iovecs_;
  // vhost-net: each pair's /dev/vhost-net serving queues 2p and 2p + 1.
  KernelQueues kernel_{[this](std::string_view problem) { report_limited(problem); }};
};

// "net" in the registry: tap-name=, tap-fd=, or host-ip=,netmask= (a new
// TAP the VMM configures), or passt; mac=, mtu=, vq-pairs=, vhost-net=.
extern const VirtioKind kNetKind;

}  // namespace crosvm::virtio
