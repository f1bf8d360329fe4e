#include <catch2/catch.hpp>

#include "arch/x86_64/kernel_loader.h"
#include "arch/x86_64/layout.h"
#include "kernel_images.h"

using namespace crosvm;
using namespace crosvm::x86_64;
using crosvm::testing::BzImageSpec;
using crosvm::testing::make_bzimage;
using crosvm::testing::make_elf;

namespace {

constexpr uint64_t kRam = 64ull << 20;

GuestMemory make_memory(uint64_t size = kRam) {
  const GuestRegion region{0, size};
  return std::move(GuestMemory::create(std::span(&region, 1))).value();
}

bool message_contains(const Error& error, const std::string& text) {
  return error.message.find(text) != std::string::npos;
}

}  // namespace

TEST_CASE("a valid bzImage loads at 1 MiB and enters at its 64-bit entry", "[kernel]") {
  GuestMemory memory = make_memory();
  const std::vector<uint8_t> image = make_bzimage();

  auto kernel = load_kernel(memory, kRam, ImageSource(image));

  REQUIRE(kernel.ok());
  CHECK(kernel->format == KernelFormat::kBzImage);
  CHECK(kernel->entry_point == kKernelLoadAddress + 0x200);
  // It decompresses at its pref_address (16 MiB) and needs init_size from there.
  CHECK(kernel->end == 0x1000000 + 0x10000);
  CHECK(kernel->cmdline_limit == 2047);
  const size_t setup_size = 5 * 512;
  std::vector<uint8_t> loaded(0x4000);
  REQUIRE(memory.read(kKernelLoadAddress, loaded).ok());
  CHECK(std::equal(loaded.begin(), loaded.end(), image.begin() + setup_size));
}

TEST_CASE("a bzImage with setup_sects 0 means 4 setup sectors", "[kernel]") {
  GuestMemory memory = make_memory();
  BzImageSpec spec;
  spec.setup_sects = 4;
  std::vector<uint8_t> image = make_bzimage(spec);
  image[kSetupHeaderOffset] = 0;

  auto kernel = load_bzimage(memory, kRam, ImageSource(image));

  REQUIRE(kernel.ok());
  uint8_t first = 0;
  REQUIRE(memory.read(kKernelLoadAddress, std::span(&first, 1)).ok());
  CHECK(first == image[5 * 512]);
}

TEST_CASE("a non-relocatable bzImage loads at its preferred address", "[kernel]") {
  GuestMemory memory = make_memory();
  BzImageSpec spec;
  spec.relocatable = 0;

  auto kernel = load_bzimage(memory, kRam, ImageSource(make_bzimage(spec)));

  REQUIRE(kernel.ok());
  CHECK(kernel->entry_point == 0x1000000 + 0x200);
}

TEST_CASE("an empty file is not a kernel", "[kernel]") {
  GuestMemory memory = make_memory();
  auto kernel = load_kernel(memory, kRam, ImageSource({}));
  REQUIRE_FALSE(kernel.ok());
  CHECK(kernel.error().code == ErrorCode::kKernel);
  CHECK(message_contains(kernel.error(), "empty"));
}

TEST_CASE("a file that is neither bzImage nor ELF is refused", "[kernel]") {
  GuestMemory memory = make_memory();
  std::vector<uint8_t> text(4096, 'x');
  auto kernel = load_kernel(memory, kRam, ImageSource(text));
  REQUIRE_FALSE(kernel.ok());
  CHECK(message_contains(kernel.error(), "not a Linux kernel"));
}

TEST_CASE("a bzImage cut short inside its header is refused", "[kernel]") {
  GuestMemory memory = make_memory();
  std::vector<uint8_t> image = make_bzimage();
  image.resize(0x240);
  auto kernel = load_kernel(memory, kRam, ImageSource(image));
  REQUIRE_FALSE(kernel.ok());
  CHECK(message_contains(kernel.error(), "truncated"));
}

TEST_CASE("a bzImage shorter than its header declares is refused", "[kernel]") {
  GuestMemory memory = make_memory();
  std::vector<uint8_t> image = make_bzimage();
  image.resize(image.size() - 100);
  auto kernel = load_kernel(memory, kRam, ImageSource(image));
  REQUIRE_FALSE(kernel.ok());
  CHECK(message_contains(kernel.error(), "truncated"));
}

TEST_CASE("a bzImage whose setup fills the whole file has no kernel", "[kernel]") {
  GuestMemory memory = make_memory();
  BzImageSpec spec;
  spec.setup_sects = 200;
  std::vector<uint8_t> image = make_bzimage(spec);
  image.resize(4096);
  auto kernel = load_kernel(memory, kRam, ImageSource(image));
  REQUIRE_FALSE(kernel.ok());
  CHECK(message_contains(kernel.error(), "no kernel after"));
}

