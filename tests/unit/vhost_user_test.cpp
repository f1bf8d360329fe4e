// vhost-user: the codec and the backend against malformed messages from a
// frontend, the frontend against a backend that goes away, and the two
// together serving a real device over a socketpair.
#include <catch2/catch.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include <chrono>
#include <thread>

#include "vhost_user/backend.h"
#include "vhost_user/frontend.h"
#include "devices/virtio/rng/rng.h"
#include "fakes.h"
#include "virtio_rings.h"

using namespace crosvm;
using namespace crosvm::vhost_user;
using crosvm::testing::DriverRing;
using crosvm::testing::RecordingInterrupt;

namespace {

Logger quiet() {
  return Logger([](LogLevel, std::string_view) {}, LogLevel::kError);
}

size_t open_fds() {
  size_t count = 0;
  DIR* directory = ::opendir("/proc/self/fd");
  REQUIRE(directory != nullptr);
  while (const dirent* entry = ::readdir(directory)) count += entry->d_name[0] != '.';
  ::closedir(directory);
  return count;
}

Message request(Request request, std::vector<uint8_t> body = {}) {
  return Message::make(static_cast<uint32_t>(request), kVersion, body);
}

template <typename T>
Message request_of(Request type, const T& value) {
  return Message::of(static_cast<uint32_t>(type), value);
}

UniqueFd eventfd_fd() { return UniqueFd(::eventfd(0, EFD_CLOEXEC)); }

UniqueFd memfd(uint64_t size) {
  UniqueFd fd(::memfd_create("vhost-user-test", MFD_CLOEXEC));
  REQUIRE(::ftruncate(fd.get(), static_cast<off_t>(size)) == 0);
  return fd;
}

Message memory_table(std::vector<MemoryRegion> regions, std::vector<UniqueFd> fds) {
  Message message = request(Request::kSetMemTable, encode_memory_table(regions));
  message.fds = std::move(fds);
  return message;
}

Message vring_fd(Request type, uint64_t value, UniqueFd fd) {
  Message message = request_of(type, value);
  if (fd) message.fds.push_back(std::move(fd));
  return message;
}

std::string refused(Backend& backend, Message message) {
  auto reply = backend.handle(std::move(message));
  REQUIRE_FALSE(reply.ok());
  CHECK(reply.error().code == ErrorCode::kProtocol);
  return reply.error().message;
}

Backend rng_backend() { return Backend(std::make_shared<virtio::Rng>(quiet()), quiet()); }

}  // namespace

TEST_CASE("vhost-user messages travel whole, with their fds", "[vhost-user]") {
  auto [frontend, backend] = Connection::pair().value();
  Message sent = request_of(Request::kSetVringKick, uint64_t{1});
  UniqueFd kick = eventfd_fd();
  const int fd = kick.get();
  REQUIRE(frontend.send(sent, std::span(&fd, 1)).ok());
  auto received = backend.receive(1000);
  REQUIRE(received.ok());
  CHECK(received->header.request == static_cast<uint32_t>(Request::kSetVringKick));
  CHECK(received->body.size() == 8);
  REQUIRE(received->fds.size() == 1);
  CHECK(check_frontend_message(*received).ok());
  CHECK(EventFd::adopt(std::move(received->fds[0])).ok());

  // A peer that says nothing is a timeout; one that closes is kIo.
  CHECK(backend.receive(10).error().code == ErrorCode::kTimeout);
}

