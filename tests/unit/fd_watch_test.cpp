// The embedder's descriptors on a VM's loop (crosvm_vm_watch_fd): the
// callback hears what is ready and nothing else, asks for what comes
// next, and nothing is called once a watch or the loop has ended.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <future>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "base/event_loop.h"
#include "base/unique_fd.h"
#include "hang_guard.h"
#include "vm/fd_watch.h"

using namespace crosvm;
using crosvm::testing::eventually;

namespace {

struct Pipe {
  Pipe() {
    int fds[2];
    REQUIRE(::pipe2(fds, O_CLOEXEC | O_NONBLOCK) == 0);
    read_end.reset(fds[0]);
    write_end.reset(fds[1]);
  }
  void put(char byte) const { REQUIRE(::write(write_end.get(), &byte, 1) == 1); }
  UniqueFd read_end;
  UniqueFd write_end;
};

// What one watch's callback saw, from the loop's thread.
struct Seen {
  std::mutex mutex;
  std::vector<uint32_t> ready;
  std::string bytes;
  std::thread::id thread;

  size_t calls() {
    std::lock_guard lock(mutex);
    return ready.size();
  }
};

// Reads what is there and asks for more until it has read `last`.
FdWatches::Callback reader(Seen& seen, char last) {
  return [&seen, last](int fd, uint32_t ready) -> uint32_t {
    std::lock_guard lock(seen.mutex);
    seen.ready.push_back(ready);
    seen.thread = std::this_thread::get_id();
    char byte = 0;
    while (::read(fd, &byte, 1) == 1) seen.bytes.push_back(byte);
    return seen.bytes.find(last) == std::string::npos ? FdWatches::kReadable : 0;
  };
}

struct RunningLoop {
  RunningLoop() { REQUIRE(loop.start_threads(1).ok()); }
  ~RunningLoop() {
    loop.run_sync([this] { watches.shutdown(); });
    loop.stop();
  }
  EventLoop loop{"test_watch"};
  FdWatches watches{loop};
};

}  // namespace

TEST_CASE("a watched pipe calls back on the loop's thread until the callback asks for nothing",
          "[watch]") {
  RunningLoop running;
  Pipe pipe;
  Seen seen;
  REQUIRE(running.watches.add(pipe.read_end.get(), FdWatches::kReadable,
                              reader(seen, '.'))
              .ok());
  CHECK(running.watches.size() == 1);

  pipe.put('a');
  REQUIRE(eventually([&] { return seen.calls() == 1; }));
  pipe.put('b');
  REQUIRE(eventually([&] { return seen.calls() == 2; }));
  pipe.put('.');
  REQUIRE(eventually([&] { return running.watches.size() == 0; }));
  pipe.put('c');  // the watch has ended: nobody is called for this
  std::this_thread::sleep_for(std::chrono::milliseconds(50));

  std::lock_guard lock(seen.mutex);
  CHECK(seen.bytes == "ab.");
  CHECK(seen.ready == std::vector<uint32_t>{FdWatches::kReadable, FdWatches::kReadable, FdWatches::kReadable});
  bool on_loop = false;
  running.loop.run_sync([&] { on_loop = std::this_thread::get_id() == seen.thread; });
  CHECK(on_loop);
}

TEST_CASE("a watch for both events hears only the one that is ready, and may switch", "[watch]") {
  RunningLoop running;
  int pair[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, pair) == 0);
  UniqueFd ours(pair[0]), theirs(pair[1]);
  std::mutex mutex;
  std::vector<uint32_t> ready;
  // Writable at once (an empty socket buffer), not readable: then only
  // reading is asked for, and a byte from the other side brings it.
  REQUIRE(running.watches
              .add(ours.get(), FdWatches::kReadable | FdWatches::kWritable,
                   [&](int, uint32_t events) -> uint32_t {
                     std::lock_guard lock(mutex);
                     ready.push_back(events);
                     return ready.size() == 1 ? FdWatches::kReadable : 0;
                   })
              .ok());
  REQUIRE(eventually([&] {
    std::lock_guard lock(mutex);
    return ready.size() == 1;
  }));
  const char byte = 'x';
  REQUIRE(::write(theirs.get(), &byte, 1) == 1);
  REQUIRE(eventually([&] {
    std::lock_guard lock(mutex);
    return ready.size() == 2;
  }));
  std::lock_guard lock(mutex);
  CHECK(ready[0] == FdWatches::kWritable);
  CHECK(ready[1] == FdWatches::kReadable);
}

TEST_CASE("the other end closing is readiness, seen on the watch's own copy after the embedder closed its own",
          "[watch]") {
  RunningLoop running;
  Pipe pipe;
  std::promise<std::tuple<int, uint32_t, ssize_t, ssize_t>> heard;
  REQUIRE(running.watches
              .add(pipe.read_end.get(), FdWatches::kReadable,
                   [&](int fd, uint32_t ready) -> uint32_t {
                     char bytes[2];
                     const ssize_t first = ::read(fd, bytes, sizeof bytes);
                     const ssize_t then = ::read(fd, bytes, sizeof bytes);
                     heard.set_value({fd, ready, first, then});
                     return 0;
                   })
              .ok());
  const int embedder_fd = pipe.read_end.get();
  pipe.read_end.reset();
  pipe.put('a');  // the copy still holds the pipe open: the write succeeds
  pipe.write_end.reset();
  auto result = heard.get_future();
  REQUIRE(result.wait_for(crosvm::testing::kHangGuard) == std::future_status::ready);
  const auto [fd, ready, first, then] = result.get();
  CHECK(fd != embedder_fd);
  CHECK(ready == FdWatches::kReadable);
  CHECK(first == 1);
  CHECK(then == 0);  // end of file
  REQUIRE(eventually([&] { return running.watches.size() == 0; }));
  CHECK(::fcntl(fd, F_GETFD) == -1);  // the copy was closed when the watch ended
}

