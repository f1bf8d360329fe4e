/* vsockbench: the vsock benchmark's guest server and host client.
 *
 *   vsockbench server PORT
 *       (in the guest) serves AF_VSOCK connections one after another; the
 *       first byte of each says what it wants: 'S' sink (read to the end,
 *       then answer one byte), 'G' generate (an 8-byte little-endian count,
 *       then that many bytes back), 'E' echo (each byte back, to the end).
 *   vsockbench client TARGET PORT MIB SECONDS
 *       (on the host) TARGET is vsock:CID (the kernel's AF_VSOCK) or
 *       unix:PATH (a userspace vsock's socket: "CONNECT PORT\n", "OK ...").
 *       MIB to the guest, then MIB from it, then for SECONDS a new
 *       connection per round trip (connect, one byte each way, close);
 *       prints one line:
 *   vsockbench: host_to_guest_mib_s=A guest_to_host_mib_s=B connect_echo_us=C rounds=N
 *
 * Built static: the guest's initramfs has no C library. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/vm_sockets.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

enum { kChunk = 256 * 1024 };

static char buffer[kChunk];

static double now_seconds(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

static void fail(const char *what) {
  perror(what);
  exit(1);
}

static int write_all(int fd, const void *data, size_t length) {
  const char *bytes = data;
  while (length > 0) {
    ssize_t written = write(fd, bytes, length);
    if (written < 0 && errno == EINTR) continue;
    if (written <= 0) return -1;
    bytes += written;
    length -= (size_t)written;
  }
  return 0;
}

static int read_all(int fd, void *data, size_t length) {
  char *bytes = data;
  while (length > 0) {
    ssize_t got = read(fd, bytes, length);
    if (got < 0 && errno == EINTR) continue;
    if (got <= 0) return -1;
    bytes += got;
    length -= (size_t)got;
  }
  return 0;
}

static void serve_one(int connection) {
  char mode;
  if (read_all(connection, &mode, 1) != 0) return;
  if (mode == 'S') {
    ssize_t got;
    while ((got = read(connection, buffer, sizeof(buffer))) > 0) {
    }
    (void)write_all(connection, "k", 1);
  } else if (mode == 'G') {
    uint64_t count = 0;
    if (read_all(connection, &count, sizeof(count)) != 0) return;
    while (count > 0) {
      const size_t piece = count < sizeof(buffer) ? (size_t)count : sizeof(buffer);
      if (write_all(connection, buffer, piece) != 0) return;
      count -= piece;
    }
  } else if (mode == 'E') {
    char byte;
    while (read(connection, &byte, 1) == 1) {
      if (write(connection, &byte, 1) != 1) break;
    }
  }
}

_Noreturn static void serve(unsigned port) {
  int listener = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listener < 0) fail("socket");
  struct sockaddr_vm address = {.svm_family = AF_VSOCK, .svm_port = port, .svm_cid = VMADDR_CID_ANY};
  if (bind(listener, (struct sockaddr *)&address, sizeof(address)) != 0) fail("bind");
  if (listen(listener, 16) != 0) fail("listen");
  for (;;) {
    int connection = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
    if (connection < 0) continue;
    serve_one(connection);
    close(connection);
  }
}

/* A connection to the guest's PORT, or -1 (the guest refused, or is not
 * listening yet). */
