#include "arch/x86_64/layout.h"

#include <cpuid.h>

#include <algorithm>

namespace crosvm::x86_64 {

Result<MemoryLayout> plan_memory(uint64_t memory_bytes, unsigned physical_address_bits) {
  if (memory_bytes == 0) return make_error(ErrorCode::kMemory, "guest memory size is 0");
  if (memory_bytes < kMinimumMemory) {
    return make_error(ErrorCode::kMemory, "guest memory of {} KiB is below the minimum of {} MiB",
                      memory_bytes >> 10, kMinimumMemory >> 20);
  }
  if (memory_bytes % 4096 != 0) {
    return make_error(ErrorCode::kMemory, "guest memory size {} is not a multiple of 4 KiB",
                      memory_bytes);
  }
  const uint64_t address_limit = physical_address_bits >= 64 ? ~0ull : (1ull << physical_address_bits);
  const uint64_t high_bytes = memory_bytes > kMmioHoleStart ? memory_bytes - kMmioHoleStart : 0;
  if (high_bytes > address_limit - kFourGiB || memory_bytes > address_limit) {
    return make_error(ErrorCode::kMemory,
                      "guest memory of {} MiB does not fit in the {}-bit physical address space "
                      "of this host",
                      memory_bytes >> 20, physical_address_bits);
  }

  MemoryLayout layout{};
  layout.low_ram_end = memory_bytes - high_bytes;
  layout.ram.push_back({0, layout.low_ram_end});
  if (high_bytes != 0) {
    layout.high_ram_end = kFourGiB + high_bytes;
    layout.ram.push_back({kFourGiB, high_bytes});
  }
  const uint64_t above = std::max(layout.top_of_ram(), kFourGiB);
  layout.pci_mmio64_base = (above + kPciMmio64Alignment - 1) & ~(kPciMmio64Alignment - 1);
  layout.pci_mmio64_size = layout.pci_mmio64_base < address_limit
                               ? std::min(kPciMmio64MaxSize, address_limit - layout.pci_mmio64_base)
                               : 0;
  return layout;
}

unsigned host_physical_address_bits() {
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid(0x80000000, &eax, &ebx, &ecx, &edx) && eax >= 0x80000008 &&
      __get_cpuid(0x80000008, &eax, &ebx, &ecx, &edx)) {
    return eax & 0xff;
  }
  return 36;  // what a CPU without the leaf guarantees
}

}  // namespace crosvm::x86_64