TEST_CASE("a vhost-user reader refuses oversized bodies, too many fds and torn messages", "[vhost-user][hostile]") {
  const size_t fds_before = open_fds();
  {
    auto [writer, reader] = Connection::pair().value();
    Header header{static_cast<uint32_t>(Request::kSetConfig), kVersion, 1u << 30};
    REQUIRE(::send(writer.fd(), &header, sizeof(header), 0) == sizeof(header));
    auto received = reader.receive(1000);
    REQUIRE_FALSE(received.ok());
    CHECK(received.error().message.find("at most") != std::string::npos);
  }
  {
    // Nine fds: more than any message may carry. None of them stays open.
    auto [writer, reader] = Connection::pair().value();
    std::vector<UniqueFd> owned;
    std::vector<int> fds;
    for (int i = 0; i < 9; ++i) {
      owned.push_back(eventfd_fd());
      fds.push_back(owned.back().get());
    }
    Header header{static_cast<uint32_t>(Request::kSetMemTable), kVersion, 0};
    iovec vector{.iov_base = &header, .iov_len = sizeof(header)};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 9)] = {};
    msghdr message{};
    message.msg_iov = &vector;
    message.msg_iovlen = 1;
    message.msg_control = control;
    message.msg_controllen = sizeof(control);
    cmsghdr* entry = CMSG_FIRSTHDR(&message);
    entry->cmsg_level = SOL_SOCKET;
    entry->cmsg_type = SCM_RIGHTS;
    entry->cmsg_len = CMSG_LEN(sizeof(int) * 9);
    std::memcpy(CMSG_DATA(entry), fds.data(), sizeof(int) * 9);
    REQUIRE(::sendmsg(writer.fd(), &message, 0) == sizeof(header));
    auto received = reader.receive(1000);
    REQUIRE_FALSE(received.ok());
    CHECK(received.error().code == ErrorCode::kProtocol);
  }
  {
    auto [writer, reader] = Connection::pair().value();
    Header header{static_cast<uint32_t>(Request::kSetFeatures), kVersion, 8};
    REQUIRE(::send(writer.fd(), &header, sizeof(header), 0) == sizeof(header));
    REQUIRE(::send(writer.fd(), "abc", 3, 0) == 3);
    ::shutdown(writer.fd(), SHUT_WR);
    auto received = reader.receive(1000);
    REQUIRE_FALSE(received.ok());
    CHECK(received.error().message.find("in the middle of a message") != std::string::npos);
  }
  {
    auto [writer, reader] = Connection::pair().value();
    ::shutdown(writer.fd(), SHUT_WR);
    CHECK(reader.receive(1000).error().code == ErrorCode::kIo);
  }
  CHECK(open_fds() == fds_before);
}

TEST_CASE("a vhost-user peer that trickles a message or stops reading is cut off at one deadline",
          "[vhost-user][hostile]") {
  {
    // A whole, valid message a byte every 40 ms: each read comes well
    // within 200 ms, the message (20 bytes) never does. The deadline is
    // the message's, not each read's.
    auto [writer, reader] = Connection::pair().value();
    std::thread trickle([fd = writer.fd()] {
      struct {
        Header header{static_cast<uint32_t>(Request::kSetFeatures), kVersion, 8};
        uint64_t features = 0;
      } message;
      const auto* bytes = reinterpret_cast<const uint8_t*>(&message);
      for (size_t i = 0; i < sizeof(message); ++i) {
        if (::send(fd, bytes + i, 1, MSG_NOSIGNAL) != 1) return;
        std::this_thread::sleep_for(std::chrono::milliseconds(40));
      }
    });
    auto received = reader.receive(200);
    REQUIRE_FALSE(received.ok());
    CHECK(received.error().code == ErrorCode::kTimeout);
    ::shutdown(reader.fd(), SHUT_RDWR);
    trickle.join();
  }
  {
    // A peer that never reads: once its socket is full, a send gives up
    // after kSendTimeoutMs instead of holding the sender for ever.
    auto [writer, reader] = Connection::pair().value();
    const Message message = Message::of(static_cast<uint32_t>(Request::kSetFeatures), uint64_t{0}, kVersion);
    Result<void> sent = writer.send(message);
    for (int i = 0; i < 1'000'000 && sent.ok(); ++i) sent = writer.send(message);
    REQUIRE_FALSE(sent.ok());
    CHECK(sent.error().code == ErrorCode::kTimeout);
    CHECK(sent.error().message.find("read nothing") != std::string::npos);
  }
}

