/* netrr: TCP request/response latency, the network benchmark's third figure
 * beside iperf3's two directions.
 *
 *   netrr server PORT              (in the guest) answers every byte it
 *                                  receives with one byte, connection after
 *                                  connection, until killed
 *   netrr client HOST PORT SECONDS (on the host) one connection with
 *                                  TCP_NODELAY: a byte out, a byte back,
 *                                  again, for SECONDS; prints one line:
 *   netrr: transactions=N transactions_per_s=T mean_us=M p50_us=P p99_us=Q
 *
 * Built static: the guest's initramfs has no C library. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

enum { kMaxSamples = 1 << 20 };

static double now_seconds(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

static void fail(const char *what) {
  perror(what);
  exit(1);
}

static int parse_port(const char *text) {
  char *end;
  long port = strtol(text, &end, 10);
  if (*end != 0 || port < 1 || port > 65535) {
    fprintf(stderr, "netrr: '%s' is not a port\n", text);
    exit(2);
  }
  return (int)port;
}

_Noreturn static void serve(int port) {
  int listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listener < 0) fail("socket");
  int on = 1;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
  struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (bind(listener, (struct sockaddr *)&address, sizeof(address)) != 0) fail("bind");
  if (listen(listener, 4) != 0) fail("listen");
  for (;;) {
    int connection = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
    if (connection < 0) continue;
    setsockopt(connection, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
    char byte;
    while (read(connection, &byte, 1) == 1) {
      if (write(connection, &byte, 1) != 1) break;
    }
    close(connection);
  }
}

static int compare(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static int client(const char *host, int port, double seconds) {
  struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  if (inet_pton(AF_INET, host, &address.sin_addr) != 1) {
    fprintf(stderr, "netrr: '%s' is not an IPv4 address\n", host);
    return 2;
  }
  int connection = -1;
  /* The server may still be starting: try for up to 60 s. */
  for (double deadline = now_seconds() + 60;;) {
    connection = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (connection < 0) fail("socket");
    if (connect(connection, (struct sockaddr *)&address, sizeof(address)) == 0) break;
    close(connection);
    if (now_seconds() > deadline) fail("connect");
    usleep(100 * 1000);
  }
  int on = 1;
  setsockopt(connection, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
  double *samples = malloc(sizeof(double) * kMaxSamples);
  if (samples == NULL) fail("malloc");
  long transactions = 0;
  double total = 0;
  const double start = now_seconds();
  for (double before = start; before - start < seconds;) {
    char byte = 'x';
    if (write(connection, &byte, 1) != 1) fail("write");
    if (read(connection, &byte, 1) != 1) fail("read");
    const double after = now_seconds();
    if (transactions < kMaxSamples) samples[transactions] = after - before;
    total += after - before;
    ++transactions;
    before = after;
  }
  close(connection);
  if (transactions == 0) {
    fprintf(stderr, "netrr: no transaction completed\n");
    return 1;
  }
  const long kept = transactions < kMaxSamples ? transactions : kMaxSamples;
  qsort(samples, (size_t)kept, sizeof(double), compare);
  printf("netrr: transactions=%ld transactions_per_s=%.1f mean_us=%.1f p50_us=%.1f p99_us=%.1f\n", transactions,
         (double)transactions / total, total / (double)transactions * 1e6, samples[kept / 2] * 1e6,
         samples[kept * 99 / 100] * 1e6);
  free(samples);
  return 0;
}

int main(int argc, char **argv) {
  if (argc == 3 && strcmp(argv[1], "server") == 0) serve(parse_port(argv[2]));
  if (argc == 5 && strcmp(argv[1], "client") == 0) {
    const double seconds = atof(argv[4]);
    if (seconds <= 0) {
      fprintf(stderr, "netrr: '%s' is not a duration in seconds\n", argv[4]);
      return 2;
    }
    return client(argv[2], parse_port(argv[3]), seconds);
  }
  fprintf(stderr, "usage: netrr server PORT | netrr client HOST PORT SECONDS\n");
  return 2;
}
