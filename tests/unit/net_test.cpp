// virtio-net against a hostile guest and a failing backend: transmitted
// headers are checked against what was negotiated, received frames are
// placed whole or dropped (never truncated), mergeable buffers are
// published together, a guest with no buffers costs nothing, and a
// backend that fails takes the link down.
#include <catch2/catch.hpp>

#include <linux/if_tun.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <mutex>
#include <thread>

#include "devices/virtio/net/net.h"
#include "fakes.h"
#include "hang_guard.h"
#include "virtio_rings.h"

using namespace crosvm;
using crosvm::testing::eventually;
using namespace crosvm::virtio;
using crosvm::testing::DriverRing;
using crosvm::testing::kNext;
using crosvm::testing::kWrite;
using crosvm::testing::RecordingInterrupt;

namespace {

constexpr uint16_t kSize = 64;
constexpr uint64_t kTransmitRings = 0x8000;
constexpr uint64_t kControlRings = 0x10000;
constexpr uint64_t kData = 0x20000;

// Frames as datagrams on a socketpair (the test holds the other end); what
// the device sends is kept.
class FakeBackend final : public NetBackend {
 public:
  FakeBackend() {
    int pair[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, pair) == 0);
    ours_.reset(pair[0]);
    theirs_.reset(pair[1]);
  }
  std::string describe() const override { return "fake"; }
  int wait_fd() const override { return ours_.get(); }
  bool carries_header() const override { return true; }
  unsigned supported_offloads() const override { return TUN_F_CSUM | TUN_F_TSO4 | TUN_F_TSO6; }
  Result<void> set_offloads(unsigned offloads) override {
    std::lock_guard lock(mutex);
    offload_calls.push_back(offloads);
    return {};
  }
  Result<void> set_enabled(bool on) override {
    enabled = on;
    return {};
  }
  Result<size_t> receive(std::span<uint8_t> buffer) override {
    ++receives;
    if (failing) return make_error(ErrorCode::kIo, "fake: read: Input/output error");
    const ssize_t got = ::recv(ours_.get(), buffer.data(), buffer.size(), 0);
    if (got < 0) return size_t{0};
    return static_cast<size_t>(got);
  }
  Result<Sent> send(std::span<const iovec> frame) override {
    std::string bytes;
    for (const iovec& piece : frame) bytes.append(static_cast<const char*>(piece.iov_base), piece.iov_len);
    std::lock_guard lock(mutex);
    sent.push_back(std::move(bytes));
    return Sent::kSent;
  }

  // From the test: a frame from "the network" (its header first).
  void deliver(const std::string& frame) {
    REQUIRE(::send(theirs_.get(), frame.data(), frame.size(), 0) == static_cast<ssize_t>(frame.size()));
  }
  std::vector<std::string> sent_frames() {
    std::lock_guard lock(mutex);
    return sent;
  }

  std::mutex mutex;
  std::vector<std::string> sent;
  std::vector<unsigned> offload_calls;
  std::atomic<int> receives{0};
  std::atomic<bool> failing{false};
  std::atomic<bool> enabled{true};

 private:
  UniqueFd ours_, theirs_;
};

std::string header_bytes(const NetHeader& header) {
  return std::string(reinterpret_cast<const char*>(&header), sizeof(header));
}

std::string frame_of(size_t length, char fill) {
  std::string frame(length, fill);
  std::memset(frame.data(), 0xff, 6);  // broadcast
  return frame;
}

struct Fixture {
  explicit Fixture(size_t pairs = 1) : memory(crosvm::testing::make_guest_memory(1 << 20)) {
    std::vector<std::unique_ptr<NetBackend>> owned;
    for (size_t i = 0; i < pairs; ++i) {
      owned.push_back(std::make_unique<FakeBackend>());
      backends.push_back(static_cast<FakeBackend*>(owned.back().get()));
    }
    backend = backends.front();
    net = std::make_unique<Net>("virtio-net 0", MacAddress{0x52, 0x54, 0, 1, 2, 3}, 1500, std::move(owned),
                                crosvm::testing::quiet_logger());
  }
  ~Fixture() { net->reset(); }

