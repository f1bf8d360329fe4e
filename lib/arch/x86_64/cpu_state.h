// The state a vCPU starts in: for the boot vCPU, 64-bit mode as the Linux
// 64-bit boot protocol requires (flat __BOOT_CS/__BOOT_DS, identity-mapped
// paging, RSI = zero page); for every vCPU, MSRs, FPU and local APIC set as
// Linux expects of a PC.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <vector>

#include "base/result.h"
#include "kvm/kvm.h"
#include "memory/guest_memory.h"

namespace crosvm::x86_64 {

inline constexpr uint16_t kBootCodeSelector = 0x10;
inline constexpr uint16_t kBootDataSelector = 0x18;
inline constexpr uint16_t kBootTssSelector = 0x20;

// Writes the GDT, an empty IDT and page tables identity-mapping the first
// 4 GiB with 2 MiB pages.
Result<void> write_boot_tables(const GuestMemory& memory);

// Pure functions, so the values can be tested without KVM.
constexpr uint64_t gdt_entry(uint16_t flags, uint32_t base, uint32_t limit) {
  return ((static_cast<uint64_t>(base) & 0xff000000) << 32) |
         ((static_cast<uint64_t>(flags) & 0xf0ff) << 40) |
         ((static_cast<uint64_t>(limit) & 0x000f0000) << 32) |
         ((static_cast<uint64_t>(base) & 0x00ffffff) << 16) | (static_cast<uint64_t>(limit) & 0xffff);
}
kvm_sregs long_mode_sregs(const kvm_sregs& current);
kvm_regs boot_regs(uint64_t entry_point);
kvm_fpu boot_fpu();
std::vector<kvm_msr_entry> boot_msrs();

// Registers of the boot vCPU: jump to `entry_point` in 64-bit mode.
Result<void> configure_boot_vcpu(const kvm::VcpuFd& vcpu, uint64_t entry_point);
// For every vCPU: MSRs, FPU, and LINT0 as ExtINT / LINT1 as NMI so the legacy
// PIC reaches the CPU (virtual-wire mode).
Result<void> configure_vcpu_common(const kvm::VcpuFd& vcpu);

}  // namespace crosvm::x86_64
