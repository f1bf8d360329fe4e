#include "arch/x86_64/kernel_loader.h"

#include <elf.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cstring>

#include "arch/x86_64/layout.h"

namespace crosvm::x86_64 {
namespace {

constexpr uint64_t kPageSize = 4096;
constexpr uint16_t kMinimumBootProtocol = 0x020c;  // 2.12: xloadflags and the 64-bit entry
constexpr uint64_t kEntry64Offset = 0x200;          // startup_64 = startup_32 + 0x200

// The first bytes of an image, enough for either format's magic and the
// whole bzImage setup header; shorter for a shorter image.
struct ImageStart {
  std::array<uint8_t, kSetupHeaderOffset + sizeof(SetupHeader)> bytes{};
  size_t size = 0;
  std::span<const uint8_t> span() const { return {bytes.data(), size}; }
};

Result<ImageStart> read_start(const ImageSource& image) {
  ImageStart start;
  start.size = static_cast<size_t>(std::min<uint64_t>(image.size(), start.bytes.size()));
  CROSVM_TRY(image.read(0, std::span(start.bytes.data(), start.size)));
  return start;
}

bool has_elf_magic(std::span<const uint8_t> start) {
  return start.size() >= SELFMAG && std::memcmp(start.data(), ELFMAG, SELFMAG) == 0;
}

bool has_bzimage_magic(std::span<const uint8_t> start) {
  uint32_t magic = 0;
  if (start.size() < 0x202 + sizeof(magic)) return false;
  std::memcpy(&magic, start.data() + 0x202, sizeof(magic));
  return magic == kHeaderMagic;
}

template <typename T>
Result<T> read_object(const ImageSource& image, uint64_t offset) {
  T value;
  CROSVM_TRY(image.read(offset, std::span(reinterpret_cast<uint8_t*>(&value), sizeof(T))));
  return value;
}

Error too_small(uint64_t needed_end, uint64_t low_ram_end) {
  return make_error(ErrorCode::kMemory,
                    "guest memory is too small for this kernel: it needs RAM up to {} MiB, the "
                    "guest has {} MiB below the PCI hole",
                    (needed_end + (1 << 20) - 1) >> 20, low_ram_end >> 20);
}

}  // namespace

Result<KernelFormat> detect_kernel_format(const ImageSource& image) {
  if (image.empty()) return make_error(ErrorCode::kKernel, "the kernel file is empty");
  const ImageStart start = CROSVM_TRY(read_start(image));
  if (has_elf_magic(start.span())) return KernelFormat::kElf;
  if (has_bzimage_magic(start.span())) return KernelFormat::kBzImage;
  return make_error(ErrorCode::kKernel, "not a Linux kernel (neither a bzImage nor an ELF vmlinux)");
}

Result<LoadedKernel> load_kernel(const GuestMemory& memory, uint64_t low_ram_end,
                                 const ImageSource& image) {
  switch (CROSVM_TRY(detect_kernel_format(image))) {
    case KernelFormat::kBzImage: return load_bzimage(memory, low_ram_end, image);
    case KernelFormat::kElf: return load_elf(memory, low_ram_end, image);
  }
  return make_error(ErrorCode::kInternal, "unknown kernel format");
}

Result<LoadedKernel> load_bzimage(const GuestMemory& memory, uint64_t low_ram_end,
                                  const ImageSource& image) {
  const ImageStart start = CROSVM_TRY(read_start(image));
  if (!has_bzimage_magic(start.span())) return make_error(ErrorCode::kKernel, "no bzImage header");
  if (start.size < kSetupHeaderOffset + sizeof(SetupHeader)) {
    return make_error(ErrorCode::kKernel, "bzImage is truncated inside its setup header");
  }
  // The header runs from 0x1f1 to 0x202 + the byte at 0x201 (the jump's offset).
  const size_t header_end = std::min<size_t>(0x202 + start.bytes[0x201], kSetupHeaderOffset + sizeof(SetupHeader));
  if (header_end < 0x206 + 2) {
    return make_error(ErrorCode::kKernel, "bzImage setup header is too short to carry a version");
  }
  SetupHeader header{};
  std::memcpy(&header, start.bytes.data() + kSetupHeaderOffset, header_end - kSetupHeaderOffset);
  // SetupHeader is packed: its fields are read into values before anything
  // (fmt, std::max, ?:) could bind a reference to a misaligned one.
  const uint16_t boot_flag = header.boot_flag;
  const uint64_t pref_address = header.pref_address;

  if (boot_flag != kBootFlagMagic) {
    return make_error(ErrorCode::kKernel, "bzImage has a bad boot flag {:#06x}", boot_flag);
  }
  if (header.version < kMinimumBootProtocol) {
    return make_error(ErrorCode::kKernel,
                      "bzImage speaks boot protocol {}.{:02}, need 2.12 or newer (Linux 3.8+)",
                      header.version >> 8, header.version & 0xff);
  }
  if ((header.xloadflags & kXlfKernel64) == 0) {
    return make_error(ErrorCode::kKernel, "bzImage has no 64-bit entry point (not an x86_64 kernel)");
  }
  if ((header.loadflags & kLoadedHigh) == 0) {
    return make_error(ErrorCode::kKernel, "bzImage is a zImage that must load below 1 MiB");
  }

  const uint64_t setup_size = (static_cast<uint64_t>(header.setup_sects == 0 ? 4 : header.setup_sects) + 1) * 512;
  if (setup_size >= image.size()) {
    return make_error(ErrorCode::kKernel, "bzImage is truncated: no kernel after its {} setup bytes",
                      setup_size);
  }
  const uint64_t payload_size = image.size() - setup_size;
  const uint64_t declared = static_cast<uint64_t>(header.syssize) * 16;
  if (declared > payload_size) {
    return make_error(ErrorCode::kKernel, "bzImage is truncated: its header declares {} bytes of "
                      "kernel, the file holds {}", declared, payload_size);
  }

  const uint64_t load_address =
      header.relocatable_kernel != 0 ? kKernelLoadAddress : pref_address;
  if (load_address < kHighMemoryStart || load_address % kPageSize != 0) {
    return make_error(ErrorCode::kKernel, "bzImage wants an unusable load address {:#x}", load_address);
  }
  // The kernel runs where it decompresses, not where it is loaded: a
  // relocatable kernel rounds its load address up to kernel_alignment and
  // never goes below LOAD_PHYSICAL_ADDR (its pref_address), then needs
  // init_size bytes from there (arch/x86/boot/compressed/head_64.S).
  uint64_t runtime_start = load_address;
  if (header.relocatable_kernel != 0) {
    const uint64_t alignment = header.kernel_alignment;
    if (alignment < kPageSize || !std::has_single_bit(alignment)) {
      return make_error(ErrorCode::kKernel, "bzImage has an unusable kernel_alignment {:#x}", alignment);
    }
    runtime_start = std::max((load_address + alignment - 1) & ~(alignment - 1), pref_address);
  }
  // The sums are checked before they are made: a pref_address near 2^64
  // plus init_size wrapped to a small end, and the initrd was then placed
  // where the kernel decompresses.
  const uint64_t init_size = header.init_size;
  if (payload_size > UINT64_MAX - load_address || init_size > UINT64_MAX - runtime_start) {
    return make_error(ErrorCode::kKernel, "bzImage wants to run at {:#x} (init_size {:#x}): beyond any "
                      "address space", runtime_start, init_size);
  }
  const uint64_t end = std::max(load_address + payload_size, runtime_start + init_size);
  if (end > low_ram_end) return too_small(end, low_ram_end);
  CROSVM_TRY(image.read(setup_size, CROSVM_TRY(memory.slice(load_address, payload_size))));

  LoadedKernel kernel{};
  kernel.format = KernelFormat::kBzImage;
  kernel.entry_point = load_address + kEntry64Offset;
  kernel.end = end;
  kernel.setup_header = header;
  kernel.cmdline_limit = header.cmdline_size;
  kernel.initrd_address_max = header.initrd_addr_max;
  return kernel;
}

Result<LoadedKernel> load_elf(const GuestMemory& memory, uint64_t low_ram_end,
                              const ImageSource& image) {
  if (image.size() < sizeof(Elf64_Ehdr)) {
    return make_error(ErrorCode::kKernel, "ELF kernel is truncated inside its header");
  }
  const auto ehdr = CROSVM_TRY(read_object<Elf64_Ehdr>(image, 0));
  if (ehdr.e_ident[EI_CLASS] != ELFCLASS64 || ehdr.e_ident[EI_DATA] != ELFDATA2LSB) {
    return make_error(ErrorCode::kKernel, "ELF kernel is not 64-bit little-endian");
  }
  if (ehdr.e_machine != EM_X86_64) {
    return make_error(ErrorCode::kKernel, "ELF kernel is for machine {}, not x86_64", ehdr.e_machine);
  }
  if (ehdr.e_type != ET_EXEC) {
    return make_error(ErrorCode::kKernel, "ELF file is not an executable (type {})", ehdr.e_type);
  }
  if (ehdr.e_phentsize != sizeof(Elf64_Phdr) || ehdr.e_phnum == 0) {
    return make_error(ErrorCode::kKernel, "ELF kernel has no usable program headers");
  }
  const uint64_t table_size = static_cast<uint64_t>(ehdr.e_phnum) * sizeof(Elf64_Phdr);
  if (ehdr.e_phoff > image.size() || table_size > image.size() - ehdr.e_phoff) {
    return make_error(ErrorCode::kKernel, "ELF kernel is truncated inside its program headers");
  }

  uint64_t end = 0;
  bool entry_loaded = false;
  size_t loaded_segments = 0;
  for (uint16_t i = 0; i < ehdr.e_phnum; ++i) {
    const auto phdr = CROSVM_TRY(read_object<Elf64_Phdr>(image, ehdr.e_phoff + i * sizeof(Elf64_Phdr)));
    if (phdr.p_type != PT_LOAD) continue;
    if (phdr.p_offset > image.size() || phdr.p_filesz > image.size() - phdr.p_offset) {
      return make_error(ErrorCode::kKernel, "ELF kernel is truncated: segment {} lies past the end "
                        "of the file", i);
    }
    if (phdr.p_filesz > phdr.p_memsz) {
      return make_error(ErrorCode::kKernel, "ELF segment {} is larger in the file than in memory", i);
    }
    const uint64_t segment_end = phdr.p_paddr + phdr.p_memsz;
    if (segment_end < phdr.p_paddr) {
      return make_error(ErrorCode::kKernel, "ELF segment {} wraps around the address space", i);
    }
    if (phdr.p_paddr < kHighMemoryStart) {
      return make_error(ErrorCode::kKernel, "ELF segment {} at {:#x} overlaps the boot area below 1 MiB",
                        i, phdr.p_paddr);
    }
    if (segment_end > low_ram_end) return too_small(segment_end, low_ram_end);
    std::span<uint8_t> target = CROSVM_TRY(memory.slice(phdr.p_paddr, phdr.p_memsz));
    CROSVM_TRY(image.read(phdr.p_offset, target.first(phdr.p_filesz)));
    std::memset(target.data() + phdr.p_filesz, 0, phdr.p_memsz - phdr.p_filesz);

    entry_loaded |= ehdr.e_entry >= phdr.p_paddr && ehdr.e_entry < segment_end;
    end = std::max(end, segment_end);
    ++loaded_segments;
  }
  if (loaded_segments == 0) return make_error(ErrorCode::kKernel, "ELF kernel has no loadable segment");
  if (!entry_loaded) {
    return make_error(ErrorCode::kKernel, "ELF entry point {:#x} is outside every loaded segment",
                      ehdr.e_entry);
  }

  LoadedKernel kernel{};
  kernel.format = KernelFormat::kElf;
  kernel.entry_point = ehdr.e_entry;
  kernel.end = (end + kPageSize - 1) & ~(kPageSize - 1);
  // An ELF kernel has no setup header; make the one a bzImage would carry.
  kernel.setup_header.boot_flag = kBootFlagMagic;
  kernel.setup_header.header = kHeaderMagic;
  kernel.setup_header.version = kMinimumBootProtocol;
  kernel.setup_header.loadflags = kLoadedHigh;
  kernel.setup_header.kernel_alignment = 0x1000000;
  kernel.cmdline_limit = kCmdlineCapacity - 1;
  kernel.initrd_address_max = low_ram_end - 1;
  return kernel;
}

Result<uint64_t> place_initrd(const LoadedKernel& kernel, uint64_t low_ram_end, uint64_t initrd_size) {
  const uint64_t limit = std::min(kernel.initrd_address_max + 1, low_ram_end);
  if (initrd_size > limit) {
    return make_error(ErrorCode::kInitrd, "the initrd ({} KiB) does not fit below {} MiB",
                      initrd_size >> 10, limit >> 20);
  }
  const uint64_t address = (limit - initrd_size) & ~(kPageSize - 1);
  if (address < kernel.end) {
    return make_error(ErrorCode::kInitrd,
                      "the initrd ({} KiB) does not fit in guest memory beside the kernel: give the "
                      "guest more memory", initrd_size >> 10);
  }
  return address;
}

}  // namespace crosvm::x86_64
