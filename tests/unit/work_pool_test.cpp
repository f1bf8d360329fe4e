// WorkPool: work runs concurrently on at most the pool's threads, a barrier
// waits for everything before it and nothing after it, drain() waits, and
// an exception stays inside the pool.
#include <catch2/catch.hpp>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <stdexcept>
#include <thread>
#include <vector>

#include "base/work_pool.h"
#include "fakes.h"
#include "hang_guard.h"

using namespace crosvm;
using crosvm::testing::eventually;

namespace {

// Work that blocks until opened.
class Gate {
 public:
  void wait() {
    std::unique_lock lock(mutex_);
    ++waiting_;
    opened_.wait(lock, [this] { return open_; });
    --waiting_;
  }
  void open() {
    {
      std::lock_guard lock(mutex_);
      open_ = true;
    }
    opened_.notify_all();
  }
  int waiting() {
    std::lock_guard lock(mutex_);
    return waiting_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable opened_;
  bool open_ = false;
  int waiting_ = 0;
};

}  // namespace

TEST_CASE("a pool runs work concurrently on at most its threads", "[work-pool]") {
  WorkPool pool("test_pool", 3, crosvm::testing::quiet_logger());
  Gate gate;
  std::atomic<int> done{0};
  const auto caller = std::this_thread::get_id();
  std::atomic<bool> on_caller{false};
  for (int i = 0; i < 10; ++i) {
    pool.submit([&] {
      if (std::this_thread::get_id() == caller) on_caller = true;
      gate.wait();
      ++done;
    });
  }
  // Three run at once (all blocked in the gate), the other seven wait.
  CHECK(eventually([&] { return gate.waiting() == 3; }));
  CHECK(pool.threads() == 3);
  CHECK(pool.unfinished() == 10);
  CHECK(done == 0);
  gate.open();
  pool.drain();
  CHECK(done == 10);
  CHECK(pool.unfinished() == 0);
  CHECK_FALSE(on_caller);
}

TEST_CASE("a barrier waits for the work before it, and the work after it does not wait", "[work-pool]") {
  WorkPool pool("test_pool", 4, crosvm::testing::quiet_logger());
  Gate first;
  std::mutex mutex;
  std::vector<std::string> order;
  auto note = [&](std::string what) {
    std::lock_guard lock(mutex);
    order.push_back(std::move(what));
  };
  pool.submit([&] {
    first.wait();
    note("first");
  });
  pool.submit([&] { note("barrier"); }, true);
  pool.submit([&] { note("after"); });
  // The work after the barrier finishes while the first still runs; the
  // barrier has not started.
  CHECK(eventually([&] {
    std::lock_guard lock(mutex);
    return order == std::vector<std::string>{"after"};
  }));
  CHECK(pool.unfinished() == 2);
  first.open();
  pool.drain();
  CHECK(order == std::vector<std::string>{"after", "first", "barrier"});
}

TEST_CASE("a barrier waits for an earlier barrier, and work queued behind a barrier runs", "[work-pool]") {
  WorkPool pool("test_pool", 2, crosvm::testing::quiet_logger());
  Gate gate;
  std::atomic<int> step{0};
  std::atomic<bool> in_order{true};
  pool.submit([&] { gate.wait(); ++step; });
  pool.submit([&] { if (step.fetch_add(1) != 1) in_order = false; }, true);
  pool.submit([&] { if (step.fetch_add(1) != 2) in_order = false; }, true);
  std::atomic<bool> later{false};
  pool.submit([&] { later = true; });
  CHECK(eventually([&] { return later.load(); }));
  gate.open();
  pool.drain();
  CHECK(step == 3);
  CHECK(in_order);
}

TEST_CASE("an exception from work is logged and the pool goes on", "[work-pool][hostile]") {
  WorkPool pool("test_pool", 1, crosvm::testing::quiet_logger());
  std::atomic<bool> ran{false};
  pool.submit([] { throw std::runtime_error("broken work"); });
  pool.submit([&] { ran = true; });
  pool.drain();
  CHECK(ran);
}

TEST_CASE("destroying a pool waits for its work", "[work-pool]") {
  std::atomic<int> done{0};
  {
    WorkPool pool("test_pool", 2, crosvm::testing::quiet_logger());
    for (int i = 0; i < 20; ++i) {
      pool.submit([&] {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
        ++done;
      });
    }
  }
  CHECK(done == 20);
}
