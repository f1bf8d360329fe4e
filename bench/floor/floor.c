#define _GNU_SOURCE
#include "floor.h"

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* The guest physical layout libcrosvm uses (lib/arch/x86_64/layout.h). */
enum {
  kGdtAddress = 0x500,
  kIdtAddress = 0x520,
  kZeroPage = 0x7000,
  kBootStack = 0x8ff0,
  kPml4 = 0x9000,
  kPdpt = 0xa000,
  kPageDirectories = 0xb000,
  kCmdline = 0x20000,
  kEbda = 0x9fc00,
  kKernelAddress = 0x100000,
};
static const uint64_t kTssAddress = 0xfffbd000;
static const uint64_t kIdentityMapAddress = 0xfffbc000;

static void die(const char *format, ...) {
  va_list args;
  va_start(args, format);
  fputs("floor: ", stderr);
  vfprintf(stderr, format, args);
  va_end(args);
  if (errno != 0) fprintf(stderr, ": %s", strerror(errno));
  fputc('\n', stderr);
  exit(1);
}

static int checked_ioctl(int fd, unsigned long request, void *argument, const char *what) {
  errno = 0;
  int result = ioctl(fd, request, argument);
  if (result < 0) die("%s", what);
  return result;
}

uint64_t floor_now_ns(void) {
  struct timespec now;
  clock_gettime(CLOCK_MONOTONIC, &now);
  return (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
}

static const long kExtensions[] = {
    KVM_CAP_USER_MEMORY, KVM_CAP_IRQCHIP,       KVM_CAP_PIT2,           KVM_CAP_SET_TSS_ADDR,
    KVM_CAP_EXT_CPUID,   KVM_CAP_IRQFD,         KVM_CAP_IOEVENTFD,      KVM_CAP_IMMEDIATE_EXIT,
    KVM_CAP_IRQ_ROUTING, KVM_CAP_MAX_VCPUS,     KVM_CAP_NR_VCPUS,       KVM_CAP_TSC_DEADLINE_TIMER,
};

static void set_msrs(int vcpu) {
  static const uint32_t kIndices[] = {0x174, 0x175, 0x176, 0xc0000081, 0xc0000083, 0xc0000102,
                                      0xc0000084, 0xc0000082, 0x10, 0x1a0, 0x2ff};
  enum { kCount = sizeof(kIndices) / sizeof(kIndices[0]) };
  struct {
    struct kvm_msrs header;
    struct kvm_msr_entry entries[kCount];
  } msrs;
  memset(&msrs, 0, sizeof(msrs));
  msrs.header.nmsrs = kCount;
  for (unsigned i = 0; i < kCount; ++i) msrs.entries[i].index = kIndices[i];
  msrs.entries[9].data = 1;                   /* IA32_MISC_ENABLE: fast strings */
  msrs.entries[10].data = (1u << 11) | 6;     /* MTRRs on, write-back by default */
  if (ioctl(vcpu, KVM_SET_MSRS, &msrs) != kCount) die("KVM_SET_MSRS");
}

static void set_lapic(int vcpu) {
  struct kvm_lapic_state lapic;
  checked_ioctl(vcpu, KVM_GET_LAPIC, &lapic, "KVM_GET_LAPIC");
  uint32_t lint0, lint1;
  memcpy(&lint0, &lapic.regs[0x350], 4);
  memcpy(&lint1, &lapic.regs[0x360], 4);
  lint0 = (lint0 & ~0x700u) | 0x700u; /* ExtINT */
  lint1 = (lint1 & ~0x700u) | 0x400u; /* NMI */
  memcpy(&lapic.regs[0x350], &lint0, 4);
  memcpy(&lapic.regs[0x360], &lint1, 4);
  checked_ioctl(vcpu, KVM_SET_LAPIC, &lapic, "KVM_SET_LAPIC");
}

/* GSIs 0-15 to the PICs and the IOAPIC, 16-23 to the IOAPIC, as KVM's
 * default table and libcrosvm's: a guest with no MP table or MADT (the
 * boot floor's) runs its interrupts through the PIC. */
static void route_interrupts(struct floor_vm *vm) {
  enum { kPins = 24, kPicPins = 16 };
  struct {
    struct kvm_irq_routing header;
    struct kvm_irq_routing_entry entries[kPins + kPicPins];
  } routing;
  memset(&routing, 0, sizeof(routing));
  for (uint32_t gsi = 0; gsi < kPins; ++gsi) {
    if (gsi == 2) continue;
    struct kvm_irq_routing_entry *entry = &routing.entries[routing.header.nr++];
    entry->gsi = gsi;
    entry->type = KVM_IRQ_ROUTING_IRQCHIP;
    entry->u.irqchip.irqchip = KVM_IRQCHIP_IOAPIC;
    entry->u.irqchip.pin = gsi == 0 ? 2 : gsi;
    if (gsi >= kPicPins) continue;
    entry = &routing.entries[routing.header.nr++];
    entry->gsi = gsi;
    entry->type = KVM_IRQ_ROUTING_IRQCHIP;
    entry->u.irqchip.irqchip = gsi < 8 ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE;
    entry->u.irqchip.pin = gsi % 8;
  }
  checked_ioctl(vm->vm, KVM_SET_GSI_ROUTING, &routing, "KVM_SET_GSI_ROUTING");
  vm->irq_event = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (vm->irq_event < 0) die("eventfd");
  struct kvm_irqfd irqfd = {.fd = (uint32_t)vm->irq_event, .gsi = 4};
  checked_ioctl(vm->vm, KVM_IRQFD, &irqfd, "KVM_IRQFD");
}

void floor_vm_create(struct floor_vm *vm, uint64_t memory_mib) {
  memset(vm, 0, sizeof(*vm));
  errno = 0;
  vm->kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (vm->kvm < 0) die("open /dev/kvm");
  if (ioctl(vm->kvm, KVM_GET_API_VERSION, 0) != KVM_API_VERSION) die("KVM API version");
  for (size_t i = 0; i < sizeof(kExtensions) / sizeof(kExtensions[0]); ++i) {
    (void)ioctl(vm->kvm, KVM_CHECK_EXTENSION, kExtensions[i]);
  }
  vm->vm = ioctl(vm->kvm, KVM_CREATE_VM, 0);
  if (vm->vm < 0) die("KVM_CREATE_VM");

  vm->memory_size = memory_mib << 20;
  /* At a 2 MiB boundary, as libcrosvm maps it, so that the host can back
   * it with huge pages (floor_advise_huge_pages). */
  enum { kHugePage = 2 << 20 };
  uint8_t *reserved = mmap(NULL, vm->memory_size + kHugePage, PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (reserved == MAP_FAILED) die("mmap guest memory");
  vm->memory = (uint8_t *)(((uintptr_t)reserved + kHugePage - 1) & ~(uintptr_t)(kHugePage - 1));
  if (vm->memory > reserved) munmap(reserved, (size_t)(vm->memory - reserved));
  munmap(vm->memory + vm->memory_size, (size_t)(reserved + kHugePage - vm->memory));
  struct kvm_userspace_memory_region region = {
      .slot = 0, .guest_phys_addr = 0, .memory_size = vm->memory_size,
      .userspace_addr = (uint64_t)(uintptr_t)vm->memory};
  checked_ioctl(vm->vm, KVM_SET_USER_MEMORY_REGION, &region, "KVM_SET_USER_MEMORY_REGION");

  if (ioctl(vm->vm, KVM_SET_TSS_ADDR, (unsigned long)kTssAddress) < 0) die("KVM_SET_TSS_ADDR");
  uint64_t identity = kIdentityMapAddress;
  checked_ioctl(vm->vm, KVM_SET_IDENTITY_MAP_ADDR, &identity, "KVM_SET_IDENTITY_MAP_ADDR");
  if (ioctl(vm->vm, KVM_CREATE_IRQCHIP, 0) < 0) die("KVM_CREATE_IRQCHIP");
  struct kvm_pit_config pit = {.flags = 0};
  checked_ioctl(vm->vm, KVM_CREATE_PIT2, &pit, "KVM_CREATE_PIT2");

  int run_size = ioctl(vm->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  if (run_size <= 0) die("KVM_GET_VCPU_MMAP_SIZE");
  vm->run_size = (size_t)run_size;
  enum { kMaxCpuid = 256 };
  struct kvm_cpuid2 *cpuid = calloc(1, sizeof(*cpuid) + kMaxCpuid * sizeof(struct kvm_cpuid_entry2));
  if (cpuid == NULL) die("out of memory");
  cpuid->nent = kMaxCpuid;
  checked_ioctl(vm->kvm, KVM_GET_SUPPORTED_CPUID, cpuid, "KVM_GET_SUPPORTED_CPUID");

  vm->vcpu = ioctl(vm->vm, KVM_CREATE_VCPU, 0);
  if (vm->vcpu < 0) die("KVM_CREATE_VCPU");
  vm->run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vm->vcpu, 0);
  if (vm->run == MAP_FAILED) die("mmap kvm_run");
  /* What a guest kernel needs to find KVM's paravirtual clock (the
   * hypervisor bit) and the LAPIC's deadline timer, as libcrosvm sets them. */
  const int tsc_deadline = ioctl(vm->kvm, KVM_CHECK_EXTENSION, KVM_CAP_TSC_DEADLINE_TIMER) > 0;
  for (uint32_t i = 0; i < cpuid->nent; ++i) {
    struct kvm_cpuid_entry2 *entry = &cpuid->entries[i];
    if (entry->function != 1) continue;
    entry->ecx |= 1u << 31;
    if (tsc_deadline) entry->ecx |= 1u << 24;
  }
  checked_ioctl(vm->vcpu, KVM_SET_CPUID2, cpuid, "KVM_SET_CPUID2");
  free(cpuid);
  set_msrs(vm->vcpu);
  struct kvm_fpu fpu;
  memset(&fpu, 0, sizeof(fpu));
  fpu.fcw = 0x37f;
  fpu.mxcsr = 0x1f80;
  checked_ioctl(vm->vcpu, KVM_SET_FPU, &fpu, "KVM_SET_FPU");
  set_lapic(vm->vcpu);
  route_interrupts(vm);
}

void floor_advise_huge_pages(struct floor_vm *vm) {
  (void)madvise(vm->memory, vm->memory_size, MADV_HUGEPAGE);
}

void floor_vm_destroy(struct floor_vm *vm) {
  munmap(vm->run, vm->run_size);
  munmap(vm->memory, vm->memory_size);
  close(vm->irq_event);
  close(vm->vcpu);
  close(vm->vm);
  close(vm->kvm);
}

static void *guest_span(struct floor_vm *vm, uint64_t address, uint64_t length) {
  if (address > vm->memory_size || length > vm->memory_size - address) {
    errno = 0;
    die("%#llx+%#llx is outside guest memory", (unsigned long long)address,
        (unsigned long long)length);
  }
  return vm->memory + address;
}

/* The GDT, identity-mapped 2 MiB pages for the first 4 GiB, and the
 * registers of a 64-bit entry, as libcrosvm (and Linux) expect them. */
static void enter_long_mode(struct floor_vm *vm, uint64_t entry_point) {
  static const uint64_t kGdt[] = {0, 0, 0x00af9b000000ffffull, 0x00cf93000000ffffull,
                                  0x008f8b000000ffffull};
  memcpy(guest_span(vm, kGdtAddress, sizeof(kGdt)), kGdt, sizeof(kGdt));
  memset(guest_span(vm, kIdtAddress, 8), 0, 8);
  uint64_t *pml4 = guest_span(vm, kPml4, 8);
  uint64_t *pdpt = guest_span(vm, kPdpt, 4 * 8);
  uint64_t *directories = guest_span(vm, kPageDirectories, 4 * 4096);
  pml4[0] = kPdpt | 3;
  for (uint64_t gib = 0; gib < 4; ++gib) {
    pdpt[gib] = (kPageDirectories + gib * 4096) | 3;
    for (uint64_t entry = 0; entry < 512; ++entry) {
      directories[gib * 512 + entry] = (gib << 30) | (entry << 21) | 0x83;
    }
  }

  struct kvm_sregs sregs;
  checked_ioctl(vm->vcpu, KVM_GET_SREGS, &sregs, "KVM_GET_SREGS");
  struct kvm_segment code = {.base = 0, .limit = 0xffffffff, .selector = 0x10, .type = 11,
                             .present = 1, .dpl = 0, .db = 0, .s = 1, .l = 1, .g = 1};
  struct kvm_segment data = {.base = 0, .limit = 0xffffffff, .selector = 0x18, .type = 3,
                             .present = 1, .dpl = 0, .db = 1, .s = 1, .l = 0, .g = 1};
  struct kvm_segment task = {.base = 0, .limit = 0xffffffff, .selector = 0x20, .type = 11,
                             .present = 1, .dpl = 0, .db = 0, .s = 0, .l = 0, .g = 1};
  sregs.cs = code;
  sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
  sregs.tr = task;
  sregs.gdt.base = kGdtAddress;
  sregs.gdt.limit = sizeof(kGdt) - 1;
  sregs.idt.base = kIdtAddress;
  sregs.idt.limit = 7;
  sregs.cr0 |= 0x80000011u; /* PE, ET, PG */
  sregs.cr3 = kPml4;
  sregs.cr4 |= 0x20;        /* PAE */
  sregs.efer |= 0x500;      /* LME, LMA */
  checked_ioctl(vm->vcpu, KVM_SET_SREGS, &sregs, "KVM_SET_SREGS");

  struct kvm_regs regs;
  memset(&regs, 0, sizeof(regs));
  regs.rflags = 2;
  regs.rip = entry_point;
  regs.rsp = regs.rbp = kBootStack;
  regs.rsi = kZeroPage;
  checked_ioctl(vm->vcpu, KVM_SET_REGS, &regs, "KVM_SET_REGS");
}

void floor_load_elf(struct floor_vm *vm, const char *path) {
  errno = 0;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) die("open %s", path);
  Elf64_Ehdr header;
  if (pread(fd, &header, sizeof(header), 0) != (ssize_t)sizeof(header) ||
      memcmp(header.e_ident, ELFMAG, SELFMAG) != 0 || header.e_phentsize != sizeof(Elf64_Phdr)) {
    errno = 0;
    die("%s is not a 64-bit ELF executable", path);
  }
  for (unsigned i = 0; i < header.e_phnum; ++i) {
    Elf64_Phdr segment;
    if (pread(fd, &segment, sizeof(segment), (off_t)(header.e_phoff + i * sizeof(segment))) !=
        (ssize_t)sizeof(segment)) {
      die("read %s", path);
    }
    if (segment.p_type != PT_LOAD) continue;
    uint8_t *target = guest_span(vm, segment.p_paddr, segment.p_memsz);
    if (segment.p_filesz > segment.p_memsz ||
        pread(fd, target, segment.p_filesz, (off_t)segment.p_offset) != (ssize_t)segment.p_filesz) {
      die("read %s", path);
    }
  }
  close(fd);
  enter_long_mode(vm, header.e_entry);
}

static uint64_t read_whole_file_into(struct floor_vm *vm, int fd, uint64_t address, off_t offset,
                                     uint64_t length, const char *what) {
  uint8_t *target = guest_span(vm, address, length);
  uint64_t done = 0;
  while (done < length) {
    ssize_t got = pread(fd, target + done, length - done, offset + (off_t)done);
    if (got <= 0) die("read %s", what);
    done += (uint64_t)got;
  }
  return done;
}

void floor_load_linux(struct floor_vm *vm, const char *kernel, const char *initrd,
                      const char *cmdline) {
  errno = 0;
  int fd = open(kernel, O_RDONLY | O_CLOEXEC);
  if (fd < 0) die("open %s", kernel);
  struct stat kernel_stat;
  if (fstat(fd, &kernel_stat) != 0) die("stat %s", kernel);
  uint8_t *zero_page = guest_span(vm, kZeroPage, 4096);
  memset(zero_page, 0, 4096);
  uint8_t setup[1024];
  if (pread(fd, setup, sizeof(setup), 0) != (ssize_t)sizeof(setup) ||
      memcmp(&setup[0x202], "HdrS", 4) != 0) {
    errno = 0;
    die("%s is not a bzImage", kernel);
  }
  /* The setup header runs from 0x1f1 to 0x202 plus the byte at 0x201. */
  const size_t header_end = 0x202 + setup[0x201];
  memcpy(zero_page + 0x1f1, setup + 0x1f1, header_end - 0x1f1);
  const unsigned setup_sectors = setup[0x1f1] == 0 ? 4 : setup[0x1f1];
  const off_t protected_mode = (off_t)(setup_sectors + 1) * 512;
  read_whole_file_into(vm, fd, kKernelAddress, protected_mode,
                       (uint64_t)kernel_stat.st_size - (uint64_t)protected_mode, kernel);
  close(fd);

  uint32_t initrd_max;
  memcpy(&initrd_max, &setup[0x22c], 4);
  if (initrd != NULL) {
    int initrd_fd = open(initrd, O_RDONLY | O_CLOEXEC);
    if (initrd_fd < 0) die("open %s", initrd);
    struct stat initrd_stat;
    if (fstat(initrd_fd, &initrd_stat) != 0) die("stat %s", initrd);
    uint64_t top = vm->memory_size < (uint64_t)initrd_max + 1 ? vm->memory_size : (uint64_t)initrd_max + 1;
    uint64_t address = (top - (uint64_t)initrd_stat.st_size) & ~0xfffull;
    read_whole_file_into(vm, initrd_fd, address, 0, (uint64_t)initrd_stat.st_size, initrd);
    close(initrd_fd);
    uint32_t image = (uint32_t)address, size = (uint32_t)initrd_stat.st_size;
    memcpy(zero_page + 0x218, &image, 4);
    memcpy(zero_page + 0x21c, &size, 4);
  }
  const size_t cmdline_length = strlen(cmdline);
  memcpy(guest_span(vm, kCmdline, cmdline_length + 1), cmdline, cmdline_length + 1);
  uint32_t cmdline_pointer = kCmdline;
  uint16_t heap_end = 0xfe00;
  zero_page[0x210] = 0xff;        /* type_of_loader: undefined */
  zero_page[0x211] |= 0x80 | 0x01; /* loadflags: CAN_USE_HEAP, LOADED_HIGH */
  memcpy(zero_page + 0x224, &heap_end, 2);
  memcpy(zero_page + 0x228, &cmdline_pointer, 4);

  struct e820 {
    uint64_t address, size;
    uint32_t type;
  } __attribute__((packed)) map[] = {
      {0, kEbda, 1},
      {kEbda, kKernelAddress - kEbda, 2},
      {kKernelAddress, vm->memory_size - kKernelAddress, 1},
  };
  zero_page[0x1e8] = sizeof(map) / sizeof(map[0]);
  memcpy(zero_page + 0x2d0, map, sizeof(map));
  enter_long_mode(vm, kKernelAddress + 0x200);
}

/* The exits both run loops let pass: an MMIO read finds all-ones and a
 * write vanishes; a halt or a signal's interruption goes on. 0 for any
 * other exit. */
static int floor_passing_exit(struct kvm_run *run) {
  switch (run->exit_reason) {
    case KVM_EXIT_MMIO:
      if (!run->mmio.is_write) memset(run->mmio.data, 0xff, sizeof(run->mmio.data));
      return 1;
    case KVM_EXIT_HLT:
    case KVM_EXIT_INTR:
      return 1;
    default:
      return 0;
  }
}

uint32_t floor_run_once(struct floor_vm *vm) {
  if (ioctl(vm->vcpu, KVM_RUN, 0) < 0 && errno != EINTR) die("KVM_RUN");
  return vm->run->exit_reason;
}

int floor_run_until_power_off(struct floor_vm *vm, void (*on_output)(uint8_t byte, void *userdata),
                              void *userdata) {
  struct kvm_run *run = vm->run;
  for (;;) {
    switch (floor_run_once(vm)) {
      case KVM_EXIT_IO: {
        uint8_t *data = (uint8_t *)run + run->io.data_offset;
        const size_t length = (size_t)run->io.size * run->io.count;
        if (run->io.direction == KVM_EXIT_IO_OUT) {
          if (run->io.port == FLOOR_PM1A_CONTROL) return 0;
          if (run->io.port == FLOOR_COM1 && on_output != NULL) {
            for (size_t i = 0; i < length; ++i) on_output(data[i], userdata);
          }
        } else {
          memset(data, run->io.port == FLOOR_COM1_LINE_STATUS ? 0x60 : 0xff, length);
        }
        break;
      }
      default:
        if (floor_passing_exit(run)) break;
        fprintf(stderr, "floor: the guest stopped with KVM exit %u\n", run->exit_reason);
        return -1;
    }
  }
}

/* The boot floor's serial port: an 8250 that only prints. Its registers
 * hold what the guest writes (the Linux driver reads them back to find
 * the port: IER, LCR, MCR, the scratch register, the modem lines in
 * loopback, the FIFO bits in IIR); a byte written to THR leaves at once
 * and, if the guest asked for it, raises IRQ 4 to say so. Nothing is ever
 * received. */
struct floor_uart {
  uint8_t ier, lcr, mcr, scratch, fifo, thr_empty_pending;
  uint8_t line[4096];
  size_t used;
};

static void uart_flush(struct floor_uart *uart) {
  size_t done = 0;
  while (done < uart->used) {
    ssize_t wrote = write(STDOUT_FILENO, uart->line + done, uart->used - done);
    if (wrote <= 0) break;
    done += (size_t)wrote;
  }
  uart->used = 0;
}

static void uart_raise(struct floor_vm *vm) {
  uint64_t one = 1;
  if (write(vm->irq_event, &one, sizeof(one)) != sizeof(one)) die("raise IRQ 4");
}

static void uart_write(struct floor_vm *vm, struct floor_uart *uart, unsigned offset, uint8_t value) {
  const int divisor = (uart->lcr & 0x80) != 0;
  switch (offset) {
    case 0:
      if (divisor) break;
      if ((uart->mcr & 0x10) == 0) {  /* not in loopback */
        uart->line[uart->used++] = value;
        if (value == '\n' || uart->used == sizeof(uart->line)) uart_flush(uart);
      }
      if (uart->ier & 0x02) {
        uart->thr_empty_pending = 1;
        uart_raise(vm);
      }
      break;
    case 1:
      if (divisor) break;
      {
        const int thr_empty_enabled_now = (value & 0x02) && !(uart->ier & 0x02);
        uart->ier = value & 0x0f;
        if (thr_empty_enabled_now) {
          uart->thr_empty_pending = 1;
          uart_raise(vm);
        }
      }
      break;
    case 2: uart->fifo = value & 0x01; break;
    case 3: uart->lcr = value; break;
    case 4: uart->mcr = value & 0x1f; break;
    case 7: uart->scratch = value; break;
    default: break;
  }
}

static uint8_t uart_read(struct floor_uart *uart, unsigned offset) {
  const int divisor = (uart->lcr & 0x80) != 0;
  const uint8_t fifo = uart->fifo ? 0xc0 : 0;
  switch (offset) {
    case 0: return 0;
    case 1: return divisor ? 0 : uart->ier;
    case 2:
      if ((uart->ier & 0x02) && uart->thr_empty_pending) {
        uart->thr_empty_pending = 0;
        return 0x02 | fifo;
      }
      return 0x01 | fifo;
    case 3: return uart->lcr;
    case 4: return uart->mcr;
    case 5: return 0x60;  /* THR empty, transmitter idle */
    case 6:
      if (uart->mcr & 0x10) {
        const uint8_t mcr = uart->mcr;
        return (uint8_t)(((mcr & 0x01) << 5) | ((mcr & 0x02) << 3) | ((mcr & 0x04) << 4) |
                         ((mcr & 0x08) << 4));
      }
      return 0xb0;
    default: return uart->scratch;
  }
}

int floor_run_linux(struct floor_vm *vm) {
  struct floor_uart uart;
  memset(&uart, 0, sizeof(uart));
  uint8_t cmos_index = 0;
  struct kvm_run *run = vm->run;
  for (;;) {
    switch (floor_run_once(vm)) {
      case KVM_EXIT_IO: {
        uint8_t *data = (uint8_t *)run + run->io.data_offset;
        const uint16_t port = run->io.port;
        const int uart_port = port >= FLOOR_COM1 && port < FLOOR_COM1 + 8 && run->io.size == 1;
        for (uint32_t i = 0; i < run->io.count; ++i) {
          uint8_t *item = data + (size_t)i * run->io.size;
          if (run->io.direction == KVM_EXIT_IO_OUT) {
            if (uart_port) {
              uart_write(vm, &uart, port - FLOOR_COM1, *item);
            } else if (port == 0x70) {
              cmos_index = *item & 0x7f;
            } else if (port == 0x64 && *item == 0xfe) {  /* reboot=k: the guest is done */
              uart_flush(&uart);
              return 0;
            }
          } else {
            memset(item, 0xff, run->io.size);
            if (uart_port) *item = uart_read(&uart, port - FLOOR_COM1);
            /* A CMOS of zeros whose register D says "valid": with all-ones
             * (update always in progress) the kernel's RTC probe waits
             * 2.5 s here before it gives up. */
            if (port == 0x71 && run->io.size == 1) *item = cmos_index == 0x0d ? 0x80 : 0;
          }
        }
        break;
      }
      case KVM_EXIT_SHUTDOWN:
        uart_flush(&uart);
        return 0;
      default:
        if (floor_passing_exit(run)) break;
        uart_flush(&uart);
        fprintf(stderr, "floor: the guest stopped with KVM exit %u\n", run->exit_reason);
        return -1;
    }
  }
}
