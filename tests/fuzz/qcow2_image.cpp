// A hostile qcow2 image: the input's first byte picks read-only or
// writable (bit 0 set: read-only), the rest is the image file. Opening refuses it or builds a
// disk; then reads, writes, discards and a flush at offsets the input
// picks must fail cleanly or succeed, and a write that succeeded reads back
// as written.
#include <fuzzer/FuzzedDataProvider.h>
#include <sys/mman.h>
#include <unistd.h>

#include <vector>

#include "disk/disk_file.h"
#include "fuzz_common.h"

using namespace crosvm;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  // The image is the input after its first byte; the operations take
  // their numbers from the input's end (FuzzedDataProvider's integers), so
  // a seed is a mode byte and a real image.
  const uint8_t mode = data[0];
  const std::vector<uint8_t> image(data + 1, data + size);
  FuzzedDataProvider input(data + 1, size - 1);
  UniqueFd file(::memfd_create("qcow2-fuzz", MFD_CLOEXEC));
  FUZZ_CHECK(file);
  FUZZ_CHECK(::write(file.get(), image.data(), image.size()) == static_cast<ssize_t>(image.size()));
  std::vector<UniqueFd> fds;
  fds.push_back(std::move(file));
  const bool read_only = (mode & 1) != 0;
  auto opened = disk::adopt_image(std::move(fds), {.path = "fuzz.qcow2", .read_only = read_only});
  if (!opened) return 0;
  disk::DiskFile& disk = **opened;
  const uint64_t disk_size = disk.size();
  if (disk_size < 512) return 0;
  std::vector<uint8_t> buffer(4096);
  for (int round = 0; round < 8 && input.remaining_bytes() > 0; ++round) {
    const uint64_t offset = input.ConsumeIntegralInRange<uint64_t>(0, disk_size - 512) & ~511ull;
    const size_t length = static_cast<size_t>(std::min<uint64_t>(
        input.ConsumeIntegralInRange<size_t>(1, buffer.size() / 512) * 512, (disk_size - offset) & ~511ull));
    const iovec piece{buffer.data(), length};
    switch (input.ConsumeIntegralInRange<int>(0, 3)) {
      case 0:
        (void)disk.read_at(offset, std::span(&piece, 1));
        break;
      case 1: {
        std::vector<uint8_t> bytes(length, input.ConsumeIntegral<uint8_t>());
        const iovec source{bytes.data(), bytes.size()};
        if (!disk.write_at(offset, std::span(&source, 1))) break;
        FUZZ_CHECK(!read_only);
        std::vector<uint8_t> back(length, static_cast<uint8_t>(~bytes[0]));
        const iovec target{back.data(), back.size()};
        FUZZ_CHECK(disk.read_at(offset, std::span(&target, 1)).ok());
        FUZZ_CHECK(back == bytes);
        break;
      }
      case 2:
        (void)disk.discard(offset, length);
        break;
      case 3:
        (void)disk.flush();
        break;
    }
  }
  return 0;
}
