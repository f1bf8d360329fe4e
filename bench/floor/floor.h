/* The floor: the least a VMM can do to run a guest on KVM. It makes the
 * same KVM ioctls as libcrosvm, in the same order (capability checks,
 * VM, memory slot, TSS and identity-map addresses, irqchip, PIT, vCPU
 * with CPUID, MSRs, FPU, LAPIC, long-mode registers, GSI routing and an
 * irqfd) and nothing else: no devices, threads, event loop, ACPI or
 * checks beyond what the guest needs to run (the boot floor adds a UART
 * that prints and a CMOS of zeros: floor_run_linux). Benchmarks compare libcrosvm
 * with it, so each figure says what the library adds to KVM's own cost. */
#ifndef CROSVM_BENCH_FLOOR_H
#define CROSVM_BENCH_FLOOR_H

#include <linux/kvm.h>
#include <stddef.h>
#include <stdint.h>

struct floor_vm {
  int kvm;
  int vm;
  int vcpu;
  int irq_event;
  uint8_t *memory;
  uint64_t memory_size;
  struct kvm_run *run;
  size_t run_size;
};

/* Creates the VM with `memory_mib` of RAM at guest address 0 and one vCPU.
 * Exits the program with a message on any failure. */
void floor_vm_create(struct floor_vm *vm, uint64_t memory_mib);
void floor_vm_destroy(struct floor_vm *vm);

/* MADV_HUGEPAGE on guest RAM, as libcrosvm does after loading the guest. */
void floor_advise_huge_pages(struct floor_vm *vm);

/* Loads a tiny guest (an ELF executable whose physical addresses are its
 * load addresses) and points the vCPU at its entry in 64-bit mode. */
void floor_load_elf(struct floor_vm *vm, const char *path);

/* Loads a bzImage and an initrd as the 64-bit Linux boot protocol wants
 * them (kernel at 1 MiB, initrd high, boot_params with an e820 map and the
 * command line) and points the vCPU at the kernel's 64-bit entry. */
void floor_load_linux(struct floor_vm *vm, const char *kernel, const char *initrd,
                      const char *cmdline);

/* KVM_RUN once; returns the exit reason. */
uint32_t floor_run_once(struct floor_vm *vm);

/* The ports the tiny guests use. */
#define FLOOR_COM1 0x3f8
#define FLOOR_COM1_LINE_STATUS 0x3fd
#define FLOOR_PM1A_CONTROL 0x604

/* Runs until the guest writes the ACPI PM1a control port (power off).
 * Port reads of COM1's line status say "ready"; every other port read is
 * all-ones and every write vanishes. `on_output` (may be NULL) sees each
 * byte written to COM1. Returns 0, or -1 when the guest stopped otherwise. */
int floor_run_until_power_off(struct floor_vm *vm, void (*on_output)(uint8_t byte, void *userdata),
                              void *userdata);

/* Runs a Linux guest until it resets (reboot=k) or shuts down: COM1 is an
 * 8250 that only prints (to stdout, a line at a time) and raises IRQ 4 when
 * its holding register empties; every other port reads all-ones and every
 * write vanishes. No PCI, no ACPI tables, no other device. Returns 0, or
 * -1 when the guest stopped otherwise. (And one more device, as little as
 * it can be: a CMOS that reads zeros, without which the kernel's RTC probe
 * waits 2.5 s for an update that never ends.) */
int floor_run_linux(struct floor_vm *vm);

uint64_t floor_now_ns(void);

#endif
