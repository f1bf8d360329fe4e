/* blkbench: the block benchmark, run inside the guest on a virtio-blk disk,
 * and on the host on the image itself (the floor).
 *
 *   blkbench [--buffered] DEVICE MIB OPS
 *
 * Writes MIB MiB sequentially in 1 MiB requests and flushes (fdatasync),
 * reads them back in 1 MiB requests, then, inside those MIB MiB at offsets
 * that are the same in every run: OPS random 4 KiB reads and OPS random
 * 4 KiB writes one at a time (queue depth 1), then 4 * OPS reads and
 * 4 * OPS writes with 32 in flight (32 threads, each doing its share one at
 * a time), and a flush after the writes. In the guest DEVICE is opened
 * with O_DIRECT (no guest page cache: every request reaches the device);
 * --buffered opens it as a VMM opens an image (no O_DIRECT), which is the
 * same I/O a host program would do straight on the image. Times come from
 * CLOCK_MONOTONIC. Prints one line:
 *   blkbench: seq_write_mib_s=W seq_read_mib_s=R rand_read_iops=I
 *     rand_write_iops=I rand_read_qd32_iops=I rand_write_qd32_iops=I
 * Built static: the guest's initramfs has no C library. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

enum { kLargeRequest = 1 << 20, kSmallRequest = 4096, kDepth = 32 };

static double now_seconds(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

static void fail(const char *what) {
  perror(what);
  exit(1);
}

/* One stream of random 4 KiB requests: its own offsets (xorshift64). */
struct Stream {
  int fd;
  int write;
  long count;
  uint64_t blocks;
  uint64_t state;
  void *buffer;
};

static void *run_stream(void *argument) {
  struct Stream *stream = argument;
  for (long i = 0; i < stream->count; ++i) {
    stream->state ^= stream->state << 13;
    stream->state ^= stream->state >> 7;
    stream->state ^= stream->state << 17;
    const off_t offset = (off_t)((stream->state % stream->blocks) * kSmallRequest);
    const ssize_t done = stream->write ? pwrite(stream->fd, stream->buffer, kSmallRequest, offset)
                                       : pread(stream->fd, stream->buffer, kSmallRequest, offset);
    if (done != kSmallRequest) fail(stream->write ? "pwrite 4k" : "pread 4k");
  }
  return NULL;
}

/* `total` random requests from `depth` streams at once; returns per second. */
static double random_iops(int fd, int write, long total, uint64_t blocks, int depth) {
  struct Stream streams[kDepth];
  pthread_t threads[kDepth];
  for (int i = 0; i < depth; ++i) {
    streams[i] = (struct Stream){fd, write, total / depth, blocks, 0x9e3779b97f4a7c15ull * (uint64_t)(i + 1), NULL};
    if (posix_memalign(&streams[i].buffer, 4096, kSmallRequest) != 0) fail("posix_memalign");
    memset(streams[i].buffer, 0x3c + i, kSmallRequest);
  }
  const double start = now_seconds();
  if (depth == 1) {
    run_stream(&streams[0]);
  } else {
    for (int i = 0; i < depth; ++i) {
      if (pthread_create(&threads[i], NULL, run_stream, &streams[i]) != 0) fail("pthread_create");
    }
    for (int i = 0; i < depth; ++i) pthread_join(threads[i], NULL);
  }
  if (write && fdatasync(fd) != 0) fail("fdatasync");
  const double seconds = now_seconds() - start;
  for (int i = 0; i < depth; ++i) free(streams[i].buffer);
  return (double)(total / depth * depth) / seconds;
}

int main(int argc, char **argv) {
  int buffered = 0;
  if (argc > 1 && strcmp(argv[1], "--buffered") == 0) {
    buffered = 1;
    ++argv;
    --argc;
  }
  if (argc != 4) {
    fputs("usage: blkbench [--buffered] DEVICE MIB OPS\n", stderr);
    return 2;
  }
  const long mib = atol(argv[2]);
  const long ops = atol(argv[3]);
  if (mib <= 0 || ops <= 0) {
    fputs("blkbench: MIB and OPS must be positive\n", stderr);
    return 2;
  }
  const int fd = open(argv[1], O_RDWR | O_CLOEXEC | (buffered ? 0 : O_DIRECT));
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

  const uint64_t blocks = (uint64_t)mib * (kLargeRequest / kSmallRequest);
  const double read_iops = random_iops(fd, 0, ops, blocks, 1);
  const double write_iops = random_iops(fd, 1, ops, blocks, 1);
  const double read_qd32_iops = random_iops(fd, 0, 4 * ops, blocks, kDepth);
  const double write_qd32_iops = random_iops(fd, 1, 4 * ops, blocks, kDepth);
  close(fd);

  printf("blkbench: seq_write_mib_s=%.1f seq_read_mib_s=%.1f rand_read_iops=%.0f rand_write_iops=%.0f "
         "rand_read_qd32_iops=%.0f rand_write_qd32_iops=%.0f\n",
         (double)mib / write_seconds, (double)mib / read_seconds, read_iops, write_iops, read_qd32_iops,
         write_qd32_iops);
  return 0;
}
