// The virtio-blk device with its I/O threads: a slow request does not hold
// up the ones behind it, a FLUSH waits for the requests taken before it, a
// reset or a resize waits for what is in flight (and a reset returns it),
// a request alone is served on the device's worker, the worker batches
// while requests come several at a time, and every queue of a multi-queue
// disk is served.
#include <catch2/catch.hpp>

#include <algorithm>

#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>

#include <atomic>
#include <condition_variable>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>

#include "devices/virtio/block.h"
#include "disk/disk_file.h"
#include "fakes.h"
#include "hang_guard.h"
#include "temp_file.h"
#include "virtio_rings.h"

using namespace crosvm;
using namespace crosvm::virtio;
using crosvm::testing::DriverRing;
using crosvm::testing::eventually;
using crosvm::testing::RecordingInterrupt;

namespace {

constexpr uint16_t kSize = 64;
constexpr uint64_t kImageSize = 1 << 20;
constexpr uint64_t kHeaders = 0x20000;
constexpr uint64_t kBuffers = 0x40000;
constexpr uint64_t kStatuses = 0x90000;
constexpr uint64_t kSecondRing = 0xa0000;

std::vector<uint8_t> pattern() {
  std::vector<uint8_t> bytes(kImageSize);
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i / 4096 + 1);
  return bytes;
}

// A disk whose requests at held offsets wait until released; it records
// what started and what finished, in order.
class GateDisk final : public disk::DiskFile {
 public:
  explicit GateDisk(std::unique_ptr<disk::DiskFile> inner) : inner_(std::move(inner)) {}

  void hold(uint64_t offset) {
    std::lock_guard lock(mutex_);
    held_.insert(offset);
  }
  void release(uint64_t offset) {
    {
      std::lock_guard lock(mutex_);
      held_.erase(offset);
    }
    changed_.notify_all();
  }
  std::vector<std::string> events() {
    std::lock_guard lock(mutex_);
    return events_;
  }
  bool saw(const std::string& event) {
    const auto all = events();
    return std::find(all.begin(), all.end(), event) != all.end();
  }

  uint64_t size() const override { return inner_->size(); }
  bool read_only() const override { return false; }
  std::string_view format() const override { return "raw"; }
  Result<void> read_at(uint64_t offset, std::span<const iovec> buffers) override {
    char thread[16] = {};
    ::pthread_getname_np(::pthread_self(), thread, sizeof thread);
    note(fmt::format("read {} on {}", offset, thread));
    gate("read", offset);
    auto done = inner_->read_at(offset, buffers);
    note(fmt::format("read {} done", offset));
    return done;
  }
  Result<void> write_at(uint64_t offset, std::span<const iovec> buffers) override {
    gate("write", offset);
    auto done = inner_->write_at(offset, buffers);
    note(fmt::format("write {} done", offset));
    return done;
  }
  Result<void> flush() override {
    note("flush");
    return inner_->flush();
  }
  Result<void> discard(uint64_t offset, uint64_t length) override { return inner_->discard(offset, length); }
  Result<void> write_zeroes(uint64_t offset, uint64_t length, bool unmap) override {
    return inner_->write_zeroes(offset, length, unmap);
  }
  Result<void> resize(uint64_t new_size) override { return inner_->resize(new_size); }

 private:
  void note(std::string event) {
    std::lock_guard lock(mutex_);
    events_.push_back(std::move(event));
  }
  void gate(const char* what, uint64_t offset) {
    std::unique_lock lock(mutex_);
    events_.push_back(fmt::format("{} {} started", what, offset));
    changed_.wait(lock, [&] { return held_.count(offset) == 0; });
  }

  std::unique_ptr<disk::DiskFile> inner_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::set<uint64_t> held_;
  std::vector<std::string> events_;
};

struct Fixture {
  TempFile image{"crosvm-block-async", pattern()};
  GuestMemory memory = crosvm::testing::make_guest_memory();
  DriverRing ring{memory, kSize};
  DriverRing second{memory, kSize, kSecondRing};
  std::shared_ptr<RecordingInterrupt> interrupt = std::make_shared<RecordingInterrupt>();
  GateDisk* disk = nullptr;
  std::unique_ptr<Block> device;
  std::vector<EventFd> kicks;  // the driver's side of each activated queue's kick

