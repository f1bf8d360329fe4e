// The guest tests need a KVM; without one they are skipped (exit 77), with
// the reason on stdout.
#define CATCH_CONFIG_RUNNER
#include <fcntl.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>

int main(int argc, char** argv) {
  const int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    std::printf("skipped: /dev/kvm cannot be opened (%s)\n", std::strerror(errno));
    return 77;
  }
  ::close(fd);
  return Catch::Session().run(argc, argv);
}
