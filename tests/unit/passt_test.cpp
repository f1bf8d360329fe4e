// User-mode networking: passt's length-prefixed stream (frames whole or
// not at all, a peer out of step is an error), the host program beside the
// VM (its lines relayed, its exit reported, nothing left behind), and the
// real passt answering a guest's ARP request in a network namespace of the
// test's own.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "devices/registry.h"
#include "devices/virtio/net/net.h"
#include "devices/virtio/net/passt.h"
#include "devices/virtio/net/stream.h"
#include "hang_guard.h"
#include "sandbox/companion.h"

using namespace crosvm;
using namespace crosvm::virtio;
using crosvm::testing::eventually;

namespace {

struct StreamPair {
  StreamPair() {
    int pair[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
    peer.reset(pair[1]);
    stream = std::move(FrameStream::create(UniqueFd(pair[0]), "passt").value());
  }
  void write_raw(const std::string& bytes) const {
    REQUIRE(::write(peer.get(), bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
  }
  std::unique_ptr<FrameStream> stream;
  UniqueFd peer;
};

std::string prefixed(const std::string& frame) {
  const auto length = static_cast<uint32_t>(frame.size());
  std::string bytes{static_cast<char>(length >> 24), static_cast<char>(length >> 16), static_cast<char>(length >> 8),
                    static_cast<char>(length)};
  return bytes + frame;
}

std::string receive(FrameStream& stream) {
  std::vector<uint8_t> buffer(kMaxFrameBytes);
  auto got = stream.receive(buffer);
  REQUIRE(got.ok());
  return std::string(buffer.begin(), buffer.begin() + static_cast<ptrdiff_t>(*got));
}

// Reads everything the peer end holds, for `wanted` bytes at most.
std::string drain(int fd, size_t wanted) {
  std::string bytes;
  char chunk[65536];
  while (bytes.size() < wanted) {
    const ssize_t got = ::read(fd, chunk, std::min(sizeof(chunk), wanted - bytes.size()));
    if (got <= 0) break;
    bytes.append(chunk, static_cast<size_t>(got));
  }
  return bytes;
}

struct Lines {
  Logger logger() {
    return Logger(
        [this](LogLevel, std::string_view line) {
          std::lock_guard lock(mutex);
          lines.emplace_back(line);
        },
        LogLevel::kDebug);
  }
  bool has(std::string_view text) {
    std::lock_guard lock(mutex);
    for (const std::string& line : lines) {
      if (line.find(text) != std::string::npos) return true;
    }
    return false;
  }
  std::mutex mutex;
  std::vector<std::string> lines;
};

}  // namespace

TEST_CASE("passt's stream: frames in pieces come out whole, one at a time", "[net][passt]") {
  StreamPair pair;
  const std::string first(1500, 'a'), second(60, 'b');
  const std::string bytes = prefixed(first) + prefixed(second);
  // A prefix cut in two, the frame in three.
  pair.write_raw(bytes.substr(0, 2));
  CHECK(receive(*pair.stream).empty());
  pair.write_raw(bytes.substr(2, 700));
  CHECK(receive(*pair.stream).empty());
  pair.write_raw(bytes.substr(702));
  CHECK(receive(*pair.stream) == first);
  // The second frame was left on the socket: it is still readable.
  pollfd entry{pair.stream->wait_fd(), POLLIN, 0};
  CHECK(::poll(&entry, 1, 0) == 1);
  CHECK(receive(*pair.stream) == second);
  CHECK(receive(*pair.stream).empty());
}

TEST_CASE("passt's stream: a length no NIC carries and a closed peer are errors; a frame too big is dropped",
          "[net][passt]") {
  {
    StreamPair pair;
    pair.write_raw(std::string("\x00\x10\x00\x00", 4));  // 1 MiB
    std::vector<uint8_t> buffer(kMaxFrameBytes);
    auto got = pair.stream->receive(buffer);
    REQUIRE_FALSE(got.ok());
    CHECK(got.error().message.find("out of step") != std::string::npos);
  }
  {
    StreamPair pair;
    pair.write_raw(prefixed("half").substr(0, 6));
    pair.peer.reset();
    std::vector<uint8_t> buffer(kMaxFrameBytes);
    auto got = pair.stream->receive(buffer);
    REQUIRE_FALSE(got.ok());
    CHECK(got.error().message.find("closed the connection") != std::string::npos);
  }
  {
    StreamPair pair;
    pair.write_raw(prefixed(std::string(2000, 'x')) + prefixed(std::string(100, 'y')));
    std::vector<uint8_t> small(1000);
    auto got = pair.stream->receive(small);
    REQUIRE(got.ok());
    CHECK(*got == 100);
    CHECK(small[0] == 'y');
  }
}

TEST_CASE("passt's stream: a frame goes whole after its length, or is dropped whole when there is no room",
          "[net][passt]") {
  StreamPair pair;
  const std::string head(14, 'h'), body(1000, 'p');
  const std::vector<iovec> frame{{const_cast<char*>(head.data()), head.size()},
                                 {const_cast<char*>(body.data()), body.size()}};
  REQUIRE(pair.stream->send(frame).value() == NetBackend::Sent::kSent);
  CHECK(drain(pair.peer.get(), 4 + 1014) == prefixed(head + body));

  // Fill the socket: every frame is either sent whole or refused whole, so
  // the peer parses exactly the frames that were sent.
  size_t sent = 0, dropped = 0;
  while (dropped == 0 || sent < 10) {
    auto result = pair.stream->send(frame);
    REQUIRE(result.ok());
    (*result == NetBackend::Sent::kSent ? sent : dropped)++;
    if (sent > 100000) FAIL("the socket never filled");
  }
  const std::string all = drain(pair.peer.get(), sent * (4 + 1014));
  REQUIRE(all.size() == sent * (4 + 1014));
  for (size_t i = 0; i < sent; ++i) CHECK(all.substr(i * 1018, 1018) == prefixed(head + body));
}

TEST_CASE("passt's stream: a frame the socket took in part is finished once the peer reads", "[net][passt]") {
  StreamPair pair;
  int small = 4096;
  REQUIRE(::setsockopt(pair.peer.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)) == 0);
  const std::string big(60000, 'z');
  const std::vector<iovec> frame{{const_cast<char*>(big.data()), big.size()}};
  std::string received;
  std::thread reader([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    received = drain(pair.peer.get(), 2 * (4 + big.size()));
  });
  auto first = pair.stream->send(frame);
  auto second = pair.stream->send(frame);
  reader.join();
  REQUIRE(first.ok());
  REQUIRE(second.ok());
  // The first cannot have been refused (the socket was empty); the second
  // may have been, but never in part.
  CHECK(*first == NetBackend::Sent::kSent);
  const size_t frames = *second == NetBackend::Sent::kSent ? 2 : 1;
  CHECK(received == (frames == 2 ? prefixed(big) + prefixed(big) : prefixed(big)));
}

TEST_CASE("net options: passt stands alone and its port lists are checked", "[net][passt]") {
  auto parse = [](std::string_view text) { return crosvm::parse_device_options(kNetKind, text); };
  CHECK(parse("passt").ok());
  CHECK(parse("passt=true,tcp-ports=\"2222:22,8080\",udp-ports=5353,mtu=9000").ok());
  CHECK(parse("passt,tap-name=a").error().message.find("exactly one of") != std::string::npos);
  CHECK(parse("tap-name=a,tcp-ports=22").error().message.find("tcp-ports= goes with passt") != std::string::npos);
  CHECK(parse("passt,tcp-ports=\"22 -x\"").error().message.find("' ' in the port list") != std::string::npos);
  CHECK(parse("passt,tcp-ports=-22").error().message.find("starts with '-'") != std::string::npos);
  CHECK(parse("passt,mtu=65521").error().message.find("mtu must be a number from 68 to 65520") != std::string::npos);
  CHECK(parse("passt,vq-pairs=2").error().message.find("passt is one queue") != std::string::npos);
  CHECK(check_port_spec("127.0.0.1/2222:22,~8000,80-90").ok());
}

TEST_CASE("a companion's lines reach the log, noise aside, and a failed exit is one more line", "[passt]") {
  Lines lines;
  auto companion = sandbox::Companion::start(
      {.name = "helper",
       .program = "/bin/sh",
       .arguments = {"-c", "echo 'said this'; echo 'noise here' >&2; exit 3"},
       .is_noise = [](std::string_view line) { return line.starts_with("noise"); }},
      lines.logger());
  REQUIRE(companion.ok());
  CHECK(eventually([&] { return lines.has("exited with status 3"); }));
  CHECK(lines.has("helper (pid "));
  CHECK(lines.has("said this"));
  CHECK_FALSE(lines.has("noise"));
  auto status = (*companion)->exited();
  REQUIRE(status.ok());
  REQUIRE(status->has_value());
  CHECK((*status)->code == 3);

  // Status 0 is an end that was asked for: nothing to say.
  Lines quiet;
  auto done = sandbox::Companion::start({.name = "done", .program = "/bin/true"}, quiet.logger());
  REQUIRE(done.ok());
  // Left unreaped a while, so that the relay would see the exit and say it.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CHECK_FALSE(quiet.has("exited"));
  CHECK(eventually([&] {
    auto ended = (*done)->exited();
    return ended.ok() && ended->has_value();
  }));
}

TEST_CASE("destroying a companion kills and reaps it, and says nothing of the kill", "[passt]") {
  Lines lines;
  pid_t pid;
  {
    auto companion = sandbox::Companion::start({.name = "sleeper", .program = "/bin/sleep", .arguments = {"600"}},
                                               lines.logger());
    REQUIRE(companion.ok());
    pid = (*companion)->pid();
    CHECK(::kill(pid, 0) == 0);
  }
  CHECK(::kill(pid, 0) == -1);  // reaped: not even a zombie is left
  CHECK_FALSE(lines.has("killed"));
  CHECK(sandbox::find_program("no-such-program-here").error().message.find("is not on PATH") != std::string::npos);
}

// The real thing: passt started as a VM starts it, in a network namespace
// with a TAP nobody reads and a default route through it (passt copies its addresses),
// answers an ARP request for its gateway.
TEST_CASE("passt started for a NIC answers an ARP request for the gateway", "[passt][root]") {
  if (::geteuid() != 0 || !sandbox::find_program("passt").ok() || !sandbox::find_program("ip").ok()) {
    WARN("needs root, passt and ip: skipped");
    return;
  }
  const std::string name = "crosvm-passt-" + std::to_string(::getpid());
  const std::string setup = "ip netns add " + name + " && ip -n " + name + " tuntap add dev d0 mode tap && ip -n " +
                            name + " addr add 10.0.2.15/24 dev d0 && ip -n " + name + " link set d0 up && ip -n " +
                            name + " route add default via 10.0.2.2";
  REQUIRE(std::system(setup.c_str()) == 0);
  struct Cleanup {
    std::string name;
    ~Cleanup() { (void)std::system(("ip netns del " + name).c_str()); }
  } cleanup{name};

  // Only the starting thread enters the namespace; passt inherits it.
  Lines lines;
  Result<StartedPasst> started = make_error(ErrorCode::kInternal, "not started");
  std::thread starter([&] {
    UniqueFd namespace_fd(::open(("/run/netns/" + name).c_str(), O_RDONLY | O_CLOEXEC));
    if (!namespace_fd || ::setns(namespace_fd.get(), CLONE_NEWNET) != 0) return;
    started = start_passt({.name = "virtio-net 0"}, lines.logger());
  });
  starter.join();
  REQUIRE(started.ok());
  auto stream = FrameStream::create(std::move(started->connection), "passt").value();

  // Who has 10.0.2.2? Tell 10.0.2.15 (52:54:00:12:34:56).
  const uint8_t mac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
  std::string request(6, '\xff');
  request.append(reinterpret_cast<const char*>(mac), 6);
  request += std::string("\x08\x06\x00\x01\x08\x00\x06\x04\x00\x01", 10);
  request.append(reinterpret_cast<const char*>(mac), 6);
  request += std::string("\x0a\x00\x02\x0f", 4) + std::string(6, '\0') + std::string("\x0a\x00\x02\x02", 4);
  const std::vector<iovec> frame{{request.data(), request.size()}};
  std::string reply;
  CHECK(eventually([&] {
    // passt may not read its socket yet: the request is sent again until
    // the answer comes.
    REQUIRE(stream->send(frame).ok());
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    for (std::string got = receive(*stream); !got.empty(); got = receive(*stream)) {
      if (got.size() >= 42 && got.substr(12, 2) == "\x08\x06" && got[21] == 2) reply = got;
    }
    return !reply.empty();
  }));
  REQUIRE(reply.size() >= 42);
  CHECK(reply.substr(0, 6) == std::string(reinterpret_cast<const char*>(mac), 6));  // to us
  CHECK(reply.substr(28, 4) == std::string("\x0a\x00\x02\x02", 4));                 // 10.0.2.2 is at...
  CHECK_FALSE(lines.has("rror"));
  const pid_t pid = started->process->pid();
  started->process.reset();
  CHECK(::kill(pid, 0) == -1);
}
