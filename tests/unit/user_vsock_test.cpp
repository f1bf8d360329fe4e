// The userspace vsock against a driver played by the test (its rings in
// test memory) and host programs on real Unix sockets: the CONNECT
// handshake, the guest's connections through the VMM's broker, credit both
// ways, and hostile packets, each of which resets its own connection and
// nothing else.
#include <catch2/catch.hpp>

#include <poll.h>
#include <sys/resource.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include <fmt/format.h>

#include "devices/registry.h"
#include "devices/virtio/vsock/host_side.h"
#include "devices/virtio/vsock/packet.h"
#include "devices/virtio/vsock/user_vsock.h"
#include "devices/virtio/vsock/vsock.h"
#include "fakes.h"
#include "hang_guard.h"
#include "virtio_rings.h"

using namespace crosvm;
using namespace crosvm::virtio;
using namespace crosvm::virtio::vsock;
using Catch::Contains;
using crosvm::testing::DriverRing;
using crosvm::testing::eventually;
using crosvm::testing::kNext;
using crosvm::testing::kWrite;

namespace {

constexpr uint16_t kSize = 64;
constexpr uint64_t kCid = 7;
constexpr uint64_t kTransmitRings = 0x8000;
constexpr uint64_t kEventRings = 0x10000;
constexpr uint64_t kReceiveData = 0x20000;   // 4 KiB per receive descriptor
constexpr uint64_t kTransmitData = 0x100000;  // a header and 64 KiB per packet
constexpr uint32_t kReceiveBuffer = 4096;

UniqueFd connect_unix(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  path.copy(address.sun_path, sizeof(address.sun_path) - 1);
  REQUIRE(::connect(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0);
  return fd;
}

UniqueFd listen_unix(const std::string& path) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  path.copy(address.sun_path, sizeof(address.sun_path) - 1);
  REQUIRE(::bind(fd.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0);
  REQUIRE(::listen(fd.get(), 8) == 0);
  return fd;
}

void write_all(int fd, std::string_view bytes) {
  REQUIRE(::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size()));
}

// What `fd` gives within a second: up to `length` bytes, "" at its end.
std::string read_some(int fd, size_t length) {
  pollfd ready{fd, POLLIN, 0};
  if (::poll(&ready, 1, 5000) != 1) return "(nothing)";
  std::string bytes(length, 0);
  const ssize_t got = ::recv(fd, bytes.data(), length, 0);
  bytes.resize(got > 0 ? static_cast<size_t>(got) : 0);
  return bytes;
}

std::string read_exactly(int fd, size_t length) {
  std::string bytes;
  while (bytes.size() < length) {
    const std::string piece = read_some(fd, length - bytes.size());
    if (piece.empty() || piece == "(nothing)") break;
    bytes += piece;
  }
  return bytes;
}

// CPU seconds this process (the device's worker among its threads) spends
// while the test sleeps `seconds`: a device that spins spends them all.
double cpu_while_sleeping(double seconds) {
  auto cpu = [] {
    rusage usage{};
    ::getrusage(RUSAGE_SELF, &usage);
    return static_cast<double>(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec) +
           static_cast<double>(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6;
  };
  const double before = cpu();
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  return cpu() - before;
}

struct Received {
  PacketHeader header{};
  std::string payload;
};

struct Fixture {
  Fixture() : memory(crosvm::testing::make_guest_memory(4 << 20)) {
    char pattern[] = "/tmp/user-vsock-XXXXXX";
    REQUIRE(::mkdtemp(pattern) != nullptr);
    directory = pattern;
    path = directory + "/vm.sock";
    side = std::move(HostSide::open(path, crosvm::testing::quiet_logger())).value();
    vsock = std::move(UserVsock::create("vsock", kCid, side->take_listener(), side->take_broker(),
                                        crosvm::testing::quiet_logger()))
                .value();
    Activation activation{&memory, kFeatureVersion1, {}, interrupt};
    const DriverRing* rings[] = {&receive, &transmit, &event};
    for (uint16_t index = 0; index < 3; ++index) {
      activation.queues.push_back(ActiveQueue{index,
                                              std::move(SplitQueue::create(memory, rings[index]->config(), kSize,
                                                                           false, false))
                                                  .value(),
                                              std::move(EventFd::create(EFD_NONBLOCK)).value()});
      kicks.push_back(activation.queues.back().kick.fd());
    }
    REQUIRE(vsock->activate(std::move(activation)).ok());
  }
  ~Fixture() {
    vsock->reset();
    vsock.reset();
    side.reset();
    std::filesystem::remove_all(directory);
  }

  void kick(uint16_t queue) {
    const uint64_t one = 1;
    REQUIRE(::write(kicks.at(queue), &one, sizeof(one)) == sizeof(one));
  }
  void post_receive_buffers(int count, uint32_t length = kReceiveBuffer) {
    for (int i = 0; i < count; ++i) {
      const auto head = static_cast<uint16_t>(posted++ % kSize);
      receive.descriptor(head, kReceiveData + uint64_t{head} * 0x1000, length, kWrite);
      receive.offer(head);
    }
    kick(UserVsock::kReceiveQueue);
  }
  // The guest's packet on the transmit queue; waits until the device took it.
  void send(PacketHeader header, std::string_view payload = {}, uint32_t chain_payload = UINT32_MAX) {
    const auto slot = static_cast<uint16_t>(sent % 16);
    const auto head = static_cast<uint16_t>(2 * slot);
    const uint64_t address = kTransmitData + uint64_t{slot} * 0x11000;
    (void)memory.write(address, std::span(reinterpret_cast<const uint8_t*>(&header), sizeof(header)));
    (void)memory.write(address + 0x100, std::span(reinterpret_cast<const uint8_t*>(payload.data()), payload.size()));
    const uint32_t payload_bytes = chain_payload == UINT32_MAX ? static_cast<uint32_t>(payload.size()) : chain_payload;
    if (payload_bytes > 0) {
      transmit.descriptor(head, address, sizeof(header), kNext, static_cast<uint16_t>(head + 1));
      transmit.descriptor(static_cast<uint16_t>(head + 1), address + 0x100, payload_bytes);
    } else {
      transmit.descriptor(head, address, sizeof(header));
    }
    transmit.offer(head);
    ++sent;
    kick(UserVsock::kTransmitQueue);
    REQUIRE(eventually([&] { return transmit.used_index() == static_cast<uint16_t>(sent); }));
  }
  bool has_packet() { return receive.used_index() != static_cast<uint16_t>(taken); }
  Received next_packet() {
    REQUIRE(eventually([&] { return has_packet(); }));
    const auto used = receive.used(static_cast<uint16_t>(taken++));
    const uint64_t address = kReceiveData + uint64_t{used.id} * 0x1000;
    Received received;
    received.header = memory.read_object<PacketHeader>(address).value();
    REQUIRE(used.length == sizeof(PacketHeader) + received.header.len);
    received.payload.resize(received.header.len);
    (void)memory.read(address + sizeof(PacketHeader),
                      std::span(reinterpret_cast<uint8_t*>(received.payload.data()), received.payload.size()));
    return received;
  }
  PacketHeader from_guest(Op op, uint32_t guest_port, uint32_t host_port, uint32_t length = 0) const {
    PacketHeader header{};
    header.src_cid = kCid;
    header.dst_cid = kHostCid;
    header.src_port = guest_port;
    header.dst_port = host_port;
    header.len = length;
    header.type = kTypeStream;
    header.op = static_cast<uint16_t>(op);
    header.buf_alloc = guest_buffer;
    header.fwd_cnt = guest_forwarded;
    return header;
  }
  // A host program's connection to the guest's `port`, accepted by the
  // guest: the stream and the host port the guest sees.
  std::pair<UniqueFd, uint32_t> host_connects(uint32_t port, uint32_t guest_port) {
    UniqueFd stream = connect_unix(path);
    write_all(stream.get(), fmt::format("CONNECT {}\n", port));
    const Received request = next_packet();
    REQUIRE(request.header.op == static_cast<uint16_t>(Op::kRequest));
    REQUIRE(request.header.dst_port == port);
    REQUIRE(request.header.dst_cid == kCid);
    REQUIRE(request.header.src_cid == kHostCid);
    (void)guest_port;
    send(from_guest(Op::kResponse, port, request.header.src_port));
    CHECK(read_exactly(stream.get(), fmt::format("OK {}\n", request.header.src_port).size()) ==
          fmt::format("OK {}\n", request.header.src_port));
    return {std::move(stream), request.header.src_port};
  }

  GuestMemory memory;
  DriverRing receive{memory, kSize};
  DriverRing transmit{memory, kSize, kTransmitRings};
  DriverRing event{memory, kSize, kEventRings};
  std::shared_ptr<crosvm::testing::RecordingInterrupt> interrupt =
      std::make_shared<crosvm::testing::RecordingInterrupt>();
  std::string directory;
  std::string path;
  std::unique_ptr<HostSide> side;
  std::shared_ptr<UserVsock> vsock;
  std::vector<int> kicks;
  unsigned posted = 0;
  unsigned sent = 0;
  unsigned taken = 0;
  uint32_t guest_buffer = 256 * 1024;
  uint32_t guest_forwarded = 0;
};

}  // namespace

TEST_CASE("a host program says CONNECT and reaches the guest's listener, bytes both ways", "[vsock-user]") {
  Fixture fixture;
  fixture.post_receive_buffers(8);
  auto [stream, host_port] = fixture.host_connects(5000, 5000);
  CHECK(host_port >= (1u << 30));
  write_all(stream.get(), "hello");
  const Received data = fixture.next_packet();
  CHECK(data.header.op == static_cast<uint16_t>(Op::kReadWrite));
  CHECK(data.header.src_port == host_port);
  CHECK(data.header.dst_port == 5000);
  CHECK(data.header.buf_alloc == UserVsock::kBufferBytes);
  CHECK(data.payload == "hello");
  fixture.send(fixture.from_guest(Op::kReadWrite, 5000, host_port, 5), "world");
  CHECK(read_exactly(stream.get(), 5) == "world");
  // The guest closes: the host sees the end and the guest a RST.
  auto shutdown = fixture.from_guest(Op::kShutdown, 5000, host_port);
  shutdown.flags = kShutdownReceive | kShutdownSend;
  fixture.send(shutdown);
  CHECK(read_some(stream.get(), 16).empty());
  CHECK(fixture.next_packet().header.op == static_cast<uint16_t>(Op::kReset));
  CHECK(fixture.vsock->connection_count() == 0);
}

TEST_CASE("the host's end of a stream is the guest's SHUTDOWN, after every byte", "[vsock-user]") {
  Fixture fixture;
  fixture.post_receive_buffers(8);
  auto [stream, host_port] = fixture.host_connects(22, 1);
  write_all(stream.get(), "last words");
  REQUIRE(::shutdown(stream.get(), SHUT_WR) == 0);
  std::string got;
  Received packet;
  while ((packet = fixture.next_packet()).header.op == static_cast<uint16_t>(Op::kReadWrite)) got += packet.payload;
  CHECK(got == "last words");
  CHECK(packet.header.op == static_cast<uint16_t>(Op::kShutdown));
  CHECK(packet.header.flags == kShutdownSend);
  // The guest still talks until it is done too.
  fixture.send(fixture.from_guest(Op::kReadWrite, 22, host_port, 5), "reply");
  CHECK(read_exactly(stream.get(), 5) == "reply");
  auto shutdown = fixture.from_guest(Op::kShutdown, 22, host_port);
  shutdown.flags = kShutdownSend;
  fixture.send(shutdown);
  CHECK(fixture.next_packet().header.op == static_cast<uint16_t>(Op::kReset));
  CHECK(fixture.vsock->connection_count() == 0);
}

TEST_CASE("the guest's connection to host port P reaches PATH_P, or is refused", "[vsock-user]") {
  Fixture fixture;
  fixture.post_receive_buffers(8);
  UniqueFd listener = listen_unix(port_path(fixture.path, 7000));
  fixture.send(fixture.from_guest(Op::kRequest, 1025, 7000));
  const Received response = fixture.next_packet();
  CHECK(response.header.op == static_cast<uint16_t>(Op::kResponse));
  CHECK(response.header.src_port == 7000);
  CHECK(response.header.dst_port == 1025);
  UniqueFd stream(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  REQUIRE(stream);
  fixture.send(fixture.from_guest(Op::kReadWrite, 1025, 7000, 3), "abc");
  CHECK(read_exactly(stream.get(), 3) == "abc");
  write_all(stream.get(), "xyz");
  CHECK(fixture.next_packet().payload == "xyz");
  // Nobody listens on 7001.
  fixture.send(fixture.from_guest(Op::kRequest, 1026, 7001));
  const Received refused = fixture.next_packet();
  CHECK(refused.header.op == static_cast<uint16_t>(Op::kReset));
  CHECK(refused.header.dst_port == 1026);
  CHECK(fixture.vsock->connection_count() == 1);
}

TEST_CASE("hostile packets reset their own connection and nothing else", "[vsock-user]") {
  Fixture fixture;
  fixture.post_receive_buffers(32);
  auto [stream, host_port] = fixture.host_connects(80, 80);
  auto expect_reset = [&](PacketHeader header, std::string_view payload = {}, uint32_t chain = UINT32_MAX) {
    fixture.send(header, payload, chain);
    const Received answer = fixture.next_packet();
    CHECK(answer.header.op == static_cast<uint16_t>(Op::kReset));
    CHECK(answer.header.dst_port == header.src_port);
  };
  expect_reset(fixture.from_guest(Op::kReadWrite, 9, 9, 0));                         // data of no bytes
  expect_reset(fixture.from_guest(Op::kReadWrite, 9, 9, 100), "short", 5);           // len beyond the chain
  expect_reset(fixture.from_guest(Op::kReadWrite, 9, 9, kMaxPayload + 1), "x", 1);   // beyond the largest
  expect_reset(fixture.from_guest(static_cast<Op>(42), 9, 9));                       // an unknown op
  expect_reset(fixture.from_guest(Op::kCreditUpdate, 9, 9, 4), "junk");             // a payload on a control op
  expect_reset(fixture.from_guest(Op::kReadWrite, 9, 9, 4), "data");                 // no such connection
  expect_reset(fixture.from_guest(Op::kResponse, 9, 9));                            // answering no request
  PacketHeader datagram = fixture.from_guest(Op::kRequest, 9, 9);
  datagram.type = 2;
  expect_reset(datagram);
  PacketHeader elsewhere = fixture.from_guest(Op::kRequest, 9, 9);
  elsewhere.dst_cid = 99;
  expect_reset(elsewhere);
  PacketHeader flags = fixture.from_guest(Op::kShutdown, 80, host_port);
  flags.flags = 4;
  // A RST is never answered, and a packet that is not from the guest's
  // CID gets no answer: nothing comes back for these.
  fixture.send(fixture.from_guest(Op::kReset, 9, 9));
  PacketHeader forged = fixture.from_guest(Op::kRequest, 9, 9);
  forged.src_cid = 3;
  fixture.send(forged);
  fixture.send(fixture.from_guest(Op::kReadWrite, 9, 9, 44), "", 0);  // too short for its len: answered...
  CHECK(fixture.next_packet().header.op == static_cast<uint16_t>(Op::kReset));
  CHECK_FALSE(fixture.has_packet());
  // The good connection is untouched.
  fixture.send(fixture.from_guest(Op::kReadWrite, 80, host_port, 2), "ok");
  CHECK(read_exactly(stream.get(), 2) == "ok");
  // ... until its own packet is bad: then it alone is reset.
  expect_reset(flags);
  CHECK(read_some(stream.get(), 16).empty());
  CHECK(fixture.vsock->connection_count() == 0);
  CHECK(fixture.interrupt->needs_reset().empty());
}

TEST_CASE("a guest that sends beyond its credit is reset; a host that does not read costs one buffer",
          "[vsock-user]") {
  Fixture fixture;
  fixture.post_receive_buffers(1);
  UniqueFd listener = listen_unix(port_path(fixture.path, 9));
  fixture.send(fixture.from_guest(Op::kRequest, 1, 9));
  REQUIRE(fixture.next_packet().header.op == static_cast<uint16_t>(Op::kResponse));
  UniqueFd stream(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));  // never read
  // No receive buffer now, so no credit update reaches the guest: it has
  // exactly kBufferBytes to send.
  const std::string chunk(kMaxPayload, 'f');
  for (uint32_t sent = 0; sent < UserVsock::kBufferBytes; sent += kMaxPayload) {
    fixture.send(fixture.from_guest(Op::kReadWrite, 1, 9, kMaxPayload), chunk);
  }
  CHECK(fixture.vsock->connection_count() == 1);
  CHECK(fixture.vsock->buffered_bytes() <= UserVsock::kBufferBytes);
  fixture.send(fixture.from_guest(Op::kReadWrite, 1, 9, 1), "!");
  fixture.post_receive_buffers(1);
  const Received reset = fixture.next_packet();
  CHECK(reset.header.op == static_cast<uint16_t>(Op::kReset));
  CHECK(fixture.vsock->connection_count() == 0);
}

TEST_CASE("the host's bytes reach the guest only within the guest's credit", "[vsock-user]") {
  Fixture fixture;
  fixture.guest_buffer = 1000;
  fixture.post_receive_buffers(16);
  auto [stream, host_port] = fixture.host_connects(4, 4);
  write_all(stream.get(), std::string(3000, 'h'));
  size_t got = 0;
  while (got < 1000) got += fixture.next_packet().payload.size();
  CHECK(got == 1000);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  CHECK_FALSE(fixture.has_packet());
  fixture.guest_forwarded = 1000;  // the guest's reader took them
  fixture.send(fixture.from_guest(Op::kCreditUpdate, 4, host_port));
  while (got < 2000) got += fixture.next_packet().payload.size();
  CHECK(got == 2000);
}

TEST_CASE("while the guest posts no buffer the host's bytes wait, and none is lost", "[vsock-user]") {
  Fixture fixture;
  fixture.post_receive_buffers(2);
  auto [stream, host_port] = fixture.host_connects(4, 4);
  const std::string bytes(3 * kReceiveBuffer, 'w');
  write_all(stream.get(), bytes);
  std::string got;
  got += fixture.next_packet().payload;  // the one buffer left
  CHECK_FALSE(fixture.has_packet());
  fixture.post_receive_buffers(8);
  while (got.size() < bytes.size()) got += fixture.next_packet().payload;
  CHECK(got == bytes);
}

TEST_CASE("a host program that stops halfway through CONNECT costs no CPU, and is served when it goes on",
          "[vsock-user]") {
  Fixture fixture;
  fixture.post_receive_buffers(8);
  UniqueFd stream = connect_unix(fixture.path);
  write_all(stream.get(), "CONN");
  CHECK(cpu_while_sleeping(0.5) < 0.25);
  write_all(stream.get(), "ECT 77\nfirst bytes");
  const Received request = fixture.next_packet();
  CHECK(request.header.op == static_cast<uint16_t>(Op::kRequest));
  CHECK(request.header.dst_port == 77);
  fixture.send(fixture.from_guest(Op::kResponse, 77, request.header.src_port));
  CHECK(read_exactly(stream.get(), fmt::format("OK {}\n", request.header.src_port).size()) ==
        fmt::format("OK {}\n", request.header.src_port));
  CHECK(fixture.next_packet().payload == "first bytes");  // what followed the line is the connection's
  // A line that never ends is refused at its limit.
  UniqueFd endless = connect_unix(fixture.path);
  write_all(endless.get(), std::string(40, 'C'));
  CHECK(read_some(endless.get(), 16).empty());
}

TEST_CASE("receive buffers with room for a header alone carry no data and cost no CPU", "[vsock-user]") {
  Fixture fixture;
  fixture.post_receive_buffers(1);  // for the REQUEST
  auto [stream, host_port] = fixture.host_connects(4, 4);
  fixture.post_receive_buffers(3, sizeof(PacketHeader));
  write_all(stream.get(), "data");
  REQUIRE(eventually([&] { return fixture.receive.used_index() == static_cast<uint16_t>(fixture.taken + 3); }));
  for (int i = 0; i < 3; ++i) CHECK(fixture.receive.used(static_cast<uint16_t>(fixture.taken++)).length == 0);
  CHECK(cpu_while_sleeping(0.5) < 0.25);
  fixture.post_receive_buffers(1);
  CHECK(fixture.next_packet().payload == "data");
}

TEST_CASE("a guest that posts no buffers and opens and resets connections queues nothing for them",
          "[vsock-user]") {
  Fixture fixture;  // no receive buffer at all
  UniqueFd listener = listen_unix(port_path(fixture.path, 9));
  std::atomic<bool> done{false};
  std::thread host([&] {
    while (!done) {
      pollfd ready{listener.get(), POLLIN, 0};
      if (::poll(&ready, 1, 50) == 1) UniqueFd accepted(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
    }
  });
  // One connection stays, its RESPONSE waiting first in line.
  fixture.send(fixture.from_guest(Op::kRequest, 999, 9));
  REQUIRE(eventually([&] { return fixture.vsock->waiting_packets() == 1; }));
  for (uint32_t port = 1000; port < 1200; ++port) {
    fixture.send(fixture.from_guest(Op::kRequest, port, 9));
    // Connected: a RESPONSE waits for a buffer...
    REQUIRE(eventually([&] { return fixture.vsock->waiting_packets() == 2; }));
    // ...and goes with the connection when the guest resets it.
    fixture.send(fixture.from_guest(Op::kReset, port, 9));
    REQUIRE(fixture.vsock->waiting_packets() == 1);
  }
  done = true;
  host.join();
  CHECK(fixture.vsock->connection_count() == 1);
}

TEST_CASE("a reset of the driver closes every host stream", "[vsock-user]") {
  Fixture fixture;
  fixture.post_receive_buffers(8);
  auto [stream, host_port] = fixture.host_connects(4, 4);
  fixture.vsock->reset();
  CHECK(read_some(stream.get(), 16).empty());
  CHECK(fixture.vsock->connection_count() == 0);
}

TEST_CASE("userspace vsock options: socket= alone, a path that fits, a socket nobody else uses", "[vsock-user]") {
  auto refused = [](std::string_view text) {
    auto options = parse_device_options(kVsockKind, text);
    REQUIRE_FALSE(options.ok());
    return options.error().message;
  };
  CHECK_THAT(refused("socket=/tmp/v.sock,device=/dev/vhost-vsock"), Contains("not both"));
  CHECK_THAT(refused("socket=/tmp/" + std::string(100, 'x')), Contains("too long"));
  auto options = parse_device_options(kVsockKind, "socket=/tmp/v.sock");
  REQUIRE(options.ok());
  CHECK(kVsockKind.describe(*options, 0) == "vsock (virtio-vsock, cid 3, userspace on /tmp/v.sock)");
  // A socket a live VM listens on is refused, and left alone.
  char pattern[] = "/tmp/user-vsock-XXXXXX";
  REQUIRE(::mkdtemp(pattern) != nullptr);
  const std::string path = std::string(pattern) + "/vm.sock";
  auto first = HostSide::open(path, crosvm::testing::quiet_logger());
  REQUIRE(first.ok());
  auto second = HostSide::open(path, crosvm::testing::quiet_logger());
  REQUIRE_FALSE(second.ok());
  CHECK_THAT(second.error().message, Contains("in use"));
  first->reset();
  CHECK_FALSE(std::filesystem::exists(path));  // removed with the VM
  std::filesystem::remove_all(pattern);
}