TEST_CASE("a frontend message must have its request's size, version and fds", "[vhost-user][hostile]") {
  CHECK(check_frontend_message(request(Request::kGetFeatures)).ok());
  CHECK(check_frontend_message(request_of(Request::kSetFeatures, uint64_t{0})).ok());
  CHECK_FALSE(check_frontend_message(request_of(Request::kSetFeatures, uint32_t{0})).ok());
  CHECK_FALSE(check_frontend_message(request(Request::kSetVringNum, {1, 2, 3})).ok());
  CHECK_FALSE(check_frontend_message(Message::make(99, kVersion, {})).ok());
  CHECK(check_frontend_message(Message::make(99, kVersion, {})).error().message == "request 99 is not supported");
  CHECK_FALSE(check_frontend_message(request(Request::kSetLogBase, std::vector<uint8_t>(16))).ok());
  CHECK_FALSE(check_frontend_message(Message::make(1, 2, {})).ok());                         // version 2
  CHECK_FALSE(check_frontend_message(Message::make(1, kVersion | kFlagReply, {})).ok());  // a reply
  // A kick without its fd, a call with one too many, a GET with an fd.
  CHECK_FALSE(check_frontend_message(request_of(Request::kSetVringKick, uint64_t{0})).ok());
  CHECK(check_frontend_message(request_of(Request::kSetVringKick, kVringNoFd)).ok());
  Message extra = vring_fd(Request::kSetVringCall, kVringNoFd, eventfd_fd());
  CHECK_FALSE(check_frontend_message(extra).ok());
  Message get = request(Request::kGetFeatures);
  get.fds.push_back(eventfd_fd());
  CHECK_FALSE(check_frontend_message(get).ok());
  // A configuration bigger than any, or whose size disagrees with its body.
  CHECK_FALSE(check_frontend_message(request(Request::kGetConfig, encode_config(0, std::vector<uint8_t>(300)))).ok());
  std::vector<uint8_t> lying = encode_config(0, std::vector<uint8_t>(8));
  lying.pop_back();
  CHECK_FALSE(check_frontend_message(request(Request::kGetConfig, lying)).ok());
}

TEST_CASE("a backend refuses memory tables that overlap, lie past their files or miscount", "[vhost-user][hostile]") {
  Backend backend = rng_backend();
  std::vector<UniqueFd> two;
  two.push_back(memfd(1 << 20));
  two.push_back(memfd(1 << 20));
  CHECK(refused(backend, memory_table({{0, 1 << 20, 0x10000000, 0}, {0x80000, 1 << 20, 0x20000000, 0}},
                                      std::move(two)))
            .find("overlap") != std::string::npos);
  std::vector<UniqueFd> small;
  small.push_back(memfd(4096));
  CHECK(refused(backend, memory_table({{0, 1 << 20, 0x10000000, 0}}, std::move(small))).find("past the end") !=
        std::string::npos);
  std::vector<UniqueFd> offset;
  offset.push_back(memfd(1 << 20));
  CHECK(refused(backend, memory_table({{0, 1 << 20, 0x10000000, 4096}}, std::move(offset))).find("past the end") !=
        std::string::npos);
  std::vector<UniqueFd> missing;
  missing.push_back(memfd(1 << 20));
  CHECK(refused(backend, memory_table({{0, 4096, 0x1000, 0}, {8192, 4096, 0x3000, 0}}, std::move(missing)))
            .find("1 fds for 2 regions") != std::string::npos);
  std::vector<UniqueFd> wrapping;
  wrapping.push_back(memfd(1 << 20));
  CHECK(refused(backend, memory_table({{0, 1 << 20, ~uint64_t{0} - 4095, 0}}, std::move(wrapping))).find("wraps") !=
        std::string::npos);
  CHECK(refused(backend, memory_table({}, {})).find("0 regions") != std::string::npos);
}

