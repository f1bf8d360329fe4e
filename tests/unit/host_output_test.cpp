// Serial output bound for a host fd: batched off the vCPU thread, in order,
// nothing lost when the VM stops, and bounded when nobody flushes.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <future>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

#include "temp_dir.h"
#include "base/event_loop.h"
#include "vm/host_output.h"
#include "hang_guard.h"

using namespace crosvm;

namespace {

std::span<const uint8_t> bytes_of(const std::string& text) {
  return {reinterpret_cast<const uint8_t*>(text.data()), text.size()};
}

std::string contents(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

struct OutputFile {
  TempDir directory{"crosvm-host-output"};
  std::string path = directory.file("out");
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
  ~OutputFile() { ::close(fd); }
};

}  // namespace

TEST_CASE("host output is written by the loop, not by the writer, and keeps its order",
          "[host-output]") {
  OutputFile file;
  EventLoop loop;
  auto output = std::make_shared<HostOutput>(loop, file.fd);

  output->write_waiting(bytes_of("hel"));
  output->write_waiting(bytes_of("lo"));
  CHECK(contents(file.path).empty());  // the loop has not run yet

  REQUIRE(loop.start_threads(1).ok());
  const auto deadline = std::chrono::steady_clock::now() + crosvm::testing::kHangGuard;
  while (contents(file.path) != "hello" && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  CHECK(contents(file.path) == "hello");
  loop.stop();
}

TEST_CASE("flush writes what is pending at once, and the destructor writes the rest",
          "[host-output]") {
  OutputFile file;
  EventLoop loop;  // never started: only flush() and the destructor write
  {
    auto output = std::make_shared<HostOutput>(loop, file.fd);
    output->write_waiting(bytes_of("last "));
    output->flush();
    CHECK(contents(file.path) == "last ");
    output->write_waiting(bytes_of("words"));
  }
  CHECK(contents(file.path) == "last words");
}

TEST_CASE("a writer that fills the buffer writes it itself instead of growing it",
          "[host-output]") {
  OutputFile file;
  EventLoop loop;  // never started
  auto output = std::make_shared<HostOutput>(loop, file.fd);
  const std::string chunk(1024, 'x');
  for (size_t written = 0; written < HostOutput::kMaxPending; written += chunk.size()) {
    output->write_waiting(bytes_of(chunk));
  }
  CHECK(contents(file.path).size() == HostOutput::kMaxPending);
  output->write_waiting(bytes_of("y"));
  CHECK(contents(file.path).size() == HostOutput::kMaxPending);
  output->flush();
  CHECK(contents(file.path) == std::string(HostOutput::kMaxPending, 'x') + "y");
}

TEST_CASE("a reader that stops reading does not hold up the loop, and loses nothing",
          "[host-output]") {
  int ends[2];
  REQUIRE(::pipe2(ends, O_CLOEXEC) == 0);
  // Fill the pipe, then make its write end blocking again, as a terminal's
  // or a harness's stdout is.
  ::fcntl(ends[1], F_SETFL, O_NONBLOCK);
  const std::string filler(4096, 'f');
  size_t filled = 0;
  while (::write(ends[1], filler.data(), filler.size()) > 0) filled += filler.size();
  ::fcntl(ends[1], F_SETFL, 0);

  EventLoop loop;
  REQUIRE(loop.start_threads(1).ok());
  {
    auto output = std::make_shared<HostOutput>(loop, ends[1]);
    // Should the loop be stuck in a write after all (a failure), the pipe is
    // drained before anything waits for the loop, so the test fails, not hangs.
    struct Drain {
      int fd;
      ~Drain() {
        ::fcntl(fd, F_SETFL, O_NONBLOCK);
        char sink[4096];
        for (int quiet = 0; quiet < 5;) {
          if (::read(fd, sink, sizeof(sink)) > 0) continue;
          ++quiet;
          std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
      }
    } drain{ends[0]};
    output->write_waiting(bytes_of("prompt$ "));
    // The loop's flush found the pipe full; the loop goes on serving.
    auto served = std::make_shared<std::promise<void>>();
    loop.post([served] { served->set_value(); });
    REQUIRE(served->get_future().wait_for(crosvm::testing::kHangGuard) == std::future_status::ready);

    // Once the reader reads again, the output follows without another write.
    std::string received;
    char buffer[4096];
    const auto deadline = std::chrono::steady_clock::now() + crosvm::testing::kHangGuard;
    while (received.size() < filled + 8 && std::chrono::steady_clock::now() < deadline) {
      pollfd readable{ends[0], POLLIN, 0};
      if (::poll(&readable, 1, 100) <= 0) continue;
      const ssize_t n = ::read(ends[0], buffer, sizeof(buffer));
      if (n > 0) received.append(buffer, static_cast<size_t>(n));
    }
    CHECK(received == std::string(filled, 'f') + "prompt$ ");
  }
  loop.stop();
  ::close(ends[0]);
  ::close(ends[1]);
}

TEST_CASE("a device's write takes only what fits and is told when there is room again",
          "[host-output][hostile]") {
  OutputFile file;
  EventLoop loop;  // never started: only flush() writes
  auto output = std::make_shared<HostOutput>(loop, file.fd);
  const std::string big(HostOutput::kMaxPending + 1000, 'b');
  CHECK(output->write_some(bytes_of(big)) == HostOutput::kMaxPending);
  CHECK(output->write_some(bytes_of("more")) == 0);  // full: nothing is queued beyond the bound
  bool told = false;
  output->when_writable([&] { told = true; });
  CHECK_FALSE(told);
  output->flush();
  CHECK(told);
  CHECK(contents(file.path) == std::string(HostOutput::kMaxPending, 'b'));
  bool at_once = false;
  output->when_writable([&] { at_once = true; });  // room now: told at once
  CHECK(at_once);
}

TEST_CASE("a writer that never pauses does not keep the loop to itself", "[host-output][hostile]") {
  // A guest printing as fast as it can to a file the host writes quickly:
  // the loop writes in bounded turns and still serves its other work.
  const int null = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
  REQUIRE(null >= 0);
  EventLoop loop;
  REQUIRE(loop.start_threads(1).ok());
  auto output = std::make_shared<HostOutput>(loop, null);
  std::atomic<bool> writing{true};
  std::thread writer([&] {
    const std::string chunk(4096, 'w');
    while (writing) (void)output->write_some(bytes_of(chunk));
  });
  std::promise<void> served;
  for (int i = 0; i < 100; ++i) loop.post([] {});
  loop.post([&] { served.set_value(); });
  CHECK(served.get_future().wait_for(crosvm::testing::kHangGuard) == std::future_status::ready);
  writing = false;
  writer.join();
  loop.stop();
  ::close(null);
}

TEST_CASE("bytes written one at a time leave in batches, not a write each", "[host-output]") {
  // A seqpacket socket keeps each write() a packet of its own, so the reader
  // counts the writes.
  int ends[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ends) == 0);
  EventLoop loop;
  REQUIRE(loop.start_threads(1).ok());
  constexpr size_t kBytes = 50;
  {
    auto output = std::make_shared<HostOutput>(loop, ends[0]);
    // As a UART's vCPU writes a line: a byte, an exit's worth of time (20 us,
    // long enough for the loop to wake between bytes), the next; all of it
    // well within kCoalesce.
    for (size_t i = 0; i < kBytes; ++i) {
      const uint8_t byte = static_cast<uint8_t>('a' + i % 26);
      output->write_waiting(std::span(&byte, 1));
      const auto pause = std::chrono::steady_clock::now() + std::chrono::microseconds(20);
      while (std::chrono::steady_clock::now() < pause) {
      }
    }
    std::string received;
    size_t packets = 0;
    const auto deadline = std::chrono::steady_clock::now() + crosvm::testing::kHangGuard;
    while (received.size() < kBytes && std::chrono::steady_clock::now() < deadline) {
      pollfd readable{ends[1], POLLIN, 0};
      if (::poll(&readable, 1, 100) != 1) continue;
      char packet[4096];
      const ssize_t got = ::read(ends[1], packet, sizeof(packet));
      REQUIRE(got > 0);
      received.append(packet, static_cast<size_t>(got));
      ++packets;
    }
    REQUIRE(received.size() == kBytes);
    CHECK(received.substr(0, 3) == "abc");
    // One batch, unless this machine stalled the writer for longer than
    // HostOutput::kCoalesce in the middle; a flush per byte made ~kBytes.
    CHECK(packets <= 4);
  }
  loop.stop();
  ::close(ends[0]);
  ::close(ends[1]);
}

namespace {

// Every datagram waiting on `fd` until `count` have come (or the guard).
std::vector<std::string> receive_datagrams(int fd, size_t count) {
  std::vector<std::string> received;
  const auto deadline = std::chrono::steady_clock::now() + crosvm::testing::kHangGuard;
  while (received.size() < count && std::chrono::steady_clock::now() < deadline) {
    pollfd readable{fd, POLLIN, 0};
    if (::poll(&readable, 1, 100) != 1) continue;
    char datagram[4096];
    const ssize_t got = ::recv(fd, datagram, sizeof(datagram), 0);
    REQUIRE(got >= 0);
    received.emplace_back(datagram, static_cast<size_t>(got));
  }
  return received;
}

}  // namespace

TEST_CASE("to a datagram socket, output goes a line per datagram", "[host-output]") {
  int ends[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, ends) == 0);
  EventLoop loop;
  REQUIRE(loop.start_threads(1).ok());
  {
    auto output = std::make_shared<HostOutput>(loop, ends[0], nullptr, HostOutput::Datagrams{});
    // Lines split across writes and joined in one, CR LF endings, an empty
    // line, a line longer than a datagram's, and an unfinished one.
    output->write_waiting(bytes_of("first li"));
    output->write_waiting(bytes_of("ne\r\nsecond\n\nthird\n"));
    const std::string long_line(HostOutput::kMaxLine + 10, 'x');
    output->write_waiting(bytes_of(long_line + "\nprompt$ "));
    const std::vector<std::string> lines = receive_datagrams(ends[1], 6);
    REQUIRE(lines.size() == 6);
    CHECK(lines[0] == "first line");
    CHECK(lines[1] == "second");
    CHECK(lines[2].empty());
    CHECK(lines[3] == "third");
    CHECK(lines[4] == std::string(HostOutput::kMaxLine, 'x'));
    CHECK(lines[5] == std::string(10, 'x'));
    // The prompt waits for its newline; the VM's stop (flush) sends it.
    pollfd readable{ends[1], POLLIN, 0};
    CHECK(::poll(&readable, 1, 50) == 0);
    output->flush();
    CHECK(receive_datagrams(ends[1], 1) == std::vector<std::string>{"prompt$ "});
  }
  loop.stop();
  ::close(ends[0]);
  ::close(ends[1]);
}

TEST_CASE("a datagram reader that falls behind loses no line, and each datagram has its header",
          "[host-output][hostile]") {
  int ends[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, ends) == 0);
  EventLoop loop;
  REQUIRE(loop.start_threads(1).ok());
  // More lines than the socket queues (its max_dgram_qlen is 10 by
  // default, and its buffer a few hundred KiB): the loop waits for room and
  // never drops one while the reader is there.
  constexpr size_t kLines = 2000;
  {
    auto output = std::make_shared<HostOutput>(loop, ends[0], nullptr,
                                               HostOutput::Datagrams{[] { return std::string("<14>tag: "); }});
    std::thread writer([&] {
      for (size_t i = 0; i < kLines; ++i) output->write_waiting(bytes_of(fmt::format("line {}\n", i)));
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // the queue fills meanwhile
    const std::vector<std::string> received = receive_datagrams(ends[1], kLines);
    writer.join();
    REQUIRE(received.size() == kLines);
    for (size_t i = 0; i < kLines; ++i) {
      INFO(i);
      CHECK(received[i] == fmt::format("<14>tag: line {}", i));
    }
  }
  loop.stop();
  ::close(ends[0]);
  ::close(ends[1]);
}