  void activate(uint64_t features) {
    Activation activation{&memory, features | kFeatureVersion1, {}, interrupt};
    const auto queues = static_cast<uint16_t>(2 * backends.size() + 1);
    for (uint16_t index = 0; index < queues; ++index) {
      const DriverRing& ring = index == queues - 1 ? control
                               : index == 0        ? receive
                               : index == 1        ? transmit
                               : index == 2        ? receive1
                                                   : transmit1;
      activation.queues.push_back(ActiveQueue{index,
                                              std::move(SplitQueue::create(memory, ring.config(), kSize, false, false)).value(),
                                              std::move(EventFd::create(EFD_NONBLOCK)).value()});
      kicks.push_back(activation.queues.back().kick.fd());
    }
    REQUIRE(net->activate(std::move(activation)).ok());
  }
  void kick(uint16_t queue) {
    const uint64_t one = 1;
    REQUIRE(::write(kicks.at(queue), &one, sizeof(one)) == sizeof(one));
  }
  // A transmit chain of two descriptors (header, frame) at `head`.
  void transmit_frame(uint16_t head, const NetHeader& header, const std::string& frame) {
    const uint64_t address = kData + uint64_t{head} * 0x2000;
    const std::string bytes = header_bytes(header) + frame;
    (void)memory.write(address, std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
    transmit.descriptor(head, address, sizeof(NetHeader), kNext, static_cast<uint16_t>(head + 1));
    transmit.descriptor(static_cast<uint16_t>(head + 1), address + sizeof(NetHeader), static_cast<uint32_t>(frame.size()));
    transmit.offer(head);
  }
  // A receive buffer of `length` bytes at descriptor `head`.
  uint64_t post_buffer(uint16_t head, uint32_t length) {
    const uint64_t address = 0x80000 + uint64_t{head} * 0x1000;  // up to 4 KiB each
    receive.descriptor(head, address, length, kWrite);
    receive.offer(head);
    return address;
  }
  std::string read_guest(uint64_t address, size_t length) {
    std::string bytes(length, 0);
    (void)memory.read(address, std::span(reinterpret_cast<uint8_t*>(bytes.data()), bytes.size()));
    return bytes;
  }
  uint16_t config_u16(uint64_t offset) {
    uint16_t value = 0;
    net->read_config(offset, std::span(reinterpret_cast<uint8_t*>(&value), sizeof(value)));
    return value;
  }

  GuestMemory memory;
  DriverRing receive{memory, kSize};
  DriverRing transmit{memory, kSize, kTransmitRings};
  DriverRing control{memory, kSize, kControlRings};
  DriverRing receive1{memory, kSize, 0xc0000};  // the second pair's
  DriverRing transmit1{memory, kSize, 0xc8000};
  std::shared_ptr<RecordingInterrupt> interrupt = std::make_shared<RecordingInterrupt>();
  std::vector<FakeBackend*> backends;
  FakeBackend* backend;
  std::unique_ptr<Net> net;
  std::vector<int> kicks;
};

constexpr uint64_t kOffloads = kNetFeatureCsum | kNetFeatureHostTso4 | kNetFeatureGuestCsum | kNetFeatureGuestTso4 |
                               kNetFeatureMergeableBuffers | kNetFeatureCtrlQueue | kNetFeatureCtrlRx |
                               kNetFeatureCtrlGuestOffloads;

}  // namespace

TEST_CASE("a transmitted header is checked against what was negotiated", "[net]") {
  NetHeader plain{};
  CHECK_FALSE(check_transmit_header(plain, 60, 0).has_value());
  CHECK(check_transmit_header(plain, 10, 0).value().find("shorter than an Ethernet header") != std::string::npos);
  CHECK(check_transmit_header(plain, kMaxFrameBytes + 1, 0).value().find("larger") != std::string::npos);

  NetHeader checksum{};
  checksum.flags = kNetHeaderNeedsCsum;
  checksum.csum_start = 34;
  checksum.csum_offset = 16;
  CHECK(check_transmit_header(checksum, 100, 0).value().find("CSUM was not negotiated") != std::string::npos);
  CHECK_FALSE(check_transmit_header(checksum, 100, kNetFeatureCsum).has_value());
  CHECK(check_transmit_header(checksum, 51, kNetFeatureCsum).value().find("past the 51-byte frame") != std::string::npos);

  NetHeader tso = checksum;
  tso.gso_type = kNetGsoTcpV4;
  tso.gso_size = 1448;
  tso.header_length = 66;
  CHECK(check_transmit_header(tso, 3000, kNetFeatureCsum).value().find("TCPv4 segmentation was not negotiated") !=
        std::string::npos);
  CHECK_FALSE(check_transmit_header(tso, 3000, kNetFeatureCsum | kNetFeatureHostTso4).has_value());
  tso.gso_type = kNetGsoTcpV4 | kNetGsoEcn;
  CHECK(check_transmit_header(tso, 3000, kNetFeatureCsum | kNetFeatureHostTso4).value().find("ECN") !=
        std::string::npos);
  tso.gso_type = kNetGsoTcpV6;
  CHECK(check_transmit_header(tso, 3000, kNetFeatureCsum | kNetFeatureHostTso4).has_value());
  tso.gso_type = 2;
  CHECK(check_transmit_header(tso, 3000, ~0ull).value().find("unknown") != std::string::npos);
  tso.gso_type = kNetGsoTcpV4;
  tso.gso_size = 0;
  CHECK(check_transmit_header(tso, 3000, ~0ull).value().find("0-byte segments") != std::string::npos);
  tso.gso_size = 1448;
  tso.flags = 0;
  CHECK(check_transmit_header(tso, 3000, ~0ull).value().find("without a partial checksum") != std::string::npos);
  NetHeader flags{};
  flags.flags = 0x10;
  CHECK(check_transmit_header(flags, 60, ~0ull).has_value());
}

