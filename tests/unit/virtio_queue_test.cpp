// The split virtqueue against a hostile driver: every rule in DESIGN.md's
// list, each with its bad input, and what the device does about it.
#include <catch2/catch.hpp>

#include "devices/virtio/queue.h"
#include "virtio_rings.h"

using namespace crosvm;
using namespace crosvm::virtio;
using crosvm::testing::DriverRing;
using crosvm::testing::kIndirect;
using crosvm::testing::kNext;
using crosvm::testing::kWrite;

namespace {

constexpr uint16_t kSize = 16;
constexpr uint64_t kData = 0x10000;

struct Fixture {
  GuestMemory memory = crosvm::testing::make_guest_memory();
  DriverRing ring{memory, kSize};

  SplitQueue queue(bool event_index = false, bool indirect = true) {
    return std::move(SplitQueue::create(memory, ring.config(), 256, event_index, indirect)).value();
  }
};

// Pops the one chain the test offered; it must be there.
PoppedChain pop_one(SplitQueue& queue) {
  auto popped = queue.pop();
  REQUIRE(popped.ok());
  REQUIRE(popped->has_value());
  return std::move(popped).value().value();
}

// Pops a chain that breaks a rule: it comes back without buffers, with a
// reason, and can be returned to the driver unused.
std::string pop_bad(SplitQueue& queue, DriverRing& ring) {
  const PoppedChain popped = pop_one(queue);
  CHECK_FALSE(popped.chain.has_value());
  REQUIRE(queue.push_used(popped.head, 0).ok());
  CHECK(ring.used_index() == 1);
  CHECK(ring.used(0).id == popped.head);
  CHECK(ring.used(0).length == 0);
  return popped.problem;
}

// The device takes `size` chains and returns none: the most a driver
// can have out at once (each holds its head, descriptor 0 here).
void hold_every_chain(Fixture& f, SplitQueue& queue) {
  f.ring.descriptor(0, kData, 16, kWrite);
  for (uint16_t i = 0; i < kSize; ++i) {
    f.ring.offer(0);
    REQUIRE(pop_one(queue).chain.has_value());
  }
}

}  // namespace

TEST_CASE("a well-formed chain yields its readable then writable buffers", "[virtio]") {
  Fixture f;
  f.ring.descriptor(0, kData, 16, kNext, 1);
  f.ring.descriptor(1, kData + 0x100, 512, kNext | kWrite, 2);
  f.ring.descriptor(2, kData + 0x400, 1, kWrite);
  f.ring.offer(0);
  SplitQueue queue = f.queue();

  const PoppedChain popped = pop_one(queue);
  REQUIRE(popped.chain.has_value());
  CHECK(popped.chain->readable.size() == 1);
  CHECK(popped.chain->writable.size() == 2);
  CHECK(popped.chain->readable_bytes == 16);
  CHECK(popped.chain->writable_bytes == 513);
  REQUIRE(queue.push_used(0, 513).ok());
  CHECK(f.ring.used_index() == 1);
  CHECK(f.ring.used(0).length == 513);
  CHECK_FALSE(queue.pop()->has_value());  // nothing more offered
}

TEST_CASE("a descriptor loop is cut off at the queue size", "[virtio][hostile]") {
  Fixture f;
  f.ring.descriptor(0, kData, 16, kNext, 1);
  f.ring.descriptor(1, kData, 16, kNext, 0);  // back to 0
  f.ring.offer(0);
  SplitQueue queue = f.queue();
  CHECK_THAT(pop_bad(queue, f.ring), Catch::Contains("more than 16 descriptors"));
}

TEST_CASE("a next index outside the table is refused", "[virtio][hostile]") {
  Fixture f;
  f.ring.descriptor(0, kData, 16, kNext, kSize);
  f.ring.offer(0);
  SplitQueue queue = f.queue();
  CHECK_THAT(pop_bad(queue, f.ring), Catch::Contains("outside the queue"));
}

TEST_CASE("a next index of 0xFFFF is refused", "[virtio][hostile]") {
  Fixture f;
  f.ring.descriptor(0, kData, 16, kNext, 0xffff);
  f.ring.offer(0);
  SplitQueue queue = f.queue();
  CHECK_THAT(pop_bad(queue, f.ring), Catch::Contains("descriptor index 65535 is outside the queue"));
}

