// Kernel images as a file may hold them: a bzImage or an ELF vmlinux, any
// bytes. Loading never writes outside guest RAM or past the end it
// reports, and the initrd is never placed under the kernel.
#include "arch/x86_64/kernel_loader.h"
#include "base/image_source.h"
#include "fuzz_common.h"

using namespace crosvm;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static constexpr uint64_t kRam = 64ull << 20;
  static GuestMemory memory = [] {
    const GuestRegion region{0, kRam};
    return std::move(GuestMemory::create(std::span(&region, 1))).value();
  }();
  const ImageSource image(std::span(data, size));
  auto kernel = x86_64::load_kernel(memory, kRam, image);
  if (!kernel) return 0;
  FUZZ_CHECK(kernel->end <= kRam);
  FUZZ_CHECK(kernel->entry_point < kRam);
  for (uint64_t initrd_size : {uint64_t{1}, uint64_t{4096}, uint64_t{1} << 20}) {
    if (auto address = x86_64::place_initrd(*kernel, kRam, initrd_size)) {
      FUZZ_CHECK(*address >= kernel->end && *address + initrd_size <= kRam);
    }
  }
  return 0;
}
