/* bench-floor: the floor side of the tiny-guest benchmarks.
 *
 *   bench-floor exits GUEST            ns per port-write exit (port_writes.elf)
 *   bench-floor churn GUEST COUNT MIB  create, run to power-off, destroy: VMs per second
 *   bench-floor setup KERNEL INITRD MIB CMDLINE
 *                                      a Linux configuration up to its first KVM_RUN
 *                                      (measured by the first_run probe)
 *   bench-floor boot KERNEL INITRD MIB CMDLINE
 *                                      the boot floor: that Linux run with nothing
 *                                      but a UART that prints, its console on stdout
 * Prints one line of key=value pairs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "floor.h"

struct markers {
  uint64_t start_ns, end_ns;
  unsigned long count;
  int after_end;
};

static void on_output(uint8_t byte, void *userdata) {
  struct markers *markers = userdata;
  if (byte == 'S' && markers->start_ns == 0) {
    markers->start_ns = floor_now_ns();
  } else if (byte == 'E' && markers->end_ns == 0) {
    markers->end_ns = floor_now_ns();
    markers->after_end = 1;
  } else if (markers->after_end && byte >= '0' && byte <= '9') {
    markers->count = markers->count * 10 + (unsigned long)(byte - '0');
  } else {
    markers->after_end = 0;
  }
}

static int usage(void) {
  fputs("usage: bench-floor exits GUEST | churn GUEST COUNT MIB | setup KERNEL INITRD MIB CMDLINE\n"
        "       bench-floor boot KERNEL INITRD MIB CMDLINE\n",
        stderr);
  return 2;
}

int main(int argc, char **argv) {
  if (argc < 3) return usage();
  struct floor_vm vm;
  if (strcmp(argv[1], "exits") == 0 && argc == 3) {
    struct markers markers = {0};
    floor_vm_create(&vm, 64);
    floor_load_elf(&vm, argv[2]);
    if (floor_run_until_power_off(&vm, on_output, &markers) != 0 || markers.count == 0 ||
        markers.end_ns <= markers.start_ns) {
      fputs("bench-floor: the guest did not report its writes\n", stderr);
      return 1;
    }
    floor_vm_destroy(&vm);
    printf("exits=%lu ns_per_exit=%.1f\n", markers.count,
           (double)(markers.end_ns - markers.start_ns) / (double)(markers.count + 1));
    return 0;
  }
  if (strcmp(argv[1], "churn") == 0 && argc == 5) {
    const long count = atol(argv[3]);
    const long mib = atol(argv[4]);
    if (count <= 0 || mib <= 0) return usage();
    const uint64_t start = floor_now_ns();
    for (long i = 0; i < count; ++i) {
      floor_vm_create(&vm, (uint64_t)mib);
      floor_load_elf(&vm, argv[2]);
      if (floor_run_until_power_off(&vm, NULL, NULL) != 0) return 1;
      floor_vm_destroy(&vm);
    }
    const double seconds = (double)(floor_now_ns() - start) / 1e9;
    printf("vms=%ld seconds=%.6f vms_per_second=%.1f\n", count, seconds, (double)count / seconds);
    return 0;
  }
  if (strcmp(argv[1], "setup") == 0 && argc == 6) {
    const long mib = atol(argv[4]);
    if (mib <= 0) return usage();
    floor_vm_create(&vm, (uint64_t)mib);
    const size_t length = strlen(argv[2]);
    if (length > 4 && strcmp(argv[2] + length - 4, ".elf") == 0) {
      floor_load_elf(&vm, argv[2]);  /* a tiny guest: the fixed cost alone */
    } else {
      floor_load_linux(&vm, argv[2], argv[3], argv[5]);
    }
    (void)floor_run_once(&vm);  /* the probe ends the process here */
    floor_vm_destroy(&vm);
    puts("first_run=done");
    return 0;
  }
  if (strcmp(argv[1], "boot") == 0 && argc == 6) {
    const long mib = atol(argv[4]);
    if (mib <= 0) return usage();
    floor_vm_create(&vm, (uint64_t)mib);
    floor_load_linux(&vm, argv[2], argv[3], argv[5]);
    floor_advise_huge_pages(&vm);
    const int status = floor_run_linux(&vm);
    floor_vm_destroy(&vm);
    return status == 0 ? 0 : 1;
  }
  return usage();
}
