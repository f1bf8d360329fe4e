// Where things live in an x86_64 guest's physical address space.
//
//   0x0000_0500  GDT, then an empty IDT
//   0x0000_7000  boot_params ("zero page")
//   0x0000_8ff0  boot stack (grows down)
//   0x0000_9000  identity page tables for the first 4 GiB (PML4, PDPT, 4 PDs)
//   0x0002_0000  kernel command line
//   0x0009_fc00  EBDA: MP table
//   0x000e_0000  ACPI tables (RSDP first) up to 1 MiB
//   0x0010_0000  kernel (bzImage protected-mode part; ELF kernels load at their own addresses)
//   ...          initrd, as high as the kernel allows, below the MMIO hole
//   0xc000_0000  MMIO hole: 32-bit PCI BARs, ECAM, IO-APIC, local APIC (RAM resumes at 4 GiB)
#pragma once

#include <cstdint>
#include <vector>

#include "base/result.h"
#include "memory/guest_memory.h"

namespace crosvm::x86_64 {

inline constexpr uint64_t kGdtAddress = 0x500;
inline constexpr uint64_t kIdtAddress = 0x520;
inline constexpr uint64_t kZeroPageAddress = 0x7000;
inline constexpr uint64_t kBootStackPointer = 0x8ff0;
inline constexpr uint64_t kPml4Address = 0x9000;
inline constexpr uint64_t kPdptAddress = 0xa000;
inline constexpr uint64_t kPdAddress = 0xb000;  // four page directories
inline constexpr uint64_t kCmdlineAddress = 0x20000;
inline constexpr uint64_t kCmdlineCapacity = 0x10000;  // room reserved for the command line
inline constexpr uint64_t kEbdaAddress = 0x9fc00;
inline constexpr uint64_t kBiosAreaStart = 0xe0000;   // RSDP lives in 0xe0000-0xfffff
inline constexpr uint64_t kAcpiTablesAddress = kBiosAreaStart;
inline constexpr uint64_t kHighMemoryStart = 0x100000;  // 1 MiB
inline constexpr uint64_t kKernelLoadAddress = kHighMemoryStart;

inline constexpr uint64_t kMmioHoleStart = 0xc000'0000;
inline constexpr uint64_t kFourGiB = 0x1'0000'0000;
inline constexpr uint64_t kPciMmioStart = kMmioHoleStart;
inline constexpr uint64_t kPciMmioSize = 0x2000'0000;
inline constexpr uint64_t kEcamAddress = 0xe000'0000;
inline constexpr uint64_t kEcamSize = 0x1000'0000;  // 256 buses x 1 MiB
inline constexpr uint64_t kIoApicAddress = 0xfec0'0000;
inline constexpr uint64_t kLocalApicAddress = 0xfee0'0000;
inline constexpr uint64_t kIdentityMapAddress = 0xfffb'c000;  // one page for KVM (VMX)
inline constexpr uint64_t kTssAddress = 0xfffb'd000;          // three pages for KVM (VMX)

inline constexpr uint64_t kMinimumMemory = 2ull << 20;
// xAPIC IDs are 8 bits and 0xff is the broadcast ID.
inline constexpr uint32_t kMaxVcpus = 254;
// The 64-bit PCI window starts on a 1 GiB boundary above RAM and 4 GiB.
inline constexpr uint64_t kPciMmio64Alignment = 1ull << 30;
inline constexpr uint64_t kPciMmio64MaxSize = 64ull << 30;

// Guest RAM as KVM and the guest see it.
struct MemoryLayout {
  std::vector<GuestRegion> ram;  // below the hole, then from 4 GiB if any
  uint64_t low_ram_end;          // end of RAM below the MMIO hole
  uint64_t high_ram_end;         // end of RAM above 4 GiB, or 0 when there is none
  uint64_t pci_mmio64_base;      // 64-bit BARs live in [base, base + size)
  uint64_t pci_mmio64_size;      // 0 when the address space has no room
  uint64_t top_of_ram() const { return high_ram_end != 0 ? high_ram_end : low_ram_end; }
};

// Splits `memory_bytes` of RAM around the MMIO hole. Fails for 0, for less
// than kMinimumMemory, for sizes not a multiple of 4 KiB, and when RAM would
// end beyond what a guest with `physical_address_bits` can address.
Result<MemoryLayout> plan_memory(uint64_t memory_bytes, unsigned physical_address_bits);

// The host CPU's physical address width (CPUID 0x80000008), which KVM gives
// its guests.
unsigned host_physical_address_bits();

}  // namespace crosvm::x86_64
