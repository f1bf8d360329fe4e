#include <catch2/catch.hpp>

#include "arch/x86_64/boot_setup.h"

using namespace crosvm;
using namespace crosvm::x86_64;

namespace {

// Catch binds a reference to the left operand of a comparison, and members of
// the packed boot structures may sit at odd addresses: read them by value.
template <typename T>
T field(T value) {
  return value;
}

LoadedKernel bzimage_kernel() {
  LoadedKernel kernel{};
  kernel.format = KernelFormat::kBzImage;
  kernel.entry_point = 0x100200;
  kernel.end = 0x2000000;
  kernel.setup_header.boot_flag = kBootFlagMagic;
  kernel.setup_header.header = kHeaderMagic;
  kernel.setup_header.version = 0x020f;
  kernel.setup_header.loadflags = kLoadedHigh;
  kernel.setup_header.cmdline_size = 2047;
  kernel.setup_header.init_size = 0x1000000;
  kernel.cmdline_limit = 2047;
  kernel.initrd_address_max = 0x7fffffff;
  return kernel;
}

}  // namespace

TEST_CASE("boot_params carries the header, command line, initrd and e820 map", "[boot]") {
  const LoadedKernel kernel = bzimage_kernel();
  const MemoryLayout layout = std::move(plan_memory(5ull << 30, 46)).value();
  BootInfo info{};
  info.kernel = &kernel;
  info.layout = &layout;
  info.cmdline = "console=ttyS0";
  info.initrd = InitrdLocation{0x7f000000, 0x123456};
  info.rsdp_address = 0xe0000;

  auto params = build_boot_params(info);

  REQUIRE(params.ok());
  CHECK(field(params->hdr.header) == kHeaderMagic);
  CHECK(field(params->hdr.version) == 0x020f);
  CHECK(field(params->hdr.init_size) == 0x1000000);  // the kernel's own fields survive
  CHECK(field(params->hdr.type_of_loader) == kLoaderTypeUndefined);
  CHECK((params->hdr.loadflags & kCanUseHeap) != 0);
  CHECK((params->hdr.loadflags & kLoadedHigh) != 0);
  CHECK(field(params->hdr.cmd_line_ptr) == kCmdlineAddress);
  CHECK(field(params->hdr.cmdline_size) == 2047);
  CHECK(field(params->hdr.ramdisk_image) == 0x7f000000);
  CHECK(field(params->hdr.ramdisk_size) == 0x123456);
  CHECK(field(params->ext_ramdisk_image) == 0);
  CHECK(field(params->acpi_rsdp_addr) == 0xe0000);
  REQUIRE(field(params->e820_entries) == build_e820_map(layout).size());
  CHECK(field(params->e820_table[0].address) == 0);
  CHECK(field(params->e820_table[0].type) == kE820Ram);
  CHECK(field(params->e820_table[params->e820_entries - 1].address) == kFourGiB);
}

TEST_CASE("a command line longer than the kernel accepts is refused", "[boot]") {
  const LoadedKernel kernel = bzimage_kernel();
  const MemoryLayout layout = std::move(plan_memory(256ull << 20, 46)).value();
  const std::string longest(2047, 'a');
  const std::string too_long(2048, 'a');
  BootInfo info{};
  info.kernel = &kernel;
  info.layout = &layout;

  info.cmdline = longest;
  CHECK(build_boot_params(info).ok());
  info.cmdline = too_long;
  auto params = build_boot_params(info);
  REQUIRE_FALSE(params.ok());
  CHECK(params.error().message.find("at most 2047") != std::string::npos);
}

TEST_CASE("a command line with a NUL byte is refused", "[boot]") {
  const LoadedKernel kernel = bzimage_kernel();
  const MemoryLayout layout = std::move(plan_memory(256ull << 20, 46)).value();
  const std::string with_nul("a\0b", 3);
  BootInfo info{};
  info.kernel = &kernel;
  info.layout = &layout;
  info.cmdline = with_nul;
  CHECK_FALSE(build_boot_params(info).ok());
}

TEST_CASE("the zero page and command line land in guest memory", "[boot]") {
  const LoadedKernel kernel = bzimage_kernel();
  const MemoryLayout layout = std::move(plan_memory(64ull << 20, 46)).value();
  GuestMemory memory = std::move(GuestMemory::create(layout.ram)).value();
  BootInfo info{};
  info.kernel = &kernel;
  info.layout = &layout;
  info.cmdline = "root=/dev/vda";

  REQUIRE(write_boot_info(memory, info).ok());

  auto params = memory.read_object<BootParams>(kZeroPageAddress);
  REQUIRE(params.ok());
  CHECK(field(params->hdr.cmd_line_ptr) == kCmdlineAddress);
  char cmdline[14] = {};
  REQUIRE(memory.read(kCmdlineAddress, std::span(reinterpret_cast<uint8_t*>(cmdline), 14)).ok());
  CHECK(std::string(cmdline) == "root=/dev/vda");
}