TEST_CASE("corrupt bzImage headers are refused with a reason", "[kernel]") {
  GuestMemory memory = make_memory();
  SECTION("bad boot flag") {
    std::vector<uint8_t> image = make_bzimage();
    image[0x1fe] = 0;
    auto kernel = load_kernel(memory, kRam, ImageSource(image));
    REQUIRE_FALSE(kernel.ok());
    CHECK(message_contains(kernel.error(), "boot flag"));
  }
  SECTION("boot protocol too old") {
    BzImageSpec spec;
    spec.version = 0x0206;
    auto kernel = load_kernel(memory, kRam, ImageSource(make_bzimage(spec)));
    REQUIRE_FALSE(kernel.ok());
    CHECK(message_contains(kernel.error(), "boot protocol 2.06"));
  }
  SECTION("no 64-bit entry") {
    BzImageSpec spec;
    spec.xloadflags = 0;
    auto kernel = load_kernel(memory, kRam, ImageSource(make_bzimage(spec)));
    REQUIRE_FALSE(kernel.ok());
    CHECK(message_contains(kernel.error(), "64-bit"));
  }
  SECTION("zImage") {
    BzImageSpec spec;
    spec.loadflags = 0;
    auto kernel = load_kernel(memory, kRam, ImageSource(make_bzimage(spec)));
    REQUIRE_FALSE(kernel.ok());
    CHECK(message_contains(kernel.error(), "zImage"));
  }
}

TEST_CASE("a kernel larger than guest memory is refused before anything is written", "[kernel]") {
  GuestMemory memory = make_memory(4ull << 20);
  BzImageSpec spec;
  spec.init_size = 16u << 20;
  auto kernel = load_kernel(memory, 4ull << 20, ImageSource(make_bzimage(spec)));
  REQUIRE_FALSE(kernel.ok());
  CHECK(kernel.error().code == ErrorCode::kMemory);
  CHECK(message_contains(kernel.error(), "too small"));
}

TEST_CASE("a relocatable bzImage needs init_size from where it decompresses, not from 1 MiB",
          "[kernel]") {
  // Debian's kernel: loaded at 1 MiB, it moves to 16 MiB and needs 51 MiB
  // there, so a 64 MiB guest cannot hold it although 1 + 51 < 64.
  GuestMemory memory = make_memory(24ull << 20);
  BzImageSpec spec;
  spec.init_size = 10u << 20;
  auto kernel = load_kernel(memory, 24ull << 20, ImageSource(make_bzimage(spec)));
  REQUIRE_FALSE(kernel.ok());
  CHECK(kernel.error().code == ErrorCode::kMemory);
  CHECK(message_contains(kernel.error(), "up to 26 MiB"));
}

TEST_CASE("a relocatable bzImage whose preferred address plus init_size wraps is refused", "[kernel][hostile]") {
  // pref_address near 2^64: runtime start + init_size wrapped to a small
  // end, the kernel was accepted and the initrd placed where it runs.
  GuestMemory memory = make_memory();
  std::vector<uint8_t> image = make_bzimage();
  SetupHeader header;
  std::memcpy(&header, image.data() + kSetupHeaderOffset, sizeof(header));
  header.pref_address = 0xffff'ffff'ffe0'0000ull;
  header.init_size = 0x400000;
  std::memcpy(image.data() + kSetupHeaderOffset, &header, sizeof(header));
  auto kernel = load_kernel(memory, kRam, ImageSource(image));
  REQUIRE_FALSE(kernel.ok());
  CHECK(message_contains(kernel.error(), "beyond any address space"));
}

TEST_CASE("a relocatable bzImage with a kernel_alignment that is not a power of two is refused",
          "[kernel]") {
  GuestMemory memory = make_memory();
  std::vector<uint8_t> image = make_bzimage();
  SetupHeader header;
  std::memcpy(&header, image.data() + kSetupHeaderOffset, sizeof(header));
  header.kernel_alignment = 0x300000;
  std::memcpy(image.data() + kSetupHeaderOffset, &header, sizeof(header));
  auto kernel = load_kernel(memory, kRam, ImageSource(image));
  REQUIRE_FALSE(kernel.ok());
  CHECK(message_contains(kernel.error(), "kernel_alignment"));
}

TEST_CASE("an ELF kernel loads its segments at their physical addresses", "[kernel]") {
  GuestMemory memory = make_memory();
  const std::vector<uint8_t> code = {0xf4, 0xeb, 0xfd};
  auto image = make_elf(0x200000, {{0x200000, code, 0x2000}});
  // Dirty the .bss area first: the loader must zero it.
  std::vector<uint8_t> dirt(0x2000, 0xaa);
  REQUIRE(memory.write(0x200000, dirt).ok());

  auto kernel = load_kernel(memory, kRam, ImageSource(image));

  REQUIRE(kernel.ok());
  CHECK(kernel->format == KernelFormat::kElf);
  CHECK(kernel->entry_point == 0x200000);
  CHECK(kernel->end == 0x202000);
  std::vector<uint8_t> loaded(0x2000);
  REQUIRE(memory.read(0x200000, loaded).ok());
  CHECK(loaded[0] == 0xf4);
  CHECK(loaded[2] == 0xfd);
  CHECK(loaded[3] == 0);
  CHECK(loaded[0x1fff] == 0);
}