TEST_CASE("a MAC address is six hex pairs and not multicast", "[net]") {
  CHECK(format_mac(parse_mac("52:54:00:AB:cd:0f").value()) == "52:54:00:ab:cd:0f");
  CHECK_FALSE(parse_mac("52:54:00:ab:cd").ok());
  CHECK_FALSE(parse_mac("52-54-00-ab-cd-0f").ok());
  CHECK_FALSE(parse_mac("52:54:00:ab:cd:0g").ok());
  CHECK(parse_mac("01:00:5e:00:00:01").error().message.find("multicast") != std::string::npos);
}

TEST_CASE("the configuration space holds the MAC, the link, one pair and the MTU", "[net]") {
  Fixture fixture;
  uint8_t mac[6] = {};
  fixture.net->read_config(0, mac);
  CHECK(mac[0] == 0x52);
  CHECK(mac[5] == 3);
  CHECK(fixture.config_u16(6) == 1);  // link up
  CHECK(fixture.config_u16(8) == 1);
  CHECK(fixture.config_u16(10) == 1500);
  const uint64_t features = fixture.net->device_features();
  CHECK((features & kNetFeatureGuestTso4) != 0);
  CHECK((features & kNetFeatureMergeableBuffers) != 0);
  CHECK((features & kNetFeatureGuestUfo) == 0);  // the backend does not offer it
}

TEST_CASE("a transmitted frame reaches the backend with a checked copy of its header", "[net]") {
  Fixture fixture;
  fixture.activate(kOffloads);
  NetHeader header{};
  header.num_buffers = 7;  // means nothing on transmit: not passed on
  const std::string frame = frame_of(100, 'x');
  fixture.transmit_frame(0, header, frame);
  fixture.kick(Net::kTransmitQueue);
  REQUIRE(eventually([&] { return fixture.transmit.used_index() == 1; }));
  const auto sent = fixture.backend->sent_frames();
  REQUIRE(sent.size() == 1);
  NetHeader expected{};
  CHECK(sent[0] == header_bytes(expected) + frame);
  CHECK(fixture.transmit.used(0).length == 0);
}

TEST_CASE("a frame with a header outside the negotiation is dropped and its chain returned", "[net]") {
  Fixture fixture;
  fixture.activate(kNetFeatureCsum);  // no segmentation
  NetHeader header{};
  header.flags = kNetHeaderNeedsCsum;
  header.gso_type = kNetGsoTcpV4;
  header.gso_size = 1448;
  header.csum_start = 34;
  header.csum_offset = 16;
  fixture.transmit_frame(0, header, frame_of(3000, 'y'));
  NetHeader good{};
  fixture.transmit_frame(2, good, frame_of(60, 'z'));
  fixture.kick(Net::kTransmitQueue);
  REQUIRE(eventually([&] { return fixture.transmit.used_index() == 2; }));
  const auto sent = fixture.backend->sent_frames();
  REQUIRE(sent.size() == 1);  // only the good one
  CHECK(sent[0].size() == sizeof(NetHeader) + 60);
  CHECK(fixture.net->dropped_frames() == 1);
  CHECK(fixture.interrupt->needs_reset().empty());
}

