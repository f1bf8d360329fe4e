/* bench-ours: libcrosvm's side of the tiny-guest benchmarks, through its
 * public C ABI only (as an embedder would use it).
 *
 *   bench-ours exits GUEST            ns per port-write exit (port_writes.elf)
 *   bench-ours churn GUEST COUNT MIB  create, run to power-off, destroy: VMs per second
 * Prints one line of key=value pairs, like bench-floor. */
#define _POSIX_C_SOURCE 200809L
#include <crosvm/crosvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t now_ns(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
}

struct markers {
  uint64_t start_ns, end_ns;
  unsigned long count;
  int after_end;
};

/* Runs on the vCPU thread as the guest writes COM1 (CALLBACKS_ON_VM_THREADS). */
static void on_output(const uint8_t *data, size_t length, void *userdata) {
  struct markers *markers = userdata;
  for (size_t i = 0; i < length; ++i) {
    const uint8_t byte = data[i];
    if (byte == 'S' && markers->start_ns == 0) {
      markers->start_ns = now_ns();
    } else if (byte == 'E' && markers->end_ns == 0) {
      markers->end_ns = now_ns();
      markers->after_end = 1;
    } else if (markers->after_end && byte >= '0' && byte <= '9') {
      markers->count = markers->count * 10 + (unsigned long)(byte - '0');
    } else {
      markers->after_end = 0;
    }
  }
}

static int fail(const char *what) {
  fprintf(stderr, "bench-ours: %s: %s\n", what, crosvm_error_message());
  return 1;
}

/* Builds, runs to its end and destroys one VM; 0 when the guest powered off. */
static int run_vm(const char *guest, uint64_t mib, struct markers *markers) {
  crosvm_config *config;
  if (crosvm_config_create(&config) != CROSVM_OK) return fail("config");
  crosvm_config_set_memory_mib(config, mib);
  crosvm_config_set_kernel(config, guest);
  crosvm_config_set_log(config, CROSVM_LOG_WARNING, NULL, NULL);
  /* The machine the churn and exit figures were set against: a UART and no
   * virtio-rng (on by default since the three front ends agree on it). */
  crosvm_config_set_rng(config, 0);
  crosvm_serial_options serial = CROSVM_SERIAL_OPTIONS_INIT;
  serial.type = markers != NULL ? CROSVM_SERIAL_CALLBACK : CROSVM_SERIAL_SINK;
  serial.callback = on_output;
  serial.userdata = markers;
  crosvm_config_add_serial(config, &serial);
  crosvm_vm *vm;
  if (crosvm_vm_create(&vm, config) != CROSVM_OK) return fail("create");
  crosvm_config_destroy(config);
  crosvm_exit_reason reason;
  if (crosvm_vm_run(&reason, vm) != CROSVM_OK) return fail("run");
  crosvm_vm_destroy(vm);
  if (reason != CROSVM_EXIT_POWEROFF) {
    fprintf(stderr, "bench-ours: the guest did not power off (exit reason %d)\n", (int)reason);
    return 1;
  }
  return 0;
}

static int usage(void) {
  fputs("usage: bench-ours exits GUEST | churn GUEST COUNT MIB\n", stderr);
  return 2;
}

int main(int argc, char **argv) {
  if (argc < 3) return usage();
  if (strcmp(argv[1], "exits") == 0 && argc == 3) {
    struct markers markers = {0};
    if (run_vm(argv[2], 64, &markers) != 0) return 1;
    if (markers.count == 0 || markers.end_ns <= markers.start_ns) {
      fputs("bench-ours: the guest did not report its writes\n", stderr);
      return 1;
    }
    printf("exits=%lu ns_per_exit=%.1f\n", markers.count,
           (double)(markers.end_ns - markers.start_ns) / (double)(markers.count + 1));
    return 0;
  }
  if (strcmp(argv[1], "churn") == 0 && argc == 5) {
    const long count = atol(argv[3]);
    const long mib = atol(argv[4]);
    if (count <= 0 || mib <= 0) return usage();
    const uint64_t start = now_ns();
    for (long i = 0; i < count; ++i) {
      if (run_vm(argv[2], (uint64_t)mib, NULL) != 0) return 1;
    }
    const double seconds = (double)(now_ns() - start) / 1e9;
    printf("vms=%ld seconds=%.6f vms_per_second=%.1f\n", count, seconds, (double)count / seconds);
    return 0;
  }
  return usage();
}
