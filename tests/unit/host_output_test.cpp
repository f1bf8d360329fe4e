// Serial output bound for a host fd: batched off the vCPU thread, in order,
// nothing lost when the VM stops, and bounded when nobody flushes.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "temp_dir.h"
#include "vm/event_loop.h"
#include "vm/host_output.h"

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

  output->write(bytes_of("hel"));
  output->write(bytes_of("lo"));
  CHECK(contents(file.path).empty());  // the loop has not run yet

  REQUIRE(loop.start_threads(1).ok());
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
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
    output->write(bytes_of("last "));
    output->flush();
    CHECK(contents(file.path) == "last ");
    output->write(bytes_of("words"));
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
    output->write(bytes_of(chunk));
  }
  CHECK(contents(file.path).size() == HostOutput::kMaxPending);
  output->write(bytes_of("y"));
  CHECK(contents(file.path).size() == HostOutput::kMaxPending);
  output->flush();
  CHECK(contents(file.path) == std::string(HostOutput::kMaxPending, 'x') + "y");
}