TEST_CASE("malformed ELF kernels are refused with a reason", "[kernel]") {
  GuestMemory memory = make_memory();
  const std::vector<uint8_t> code(16, 0x90);

  SECTION("truncated header") {
    auto image = make_elf(0x200000, {{0x200000, code, 16}});
    image.resize(40);
    auto kernel = load_kernel(memory, kRam, ImageSource(image));
    REQUIRE_FALSE(kernel.ok());
    CHECK(message_contains(kernel.error(), "truncated"));
  }
  SECTION("program headers past the end") {
    auto image = make_elf(0x200000, {{0x200000, code, 16}});
    image.resize(sizeof(Elf64_Ehdr) + 10);
    auto kernel = load_kernel(memory, kRam, ImageSource(image));
    REQUIRE_FALSE(kernel.ok());
    CHECK(message_contains(kernel.error(), "program headers"));
  }
  SECTION("segment data past the end") {
    auto image = make_elf(0x200000, {{0x200000, code, 16}});
    image.resize(image.size() - 4);
    auto kernel = load_kernel(memory, kRam, ImageSource(image));
    REQUIRE_FALSE(kernel.ok());
    CHECK(message_contains(kernel.error(), "past the end"));
  }
  SECTION("file size larger than memory size") {
    auto image = make_elf(0x200000, {{0x200000, code, 8}});
    auto kernel = load_kernel(memory, kRam, ImageSource(image));
    REQUIRE_FALSE(kernel.ok());
    CHECK(message_contains(kernel.error(), "larger in the file"));
  }
  SECTION("segment in the boot area below 1 MiB") {
    auto image = make_elf(0x7000, {{0x7000, code, 16}});
    auto kernel = load_kernel(memory, kRam, ImageSource(image));
    REQUIRE_FALSE(kernel.ok());
    CHECK(message_contains(kernel.error(), "below 1 MiB"));
  }
  SECTION("segment address wraps around") {
    auto image = make_elf(0x200000, {{0xfffffffffffff000ull, code, 0x2000}});
    auto kernel = load_kernel(memory, kRam, ImageSource(image));
    REQUIRE_FALSE(kernel.ok());
  }
  SECTION("segment beyond guest RAM") {
    auto image = make_elf(kRam + 0x1000, {{kRam + 0x1000, code, 16}});
    auto kernel = load_kernel(memory, kRam, ImageSource(image));
    REQUIRE_FALSE(kernel.ok());
    CHECK(kernel.error().code == ErrorCode::kMemory);
  }
  SECTION("entry outside every segment") {
    auto image = make_elf(0x300000, {{0x200000, code, 16}});
    auto kernel = load_kernel(memory, kRam, ImageSource(image));
    REQUIRE_FALSE(kernel.ok());
    CHECK(message_contains(kernel.error(), "entry point"));
  }
  SECTION("wrong machine") {
    auto image = make_elf(0x200000, {{0x200000, code, 16}}, EM_AARCH64);
    auto kernel = load_kernel(memory, kRam, ImageSource(image));
    REQUIRE_FALSE(kernel.ok());
    CHECK(message_contains(kernel.error(), "not x86_64"));
  }
  SECTION("32-bit ELF") {
    auto image = make_elf(0x200000, {{0x200000, code, 16}});
    image[EI_CLASS] = ELFCLASS32;
    auto kernel = load_kernel(memory, kRam, ImageSource(image));
    REQUIRE_FALSE(kernel.ok());
    CHECK(message_contains(kernel.error(), "64-bit"));
  }
  SECTION("no loadable segment") {
    auto image = make_elf(0x200000, {});
    auto kernel = load_kernel(memory, kRam, ImageSource(image));
    REQUIRE_FALSE(kernel.ok());
  }
}

TEST_CASE("the initrd goes as high as allowed, page-aligned, above the kernel", "[kernel]") {
  LoadedKernel kernel{};
  kernel.end = 0x2000000;
  kernel.initrd_address_max = 0x37ffffff;

  SECTION("below the end of low RAM") {
    auto address = place_initrd(kernel, 256ull << 20, 0x12345);
    REQUIRE(address.ok());
    CHECK(*address % 4096 == 0);
    CHECK(*address + 0x12345 <= (256ull << 20));
    CHECK(*address >= (256ull << 20) - 0x14000);
  }
  SECTION("below the kernel's initrd_addr_max") {
    auto address = place_initrd(kernel, 3ull << 30, 0x100000);
    REQUIRE(address.ok());
    CHECK(*address + 0x100000 <= 0x38000000);
  }
  SECTION("too large to fit beside the kernel") {
    auto address = place_initrd(kernel, 64ull << 20, 40ull << 20);
    REQUIRE_FALSE(address.ok());
    CHECK(address.error().code == ErrorCode::kInitrd);
  }
}
