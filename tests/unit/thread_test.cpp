#include <catch2/catch.hpp>

#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <cstring>
#include <stdexcept>
#include <string>

#include "base/thread.h"

using namespace crosvm;

TEST_CASE("a library thread runs its body under its name, on a stack below 2 MiB", "[thread]") {
  size_t stack_size = 0;
  char name[16] = {};
  bool current = false;
  Thread* self = nullptr;
  std::atomic<bool> may_look{false};
  auto thread = Thread::start("crosvm_test", [&] {
    while (!may_look.load()) {
    }
    pthread_attr_t attributes;
    REQUIRE(::pthread_getattr_np(::pthread_self(), &attributes) == 0);
    ::pthread_attr_getstacksize(&attributes, &stack_size);
    ::pthread_attr_destroy(&attributes);
    ::pthread_getname_np(::pthread_self(), name, sizeof(name));
    current = self->is_current();
  }, {});
  REQUIRE(thread);
  self = &thread.value();
  CHECK_FALSE(thread->is_current());
  may_look = true;
  thread->join();
  CHECK_FALSE(thread->joinable());
  CHECK(std::strcmp(name, "crosvm_test") == 0);
  CHECK(current);
#if !defined(__SANITIZE_ADDRESS__)
  CHECK(stack_size >= 512u << 10);
  CHECK(stack_size < 2u << 20);
#endif
}

TEST_CASE("a thread that is moved or destroyed is still joined exactly once", "[thread]") {
  std::atomic<int> runs{0};
  {
    auto first = Thread::start("crosvm_a", [&] { ++runs; }, {});
    REQUIRE(first);
    Thread moved = std::move(first).value();
    CHECK(moved.joinable());
  }  // joined by the destructor
  CHECK(runs == 1);
}

TEST_CASE("an exception that escapes a library thread goes to its handler, not std::terminate", "[thread][hostile]") {
  std::string reported;
  auto thread = Thread::start("crosvm_throws", [] { throw std::runtime_error("out of something"); },
                              [&](std::string_view what) { reported = what; });
  REQUIRE(thread);
  thread->join();
  CHECK(reported == "out of something");

  // A handler that throws as well is dropped: the process still lives.
  auto careless = Thread::start("crosvm_throws", [] { throw 42; },
                                [](std::string_view) { throw std::runtime_error("again"); });
  REQUIRE(careless);
  careless->join();
}

TEST_CASE("a library thread never takes SIGPIPE", "[thread][hostile]") {
  bool blocked = false;
  auto thread = Thread::start("crosvm_pipe", [&] {
    sigset_t mask;
    ::pthread_sigmask(SIG_BLOCK, nullptr, &mask);
    blocked = sigismember(&mask, SIGPIPE) == 1;
  }, {});
  REQUIRE(thread);
  thread->join();
  CHECK(blocked);
}
