/* An LD_PRELOAD probe for the set-up benchmark: at a process's first
 * KVM_RUN (its first guest instruction), it writes the CPU time the whole
 * process has used so far (all threads, since exec) to the file named by
 * CROSVM_BENCH_FIRST_RUN, in nanoseconds, and ends the process. It wraps
 * ioctl(), so it sees the same moment in any VMM: libcrosvm's launcher,
 * the floor, QEMU. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

__attribute__((visibility("default"))) int ioctl(int fd, unsigned long request, ...) {
  va_list args;
  va_start(args, request);
  void *argument = va_arg(args, void *);
  va_end(args);
  if (request == KVM_RUN) {
    struct timespec used;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &used);
    const char *path = getenv("CROSVM_BENCH_FIRST_RUN");
    if (path != NULL) {
      int out = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (out >= 0) {
        char line[32];
        int length = snprintf(line, sizeof(line), "%lld\n",
                              (long long)used.tv_sec * 1000000000LL + used.tv_nsec);
        if (write(out, line, (size_t)length) != length) _exit(3);
        close(out);
      }
    }
    _exit(0);
  }
  return (int)syscall(SYS_ioctl, fd, request, argument);
}
