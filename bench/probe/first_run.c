/* An LD_PRELOAD probe for the set-up benchmark: at a process's first
 * KVM_RUN (its first guest instruction), it writes the CPU time the whole
 * process has used so far (all threads, since exec) to the file named by
 * CROSVM_BENCH_FIRST_RUN, in nanoseconds, then the CPU time its child
 * processes have used until then (a jailed device's, from its clone on:
 * every thread's /proc schedstat), and ends the process. It wraps ioctl(),
 * so it sees the same moment in any VMM: libcrosvm's launcher, the floor,
 * QEMU. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* The first number in the file at `path` (schedstat's: ns on a CPU), or 0. */
static long long first_number(const char *path) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char text[128];
  ssize_t length = read(fd, text, sizeof(text) - 1);
  close(fd);
  if (length <= 0) return 0;
  text[length] = 0;
  return strtoll(text, NULL, 10);
}

/* Every thread of every child of every thread of this process. */
static long long children_cpu_ns(void) {
  long long total = 0;
  DIR *tasks = opendir("/proc/self/task");
  if (tasks == NULL) return 0;
  struct dirent *task;
  while ((task = readdir(tasks)) != NULL) {
    if (task->d_name[0] == '.') continue;
    char path[320];
    snprintf(path, sizeof(path), "/proc/self/task/%s/children", task->d_name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) continue;
    char list[4096];
    ssize_t length = read(fd, list, sizeof(list) - 1);
    close(fd);
    if (length <= 0) continue;
    list[length] = 0;
    char *cursor = list;
    for (;;) {
      char *end;
      const long child = strtol(cursor, &end, 10);
      if (end == cursor) break;
      cursor = end;
      if (child <= 0) continue;
      char threads_path[64];
      snprintf(threads_path, sizeof(threads_path), "/proc/%ld/task", child);
      DIR *threads = opendir(threads_path);
      if (threads == NULL) continue;
      struct dirent *thread;
      while ((thread = readdir(threads)) != NULL) {
        if (thread->d_name[0] == '.') continue;
        char stat_path[320];
        snprintf(stat_path, sizeof(stat_path), "/proc/%ld/task/%s/schedstat", child, thread->d_name);
        total += first_number(stat_path);
      }
      closedir(threads);
    }
  }
  closedir(tasks);
  return total;
}

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
        char line[64];
        int length = snprintf(line, sizeof(line), "%lld %lld\n",
                              (long long)used.tv_sec * 1000000000LL + used.tv_nsec, children_cpu_ns());
        if (write(out, line, (size_t)length) != length) _exit(3);
        close(out);
      }
    }
    _exit(0);
  }
  return (int)syscall(SYS_ioctl, fd, request, argument);
}