TEST_CASE("a backend refuses queues out of range, bad sizes, fds that are no eventfds and stray rings",
          "[vhost-user][hostile]") {
  Backend backend = rng_backend();
  CHECK(refused(backend, request_of(Request::kSetVringNum, VringState{1, 16})).find("queue 1 does not exist") !=
        std::string::npos);
  CHECK(refused(backend, request_of(Request::kSetVringNum, VringState{0, 12})).find("power of two") !=
        std::string::npos);
  CHECK(refused(backend, request_of(Request::kSetVringNum, VringState{0, 1u << 20})).find("power of two") !=
        std::string::npos);
  CHECK(refused(backend, request_of(Request::kSetVringBase, VringState{0, 70000})).find("base") != std::string::npos);
  CHECK(refused(backend, request_of(Request::kSetVringEnable, VringState{0, 2})).find("not 0 or 1") !=
        std::string::npos);
  CHECK(refused(backend, vring_fd(Request::kSetVringKick, 200, eventfd_fd())).find("queue 200") != std::string::npos);
  CHECK(refused(backend, vring_fd(Request::kSetVringCall, 1ull << 20, eventfd_fd())).find("unknown bits") !=
        std::string::npos);
  int pipe_fds[2];
  REQUIRE(::pipe2(pipe_fds, O_CLOEXEC) == 0);
  UniqueFd pipe_read(pipe_fds[0]), pipe_write(pipe_fds[1]);
  CHECK(refused(backend, vring_fd(Request::kSetVringKick, 0, std::move(pipe_read))).find("not an eventfd") !=
        std::string::npos);
  CHECK(refused(backend, vring_fd(Request::kSetVringCall, 0, memfd(4096))).find("not an eventfd") !=
        std::string::npos);
  CHECK(refused(backend, vring_fd(Request::kSetVringKick, kVringNoFd, UniqueFd())).find("polling") !=
        std::string::npos);
  CHECK(refused(backend, request_of(Request::kSetFeatures, uint64_t{1} << 63)).find("not offered") !=
        std::string::npos);
  CHECK(refused(backend, request_of(Request::kSetProtocolFeatures, uint64_t{1} << 40)).find("not offered") !=
        std::string::npos);

  // A ring whose addresses are not in the memory table: refused when the
  // queue would start, before any device touches it.
  std::vector<UniqueFd> fds;
  fds.push_back(memfd(1 << 20));
  REQUIRE(backend.handle(memory_table({{0, 1 << 20, 0x7f0000000000, 0}}, std::move(fds))).ok());
  REQUIRE(backend.handle(request_of(Request::kSetVringNum, VringState{0, 16})).ok());
  REQUIRE(backend.handle(request_of(Request::kSetVringAddr,
                                    VringAddress{0, 0, 0x1000, 0x7f0000004000, 0x7f0000003000, 0}))
              .ok());
  CHECK(refused(backend, vring_fd(Request::kSetVringKick, 0, eventfd_fd())).find("not inside the memory table") !=
        std::string::npos);
}

TEST_CASE("a backend answers the frontend's questions, acknowledging when asked", "[vhost-user]") {
  Backend backend = rng_backend();
  auto features = backend.handle(request(Request::kGetFeatures));
  REQUIRE(features.ok());
  REQUIRE(features->has_value());
  const uint64_t offered = body_as<uint64_t>(**features).value();
  CHECK((offered & virtio::kFeatureVersion1) != 0);
  CHECK((offered & kFeatureProtocolFeatures) != 0);
  CHECK((*features)->is_reply());

  // Before REPLY_ACK is negotiated, NEED_REPLY gets no answer; after, a 0.
  Message owner = request(Request::kSetOwner);
  owner.header.flags |= kFlagNeedReply;
  CHECK_FALSE(backend.handle(std::move(owner)).value().has_value());
  REQUIRE(backend.handle(request_of(Request::kSetProtocolFeatures, kProtocolReplyAck)).ok());
  Message again = request(Request::kSetOwner);
  again.header.flags |= kFlagNeedReply;
  auto ack = backend.handle(std::move(again));
  REQUIRE(ack.ok());
  REQUIRE(ack->has_value());
  CHECK(body_as<uint64_t>(**ack).value() == 0);

  auto queues = backend.handle(request(Request::kGetQueueNum));
  CHECK(body_as<uint64_t>(**queues).value() == 1);
}

