// vsock's options and the errors a user meets before any guest runs (a
// reserved CID, a missing or foreign vhost-vsock device), and the queues a
// device hands to the kernel's vhost: which of them the kernel takes, and
// what each eventfd the device's worker waits on means.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/eventfd.h>

#include "devices/registry.h"
#include "devices/virtio/vhost_kernel.h"
#include "devices/virtio/vsock/vsock.h"
#include "fakes.h"
#include "virtio_rings.h"

using namespace crosvm;
using namespace crosvm::virtio;
using Catch::Contains;

namespace {

std::string refused(std::string_view text) {
  auto options = parse_device_options(kVsockKind, text);
  REQUIRE_FALSE(options.ok());
  return options.error().message;
}

// Opens the kind's resources with `text` and says why it could not.
std::string open_refused(std::string_view text) {
  auto options = parse_device_options(kVsockKind, text);
  REQUIRE(options.ok());
  auto opened = kVsockKind.open(*options, crosvm::testing::quiet_logger());
  REQUIRE_FALSE(opened.ok());
  return opened.error().message;
}

// A vhost device on an fd that takes no vhost request (/dev/null): every
// ioctl fails, so what start() asks of the kernel shows.
class RefusingVhost final : public KernelVhost {
 public:
  RefusingVhost() : KernelVhost(UniqueFd(::open("/dev/null", O_RDWR | O_CLOEXEC)), "vhost-test", kFeatureVersion1) {}
  ~RefusingVhost() override {
    if (running()) (void)stop();
  }

 private:
  Result<void> attach() override { return {}; }
  Result<void> detach() override { return {}; }
};

}  // namespace

TEST_CASE("vsock: cid= or a bare CID, as crosvm's --vsock; reserved CIDs and bad keys are refused", "[vsock]") {
  auto named = parse_device_options(kVsockKind, "cid=3");
  REQUIRE(named.ok());
  CHECK(named->text("cid") == "3");
  auto bare = parse_device_options(kVsockKind, "42");
  REQUIRE(bare.ok());
  CHECK(bare->text("cid") == "42");
  CHECK(kVsockKind.describe(*bare, 0) == "vsock (virtio-vsock, cid 42, vhost-vsock)");
  CHECK(kVsockKind.describe(*bare, 1) == "vsock1 (virtio-vsock, cid 42, vhost-vsock)");
  CHECK(parse_device_options(kVsockKind, "cid=4294967294,device=/dev/vhost-vsock").ok());

  CHECK_THAT(refused(""), Contains("needs cid=N"));
  for (const char* reserved : {"0", "1", "2", "4294967295", "4294967296", "cid=18446744073709551615"}) {
    INFO(reserved);
    CHECK_THAT(refused(reserved), Contains("is reserved"));
  }
  CHECK_THAT(refused("cid=three"), Contains("cid must be a number"));
  CHECK_THAT(refused("cid=3,port=1"), Contains("unknown key 'port'"));
}

TEST_CASE("vsock: a missing vhost-vsock names its module; a device that is not one is refused", "[vsock]") {
  CHECK_THAT(open_refused("cid=3,device=/nonexistent/vhost-vsock"),
             Contains("vsock: /nonexistent/vhost-vsock is missing (load the kernel's vhost_vsock module: "
                      "modprobe vhost_vsock)"));
  CHECK_THAT(open_refused("cid=3,device=/dev/null"), Contains("VHOST_VSOCK_SET_GUEST_CID 3"));
  // The check at open names a reserved CID too, for a caller that skipped parsing.
  auto reserved = VhostVsock::open_device("/dev/null", 2);
  REQUIRE_FALSE(reserved.ok());
  CHECK_THAT(reserved.error().message, Contains("CID 2 is reserved"));
}

TEST_CASE("kernel queues: a device whose queues are not all enabled stays out; the relays and error eventfds "
          "say which queue", "[vsock]") {
  GuestMemory memory = crosvm::testing::make_guest_memory(1 << 20);
  crosvm::testing::DriverRing ring(memory, 16);
  auto interrupt = std::make_shared<crosvm::testing::RecordingInterrupt>();
  KernelQueues queues([](std::string_view) {});
  queues.add(std::make_unique<RefusingVhost>(), {4, 5});
  auto queue = [&](uint16_t index) {
    return ActiveQueue{index, std::move(SplitQueue::create(memory, ring.config(), 16, false, false)).value(),
                       std::move(EventFd::create(EFD_NONBLOCK)).value()};
  };

  // Queue 5 missing: nothing is asked of the kernel, and nothing fails.
  Activation partial{&memory, kFeatureVersion1, {}, interrupt};
  partial.queues.push_back(queue(4));
  REQUIRE(queues.start(partial, kFeatureVersion1, crosvm::testing::quiet_logger(), "test").ok());
  CHECK_FALSE(queues.front().running());
  const std::vector<int> fds = queues.host_fds();
  REQUIRE(fds.size() == 4);  // two relays, two error eventfds
  for (size_t index = 0; index < fds.size(); ++index) {
    CHECK(queues.take_event(index).kind == KernelQueues::Event::Kind::kNothing);  // the session's first call
  }
  REQUIRE(::eventfd_write(fds[1], 1) == 0);
  auto used = queues.take_event(1);
  CHECK(used.kind == KernelQueues::Event::Kind::kUsed);
  CHECK(used.queue == 5);
  REQUIRE(::eventfd_write(fds[2], 1) == 0);
  auto broken = queues.take_event(2);
  CHECK(broken.kind == KernelQueues::Event::Kind::kBroken);
  CHECK(broken.queue == 4);
  CHECK(queues.take_event(4).kind == KernelQueues::Event::Kind::kNothing);  // past the last
  queues.stop();
  // The kernel ran no queue: the device's own positions stand.
  const std::vector<QueuePosition> own{{4, 7}, {5, 9}};
  const std::vector<QueuePosition> merged = queues.with_kernel_positions(own);
  REQUIRE(merged.size() == 2);
  CHECK(merged[0].next_available == 7);
  CHECK(merged[1].next_available == 9);

  // Both queues: the kernel is asked, and its answer is the error, naming the device.
  Activation whole{&memory, kFeatureVersion1, {}, interrupt};
  whole.queues.push_back(queue(4));
  whole.queues.push_back(queue(5));
  auto started = queues.start(whole, kFeatureVersion1, crosvm::testing::quiet_logger(), "test");
  REQUIRE_FALSE(started.ok());
  CHECK_THAT(started.error().message, Contains("vhost-test: VHOST_SET_FEATURES"));
  CHECK_FALSE(queues.front().running());
  // Features the kernel does not serve never reach it.
  auto foreign = queues.start(whole, kFeatureVersion1 | kFeatureEventIndex, crosvm::testing::quiet_logger(), "test");
  REQUIRE_FALSE(foreign.ok());
  CHECK_THAT(foreign.error().message, Contains("are not the kernel's"));
}