TEST_CASE("a received frame spreads over mergeable buffers, published together", "[net]") {
  Fixture fixture;
  fixture.activate(kOffloads);
  std::vector<uint64_t> buffers;
  for (uint16_t i = 0; i < 4; ++i) buffers.push_back(fixture.post_buffer(i, 2048));
  fixture.kick(Net::kReceiveQueue);
  NetHeader header{};
  header.flags = kNetHeaderDataValid;
  const std::string frame = frame_of(5000, 'r');
  fixture.backend->deliver(header_bytes(header) + frame);
  REQUIRE(eventually([&] { return fixture.receive.used_index() == 3; }));
  CHECK(fixture.receive.used(0).length == 2048);
  CHECK(fixture.receive.used(1).length == 2048);
  CHECK(fixture.receive.used(2).length == sizeof(NetHeader) + 5000 - 4096);
  const std::string first = fixture.read_guest(buffers[0], 2048);
  NetHeader seen{};
  std::memcpy(&seen, first.data(), sizeof(seen));
  CHECK(seen.num_buffers == 3);
  CHECK(seen.flags == kNetHeaderDataValid);
  const std::string received = first.substr(sizeof(NetHeader)) + fixture.read_guest(buffers[1], 2048) +
                               fixture.read_guest(buffers[2], sizeof(NetHeader) + 5000 - 4096);
  CHECK(received == frame);
  CHECK(fixture.interrupt->used > 0);
}

TEST_CASE("without mergeable buffers a frame larger than the buffer is dropped, never truncated", "[net]") {
  Fixture fixture;
  fixture.activate(0);
  const uint64_t first = fixture.post_buffer(0, 1000);
  const uint64_t second = fixture.post_buffer(1, 1000);
  (void)fixture.memory.write_object<uint64_t>(first + 900, 0x5555);
  fixture.kick(Net::kReceiveQueue);
  NetHeader header{};
  fixture.backend->deliver(header_bytes(header) + frame_of(1500, 'L'));
  const std::string small = frame_of(200, 's');
  fixture.backend->deliver(header_bytes(header) + small);
  // The first buffer goes back unused (and untouched), the small frame takes the second.
  REQUIRE(eventually([&] { return fixture.receive.used_index() == 2; }));
  CHECK(fixture.receive.used(0).id == 0);
  CHECK(fixture.receive.used(0).length == 0);
  CHECK(fixture.memory.read_object<uint64_t>(first + 900).value() == 0x5555);
  CHECK(fixture.receive.used(1).id == 1);
  CHECK(fixture.receive.used(1).length == sizeof(NetHeader) + 200);
  CHECK(fixture.read_guest(second + sizeof(NetHeader), 200) == small);
  CHECK(fixture.net->dropped_frames() == 1);
}

TEST_CASE("a frame larger than all the buffers the guest can post is dropped", "[net]") {
  Fixture fixture;
  fixture.activate(kNetFeatureMergeableBuffers);
  for (uint16_t i = 0; i < kSize; ++i) fixture.post_buffer(i, 16);  // 1 KiB in all
  fixture.kick(Net::kReceiveQueue);
  NetHeader header{};
  fixture.backend->deliver(header_bytes(header) + frame_of(1500, 'B'));
  fixture.backend->deliver(header_bytes(header) + frame_of(100, 'b'));
  REQUIRE(eventually([&] { return fixture.receive.used_index() == 7; }));  // 112 bytes in 16-byte pieces
  CHECK(fixture.net->dropped_frames() == 1);
}

TEST_CASE("while the guest posts no buffer the device reads one frame and waits without spinning", "[net]") {
  Fixture fixture;
  NetHeader header{};
  // Frames waiting before the device starts: its first look takes one.
  for (int i = 0; i < 20; ++i) fixture.backend->deliver(header_bytes(header) + frame_of(60 + i, 'w'));
  fixture.activate(kNetFeatureMergeableBuffers);
  REQUIRE(eventually([&] { return fixture.backend->receives >= 1; }));
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  CHECK(fixture.backend->receives == 1);  // one frame taken, waiting for a buffer; the rest stay in the backend
  for (uint16_t i = 0; i < 20; ++i) fixture.post_buffer(i, 2048);
  fixture.kick(Net::kReceiveQueue);
  REQUIRE(eventually([&] { return fixture.receive.used_index() == 20; }));
  for (uint16_t i = 0; i < 20; ++i) CHECK(fixture.receive.used(i).length == sizeof(NetHeader) + 60 + i);
}