  explicit Fixture(uint16_t queues = 1) {
    auto gate = std::make_unique<GateDisk>(std::move(disk::open_disk({.path = image.path()})).value());
    disk = gate.get();
    device = std::make_unique<Block>(std::move(gate), BlockOptions{.num_queues = queues}, "virtio-blk 0 (test)",
                                     crosvm::testing::quiet_logger());
  }
  ~Fixture() { device->reset(); }

  // Request `slot` on `driver`: header, 4 KiB of data (device-written for a
  // read), status; descriptors 3 * slot onwards.
  void offer(DriverRing& driver, uint16_t slot, uint32_t type, uint64_t sector) {
    const uint64_t header = kHeaders + slot * 16 + (&driver == &second ? 0x8000 : 0);
    const uint64_t data = kBuffers + slot * 4096 + (&driver == &second ? 0x20000 : 0);
    const uint32_t words[4] = {type, 0, static_cast<uint32_t>(sector), 0};
    REQUIRE(memory.write(header, std::span(reinterpret_cast<const uint8_t*>(words), 16)).ok());
    REQUIRE(memory.write_object<uint8_t>(status_address(driver, slot), 0xee).ok());
    const uint16_t first = static_cast<uint16_t>(slot * 3);
    driver.descriptor(first, header, 16, crosvm::testing::kNext, static_cast<uint16_t>(first + 1));
    if (type == kBlockRequestFlush) {
      driver.descriptor(static_cast<uint16_t>(first + 1), status_address(driver, slot), 1, crosvm::testing::kWrite);
    } else {
      const uint16_t flags = type == kBlockRequestIn ? crosvm::testing::kWrite : 0;
      driver.descriptor(static_cast<uint16_t>(first + 1), data, 4096, flags | crosvm::testing::kNext,
                        static_cast<uint16_t>(first + 2));
      driver.descriptor(static_cast<uint16_t>(first + 2), status_address(driver, slot), 1, crosvm::testing::kWrite);
    }
    driver.offer(first);
  }
  uint64_t status_address(const DriverRing& driver, uint16_t slot) const {
    return kStatuses + slot + (&driver == &second ? 0x100 : 0);
  }
  uint8_t status(const DriverRing& driver, uint16_t slot) const {
    return memory.read_object<uint8_t>(status_address(driver, slot)).value();
  }
  uint8_t data_byte(uint16_t slot) const { return memory.read_object<uint8_t>(kBuffers + slot * 4096).value(); }

  Activation activation(std::initializer_list<uint16_t> queues = {0}) {
    Activation activation{&memory, 0, {}, interrupt};
    for (const uint16_t index : queues) {
      DriverRing& driver = index == 0 ? ring : second;
      activation.queues.push_back(ActiveQueue{
          index, std::move(SplitQueue::create(memory, driver.config(), kSize, false, false)).value(),
          std::move(EventFd::create(EFD_NONBLOCK)).value()});
      kicks.push_back(std::move(activation.queues.back().kick.duplicate()).value());
    }
    return activation;
  }
};

}  // namespace

TEST_CASE("a slow request does not hold up the requests behind it", "[block][async]") {
  Fixture f;
  f.disk->hold(0);
  f.offer(f.ring, 0, kBlockRequestIn, 0);  // waits in the disk
  f.offer(f.ring, 1, kBlockRequestIn, 8);  // bytes 4096..8191
  REQUIRE(f.device->activate(f.activation()).ok());
  // The second completes first, out of order.
  REQUIRE(eventually([&] { return f.ring.used_index() == 1; }));
  CHECK(f.ring.used(0).id == 3);
  CHECK(f.ring.used(0).length == 4097);
  CHECK(f.status(f.ring, 1) == kBlockStatusOk);
  CHECK(f.data_byte(1) == 2);
  CHECK(f.status(f.ring, 0) == 0xee);  // untouched while it waits
  f.disk->release(0);
  REQUIRE(eventually([&] { return f.ring.used_index() == 2; }));
  CHECK(f.ring.used(1).id == 0);
  CHECK(f.status(f.ring, 0) == kBlockStatusOk);
  CHECK(f.data_byte(0) == 1);
  CHECK(f.interrupt->needs_reset().empty());
}