TEST_CASE("a head index outside the table breaks the ring", "[virtio][hostile]") {
  for (uint16_t head : {kSize, uint16_t{0xffff}}) {
    Fixture f;
    f.ring.offer(head);
    SplitQueue queue = f.queue();
    auto popped = queue.pop();
    REQUIRE_FALSE(popped.ok());
    CHECK_THAT(popped.error().message, Catch::Contains("offered descriptor"));
    CHECK(f.ring.used_index() == 0);  // nothing was returned for it
  }
}

TEST_CASE("a buffer that wraps the address space or leaves RAM is refused", "[virtio][hostile]") {
  struct Case {
    uint64_t address;
    uint32_t length;
  };
  for (const Case& bad : {Case{0xffff'ffff'ffff'f000, 0x2000}, Case{(1 << 20) - 8, 16},
                          Case{0x1'0000'0000, 16}}) {
    Fixture f;
    f.ring.descriptor(0, bad.address, bad.length, kWrite);
    f.ring.offer(0);
    SplitQueue queue = f.queue();
    CHECK_THAT(pop_bad(queue, f.ring), Catch::Contains("outside guest RAM"));
  }
}

TEST_CASE("a chain adding up to more than 4 GiB is refused", "[virtio][hostile]") {
  // Two 3 GiB buffers over the same RAM: each is valid, together too long.
  const GuestRegion region{0, 3ull << 30};
  GuestMemory memory = std::move(GuestMemory::create(std::span(&region, 1))).value();
  DriverRing ring(memory, kSize);
  ring.descriptor(0, 0, 3u << 30, kNext, 1);
  ring.descriptor(1, 0, 3u << 30, 0);
  ring.offer(0);
  SplitQueue queue = std::move(SplitQueue::create(memory, ring.config(), 256, false, true)).value();
  CHECK_THAT(pop_bad(queue, ring), Catch::Contains("more than 4 GiB"));
}

TEST_CASE("a chain with no bytes is refused", "[virtio][hostile]") {
  Fixture f;
  f.ring.descriptor(0, kData, 0, kNext, 1);
  f.ring.descriptor(1, kData, 0, kWrite);
  f.ring.offer(0);
  SplitQueue queue = f.queue();
  CHECK_THAT(pop_bad(queue, f.ring), Catch::Contains("no bytes"));
}

TEST_CASE("a readable buffer after a writable one is refused", "[virtio][hostile]") {
  Fixture f;
  f.ring.descriptor(0, kData, 16, kNext | kWrite, 1);
  f.ring.descriptor(1, kData + 16, 16, 0);
  f.ring.offer(0);
  SplitQueue queue = f.queue();
  CHECK_THAT(pop_bad(queue, f.ring), Catch::Contains("readable buffer after a writable"));
}

TEST_CASE("a zero-length readable descriptor after a writable one is refused", "[virtio][hostile]") {
  // It carries no bytes, but a readable one after a writable one is still
  // against the rules (the device would misjudge where the request ends).
  Fixture f;
  f.ring.descriptor(0, kData, 16, kNext | kWrite, 1);
  f.ring.descriptor(1, kData + 16, 0, 0);
  f.ring.offer(0);
  SplitQueue queue = f.queue();
  CHECK_THAT(pop_bad(queue, f.ring), Catch::Contains("readable buffer after a writable"));
}

TEST_CASE("bad indirect tables are refused", "[virtio][hostile]") {
  constexpr uint64_t kTable = 0x8000;
  SECTION("empty") {
    Fixture f;
    f.ring.descriptor(0, kTable, 0, kIndirect);
    f.ring.offer(0);
    SplitQueue queue = f.queue();
    CHECK_THAT(pop_bad(queue, f.ring), Catch::Contains("not a whole number"));
  }
  SECTION("not a multiple of 16 bytes") {
    Fixture f;
    f.ring.descriptor(0, kTable, 24, kIndirect);
    f.ring.offer(0);
    SplitQueue queue = f.queue();
    CHECK_THAT(pop_bad(queue, f.ring), Catch::Contains("not a whole number"));
  }
  SECTION("nested") {
    Fixture f;
    f.ring.descriptor(0, kTable, 32, kIndirect);
    f.ring.descriptor(0, kTable + 0x100, 16, kIndirect, 0, kTable);
    f.ring.offer(0);
    SplitQueue queue = f.queue();
    CHECK_THAT(pop_bad(queue, f.ring), Catch::Contains("inside an indirect table"));
  }
  SECTION("INDIRECT together with NEXT") {
    Fixture f;
    f.ring.descriptor(0, kTable, 16, kIndirect | kNext, 1);
    f.ring.offer(0);
    SplitQueue queue = f.queue();
    CHECK_THAT(pop_bad(queue, f.ring), Catch::Contains("both INDIRECT and NEXT"));
  }
  SECTION("not negotiated") {
    Fixture f;
    f.ring.descriptor(0, kTable, 16, kIndirect);
    f.ring.descriptor(0, kData, 16, 0, 0, kTable);
    f.ring.offer(0);
    SplitQueue queue = f.queue(false, false);
    CHECK_THAT(pop_bad(queue, f.ring), Catch::Contains("not negotiated"));
  }
  SECTION("outside RAM") {
    Fixture f;
    f.ring.descriptor(0, (1 << 20) - 16, 32, kIndirect);
    f.ring.offer(0);
    SplitQueue queue = f.queue();
    CHECK_THAT(pop_bad(queue, f.ring), Catch::Contains("outside guest RAM"));
  }
  SECTION("longer than the queue") {
    Fixture f;
    f.ring.descriptor(0, kTable, 16 * (kSize + 1), kIndirect);
    f.ring.offer(0);
    SplitQueue queue = f.queue();
    CHECK_THAT(pop_bad(queue, f.ring), Catch::Contains("longer than the queue"));
  }
  SECTION("a descriptor loop inside it") {
    Fixture f;
    f.ring.descriptor(0, kTable, 32, kIndirect);
    f.ring.descriptor(0, kData, 16, kNext, 1, kTable);
    f.ring.descriptor(1, kData + 16, 16, kNext, 0, kTable);  // back to 0
    f.ring.offer(0);
    SplitQueue queue = f.queue();
    CHECK_THAT(pop_bad(queue, f.ring), Catch::Contains("a loop?"));
  }
  SECTION("an index past the table's end") {
    Fixture f;
    f.ring.descriptor(0, kTable, 32, kIndirect);
    f.ring.descriptor(0, kData, 16, kNext, 2, kTable);  // the table has 2 entries
    f.ring.offer(0);
    SplitQueue queue = f.queue();
    CHECK_THAT(pop_bad(queue, f.ring), Catch::Contains("outside the indirect table"));
  }
}

TEST_CASE("a well-formed indirect table is followed", "[virtio]") {
  constexpr uint64_t kTable = 0x8000;
  Fixture f;
  f.ring.descriptor(0, kTable, 32, kIndirect);
  f.ring.descriptor(0, kData, 16, kNext, 1, kTable);
  f.ring.descriptor(1, kData + 16, 8, kWrite, 0, kTable);
  f.ring.offer(0);
  SplitQueue queue = f.queue();
  const PoppedChain popped = pop_one(queue);
  REQUIRE(popped.chain.has_value());
  CHECK(popped.chain->readable_bytes == 16);
  CHECK(popped.chain->writable_bytes == 8);
}

TEST_CASE("an avail index more than the queue size ahead breaks the ring", "[virtio][hostile]") {
  Fixture f;
  f.ring.set_avail_index(kSize + 1);
  SplitQueue queue = f.queue();
  auto popped = queue.pop();
  REQUIRE_FALSE(popped.ok());
  CHECK_THAT(popped.error().message, Catch::Contains("ahead"));
}

TEST_CASE("a head offered again while the device still holds every chain breaks the ring",
          "[virtio][hostile]") {
  // A driver that never waits for its requests: it offers the same heads
  // over and over. The device may hold at most `size` chains at once.
  Fixture f;
  SplitQueue queue = f.queue();
  hold_every_chain(f, queue);
  f.ring.offer(0);
  auto popped = queue.pop();
  REQUIRE_FALSE(popped.ok());
  CHECK_THAT(popped.error().message, Catch::Contains("still with the device"));

  // One chain used: there is room for exactly one more.
  Fixture g;
  SplitQueue second = g.queue();
  hold_every_chain(g, second);
  REQUIRE(second.push_used(0, 16).ok());
  g.ring.offer(0);
  CHECK(pop_one(second).chain.has_value());
  g.ring.offer(0);
  CHECK_FALSE(second.pop().ok());
}

TEST_CASE("the avail and used indices wrap at 65536 and the ring goes on", "[virtio]") {
  // Legitimate: a driver's indices are free-running 16-bit counters.
  Fixture f;
  f.ring.descriptor(0, kData, 16, kWrite);
  SplitQueue queue = f.queue();
  for (uint32_t round = 0; round < 65536 + 100; ++round) {
    f.ring.offer(0);
    const PoppedChain popped = pop_one(queue);
    REQUIRE(popped.chain.has_value());
    REQUIRE(queue.push_used(popped.head, 16).ok());
  }
  CHECK(f.ring.used_index() == 100);
  CHECK_FALSE(queue.pop()->has_value());
}

TEST_CASE("queue set-up that breaks a rule is refused", "[virtio][hostile]") {
  GuestMemory memory = crosvm::testing::make_guest_memory();
  auto refused = [&](QueueConfig config) {
    auto queue = SplitQueue::create(memory, config, 256, false, false);
    REQUIRE_FALSE(queue.ok());
    return queue.error().message;
  };
  const QueueConfig good{16, DriverRing::kDescriptors, DriverRing::kAvailable, DriverRing::kUsed};
  REQUIRE(SplitQueue::create(memory, good, 256, false, false).ok());

  QueueConfig bad = good;
  bad.size = 0;
  CHECK_THAT(refused(bad), Catch::Contains("size is 0"));
  bad.size = 24;
  CHECK_THAT(refused(bad), Catch::Contains("not a power of two"));
  bad.size = 512;
  CHECK_THAT(refused(bad), Catch::Contains("larger than the device"));
  bad = good;
  bad.descriptor_table = 0x1008;
  CHECK_THAT(refused(bad), Catch::Contains("aligned"));
  bad = good;
  bad.descriptor_table = (1 << 20) - 16;  // the table of 16 descriptors runs past RAM
  CHECK_THAT(refused(bad), Catch::Contains("outside guest RAM"));
  bad = good;
  bad.available_ring = 0xffff'ffff'ffff'fff0;
  CHECK_THAT(refused(bad), Catch::Contains("outside guest RAM"));
  bad = good;
  bad.used_ring = 1 << 20;
  CHECK_THAT(refused(bad), Catch::Contains("outside guest RAM"));
}

TEST_CASE("without EVENT_IDX the driver's NO_INTERRUPT flag is honoured", "[virtio]") {
  Fixture f;
  f.ring.descriptor(0, kData, 16, kWrite);
  f.ring.offer(0);
  SplitQueue queue = f.queue();
  pop_one(queue);
  REQUIRE(queue.push_used(0, 16).ok());
  CHECK(queue.should_notify().value());
  f.ring.set_avail_flags(1);
  CHECK_FALSE(queue.should_notify().value());
}

TEST_CASE("with EVENT_IDX the device interrupts only when used_event is passed", "[virtio]") {
  Fixture f;
  for (uint16_t i = 0; i < 3; ++i) {
    f.ring.descriptor(i, kData + 64 * i, 16, kWrite);
    f.ring.offer(i);
  }
  f.ring.set_used_event(1);  // wake me when the second one is used
  SplitQueue queue = f.queue(true);
  pop_one(queue);
  REQUIRE(queue.push_used(0, 16).ok());
  CHECK(queue.should_notify().value());  // the first notification always goes
  pop_one(queue);
  REQUIRE(queue.push_used(1, 16).ok());
  CHECK(queue.should_notify().value());  // used index 2 passed used_event 1
  pop_one(queue);
  REQUIRE(queue.push_used(2, 16).ok());
  CHECK_FALSE(queue.should_notify().value());  // used_event is still 1
}

TEST_CASE("enable_notification publishes avail_event and sees late chains", "[virtio]") {
  Fixture f;
  f.ring.descriptor(0, kData, 16, kWrite);
  f.ring.offer(0);
  SplitQueue queue = f.queue(true);
  pop_one(queue);
  CHECK_FALSE(queue.enable_notification().value());
  // avail_event sits after the used ring: the driver kicks for index 1.
  CHECK(f.memory.read_object<uint16_t>(DriverRing::kUsed + 4 + 8 * kSize).value() == 1);
  f.ring.descriptor(1, kData, 16, kWrite);
  f.ring.offer(1);
  CHECK(queue.enable_notification().value());
}