namespace {

// A frontend and a backend over a socketpair, the backend serving an rng on
// a thread of its own, as `crosvm-launch device rng` would in a process.
struct Pair {
  explicit Pair(std::shared_ptr<virtio::VirtioDevice> device = std::make_shared<virtio::Rng>(quiet())) {
    const GuestRegion region{0, 1 << 20};
    memory = std::make_unique<GuestMemory>(GuestMemory::create(std::span(&region, 1), {.shared = true}).value());
    auto [ours, theirs] = Connection::pair().value();
    backend_socket = theirs.fd();
    server = std::thread([this, device = std::move(device), connection = std::move(theirs)]() mutable {
      Backend backend(std::move(device), quiet());
      served = backend.serve(connection);
    });
    auto created = Frontend::create(*find_frontend_kind("rng"), std::move(ours),
                                    {.socket = "(test)", .name = "vhost-user rng"}, quiet());
    REQUIRE(created.ok());
    frontend = std::move(created).value();
  }
  ~Pair() {
    frontend.reset();  // closes our end: the backend's session ends
    if (server.joinable()) server.join();
  }

  virtio::Activation activation(DriverRing& ring) {
    virtio::Activation activation;
    activation.memory = memory.get();
    activation.features = virtio::kFeatureVersion1;
    activation.interrupt = interrupt;
    auto queue = virtio::SplitQueue::create(*memory, ring.config(), 256, false, false);
    REQUIRE(queue.ok());
    kick = EventFd::create().value();
    activation.queues.push_back(virtio::ActiveQueue{0, std::move(queue).value(), kick->duplicate().value()});
    return activation;
  }

