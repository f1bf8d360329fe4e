// The zero page, the e820 map and the command line: what the guest kernel
// reads about its machine when it starts.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "arch/x86_64/boot_params.h"
#include "arch/x86_64/kernel_loader.h"
#include "arch/x86_64/layout.h"
#include "base/result.h"
#include "memory/guest_memory.h"

namespace crosvm::x86_64 {

struct InitrdLocation {
  uint64_t address;
  uint64_t size;
};

struct BootInfo {
  const LoadedKernel* kernel;
  const MemoryLayout* layout;
  std::string_view cmdline;
  std::optional<InitrdLocation> initrd;
  uint64_t rsdp_address = 0;  // 0 when the guest has no ACPI tables
};

// RAM below the EBDA, RAM from 1 MiB to the hole, the ECAM window reserved (as
// Linux wants MMCONFIG reserved), RAM above 4 GiB.
std::vector<E820Entry> build_e820_map(const MemoryLayout& layout);

// Fails when the command line is longer than the kernel accepts.
Result<BootParams> build_boot_params(const BootInfo& info);

// Writes the command line (NUL-terminated) and the zero page into the guest.
Result<void> write_boot_info(const GuestMemory& memory, const BootInfo& info);

}  // namespace crosvm::x86_64
