#include "arch/x86_64/boot_setup.h"

#include <algorithm>
#include <cstring>

namespace crosvm::x86_64 {
namespace {

// boot_params.hdr.heap_end_ptr is relative to the real-mode kernel (the zero
// page here): the end of the space set-up code may use as heap.
constexpr uint16_t kHeapEnd = 0xfe00;

}  // namespace

std::vector<E820Entry> build_e820_map(const MemoryLayout& layout) {
  std::vector<E820Entry> map;
  map.push_back({0, kEbdaAddress, kE820Ram});
  map.push_back({kEbdaAddress, kHighMemoryStart - kEbdaAddress, kE820Reserved});
  if (layout.low_ram_end > kHighMemoryStart) {
    map.push_back({kHighMemoryStart, layout.low_ram_end - kHighMemoryStart, kE820Ram});
  }
  map.push_back({kEcamAddress, kEcamSize, kE820Reserved});
  if (layout.high_ram_end != 0) {
    map.push_back({kFourGiB, layout.high_ram_end - kFourGiB, kE820Ram});
  }
  return map;
}

Result<BootParams> build_boot_params(const BootInfo& info) {
  const LoadedKernel& kernel = *info.kernel;
  const uint64_t limit = std::min<uint64_t>(kernel.cmdline_limit, kCmdlineCapacity - 1);
  if (info.cmdline.size() > limit) {
    return make_error(ErrorCode::kInvalidArgument,
                      "the kernel command line is {} bytes long; this kernel accepts at most {}",
                      info.cmdline.size(), limit);
  }
  if (info.cmdline.find('\0') != std::string_view::npos) {
    return make_error(ErrorCode::kInvalidArgument, "the kernel command line contains a NUL byte");
  }

  BootParams params{};
  params.hdr = kernel.setup_header;
  params.hdr.type_of_loader = kLoaderTypeUndefined;
  params.hdr.loadflags |= kCanUseHeap | kLoadedHigh;
  params.hdr.heap_end_ptr = kHeapEnd;
  params.hdr.cmd_line_ptr = static_cast<uint32_t>(kCmdlineAddress);
  if (info.initrd) {
    params.hdr.ramdisk_image = static_cast<uint32_t>(info.initrd->address);
    params.hdr.ramdisk_size = static_cast<uint32_t>(info.initrd->size);
    params.ext_ramdisk_image = static_cast<uint32_t>(info.initrd->address >> 32);
    params.ext_ramdisk_size = static_cast<uint32_t>(info.initrd->size >> 32);
  }
  params.acpi_rsdp_addr = info.rsdp_address;

  const std::vector<E820Entry> map = build_e820_map(*info.layout);
  params.e820_entries = static_cast<uint8_t>(map.size());
  std::copy(map.begin(), map.end(), params.e820_table);
  return params;
}

Result<void> write_boot_info(const GuestMemory& memory, const BootInfo& info) {
  const BootParams params = CROSVM_TRY(build_boot_params(info));
  std::span<uint8_t> cmdline = CROSVM_TRY(memory.slice(kCmdlineAddress, info.cmdline.size() + 1));
  std::memcpy(cmdline.data(), info.cmdline.data(), info.cmdline.size());
  cmdline[info.cmdline.size()] = 0;
  return memory.write_object(kZeroPageAddress, params);
}

}  // namespace crosvm::x86_64
