// The executor every VM and device runs on: exceptions stay inside it, and
// run_sync() waits for the loop's thread.
#include <catch2/catch.hpp>

#include <future>
#include <stdexcept>
#include <string>
#include <thread>

#include "base/event_loop.h"
#include "hang_guard.h"

using namespace crosvm;

TEST_CASE("an exception from a handler goes to the failure handler and the loop runs on", "[loop][hostile]") {
  EventLoop loop("test_loop");
  std::promise<std::string> failure;
  loop.set_failure_handler([&](std::string_view what) { failure.set_value(std::string(what)); });
  REQUIRE(loop.start_threads(1).ok());
  loop.post([] { throw std::runtime_error("a handler failed"); });
  auto reported = failure.get_future();
  REQUIRE(reported.wait_for(crosvm::testing::kHangGuard) == std::future_status::ready);
  CHECK(reported.get() == "a handler failed");

  std::promise<void> next;
  loop.post([&] { next.set_value(); });
  CHECK(next.get_future().wait_for(crosvm::testing::kHangGuard) == std::future_status::ready);
  loop.stop();
}

TEST_CASE("run_sync runs on the loop's thread and returns when it has run", "[loop]") {
  EventLoop loop("test_loop");
  std::thread::id ran_on;
  loop.run_sync([&] { ran_on = std::this_thread::get_id(); });  // not started: runs here
  CHECK(ran_on == std::this_thread::get_id());

  REQUIRE(loop.start_threads(1).ok());
  bool ran = false;
  loop.run_sync([&] {
    ran_on = std::this_thread::get_id();
    ran = loop.on_loop_thread();
  });
  CHECK(ran);
  CHECK(ran_on != std::this_thread::get_id());
  loop.stop();
}