TEST_CASE("a flush waits for the requests taken before it, and not the other way round", "[block][async]") {
  Fixture f;
  f.disk->hold(0);
  f.offer(f.ring, 0, kBlockRequestOut, 0);  // a write still running
  f.offer(f.ring, 1, kBlockRequestFlush, 0);
  f.offer(f.ring, 2, kBlockRequestIn, 16);  // after the flush: need not wait
  REQUIRE(f.device->activate(f.activation()).ok());
  REQUIRE(eventually([&] { return f.ring.used_index() == 1; }));
  CHECK(f.ring.used(0).id == 6);
  CHECK(f.disk->saw("write 0 started"));
  CHECK_FALSE(f.disk->saw("flush"));
  f.disk->release(0);
  REQUIRE(eventually([&] { return f.ring.used_index() == 3; }));
  const auto events = f.disk->events();
  const auto written = std::find(events.begin(), events.end(), "write 0 done");
  const auto flushed = std::find(events.begin(), events.end(), "flush");
  REQUIRE(written != events.end());
  CHECK(flushed > written);
  CHECK(f.status(f.ring, 1) == kBlockStatusOk);
  CHECK(f.ring.used(2).id == 3);  // the flush after the write it covers
}

TEST_CASE("a reset waits for the requests in flight and returns them", "[block][async]") {
  Fixture f;
  f.disk->hold(0);
  f.disk->hold(4096);
  f.offer(f.ring, 0, kBlockRequestIn, 0);
  f.offer(f.ring, 1, kBlockRequestIn, 8);
  REQUIRE(f.device->activate(f.activation()).ok());
  REQUIRE(eventually([&] { return f.disk->saw("read 0 started") && f.disk->saw("read 4096 started"); }));
  std::atomic<bool> reset_done{false};
  std::thread resetting([&] {
    f.device->reset();
    reset_done = true;
  });
  // The reads still hold guest memory: the reset must not return yet.
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  CHECK_FALSE(reset_done);
  f.disk->release(0);
  f.disk->release(4096);
  resetting.join();
  CHECK(reset_done);
  // Returned to the driver before the reset ended, with their data.
  CHECK(f.ring.used_index() == 2);
  CHECK(f.status(f.ring, 0) == kBlockStatusOk);
  CHECK(f.status(f.ring, 1) == kBlockStatusOk);
  CHECK(f.data_byte(0) == 1);
  CHECK(f.data_byte(1) == 2);
  CHECK(f.device->positions_at_reset().at(0).next_available == 2);
}

TEST_CASE("num-queues: the driver gets that many queues and each is served", "[block][async]") {
  Fixture f(2);
  CHECK(f.device->queue_max_sizes().size() == 2);
  CHECK((f.device->device_features() & (1ull << 12)) != 0);  // VIRTIO_BLK_F_MQ
  uint8_t queues[2] = {};
  f.device->read_config(0x22, queues);
  CHECK((queues[0] | queues[1] << 8) == 2);
  f.offer(f.ring, 0, kBlockRequestIn, 0);
  f.offer(f.second, 0, kBlockRequestIn, 8);
  REQUIRE(f.device->activate(f.activation({0, 1})).ok());
  REQUIRE(eventually([&] { return f.ring.used_index() == 1 && f.second.used_index() == 1; }));
  CHECK(f.status(f.ring, 0) == kBlockStatusOk);
  CHECK(f.status(f.second, 0) == kBlockStatusOk);
  CHECK(f.memory.read_object<uint8_t>(kBuffers + 0x20000).value() == 2);

  Fixture single;
  CHECK(single.device->queue_max_sizes().size() == 1);
  CHECK((single.device->device_features() & (1ull << 12)) == 0);
}

