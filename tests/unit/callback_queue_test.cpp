// Callbacks queued for the embedder's thread: order, merged output, the
// readiness fd, and the cap on output a stalled embedder leaves queued.
#include <catch2/catch.hpp>

#include <poll.h>

#include <string>
#include <vector>

#include "vm/callback_queue.h"

using namespace crosvm;

namespace {

bool readable(int fd) {
  pollfd entry{fd, POLLIN, 0};
  return ::poll(&entry, 1, 0) == 1;
}

std::span<const uint8_t> bytes_of(const std::string& text) {
  return {reinterpret_cast<const uint8_t*>(text.data()), text.size()};
}

}  // namespace

TEST_CASE("queued callbacks run in order on dispatch, merging output per port", "[callbacks]") {
  auto queue = CallbackQueue::create();
  REQUIRE(queue.ok());
  std::vector<std::string> calls;
  CallbackQueue::OutputCallback first = [&](std::span<const uint8_t> b) {
    calls.push_back("1:" + std::string(b.begin(), b.end()));
  };
  CallbackQueue::OutputCallback second = [&](std::span<const uint8_t> b) {
    calls.push_back("2:" + std::string(b.begin(), b.end()));
  };
  CHECK_FALSE(readable((*queue)->fd()));
  (*queue)->push_output(0, first, bytes_of("he"));
  (*queue)->push_output(0, first, bytes_of("llo"));
  (*queue)->push_output(1, second, bytes_of("x"));
  (*queue)->push([&] { calls.push_back("exit"); });
  (*queue)->push_output(0, first, bytes_of("!"));
  CHECK(readable((*queue)->fd()));

  CHECK((*queue)->dispatch([] { return true; }) == 4);
  CHECK(calls == std::vector<std::string>{"1:hello", "2:x", "exit", "1:!"});
  CHECK_FALSE(readable((*queue)->fd()));
  CHECK((*queue)->dispatch([] { return true; }) == 0);
}

TEST_CASE("dispatch stops when asked to, dropping the rest", "[callbacks]") {
  auto queue = CallbackQueue::create();
  REQUIRE(queue.ok());
  int ran = 0;
  bool destroyed = false;
  (*queue)->push([&] { ++ran; destroyed = true; });
  (*queue)->push([&] { ++ran; });
  CHECK((*queue)->dispatch([&] { return !destroyed; }) == 1);
  CHECK(ran == 1);
}

TEST_CASE("output beyond the cap is dropped and counted, not queued", "[callbacks]") {
  auto queue = CallbackQueue::create();
  REQUIRE(queue.ok());
  size_t delivered = 0;
  CallbackQueue::OutputCallback sink = [&](std::span<const uint8_t> b) { delivered += b.size(); };
  const std::vector<uint8_t> chunk(1 << 20, 'a');
  for (int i = 0; i < 6; ++i) (*queue)->push_output(0, sink, chunk);
  (*queue)->dispatch([] { return true; });
  CHECK(delivered == CallbackQueue::kMaxQueuedOutputBytes);
  CHECK((*queue)->take_dropped_bytes() == 6 * chunk.size() - CallbackQueue::kMaxQueuedOutputBytes);
  CHECK((*queue)->take_dropped_bytes() == 0);
  // After a dispatch there is room again.
  (*queue)->push_output(0, sink, chunk);
  (*queue)->dispatch([] { return true; });
  CHECK(delivered == CallbackQueue::kMaxQueuedOutputBytes + chunk.size());
}
