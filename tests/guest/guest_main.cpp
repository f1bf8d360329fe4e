// The guest tests need a KVM; without one they are skipped (exit 77), with
// the reason on stdout.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "catch_session.h"

int main(int argc, char** argv) {
  const int fd = ::open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    std::printf("skipped: /dev/kvm cannot be opened (%s)\n", std::strerror(errno));
    return 77;
  }
  ::close(fd);
  return run_catch_tests(argc, argv);
}