TEST_CASE("a resize waits for the requests in flight", "[block][async]") {
  Fixture f;
  f.disk->hold(0);
  f.offer(f.ring, 0, kBlockRequestOut, 0);
  f.offer(f.ring, 1, kBlockRequestOut, 8);
  REQUIRE(f.device->activate(f.activation()).ok());
  REQUIRE(eventually([&] { return f.disk->saw("write 0 started") && f.disk->saw("write 4096 done"); }));
  std::atomic<bool> resized{false};
  std::thread resizing([&] {
    CHECK(f.device->resize(2 * kImageSize).ok());
    resized = true;
  });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  CHECK_FALSE(resized);
  f.disk->release(0);
  resizing.join();
  CHECK(f.device->size() == 2 * kImageSize);
  REQUIRE(eventually([&] { return f.ring.used_index() == 2; }));
}

TEST_CASE("a request alone is served on the device's worker, without a hand-off", "[block][async]") {
  Fixture f;
  f.offer(f.ring, 0, kBlockRequestIn, 0);
  REQUIRE(f.device->activate(f.activation()).ok());
  REQUIRE(eventually([&] { return f.ring.used_index() == 1; }));
  CHECK(f.status(f.ring, 0) == kBlockStatusOk);
  CHECK(f.disk->saw("read 0 on crosvm_blk0"));
  // Two at once go to the I/O threads.
  f.offer(f.ring, 1, kBlockRequestIn, 8);
  f.offer(f.ring, 2, kBlockRequestIn, 16);
  f.kicks[0].signal();
  REQUIRE(eventually([&] { return f.ring.used_index() == 3; }));
  CHECK(f.disk->saw("read 4096 on crosvm_blk_io"));
  CHECK(f.disk->saw("read 8192 on crosvm_blk_io"));
}

namespace {

// The scheduling policy of this process's thread named `name`; -1 if none.
int policy_of_thread(const std::string& name) {
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(task.path() / "comm");
    std::string line;
    if (std::getline(comm, line) && line == name) {
      return ::sched_getscheduler(static_cast<pid_t>(std::stol(task.path().filename().string())));
    }
  }
  return -1;
}

// The policies of every thread named `name`.
std::vector<int> policies_of_threads(const std::string& name) {
  std::vector<int> policies;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(task.path() / "comm");
    std::string line;
    if (std::getline(comm, line) && line == name) {
      policies.push_back(::sched_getscheduler(static_cast<pid_t>(std::stol(task.path().filename().string()))));
    }
  }
  return policies;
}

}  // namespace

TEST_CASE("the worker batches while several requests come at once, and answers a lone one at once",
          "[block][async][batching]") {
  Fixture f;
  f.offer(f.ring, 0, kBlockRequestIn, 0);
  REQUIRE(f.device->activate(f.activation()).ok());
  REQUIRE(eventually([&] { return f.ring.used_index() == 1; }));
  CHECK(policy_of_thread("crosvm_blk0") == SCHED_OTHER);
  f.offer(f.ring, 1, kBlockRequestIn, 8);
  f.offer(f.ring, 2, kBlockRequestIn, 16);
  f.kicks[0].signal();
  REQUIRE(eventually([&] { return f.ring.used_index() == 3; }));
  CHECK(policy_of_thread("crosvm_blk0") == SCHED_BATCH);
  // The I/O threads the batching worker started for those two do not keep
  // its policy: batching is the worker's state, not theirs.
  const std::vector<int> io_policies = policies_of_threads("crosvm_blk_io");
  CHECK_FALSE(io_policies.empty());
  CHECK(std::count(io_policies.begin(), io_policies.end(), SCHED_OTHER) ==
        static_cast<std::ptrdiff_t>(io_policies.size()));
  // A lone request: answered on the worker, which stops batching. (An I/O
  // thread may not have counted the last pair finished yet when the first
  // comes: then that one still counts as several.)
  bool alone = false;
  for (uint16_t slot = 3; slot < 12 && !alone; ++slot) {
    f.offer(f.ring, slot, kBlockRequestIn, slot * 8);
    f.kicks[0].signal();
    REQUIRE(eventually([&] { return f.ring.used_index() == slot + 1; }));
    CHECK(f.status(f.ring, slot) == kBlockStatusOk);
    alone = f.disk->saw(fmt::format("read {} on crosvm_blk0", slot * 4096));
  }
  CHECK(alone);
  CHECK(policy_of_thread("crosvm_blk0") == SCHED_OTHER);
  CHECK(f.interrupt->needs_reset().empty());
}
