// What every queue-driven device gets from QueueDevice and its worker: an
// executor of its own, a budget per turn, exceptions contained, and no fd
// left behind by a reset.
#include <catch2/catch.hpp>

#include <dirent.h>
#include <sys/eventfd.h>

#include <atomic>
#include <chrono>
#include <new>
#include <thread>

#include "devices/virtio/queue_device.h"
#include "fakes.h"
#include "hang_guard.h"
#include "virtio_rings.h"

using namespace crosvm;
using crosvm::testing::eventually;
using namespace crosvm::virtio;
using crosvm::testing::DriverRing;
using crosvm::testing::RecordingInterrupt;

namespace {

constexpr uint16_t kSize = 256;
constexpr uint64_t kData = 0x10000;

class ScriptedDevice final : public QueueDevice {
 public:
  using Serve = std::function<uint32_t(const DescriptorChain&)>;
  explicit ScriptedDevice(Serve serve) : QueueDevice("virtio-test", crosvm::testing::quiet_logger()), serve_(std::move(serve)) {}

  DeviceType type() const override { return DeviceType::kRng; }
  uint32_t pci_class() const override { return 0xff0000; }
  std::vector<uint16_t> queue_max_sizes() const override { return {kSize}; }
  uint64_t device_features() const override { return 0; }
  void read_config(uint64_t, std::span<uint8_t> data) override { read_config_bytes({}, 0, data); }
  void write_config(uint64_t, std::span<const uint8_t>) override {}
  using QueueDevice::worker;

 private:
  Turn on_kick(ActiveQueue& queue) override { return serve_available(queue, serve_); }
  Serve serve_;
};

struct Fixture {
  GuestMemory memory = crosvm::testing::make_guest_memory();
  DriverRing ring{memory, kSize};
  std::shared_ptr<RecordingInterrupt> interrupt = std::make_shared<RecordingInterrupt>();

  Activation activation() {
    Activation activation{&memory, 0, {}, interrupt};
    activation.queues.push_back(ActiveQueue{
        0, std::move(SplitQueue::create(memory, ring.config(), kSize, false, false)).value(),
        std::move(EventFd::create(EFD_NONBLOCK)).value()});
    return activation;
  }
  // Offers chain `head`: one writable buffer.
  void offer(uint16_t head) {
    ring.descriptor(head, kData + head * 16, 16, crosvm::testing::kWrite);
    ring.offer(head);
  }
};

size_t open_fds() {
  size_t count = 0;
  DIR* directory = ::opendir("/proc/self/fd");
  REQUIRE(directory != nullptr);
  while (::readdir(directory) != nullptr) ++count;
  ::closedir(directory);
  return count;
}

}  // namespace

TEST_CASE("a device serves its queue on a thread of its own", "[virtio][worker]") {
  Fixture f;
  std::atomic<bool> on_caller{true};
  const auto caller = std::this_thread::get_id();
  ScriptedDevice device([&](const DescriptorChain&) {
    on_caller = std::this_thread::get_id() == caller;
    return 0u;
  });
  f.offer(0);
  REQUIRE(device.activate(f.activation()).ok());
  CHECK(eventually([&] { return f.ring.used_index() == 1; }));
  CHECK_FALSE(on_caller);
  device.reset();
}

TEST_CASE("a handler that throws fails its device, not the process", "[virtio][worker][hostile]") {
  Fixture f;
  bool throwing = true;
  std::atomic<int> served{0};
  ScriptedDevice device([&](const DescriptorChain&) -> uint32_t {
    if (throwing) throw std::bad_alloc();
    ++served;
    return 0;
  });
  f.offer(0);
  REQUIRE(device.activate(f.activation()).ok());
  REQUIRE(eventually([&] { return !f.interrupt->needs_reset().empty(); }));
  CHECK_THAT(f.interrupt->needs_reset().front(), Catch::Contains("internal error"));

  // The driver resets the device and starts again on fresh rings: it works.
  device.reset();
  throwing = false;
  Fixture again;
  again.offer(3);
  REQUIRE(device.activate(again.activation()).ok());
  CHECK(eventually([&] { return served == 1; }));
  device.reset();
}

TEST_CASE("a queue kept busy yields to the device's other work", "[virtio][worker][hostile]") {
  // As a second vCPU would, the "driver" offers each chain again the moment
  // it is served: the queue is never empty. The device must still get to
  // other work (here a task posted to it) between turns.
  Fixture f;
  std::atomic<bool> busy{true};
  std::atomic<int> served{0};
  ScriptedDevice device([&](const DescriptorChain& chain) -> uint32_t {
    ++served;
    if (busy) f.ring.offer(chain.head);
    return 0;
  });
  for (uint16_t head = 0; head < 8; ++head) f.offer(head);
  REQUIRE(device.activate(f.activation()).ok());
  REQUIRE(eventually([&] { return served > 0; }));
  device.worker().post([&] { busy = false; });
  CHECK(eventually([&] { return !busy; }));
  CHECK(served > static_cast<int>(QueueDevice::kChainsPerTurn));
  device.reset();
}

TEST_CASE("resets leave no eventfd behind, however many", "[virtio][worker][hostile]") {
  Fixture f;
  ScriptedDevice device([](const DescriptorChain&) { return 0u; });
  REQUIRE(device.activate(f.activation()).ok());
  device.reset();
  const size_t before = open_fds();
  for (int cycle = 0; cycle < 2000; ++cycle) {
    REQUIRE(device.activate(f.activation()).ok());
    device.reset();
  }
  CHECK(open_fds() == before);
}