static int open_connection(const char *target, unsigned port) {
  if (strncmp(target, "vsock:", 6) == 0) {
    int fd = socket(AF_VSOCK, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) fail("socket");
    struct sockaddr_vm address = {
        .svm_family = AF_VSOCK, .svm_port = port, .svm_cid = (unsigned)strtoul(target + 6, NULL, 10)};
    if (connect(fd, (struct sockaddr *)&address, sizeof(address)) == 0) return fd;
    close(fd);
    return -1;
  }
  if (strncmp(target, "unix:", 5) != 0) {
    fprintf(stderr, "vsockbench: '%s' is neither vsock:CID nor unix:PATH\n", target);
    exit(2);
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) fail("socket");
  struct sockaddr_un address = {.sun_family = AF_UNIX};
  snprintf(address.sun_path, sizeof(address.sun_path), "%s", target + 5);
  if (connect(fd, (struct sockaddr *)&address, sizeof(address)) != 0) {
    close(fd);
    return -1;
  }
  char line[32];
  const int length = snprintf(line, sizeof(line), "CONNECT %u\n", port);
  if (write_all(fd, line, (size_t)length) != 0) {
    close(fd);
    return -1;
  }
  /* "OK <port>\n", a byte at a time: what follows is the guest's. */
  size_t got = 0;
  while (got + 1 < sizeof(line) && read(fd, &line[got], 1) == 1 && line[got] != '\n') ++got;
  if (got < 3 || strncmp(line, "OK ", 3) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static int connect_retrying(const char *target, unsigned port) {
  for (double deadline = now_seconds() + 60;;) {
    int fd = open_connection(target, port);
    if (fd >= 0) return fd;
    if (now_seconds() > deadline) fail("connect");
    usleep(100 * 1000);
  }
}

static int client(const char *target, unsigned port, uint64_t mib, double seconds) {
  const uint64_t bytes = mib << 20;
  memset(buffer, 'v', sizeof(buffer));
  /* Host to guest: until the guest says it read everything. */
  int fd = connect_retrying(target, port);
  double start = now_seconds();
  if (write_all(fd, "S", 1) != 0) fail("write");
  for (uint64_t sent = 0; sent < bytes; sent += sizeof(buffer)) {
    if (write_all(fd, buffer, sizeof(buffer)) != 0) fail("write");
  }
  if (shutdown(fd, SHUT_WR) != 0) fail("shutdown");
  char ack;
  if (read_all(fd, &ack, 1) != 0) fail("read the guest's answer");
  const double to_guest = (double)mib / (now_seconds() - start);
  close(fd);
  /* Guest to host. */
  fd = connect_retrying(target, port);
  start = now_seconds();
  if (write_all(fd, "G", 1) != 0 || write_all(fd, &bytes, sizeof(bytes)) != 0) fail("write");
  uint64_t received = 0;
  ssize_t got;
  while ((got = read(fd, buffer, sizeof(buffer))) > 0) received += (uint64_t)got;
  if (received != bytes) {
    fprintf(stderr, "vsockbench: %llu bytes of %llu came back\n", (unsigned long long)received,
            (unsigned long long)bytes);
    return 1;
  }
  const double from_guest = (double)mib / (now_seconds() - start);
  close(fd);
  /* Connect and echo, a connection per round trip. */
  long rounds = 0;
  double total = 0;
  for (const double begin = now_seconds(); now_seconds() - begin < seconds;) {
    const double before = now_seconds();
    fd = open_connection(target, port);
    if (fd < 0) fail("connect");
    char byte = 'x';
    if (write_all(fd, "E", 1) != 0 || write_all(fd, &byte, 1) != 0 || read_all(fd, &byte, 1) != 0) {
      fail("echo");
    }
    close(fd);
    total += now_seconds() - before;
    ++rounds;
  }
  if (rounds == 0) return 1;
  printf("vsockbench: host_to_guest_mib_s=%.1f guest_to_host_mib_s=%.1f connect_echo_us=%.1f rounds=%ld\n",
         to_guest, from_guest, total / (double)rounds * 1e6, rounds);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "server") == 0) serve((unsigned)strtoul(argv[2], NULL, 10));
  if (argc == 6 && strcmp(argv[1], "client") == 0) {
    const double seconds = atof(argv[5]);
    const uint64_t mib = strtoull(argv[4], NULL, 10);
    if (seconds <= 0 || mib == 0) {
      fprintf(stderr, "vsockbench: MIB and SECONDS must be above 0\n");
      return 2;
    }
    return client(argv[2], (unsigned)strtoul(argv[3], NULL, 10), mib, seconds);
  }
  fprintf(stderr, "usage: vsockbench server PORT | vsockbench client vsock:CID|unix:PATH PORT MIB SECONDS\n");
  return 2;
}
