/* bench-wakeups: what this machine charges for waking another thread, and
 * for waking another process, the price a device pays for running apart.
 *
 *   bench-wakeups ROUNDS
 *
 * Two eventfd round trips, each side blocked in read() until the other
 * writes: between two threads of one process (one address space, as the
 * VMM's vCPU and an in-process device's thread), then between two
 * processes (a switch of address space each way, as the VMM's vCPU and a
 * jailed device). Both sides share one CPU, as everything does in the
 * nested runner's one-CPU machine: on CPUs of their own neither would
 * switch address spaces at all. Prints one line of key=value pairs: ns per round trip
 * for each. A kernel on hardware with PCIDs charges little for the switch
 * of address space; an emulator that flushes its TLB on every CR3 write,
 * as the nested runner's does, charges much more, and the sandbox's rows
 * pay it twice per request. */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

struct pair {
  int there, back;
  long rounds;
};

static uint64_t now_ns(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
}

static int signal_fd(int fd) {
  const uint64_t one = 1;
  return write(fd, &one, sizeof one) == (ssize_t)sizeof one ? 0 : -1;
}

static int wait_fd(int fd) {
  uint64_t count;
  return read(fd, &count, sizeof count) == (ssize_t)sizeof count ? 0 : -1;
}

/* The far side: answers every wake-up with one of its own. */
static void *answer(void *argument) {
  const struct pair *pair = argument;
  for (long i = 0; i < pair->rounds; ++i) {
    if (wait_fd(pair->there) != 0 || signal_fd(pair->back) != 0) return (void *)1;
  }
  return NULL;
}

/* ns per round trip, the far side on a thread or in a process; -1 on error. */
static double round_trips(const struct pair *pair, int in_a_process) {
  pthread_t thread;
  pid_t child = -1;
  if (in_a_process) {
    child = fork();
    if (child < 0) return -1;
    if (child == 0) _exit(answer((void *)pair) == NULL ? 0 : 1);
  } else if (pthread_create(&thread, NULL, answer, (void *)pair) != 0) {
    return -1;
  }
  const uint64_t start = now_ns();
  int failed = 0;
  for (long i = 0; i < pair->rounds && !failed; ++i) {
    failed = signal_fd(pair->there) != 0 || wait_fd(pair->back) != 0;
  }
  const uint64_t took = now_ns() - start;
  if (in_a_process) {
    int status;
    if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0) failed = 1;
  } else {
    void *result;
    if (pthread_join(thread, &result) != 0 || result != NULL) failed = 1;
  }
  return failed ? -1 : (double)took / (double)pair->rounds;
}

int main(int argc, char **argv) {
  if (argc != 2 || atol(argv[1]) <= 0) {
    fputs("usage: bench-wakeups ROUNDS\n", stderr);
    return 2;
  }
  /* The CPU this started on, for both sides (a thread and a child inherit it). */
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(sched_getcpu(), &one);
  if (sched_setaffinity(0, sizeof one, &one) != 0) {
    perror("bench-wakeups: sched_setaffinity");
    return 1;
  }
  struct pair pair = {eventfd(0, EFD_CLOEXEC), eventfd(0, EFD_CLOEXEC), atol(argv[1])};
  if (pair.there < 0 || pair.back < 0) {
    perror("bench-wakeups: eventfd");
    return 1;
  }
  const double threads = round_trips(&pair, 0);
  const double processes = round_trips(&pair, 1);
  if (threads < 0 || processes < 0) {
    fputs("bench-wakeups: a round trip failed\n", stderr);
    return 1;
  }
  printf("thread_ns=%.0f process_ns=%.0f\n", threads, processes);
  return 0;
}
