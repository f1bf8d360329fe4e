#include "arch/x86_64/cpu_state.h"

#include <cstring>

#include "arch/x86_64/layout.h"

namespace crosvm::x86_64 {
namespace {

constexpr uint64_t kCr0ProtectionEnable = 1ull << 0;
constexpr uint64_t kCr0ExtensionType = 1ull << 4;
constexpr uint64_t kCr0Paging = 1ull << 31;
constexpr uint64_t kCr4Pae = 1ull << 5;
constexpr uint64_t kEferLme = 1ull << 8;
constexpr uint64_t kEferLma = 1ull << 10;

constexpr uint64_t kPagePresent = 1ull << 0;
constexpr uint64_t kPageWritable = 1ull << 1;
constexpr uint64_t kPageSize2M = 1ull << 7;

// GDT flags: the access byte in bits 0-7, flags nibble in bits 12-15.
constexpr uint16_t kCode64Flags = 0xa09b;  // present, ring 0, code r/x, accessed, L, G
constexpr uint16_t kData32Flags = 0xc093;  // present, ring 0, data r/w, accessed, D/B, G
constexpr uint16_t kTss64Flags = 0x808b;   // present, busy 64-bit TSS, G

// MSR numbers (Intel SDM vol. 4).
constexpr uint32_t kMsrSysenterCs = 0x174;
constexpr uint32_t kMsrSysenterEsp = 0x175;
constexpr uint32_t kMsrSysenterEip = 0x176;
constexpr uint32_t kMsrStar = 0xc0000081;
constexpr uint32_t kMsrLstar = 0xc0000082;
constexpr uint32_t kMsrCstar = 0xc0000083;
constexpr uint32_t kMsrSyscallMask = 0xc0000084;
constexpr uint32_t kMsrKernelGsBase = 0xc0000102;
constexpr uint32_t kMsrTsc = 0x10;
constexpr uint32_t kMsrMiscEnable = 0x1a0;
constexpr uint64_t kMiscEnableFastStrings = 1;
constexpr uint32_t kMsrMtrrDefType = 0x2ff;
constexpr uint64_t kMtrrEnable = 1ull << 11;
constexpr uint64_t kMtrrTypeWriteBack = 6;

// Local APIC registers in kvm_lapic_state.regs.
constexpr size_t kApicLvtLint0 = 0x350;
constexpr size_t kApicLvtLint1 = 0x360;
constexpr uint32_t kApicDeliveryModeMask = 0x700;
constexpr uint32_t kApicDeliveryExtInt = 0x700;
constexpr uint32_t kApicDeliveryNmi = 0x400;

kvm_segment segment_from_gdt(uint64_t entry, uint16_t selector) {
  kvm_segment segment{};
  segment.base = static_cast<uint64_t>(((entry >> 16) & 0xffffff) | (((entry >> 56) & 0xff) << 24));
  uint32_t limit = static_cast<uint32_t>((entry & 0xffff) | (((entry >> 48) & 0xf) << 16));
  segment.g = static_cast<uint8_t>((entry >> 55) & 1);
  segment.limit = segment.g != 0 ? (limit << 12) | 0xfff : limit;
  segment.selector = selector;
  segment.type = static_cast<uint8_t>((entry >> 40) & 0xf);
  segment.present = static_cast<uint8_t>((entry >> 47) & 1);
  segment.dpl = static_cast<uint8_t>((entry >> 45) & 3);
  segment.db = static_cast<uint8_t>((entry >> 54) & 1);
  segment.s = static_cast<uint8_t>((entry >> 44) & 1);
  segment.l = static_cast<uint8_t>((entry >> 53) & 1);
  segment.avl = static_cast<uint8_t>((entry >> 52) & 1);
  segment.unusable = segment.present == 0 ? 1 : 0;
  return segment;
}

constexpr uint64_t kGdt[] = {
    0,                                   // null
    0,                                   // unused (Linux's __BOOT_CS is 0x10)
    gdt_entry(kCode64Flags, 0, 0xfffff),  // 0x10
    gdt_entry(kData32Flags, 0, 0xfffff),  // 0x18
    gdt_entry(kTss64Flags, 0, 0xfffff),   // 0x20
};

}  // namespace

Result<void> write_boot_tables(const GuestMemory& memory) {
  CROSVM_TRY(memory.write(kGdtAddress, std::span(reinterpret_cast<const uint8_t*>(kGdt), sizeof(kGdt))));
  CROSVM_TRY(memory.write_object<uint64_t>(kIdtAddress, 0));

  CROSVM_TRY(memory.write_object<uint64_t>(kPml4Address, kPdptAddress | kPagePresent | kPageWritable));
  for (uint64_t gib = 0; gib < 4; ++gib) {
    const uint64_t directory = kPdAddress + gib * 0x1000;
    CROSVM_TRY(memory.write_object<uint64_t>(kPdptAddress + gib * 8,
                                             directory | kPagePresent | kPageWritable));
    for (uint64_t entry = 0; entry < 512; ++entry) {
      const uint64_t address = (gib << 30) | (entry << 21);
      CROSVM_TRY(memory.write_object<uint64_t>(directory + entry * 8,
                                               address | kPagePresent | kPageWritable | kPageSize2M));
    }
  }
  return {};
}

kvm_sregs long_mode_sregs(const kvm_sregs& current) {
  kvm_sregs sregs = current;
  sregs.gdt.base = kGdtAddress;
  sregs.gdt.limit = sizeof(kGdt) - 1;
  sregs.idt.base = kIdtAddress;
  sregs.idt.limit = sizeof(uint64_t) - 1;

  sregs.cs = segment_from_gdt(kGdt[kBootCodeSelector / 8], kBootCodeSelector);
  const kvm_segment data = segment_from_gdt(kGdt[kBootDataSelector / 8], kBootDataSelector);
  sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
  sregs.tr = segment_from_gdt(kGdt[kBootTssSelector / 8], kBootTssSelector);

  sregs.cr0 |= kCr0ProtectionEnable | kCr0ExtensionType | kCr0Paging;
  sregs.cr3 = kPml4Address;
  sregs.cr4 |= kCr4Pae;
  sregs.efer |= kEferLme | kEferLma;
  return sregs;
}

kvm_regs boot_regs(uint64_t entry_point) {
  kvm_regs regs{};
  regs.rflags = 0x2;  // bit 1 is reserved and always set
  regs.rip = entry_point;
  regs.rsp = kBootStackPointer;
  regs.rbp = kBootStackPointer;
  regs.rsi = kZeroPageAddress;  // the 64-bit boot protocol passes boot_params here
  return regs;
}

kvm_fpu boot_fpu() {
  kvm_fpu fpu{};
  fpu.fcw = 0x37f;       // x87 default control word
  fpu.mxcsr = 0x1f80;    // all SSE exceptions masked
  return fpu;
}

std::vector<kvm_msr_entry> boot_msrs() {
  auto msr = [](uint32_t index, uint64_t data) {
    kvm_msr_entry entry{};
    entry.index = index;
    entry.data = data;
    return entry;
  };
  return {
      msr(kMsrSysenterCs, 0),   msr(kMsrSysenterEsp, 0),
      msr(kMsrSysenterEip, 0),  msr(kMsrStar, 0),
      msr(kMsrCstar, 0),        msr(kMsrKernelGsBase, 0),
      msr(kMsrSyscallMask, 0),  msr(kMsrLstar, 0),
      msr(kMsrTsc, 0),          msr(kMsrMiscEnable, kMiscEnableFastStrings),
      msr(kMsrMtrrDefType, kMtrrEnable | kMtrrTypeWriteBack),
  };
}

Result<void> configure_boot_vcpu(const kvm::VcpuFd& vcpu, uint64_t entry_point) {
  const kvm_sregs current = CROSVM_TRY(vcpu.get_sregs());
  CROSVM_TRY(vcpu.set_sregs(long_mode_sregs(current)));
  return vcpu.set_regs(boot_regs(entry_point));
}

Result<void> configure_vcpu_common(const kvm::VcpuFd& vcpu) {
  const std::vector<kvm_msr_entry> msrs = boot_msrs();
  CROSVM_TRY(vcpu.set_msrs(msrs));
  CROSVM_TRY(vcpu.set_fpu(boot_fpu()));

  kvm_lapic_state lapic = CROSVM_TRY(vcpu.get_lapic());
  auto set_delivery_mode = [&lapic](size_t offset, uint32_t mode) {
    uint32_t value;
    std::memcpy(&value, &lapic.regs[offset], sizeof(value));
    value = (value & ~kApicDeliveryModeMask) | mode;
    std::memcpy(&lapic.regs[offset], &value, sizeof(value));
  };
  set_delivery_mode(kApicLvtLint0, kApicDeliveryExtInt);
  set_delivery_mode(kApicLvtLint1, kApicDeliveryNmi);
  return vcpu.set_lapic(lapic);
}

}  // namespace crosvm::x86_64
