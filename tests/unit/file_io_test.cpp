// Host file helpers: a reader that went away is an error, never SIGPIPE.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <string>

#include "base/file_io.h"

using namespace crosvm;

TEST_CASE("a write to a pipe whose reader left fails and raises no SIGPIPE", "[file-io][hostile]") {
  // SIGPIPE's default action ends the process: this test would die here.
  REQUIRE(::signal(SIGPIPE, SIG_DFL) != SIG_ERR);
  int ends[2];
  REQUIRE(::pipe2(ends, O_CLOEXEC) == 0);
  ::close(ends[0]);
  const std::string line = "output nobody reads\n";
  CHECK_FALSE(write_all(ends[1], std::span(reinterpret_cast<const uint8_t*>(line.data()), line.size())));
  sigset_t pending;
  sigpending(&pending);
  CHECK(sigismember(&pending, SIGPIPE) == 0);  // nothing left to be delivered later
  ::close(ends[1]);
}