TEST_CASE("what cannot be watched is refused with a reason", "[watch][hostile]") {
  RunningLoop running;
  Pipe pipe;
  auto never = [](int, uint32_t) -> uint32_t {
    FAIL("called");
    return 0;
  };
  SECTION("no descriptor, or a closed one") {
    auto watched = running.watches.add(-1, FdWatches::kReadable, never);
    REQUIRE_FALSE(watched.ok());
    CHECK(watched.error().code == ErrorCode::kInvalidArgument);
    const int closed = ::dup(pipe.read_end.get());
    ::close(closed);
    CHECK_FALSE(running.watches.add(closed, FdWatches::kReadable, never).ok());
  }
  SECTION("a regular file, always ready") {
    std::FILE* file = std::tmpfile();
    REQUIRE(file != nullptr);
    auto watched = running.watches.add(::fileno(file), FdWatches::kReadable, never);
    std::fclose(file);
    REQUIRE_FALSE(watched.ok());
    CHECK(watched.error().message.find("always ready") != std::string::npos);
  }
  SECTION("no events, or unknown ones") {
    CHECK_FALSE(running.watches.add(pipe.read_end.get(), 0, never).ok());
    CHECK_FALSE(running.watches.add(pipe.read_end.get(), 4, never).ok());
  }
  SECTION("more than the bound") {
    for (size_t i = 0; i < FdWatches::kMaxWatches; ++i) {
      REQUIRE(running.watches.add(pipe.read_end.get(), FdWatches::kReadable, never).ok());
    }
    auto watched = running.watches.add(pipe.read_end.get(), FdWatches::kReadable, never);
    REQUIRE_FALSE(watched.ok());
    CHECK(watched.error().message.find("at most 16") != std::string::npos);
  }
  SECTION("after the watches were shut down") {
    running.loop.run_sync([&] { running.watches.shutdown(); });
    auto watched = running.watches.add(pipe.read_end.get(), FdWatches::kReadable, never);
    REQUIRE_FALSE(watched.ok());
    CHECK(watched.error().code == ErrorCode::kState);
  }
  CHECK(running.watches.size() <= FdWatches::kMaxWatches);
}

TEST_CASE("shutting the watches down ends them: nothing is called for input after that", "[watch]") {
  RunningLoop running;
  Pipe pipe;
  std::atomic<int> calls{0};
  REQUIRE(running.watches
              .add(pipe.read_end.get(), FdWatches::kReadable,
                   [&](int, uint32_t) -> uint32_t {
                     ++calls;
                     return FdWatches::kReadable;
                   })
              .ok());
  running.loop.run_sync([&] { running.watches.shutdown(); });
  CHECK(running.watches.size() == 0);
  pipe.put('a');
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  bool drained = false;
  running.loop.run_sync([&] { drained = true; });  // whatever was queued has run
  CHECK(drained);
  CHECK(calls.load() == 0);
}

TEST_CASE("a callback that throws ends its watch and the loop's failure handler hears it",
          "[watch][hostile]") {
  EventLoop loop("test_watch");
  std::promise<std::string> failure;
  loop.set_failure_handler([&](std::string_view what) { failure.set_value(std::string(what)); });
  FdWatches watches(loop);
  REQUIRE(loop.start_threads(1).ok());
  Pipe pipe;
  REQUIRE(watches
              .add(pipe.read_end.get(), FdWatches::kReadable,
                   [](int, uint32_t) -> uint32_t { throw std::runtime_error("the embedder's callback failed"); })
              .ok());
  pipe.put('a');
  auto reported = failure.get_future();
  REQUIRE(reported.wait_for(crosvm::testing::kHangGuard) == std::future_status::ready);
  CHECK(reported.get() == "the embedder's callback failed");
  CHECK(watches.size() == 0);
  loop.run_sync([&] { watches.shutdown(); });
  loop.stop();
}

TEST_CASE("a watch added before the loop runs starts when it does", "[watch]") {
  EventLoop loop("test_watch");
  FdWatches watches(loop);
  Pipe pipe;
  Seen seen;
  pipe.put('.');
  REQUIRE(watches.add(pipe.read_end.get(), FdWatches::kReadable, reader(seen, '.')).ok());
  CHECK(seen.calls() == 0);
  REQUIRE(loop.start_threads(1).ok());
  REQUIRE(eventually([&] { return watches.size() == 0; }));
  {
    std::lock_guard lock(seen.mutex);
    CHECK(seen.bytes == ".");
  }
  loop.stop();
}