  template <typename Predicate>
  static bool eventually(Predicate predicate) {  // a hang guard, not a timing check
    for (int i = 0; i < 1000; ++i) {
      if (predicate()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return predicate();
  }

  std::unique_ptr<GuestMemory> memory;
  std::shared_ptr<RecordingInterrupt> interrupt = std::make_shared<RecordingInterrupt>();
  std::optional<EventFd> kick;
  int backend_socket = -1;
  std::thread server;
  Result<void> served;
  std::shared_ptr<Frontend> frontend;
};

}  // namespace

TEST_CASE("a frontend and a backend serve the guest's requests through eventfds only", "[vhost-user]") {
  Pair pair;
  CHECK(pair.frontend->device_features() == 0);
  CHECK(pair.frontend->queue_max_sizes() == std::vector<uint16_t>{256});
  CHECK((pair.frontend->ring_features() & virtio::kFeatureEventIndex) != 0);

  DriverRing ring(*pair.memory, 16);
  ring.descriptor(0, 0x10000, 64, crosvm::testing::kWrite);
  ring.offer(0);
  REQUIRE(pair.frontend->activate(pair.activation(ring)).ok());
  pair.kick->signal();
  REQUIRE(Pair::eventually([&] { return pair.interrupt->used.load() >= 1; }));
  CHECK(ring.used_index() == 1);
  CHECK(ring.used(0).id == 0);
  CHECK(ring.used(0).length == 64);
  std::vector<uint8_t> random(64);
  REQUIRE(pair.memory->read(0x10000, random).ok());
  CHECK(std::count(random.begin(), random.end(), 0) < 16);

  // A reset stops the backend's queue; the driver sets up fresh rings and
  // the device serves them.
  pair.frontend->reset();
  DriverRing fresh(*pair.memory, 16, 0x8000);
  fresh.descriptor(3, 0x20000, 32, crosvm::testing::kWrite);
  fresh.offer(3);
  REQUIRE(pair.frontend->activate(pair.activation(fresh)).ok());
  pair.kick->signal();
  REQUIRE(Pair::eventually([&] { return pair.interrupt->used.load() >= 2; }));
  CHECK(fresh.used_index() == 1);
  CHECK(fresh.used(0).id == 3);
  CHECK(fresh.used(0).length == 32);
  CHECK(ring.used_index() == 1);
  CHECK(pair.interrupt->needs_reset().empty());
  pair.frontend->reset();
}

namespace {

// A transport whose MSI-X vector can be unmasked (an irqfd the backend may
// write itself) or masked (only signal_used() delivers), as the guest says.
class DirectInterrupt final : public virtio::Interrupt {
 public:
  void signal_used(uint16_t) override { ++used; }
  void signal_config_change() override {}
  void report_needs_reset(std::string_view) override {}
  std::optional<int> direct_queue_fd(uint16_t) override {
    if (masked) return std::nullopt;
    return irqfd.fd();
  }
  void watch_direct_fds(std::function<void()> on_change) override {
    std::lock_guard lock(mutex);
    listener = std::move(on_change);
  }
  void set_masked(bool value) {
    masked = value;
    std::lock_guard lock(mutex);
    if (listener) listener();
  }
  EventFd irqfd = EventFd::create(EFD_NONBLOCK).value();
  std::atomic<bool> masked{false};
  std::atomic<int> used{0};
  std::mutex mutex;
  std::function<void()> listener;
};

}  // namespace

TEST_CASE("an unmasked vector's irqfd goes to the backend; a masked one goes through the frontend", "[vhost-user]") {
  Pair pair;
  auto interrupt = std::make_shared<DirectInterrupt>();
  DriverRing ring(*pair.memory, 16);
  for (uint16_t i = 0; i < 4; ++i) ring.descriptor(i, 0x10000 + 0x100 * i, 16, crosvm::testing::kWrite);
  virtio::Activation activation = pair.activation(ring);
  activation.interrupt = interrupt;
  REQUIRE(pair.frontend->activate(std::move(activation)).ok());

  // Unmasked: the backend writes the irqfd itself, nothing passes here.
  ring.offer(0);
  pair.kick->signal();
  REQUIRE(Pair::eventually([&] { return ring.used_index() == 1; }));
  REQUIRE(Pair::eventually([&] { return interrupt->irqfd.drain() > 0; }));
  CHECK(interrupt->used.load() == 0);

  // Masked: the call comes to the frontend, which tells the transport.
  interrupt->set_masked(true);
  ring.offer(1);
  pair.kick->signal();
  REQUIRE(Pair::eventually([&] { return interrupt->used.load() == 1; }));
  CHECK(interrupt->irqfd.drain() == 0);

  // Unmasked again: straight to the irqfd once more.
  interrupt->set_masked(false);
  ring.offer(2);
  pair.kick->signal();
  REQUIRE(Pair::eventually([&] { return ring.used_index() == 3; }));
  REQUIRE(Pair::eventually([&] { return interrupt->irqfd.drain() > 0; }));
  CHECK(interrupt->used.load() == 1);

  pair.frontend->reset();
  CHECK_FALSE(interrupt->listener);  // the frontend stopped watching
}

namespace {

// An rng that keeps the backend's interrupt, as a device that hands its
// queues to the kernel (vhost-net) uses it: the queue's direct fd, and a
// listener for when it moves.
class DirectFdSpy final : public virtio::VirtioDevice {
 public:
  virtio::DeviceType type() const override { return rng_.type(); }
  std::string_view name() const override { return rng_.name(); }
  uint32_t pci_class() const override { return rng_.pci_class(); }
  std::vector<uint16_t> queue_max_sizes() const override { return rng_.queue_max_sizes(); }
  uint64_t device_features() const override { return rng_.device_features(); }
  void read_config(uint64_t offset, std::span<uint8_t> data) override { rng_.read_config(offset, data); }
  void write_config(uint64_t offset, std::span<const uint8_t> data) override { rng_.write_config(offset, data); }
  Result<void> activate(virtio::Activation activation) override {
    {
      std::lock_guard lock(mutex);
      interrupt = activation.interrupt;
    }
    interrupt->watch_direct_fds([this] { ++moves; });
    return rng_.activate(std::move(activation));
  }
  void reset() override {
    if (interrupt) interrupt->watch_direct_fds({});
    rng_.reset();
  }
  // Writes the queue's direct fd as the kernel would; false without one.
  bool write_direct() {
    std::lock_guard lock(mutex);
    auto fd = interrupt ? interrupt->direct_queue_fd(0) : std::nullopt;
    return fd && ::eventfd_write(*fd, 1) == 0;
  }

