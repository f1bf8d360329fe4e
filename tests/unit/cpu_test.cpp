#include <catch2/catch.hpp>

#include <optional>

#include "arch/x86_64/cpu_state.h"
#include "arch/x86_64/cpuid.h"
#include "arch/x86_64/layout.h"

using namespace crosvm::x86_64;

namespace {

kvm_cpuid_entry2 leaf(uint32_t function, uint32_t index = 0) {
  kvm_cpuid_entry2 entry{};
  entry.function = function;
  entry.index = index;
  return entry;
}

const kvm_cpuid_entry2* find(const std::vector<kvm_cpuid_entry2>& entries, uint32_t function,
                             uint32_t index = 0) {
  for (const auto& entry : entries) {
    if (entry.function == function && entry.index == index) return &entry;
  }
  return nullptr;
}

}  // namespace

TEST_CASE("GDT entries encode flat 64-bit code and data segments", "[cpu]") {
  CHECK(gdt_entry(0xa09b, 0, 0xfffff) == 0x00af9b000000ffffull);
  CHECK(gdt_entry(0xc093, 0, 0xfffff) == 0x00cf93000000ffffull);
  CHECK(gdt_entry(0x808b, 0x12345678, 0x67) == 0x12808b345678'0067ull);
}

TEST_CASE("the boot vCPU starts in 64-bit mode as the boot protocol requires", "[cpu]") {
  const kvm_sregs sregs = long_mode_sregs(kvm_sregs{});
  CHECK(sregs.cs.selector == kBootCodeSelector);
  CHECK(sregs.cs.l == 1);
  CHECK(sregs.cs.db == 0);
  CHECK(sregs.ds.selector == kBootDataSelector);
  CHECK(sregs.ss.selector == kBootDataSelector);
  CHECK(sregs.ds.limit == 0xffffffff);
  CHECK((sregs.cr0 & 0x80000001) == 0x80000001);  // PG and PE
  CHECK((sregs.cr4 & 0x20) == 0x20);              // PAE
  CHECK((sregs.efer & 0x500) == 0x500);           // LME and LMA
  CHECK(sregs.cr3 == kPml4Address);

  const kvm_regs regs = boot_regs(0x1000200);
  CHECK(regs.rip == 0x1000200);
  CHECK(regs.rsi == kZeroPageAddress);
  CHECK(regs.rflags == 2);
}

TEST_CASE("the page tables identity-map the first 4 GiB with 2 MiB pages", "[cpu]") {
  const crosvm::GuestRegion region{0, 16ull << 20};
  auto memory = std::move(crosvm::GuestMemory::create(std::span(&region, 1))).value();
  REQUIRE(write_boot_tables(memory).ok());
  const uint64_t pml4 = *memory.read_object<uint64_t>(kPml4Address);
  CHECK((pml4 & ~0xfffull) == kPdptAddress);
  const uint64_t third_gib = *memory.read_object<uint64_t>(kPdptAddress + 3 * 8);
  const uint64_t last_page = *memory.read_object<uint64_t>((third_gib & ~0xfffull) + 511 * 8);
  CHECK((last_page & ~0xfffull) == 0xffe00000ull);
  CHECK((last_page & 0x83) == 0x83);  // present, writable, 2 MiB
}

TEST_CASE("CPUID gives each vCPU its APIC ID and the VM's topology", "[cpu]") {
  const std::vector<kvm_cpuid_entry2> supported = {leaf(0x1), leaf(0xb, 0), leaf(0xb, 1),
                                                   leaf(0x80000008), leaf(0x8000001e)};
  const auto entries = cpuid_for_vcpu(supported, 3, {.vcpu_count = 4});

  const auto* features = find(entries, 0x1);
  REQUIRE(features != nullptr);
  CHECK(features->ebx >> 24 == 3);
  CHECK(((features->ebx >> 16) & 0xff) == 4);
  CHECK((features->ecx & (1u << 31)) != 0);  // hypervisor
  CHECK((features->edx & (1u << 28)) != 0);  // more than one logical CPU

  const auto* cores = find(entries, 0xb, 1);
  REQUIRE(cores != nullptr);
  CHECK(cores->edx == 3);
  CHECK(cores->ebx == 4);
  CHECK(cores->eax == 2);  // two bits of core ID
  CHECK(((cores->ecx >> 8) & 0xff) == 2);

  CHECK((find(entries, 0x80000008)->ecx & 0xff) == 3);
  CHECK(find(entries, 0x8000001e)->eax == 3);
}

TEST_CASE("a single vCPU does not claim hyper-threading", "[cpu]") {
  kvm_cpuid_entry2 features = leaf(0x1);
  features.edx = 1u << 28;
  const auto entries = cpuid_for_vcpu(std::vector{features}, 0, {.vcpu_count = 1});
  CHECK((entries[0].edx & (1u << 28)) == 0);
}

TEST_CASE("the TSC-deadline timer is advertised exactly when KVM emulates it", "[cpu]") {
  kvm_cpuid_entry2 features = leaf(0x1);
  features.ecx = 1u << 24;  // whatever the host table says, the VM's capability decides
  const auto without = cpuid_for_vcpu(std::vector{features}, 0, {.tsc_deadline_timer = false});
  CHECK((without[0].ecx & (1u << 24)) == 0);
  features.ecx = 0;
  const auto with = cpuid_for_vcpu(std::vector{features}, 0, {.tsc_deadline_timer = true});
  CHECK((with[0].ecx & (1u << 24)) != 0);
}

TEST_CASE("boot MSRs include a write-back MTRR default and fast strings", "[cpu]") {
  const auto msrs = boot_msrs();
  auto value_of = [&](uint32_t index) -> std::optional<uint64_t> {
    for (const auto& msr : msrs) {
      if (msr.index == index) return msr.data;
    }
    return std::nullopt;
  };
  CHECK(value_of(0x2ff) == std::optional<uint64_t>((1u << 11) | 6));
  CHECK(value_of(0x1a0) == std::optional<uint64_t>(1));
}
