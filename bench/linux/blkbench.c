/* blkbench: the block benchmark, run inside the guest on a virtio-blk disk.
 *
 *   blkbench DEVICE MIB READS
 *
 * With O_DIRECT (no guest page cache): writes MIB MiB sequentially in 1 MiB
 * requests and flushes (fdatasync), reads them back in 1 MiB requests, then
 * makes READS random 4 KiB reads, one at a time, inside those MIB MiB.
 * Times come from the guest's CLOCK_MONOTONIC. Prints one line:
 *   blkbench: seq_write_mib_s=W seq_read_mib_s=R rand_read_iops=I
 * Built static: the guest's initramfs has no C library. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { kLargeRequest = 1 << 20, kSmallRequest = 4096 };

static double now_seconds(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

static void fail(const char *what) {
  perror(what);
  exit(1);
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fputs("usage: blkbench DEVICE MIB READS\n", stderr);
    return 2;
  }
  const long mib = atol(argv[2]);
  const long reads = atol(argv[3]);
  if (mib <= 0 || reads <= 0) {
    fputs("blkbench: MIB and READS must be positive\n", stderr);
    return 2;
  }
  const int fd = open(argv[1], O_RDWR | O_DIRECT | O_CLOEXEC);
  if (fd < 0) fail("open");
  void *buffer;
  if (posix_memalign(&buffer, 4096, kLargeRequest) != 0) fail("posix_memalign");
  memset(buffer, 0x5a, kLargeRequest);

  double start = now_seconds();
  for (long i = 0; i < mib; ++i) {
    if (pwrite(fd, buffer, kLargeRequest, (off_t)i * kLargeRequest) != kLargeRequest) fail("pwrite");
  }
  if (fdatasync(fd) != 0) fail("fdatasync");
  const double write_seconds = now_seconds() - start;

  start = now_seconds();
  for (long i = 0; i < mib; ++i) {
    if (pread(fd, buffer, kLargeRequest, (off_t)i * kLargeRequest) != kLargeRequest) fail("pread");
  }
  const double read_seconds = now_seconds() - start;

  uint64_t state = 0x9e3779b97f4a7c15ull;  /* xorshift64: the same offsets in every run */
  const uint64_t blocks = (uint64_t)mib * (kLargeRequest / kSmallRequest);
  start = now_seconds();
  for (long i = 0; i < reads; ++i) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    const off_t offset = (off_t)((state % blocks) * kSmallRequest);
    if (pread(fd, buffer, kSmallRequest, offset) != kSmallRequest) fail("pread 4k");
  }
  const double random_seconds = now_seconds() - start;
  close(fd);

  printf("blkbench: seq_write_mib_s=%.1f seq_read_mib_s=%.1f rand_read_iops=%.0f\n",
         (double)mib / write_seconds, (double)mib / read_seconds, (double)reads / random_seconds);
  return 0;
}
