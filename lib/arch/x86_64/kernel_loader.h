// Loads a Linux kernel into guest memory: a bzImage (boot protocol 2.12+,
// entered at its 64-bit entry point) or an ELF vmlinux. Every field read from
// the image is checked against the image's size and guest RAM first, so a
// truncated, corrupt or hostile file yields an error, never a crash. The
// kernel's bytes are read straight into guest memory, never copied twice.
#pragma once

#include <cstdint>
#include <span>

#include "arch/x86_64/boot_params.h"
#include "base/image_source.h"
#include "base/result.h"
#include "memory/guest_memory.h"

namespace crosvm::x86_64 {

enum class KernelFormat { kBzImage, kElf };

struct LoadedKernel {
  KernelFormat format;
  uint64_t entry_point;         // guest-physical 64-bit entry
  uint64_t end;                 // first byte past what the kernel needs (init_size included)
  SetupHeader setup_header;     // the image's own header, or one made for an ELF kernel
  uint64_t cmdline_limit;       // longest command line the kernel takes, NUL excluded
  uint64_t initrd_address_max;  // last byte an initrd may occupy
};

// Recognises the image format; fails for an empty file or one that is neither.
Result<KernelFormat> detect_kernel_format(const ImageSource& image);

// Loads `image` into `memory` (whose RAM below the MMIO hole ends at
// `low_ram_end`) and returns what boot set-up needs to know.
Result<LoadedKernel> load_kernel(const GuestMemory& memory, uint64_t low_ram_end,
                                 const ImageSource& image);
Result<LoadedKernel> load_bzimage(const GuestMemory& memory, uint64_t low_ram_end,
                                  const ImageSource& image);
Result<LoadedKernel> load_elf(const GuestMemory& memory, uint64_t low_ram_end,
                              const ImageSource& image);

// Where the initrd goes: as high as allowed, page-aligned, above the kernel.
Result<uint64_t> place_initrd(const LoadedKernel& kernel, uint64_t low_ram_end,
                              uint64_t initrd_size);

}  // namespace crosvm::x86_64