  std::mutex mutex;
  std::shared_ptr<virtio::Interrupt> interrupt;
  std::atomic<int> moves{0};

 private:
  virtio::Rng rng_{quiet()};
};

}  // namespace

TEST_CASE("a backend's call eventfd is its device's direct fd, and the device hears when it moves", "[vhost-user]") {
  auto spy = std::make_shared<DirectFdSpy>();
  Pair pair(spy);
  auto interrupt = std::make_shared<DirectInterrupt>();
  DriverRing ring(*pair.memory, 16);
  virtio::Activation activation = pair.activation(ring);
  activation.interrupt = interrupt;
  REQUIRE(pair.frontend->activate(std::move(activation)).ok());

  // Unmasked: what the device writes to its direct fd is the irqfd's.
  REQUIRE(Pair::eventually([&] { return spy->write_direct(); }));
  REQUIRE(Pair::eventually([&] { return interrupt->irqfd.drain() > 0; }));
  CHECK(interrupt->used.load() == 0);

  // Masked: the frontend moves the call to its own eventfd, the device is
  // told, and a write reaches the transport through the frontend.
  const int before = spy->moves.load();
  interrupt->set_masked(true);
  REQUIRE(Pair::eventually([&] { return spy->moves.load() > before; }));
  REQUIRE(spy->write_direct());
  REQUIRE(Pair::eventually([&] { return interrupt->used.load() == 1; }));
  CHECK(interrupt->irqfd.drain() == 0);

  pair.frontend->reset();
}

TEST_CASE("a backend that goes away leaves its device needing a reset, and the frontend alive", "[vhost-user][hostile]") {
  Pair pair;
  DriverRing ring(*pair.memory, 16);
  REQUIRE(pair.frontend->activate(pair.activation(ring)).ok());
  ::shutdown(pair.backend_socket, SHUT_RDWR);  // as if the process died
  REQUIRE(Pair::eventually([&] { return !pair.interrupt->needs_reset().empty(); }));
  CHECK_FALSE(pair.frontend->connected());
  pair.frontend->reset();
  CHECK_FALSE(pair.frontend->activate(pair.activation(ring)).ok());
  // Configuration reads still work (from the cache).
  uint8_t byte = 0xff;
  pair.frontend->read_config(0, std::span(&byte, 1));
  CHECK(byte == 0);
}

TEST_CASE("a frontend refuses a backend without VERSION_1 or one that answers garbage", "[vhost-user][hostile]") {
  auto [ours, theirs] = Connection::pair().value();
  std::thread fake([connection = std::move(theirs)] {
    auto asked = connection.receive(5000);
    if (!asked) return;
    // Features without VERSION_1.
    (void)connection.send(Message::of(asked->header.request, uint64_t{0}, kVersion | kFlagReply));
  });
  auto refused = Frontend::create(*find_frontend_kind("block"), std::move(ours), {.socket = "/fake", .name = "b"},
                                  quiet());
  fake.join();
  REQUIRE_FALSE(refused.ok());
  CHECK(refused.error().message.find("VERSION_1") != std::string::npos);
  CHECK(refused.error().message.find("/fake") != std::string::npos);

  auto [ours2, theirs2] = Connection::pair().value();
  std::thread liar([connection = std::move(theirs2)] {
    auto asked = connection.receive(5000);
    if (!asked) return;
    // An answer to another request.
    (void)connection.send(Message::of(99, uint64_t{0}, kVersion | kFlagReply));
  });
  auto confused = Frontend::create(*find_frontend_kind("block"), std::move(ours2), {.socket = "/liar", .name = "b"},
                                   quiet());
  liar.join();
  REQUIRE_FALSE(confused.ok());
  CHECK(confused.error().message.find("the answer was request 99") != std::string::npos);
}