TEST_CASE("a backend that fails takes the link down once and the VMM goes on", "[net]") {
  Fixture fixture;
  fixture.activate(kNetFeatureMergeableBuffers);
  fixture.post_buffer(0, 2048);
  fixture.kick(Net::kReceiveQueue);
  fixture.backend->failing = true;
  NetHeader header{};
  fixture.backend->deliver(header_bytes(header) + frame_of(60, 'f'));  // wakes the device
  REQUIRE(eventually([&] { return !fixture.net->link_up(); }));
  CHECK(fixture.config_u16(6) == 0);
  CHECK(fixture.interrupt->config_changes == 1);
  // Transmits are dropped now, not sent, and the queue keeps moving.
  fixture.transmit_frame(0, header, frame_of(60, 't'));
  fixture.kick(Net::kTransmitQueue);
  REQUIRE(eventually([&] { return fixture.transmit.used_index() == 1; }));
  CHECK(fixture.backend->sent_frames().empty());
  CHECK(fixture.interrupt->needs_reset().empty());
}

TEST_CASE("the control queue answers what it knows and refuses the rest", "[net]") {
  Fixture fixture;
  fixture.activate(kOffloads);
  auto command = [&](uint16_t head, const std::string& bytes) -> uint8_t {
    const uint64_t address = kData + 0x40000 + uint64_t{head} * 0x100;
    (void)fixture.memory.write(address, std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
    fixture.control.descriptor(head, address, static_cast<uint32_t>(bytes.size()), kNext,
                               static_cast<uint16_t>(head + 1));
    fixture.control.descriptor(static_cast<uint16_t>(head + 1), address + 0x80, 1, kWrite);
    (void)fixture.memory.write_object<uint8_t>(address + 0x80, 0xaa);
    const uint16_t before = fixture.control.used_index();
    fixture.control.offer(head);
    fixture.kick(fixture.net->control_queue());
    REQUIRE(eventually([&] { return fixture.control.used_index() == before + 1; }));
    return fixture.memory.read_object<uint8_t>(address + 0x80).value();
  };
  CHECK(command(0, std::string("\x00\x00\x01", 3)) == 0);  // promiscuous on
  CHECK(command(2, std::string("\x00\x00\x01\x01", 4)) == 1);  // too long
  // MAC table: one unicast address, no multicast.
  CHECK(command(4, std::string("\x01\x00\x01\x00\x00\x00", 6) + std::string(6, 'm') + std::string(4, '\0')) == 0);
  CHECK(command(6, std::string("\x01\x00\x09\x00\x00\x00", 6) + std::string(6, 'm')) == 1);  // claims 9 entries
  // Guest offloads: within what was negotiated, then beyond it.
  uint64_t offloads = kNetFeatureGuestCsum;
  CHECK(command(8, std::string("\x05\x00", 2) + std::string(reinterpret_cast<const char*>(&offloads), 8)) == 0);
  {
    std::lock_guard lock(fixture.backend->mutex);
    REQUIRE(!fixture.backend->offload_calls.empty());
    CHECK(fixture.backend->offload_calls.back() == TUN_F_CSUM);
  }
  offloads = kNetFeatureGuestTso6;  // not negotiated
  CHECK(command(10, std::string("\x05\x00", 2) + std::string(reinterpret_cast<const char*>(&offloads), 8)) == 1);
  CHECK(command(12, std::string("\x63\x00", 2)) == 1);  // an unknown class
  CHECK(fixture.interrupt->needs_reset().empty());
}

TEST_CASE("activation gives the backend exactly the receive offloads the guest took", "[net]") {
  Fixture fixture;
  fixture.activate(kNetFeatureGuestCsum | kNetFeatureGuestTso4);
  std::lock_guard lock(fixture.backend->mutex);
  REQUIRE(fixture.backend->offload_calls.size() == 1);
  CHECK(fixture.backend->offload_calls[0] == (TUN_F_CSUM | TUN_F_TSO4));
}

TEST_CASE("net options need one TAP source and check their values", "[net]") {
  auto parse = [](std::string_view text) { return crosvm::parse_device_options(kNetKind, text); };
  CHECK(parse("tap-name=vmtap0").ok());
  CHECK(parse("host-ip=192.168.10.1,netmask=255.255.255.0,mac=52:54:00:00:00:01").ok());
  CHECK(parse("").error().message.find("exactly one of tap-name=, tap-fd=, host-ip= and passt") != std::string::npos);
  CHECK(parse("tap-name=a,tap-fd=4").error().message.find("exactly one") != std::string::npos);
  CHECK(parse("host-ip=10.0.0.1").error().message.find("go together") != std::string::npos);
  CHECK(parse("tap-fd=x").error().message.find("tap-fd must be a number") != std::string::npos);
  CHECK(parse("tap-name=a,mac=zz").error().message.find("mac must look like") != std::string::npos);
  CHECK(parse("tap-name=a,mtu=20").error().message.find("mtu must be a number from 68") != std::string::npos);
  CHECK(parse("tap-name=a,queues=2").error().message.find("unknown key 'queues'") != std::string::npos);
  CHECK(parse("tap-name=a,vq-pairs=2,vhost-net=true").ok());
  CHECK(parse("tap-name=a,vhost-net").ok());
  CHECK(parse("passt,vhost-net=true").error().message.find("vhost-net needs a TAP") != std::string::npos);
  CHECK(parse("tap-name=a,vhost-net=maybe").error().message.find("vhost-net") != std::string::npos);
}

TEST_CASE("vhost-net is refused for a backend that is not a TAP with a header, and named when missing", "[net]") {
  std::vector<std::unique_ptr<NetBackend>> backends;
  backends.push_back(std::make_unique<FakeBackend>());  // a header, but no TAP
  std::vector<std::unique_ptr<VhostNet>> kernel;
  kernel.push_back(nullptr);
  auto net = Net::create("virtio-net 0", MacAddress{0x52, 0x54, 0, 1, 2, 3}, 1500, std::move(backends),
                         std::move(kernel), crosvm::testing::quiet_logger());
  REQUIRE_FALSE(net.ok());
  CHECK_THAT(net.error().message, Catch::Contains("vhost-net needs a TAP with a virtio-net header"));
  // Where the kernel has no vhost-net, opening it says what to load.
  if (::access("/dev/vhost-net", F_OK) != 0) {
    auto opened = VhostNet::open_device();
    REQUIRE_FALSE(opened.ok());
    CHECK_THAT(opened.error().message, Catch::Contains("modprobe vhost_net"));
  }
}

TEST_CASE("queue pairs: the first alone until the driver sets more, each pair its own backend", "[net]") {
  Fixture fixture(2);
  CHECK((fixture.net->device_features() & kNetFeatureMq) != 0);
  CHECK(fixture.net->queue_max_sizes().size() == 5);
  CHECK(fixture.config_u16(8) == 2);  // max_virtqueue_pairs
  fixture.activate(kNetFeatureMq | kNetFeatureCtrlQueue | kNetFeatureMergeableBuffers);
  CHECK(fixture.backends[0]->enabled);
  CHECK_FALSE(fixture.backends[1]->enabled);  // its TAP queue detached: flows go to the first
  auto pairs_set = [&](uint16_t head, uint16_t count) -> uint8_t {
    const uint64_t address = kData + 0x40000 + uint64_t{head} * 0x100;
    const std::string bytes = std::string("\x04\x00", 2) + std::string(reinterpret_cast<const char*>(&count), 2);
    (void)fixture.memory.write(address, std::span(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size()));
    fixture.control.descriptor(head, address, 4, kNext, static_cast<uint16_t>(head + 1));
    fixture.control.descriptor(static_cast<uint16_t>(head + 1), address + 0x80, 1, kWrite);
    const uint16_t before = fixture.control.used_index();
    fixture.control.offer(head);
    fixture.kick(fixture.net->control_queue());
    REQUIRE(eventually([&] { return fixture.control.used_index() == before + 1; }));
    return fixture.memory.read_object<uint8_t>(address + 0x80).value();
  };
  CHECK(pairs_set(0, 3) == 1);  // more than there are
  CHECK(pairs_set(2, 0) == 1);
  CHECK(pairs_set(4, 2) == 0);
  CHECK(fixture.backends[1]->enabled);
  // A frame on the second backend lands in the second receive queue.
  fixture.receive1.descriptor(0, 0x90000, 2048, kWrite);
  fixture.receive1.offer(0);
  fixture.kick(2);
  NetHeader header{};
  fixture.backends[1]->deliver(header_bytes(header) + frame_of(100, '1'));
  REQUIRE(eventually([&] { return fixture.receive1.used_index() == 1; }));
  CHECK(fixture.receive1.used(0).length == sizeof(NetHeader) + 100);
  CHECK(fixture.receive.used_index() == 0);
  // Back to one pair: the second backend stops again.
  CHECK(pairs_set(6, 1) == 0);
  CHECK_FALSE(fixture.backends[1]->enabled);
  CHECK(fixture.interrupt->needs_reset().empty());
}
