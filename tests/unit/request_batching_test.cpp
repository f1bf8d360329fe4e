// When a device's worker batches a guest's requests and when it answers at
// once (devices/virtio/request_batching.h).
#include <catch2/catch.hpp>

#include <sched.h>

#include <thread>

#include "devices/virtio/request_batching.h"

using crosvm::virtio::RequestBatching;

TEST_CASE("a worker answers at once until a turn shows several requests at a time", "[block][batching]") {
  RequestBatching batching;
  CHECK_FALSE(batching.batching());
  CHECK_FALSE(batching.after_turn(1, 0));  // a lone request: answered at once
  CHECK_FALSE(batching.after_turn(0, 0));  // a kick that found nothing changes nothing
  CHECK(batching.after_turn(2, 0));        // two at once
  CHECK(batching.batching());
  CHECK_FALSE(batching.after_turn(5, 0));
  CHECK_FALSE(batching.after_turn(1, 3));  // one more while others are in flight
  CHECK(batching.batching());
  CHECK(batching.after_turn(1, 0));  // alone with nothing in flight: the guest waits on each
  CHECK_FALSE(batching.batching());
  CHECK(batching.after_turn(1, 1));  // in flight counts as several
  CHECK(batching.batching());
}

TEST_CASE("a worker that answers at once tries batching every kProbeEvery lone turns", "[block][batching]") {
  RequestBatching batching;
  for (int round = 0; round < 3; ++round) {
    for (unsigned turn = 1; turn < RequestBatching::kProbeEvery; ++turn) {
      INFO("round " << round << ", turn " << turn);
      REQUIRE_FALSE(batching.after_turn(1, 0));
    }
    CHECK(batching.after_turn(1, 0));  // the probe
    CHECK(batching.batching());
    CHECK(batching.after_turn(1, 0));  // still alone: back to answering at once
    CHECK_FALSE(batching.batching());
  }
}

TEST_CASE("set_thread_batching switches the calling thread between SCHED_BATCH and SCHED_OTHER", "[batching]") {
  std::thread([] {
    REQUIRE(crosvm::virtio::set_thread_batching(true).ok());
    CHECK(::sched_getscheduler(0) == SCHED_BATCH);
    REQUIRE(crosvm::virtio::set_thread_batching(false).ok());
    CHECK(::sched_getscheduler(0) == SCHED_OTHER);
  }).join();
  CHECK(::sched_getscheduler(0) == SCHED_OTHER);  // another thread's policy is its own
}

TEST_CASE("set_thread_batching leaves a policy the embedder chose as it is", "[batching]") {
  std::thread([] {
    const sched_param param{};
    REQUIRE(::sched_setscheduler(0, SCHED_IDLE, &param) == 0);
    CHECK_FALSE(crosvm::virtio::set_thread_batching(true).ok());
    CHECK_FALSE(crosvm::virtio::set_thread_batching(false).ok());
    CHECK(::sched_getscheduler(0) == SCHED_IDLE);
  }).join();
}

TEST_CASE("set_thread_batching leaves SCHED_RESET_ON_FORK as the embedder set it", "[batching]") {
  std::thread([] {
    const sched_param param{};
    REQUIRE(::sched_setscheduler(0, SCHED_OTHER | SCHED_RESET_ON_FORK, &param) == 0);
    CHECK_FALSE(crosvm::virtio::set_thread_batching(true).ok());
    CHECK(::sched_getscheduler(0) == (SCHED_OTHER | SCHED_RESET_ON_FORK));
  }).join();
}
