// Synthetic kernel images: a minimal valid bzImage and ELF vmlinux that tests
// then truncate or corrupt field by field.
#pragma once

#include <elf.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "arch/x86_64/boot_params.h"

namespace crosvm::testing {

struct BzImageSpec {
  uint8_t setup_sects = 4;
  uint16_t version = 0x020f;
  uint16_t xloadflags = x86_64::kXlfKernel64;
  uint8_t loadflags = x86_64::kLoadedHigh;
  uint8_t relocatable = 1;
  uint32_t init_size = 0x10000;
  uint32_t cmdline_size = 2047;
  uint32_t initrd_addr_max = 0x7fffffff;
  size_t payload_size = 0x4000;
};

inline std::vector<uint8_t> make_bzimage(const BzImageSpec& spec = {}) {
  const size_t setup_size = (spec.setup_sects + 1) * 512;
  std::vector<uint8_t> image(setup_size + spec.payload_size, 0);
  x86_64::SetupHeader header{};
  header.setup_sects = spec.setup_sects;
  header.syssize = static_cast<uint32_t>(spec.payload_size / 16);
  header.boot_flag = x86_64::kBootFlagMagic;
  header.jump = static_cast<uint16_t>(0xeb | ((0x26c - 0x202) << 8));  // jmp over the header
  header.header = x86_64::kHeaderMagic;
  header.version = spec.version;
  header.loadflags = spec.loadflags;
  header.initrd_addr_max = spec.initrd_addr_max;
  header.kernel_alignment = 0x200000;
  header.relocatable_kernel = spec.relocatable;
  header.xloadflags = spec.xloadflags;
  header.cmdline_size = spec.cmdline_size;
  header.pref_address = 0x1000000;
  header.init_size = spec.init_size;
  std::memcpy(image.data() + x86_64::kSetupHeaderOffset, &header, sizeof(header));
  for (size_t i = 0; i < spec.payload_size; ++i) image[setup_size + i] = static_cast<uint8_t>(i * 7);
  return image;
}

struct ElfSegment {
  uint64_t paddr;
  std::vector<uint8_t> data;
  uint64_t memsz;  // >= data.size()
};

inline std::vector<uint8_t> make_elf(uint64_t entry, const std::vector<ElfSegment>& segments,
                                     uint16_t machine = EM_X86_64) {
  Elf64_Ehdr ehdr{};
  std::memcpy(ehdr.e_ident, ELFMAG, SELFMAG);
  ehdr.e_ident[EI_CLASS] = ELFCLASS64;
  ehdr.e_ident[EI_DATA] = ELFDATA2LSB;
  ehdr.e_ident[EI_VERSION] = EV_CURRENT;
  ehdr.e_type = ET_EXEC;
  ehdr.e_machine = machine;
  ehdr.e_version = EV_CURRENT;
  ehdr.e_entry = entry;
  ehdr.e_phoff = sizeof(Elf64_Ehdr);
  ehdr.e_ehsize = sizeof(Elf64_Ehdr);
  ehdr.e_phentsize = sizeof(Elf64_Phdr);
  ehdr.e_phnum = static_cast<uint16_t>(segments.size());

  std::vector<uint8_t> image(sizeof(Elf64_Ehdr) + segments.size() * sizeof(Elf64_Phdr));
  std::memcpy(image.data(), &ehdr, sizeof(ehdr));
  for (size_t i = 0; i < segments.size(); ++i) {
    Elf64_Phdr phdr{};
    phdr.p_type = PT_LOAD;
    phdr.p_offset = image.size();
    phdr.p_paddr = phdr.p_vaddr = segments[i].paddr;
    phdr.p_filesz = segments[i].data.size();
    phdr.p_memsz = segments[i].memsz;
    phdr.p_flags = PF_R | PF_X;
    std::memcpy(image.data() + sizeof(Elf64_Ehdr) + i * sizeof(Elf64_Phdr), &phdr, sizeof(phdr));
    image.insert(image.end(), segments[i].data.begin(), segments[i].data.end());
  }
  return image;
}

}  // namespace crosvm::testing
