// virtio-console's transmit queue against a hostile guest and a slow host:
// chains are streamed in bounded pieces, never copied whole, and wait in
// the ring while the output is full, with the device's thread free.
#include <catch2/catch.hpp>

#include <sys/eventfd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <thread>

#include "devices/virtio/console.h"
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
constexpr uint64_t kTransmitRings = 0x8000;  // the receive queue's rings sit at 0
constexpr uint64_t kData = 0x20000;  // above both queues' rings

// An output whose room the test sets; it remembers what it was given.
class GatedOutput final : public OutputStream {
 public:
  explicit GatedOutput(size_t room) : room_(room) {}

  size_t write_some(std::span<const uint8_t> bytes) override {
    std::lock_guard lock(mutex_);
    const size_t taken = std::min(room_, bytes.size());
    room_ -= taken;
    total_ += taken;
    largest_piece_ = std::max(largest_piece_, bytes.size());
    if (keep_) received_.append(reinterpret_cast<const char*>(bytes.data()), taken);
    return taken;
  }
  void when_writable(std::function<void()> ready) override {
    {
      std::lock_guard lock(mutex_);
      if (room_ == 0 || !ready) {
        waiter_ = std::move(ready);
        return;
      }
    }
    ready();
  }
  void write_waiting(std::span<const uint8_t> bytes) override { (void)write_some(bytes); }

  void open(size_t room) {
    std::function<void()> waiter;
    {
      std::lock_guard lock(mutex_);
      room_ = room;
      waiter.swap(waiter_);
    }
    if (waiter) waiter();
  }
  void keep_bytes() { keep_ = true; }
  std::string received() {
    std::lock_guard lock(mutex_);
    return received_;
  }
  uint64_t total() {
    std::lock_guard lock(mutex_);
    return total_;
  }
  size_t largest_piece() {
    std::lock_guard lock(mutex_);
    return largest_piece_;
  }

 private:
  std::mutex mutex_;
  size_t room_;
  uint64_t total_ = 0;
  size_t largest_piece_ = 0;
  bool keep_ = false;
  std::string received_;
  std::function<void()> waiter_;
};

struct Fixture {
  explicit Fixture(size_t room, uint64_t memory_size = 1 << 20)
      : memory(crosvm::testing::make_guest_memory(memory_size)) {
    output = std::make_shared<GatedOutput>(room);
    console = std::make_unique<Console>("virtio-console 1", output, crosvm::testing::quiet_logger());
  }
  ~Fixture() { console->reset(); }

  Activation activation() {
    Activation activation{&memory, 0, {}, interrupt};
    for (uint16_t index : {Console::kReceiveQueue, Console::kTransmitQueue}) {
      const DriverRing& ring = index == Console::kReceiveQueue ? receive : transmit;
      activation.queues.push_back(ActiveQueue{
          index, std::move(SplitQueue::create(memory, ring.config(), kSize, false, false)).value(),
          std::move(EventFd::create(EFD_NONBLOCK)).value()});
    }
    return activation;
  }
  void send(uint16_t head, uint64_t address, const std::string& text) {
    (void)memory.write(address, std::span(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
    transmit.descriptor(head, address, static_cast<uint32_t>(text.size()));
    transmit.offer(head);
  }

  GuestMemory memory;
  DriverRing receive{memory, kSize};
  DriverRing transmit{memory, kSize, kTransmitRings};
  std::shared_ptr<RecordingInterrupt> interrupt = std::make_shared<RecordingInterrupt>();
  std::shared_ptr<GatedOutput> output;
  std::unique_ptr<Console> console;
};

uint64_t resident_bytes() {
  FILE* statm = std::fopen("/proc/self/statm", "r");
  REQUIRE(statm != nullptr);
  unsigned long size = 0, resident = 0;
  REQUIRE(std::fscanf(statm, "%lu %lu", &size, &resident) == 2);
  std::fclose(statm);
  return uint64_t{resident} * 4096;
}

}  // namespace

TEST_CASE("a transmit chain over the same guest RAM 255 times is streamed, not copied whole",
          "[virtio][console][hostile]") {
  // 16 MiB of guest RAM; one chain of 255 descriptors, each covering the
  // same 15 MiB: 3.7 GiB "to print" for one request.
  Fixture f(SIZE_MAX, 16 << 20);
  constexpr uint32_t kLength = 15 << 20;
  constexpr uint16_t kDescriptors = 255;
  for (uint16_t i = 0; i < kDescriptors; ++i) {
    f.transmit.descriptor(i, kData, kLength, i + 1 < kDescriptors ? crosvm::testing::kNext : 0,
                          static_cast<uint16_t>(i + 1));
  }
  f.transmit.offer(0);
  const uint64_t before = resident_bytes();
  REQUIRE(f.console->activate(f.activation()).ok());
  REQUIRE(eventually([&] { return f.transmit.used_index() == 1; }));
  CHECK(f.output->total() == uint64_t{kLength} * kDescriptors);
  CHECK(f.output->largest_piece() <= Console::kPieceBytes);
  CHECK(resident_bytes() - std::min(before, resident_bytes()) < (16u << 20));
  CHECK(f.interrupt->needs_reset().empty());
}

TEST_CASE("while the output is full, transmit chains wait in the ring and the device's thread does not",
          "[virtio][console][hostile]") {
  Fixture f(0);
  f.output->keep_bytes();
  f.send(0, kData, "hello ");
  f.send(1, kData + 0x1000, "world");
  f.receive.descriptor(0, kData + 0x2000, 16, crosvm::testing::kWrite);
  f.receive.offer(0);
  REQUIRE(f.console->activate(f.activation()).ok());

  // The device found no room for the chains, and its thread is free: host
  // input posted to it reaches the guest. Nothing was returned meanwhile.
  const uint8_t key = 'x';
  REQUIRE(f.console->queue_input(std::span(&key, 1)) == 1);
  REQUIRE(eventually([&] { return f.receive.used_index() == 1; }));
  CHECK(f.transmit.used_index() == 0);
  CHECK(f.output->received().empty());

  // Room opens a little at a time: the text arrives whole and in order.
  f.output->open(4);
  REQUIRE(eventually([&] { return f.output->received() == "hell"; }));
  CHECK(f.transmit.used_index() == 0);
  f.output->open(SIZE_MAX);
  REQUIRE(eventually([&] { return f.transmit.used_index() == 2; }));
  CHECK(f.output->received() == "hello world");
}
