#include <catch2/catch.hpp>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>

#include <numeric>
#include <vector>

#include "arch/x86_64/kernel_loader.h"
#include "arch/x86_64/layout.h"
#include "base/image_source.h"
#include "kernel_images.h"
#include "temp_file.h"

using namespace crosvm;

namespace {

std::vector<uint8_t> counting_bytes(size_t size) {
  std::vector<uint8_t> bytes(size);
  std::iota(bytes.begin(), bytes.end(), uint8_t{0});
  return bytes;
}

}  // namespace

TEST_CASE("a file image reads any range it holds", "[image]") {
  const std::vector<uint8_t> contents = counting_bytes(10000);
  TempFile file("image", contents);
  auto image = ImageSource::open(file.path(), "kernel");
  REQUIRE(image);
  CHECK(image->size() == contents.size());

  std::vector<uint8_t> middle(300);
  REQUIRE(image->read(5000, middle));
  CHECK(std::equal(middle.begin(), middle.end(), contents.begin() + 5000));
}

TEST_CASE("a file image's first block is read once, so every look at its headers agrees", "[image]") {
  const std::vector<uint8_t> contents = counting_bytes(3 * ImageSource::kHeadSize);
  TempFile file("image", contents);
  auto image = ImageSource::open(file.path(), "kernel");
  REQUIRE(image);
  std::vector<uint8_t> first(64);
  REQUIRE(image->read(0, first));

  // The file changes under the VMM between the format check and the load.
  const std::vector<uint8_t> changed(ImageSource::kHeadSize + 64, 0xee);
  {
    const UniqueFd fd(::open(file.path().c_str(), O_WRONLY | O_CLOEXEC));
    REQUIRE(fd);
    REQUIRE(::pwrite(fd.get(), changed.data(), changed.size(), 0) == static_cast<ssize_t>(changed.size()));
  }
  std::vector<uint8_t> again(64);
  REQUIRE(image->read(0, again));
  CHECK(again == first);
  std::vector<uint8_t> header(0x100);
  REQUIRE(image->read(0x1f1, header));
  CHECK(std::equal(header.begin(), header.end(), contents.begin() + 0x1f1));
  // Beyond the first block every read goes to the file.
  std::vector<uint8_t> beyond(32);
  REQUIRE(image->read(ImageSource::kHeadSize, beyond));
  CHECK(std::all_of(beyond.begin(), beyond.end(), [](uint8_t byte) { return byte == 0xee; }));
}

TEST_CASE("a read past the end of an image is refused", "[image]") {
  const std::vector<uint8_t> contents = counting_bytes(64);
  const ImageSource image{std::span<const uint8_t>(contents)};
  std::vector<uint8_t> out(16);
  CHECK_FALSE(image.read(60, out));
  CHECK_FALSE(image.read(UINT64_MAX - 4, out));
  CHECK(image.read(48, out));
}

TEST_CASE("a file that shrinks after it was opened fails its read with a reason", "[image]") {
  TempFile file("image", counting_bytes(8192));
  auto image = ImageSource::open(file.path(), "initrd");
  REQUIRE(image);
  REQUIRE(::truncate(file.path().c_str(), 100) == 0);

  std::vector<uint8_t> out(4096);
  auto read = image->read(0, out);
  REQUIRE_FALSE(read);
  CHECK(read.error().code == ErrorCode::kIo);
  CHECK(read.error().message.find("shrank") != std::string::npos);
  CHECK(read.error().message.find(file.path()) != std::string::npos);
}

TEST_CASE("an image must be a regular file that exists", "[image]") {
  auto missing = ImageSource::open("/nonexistent/bzImage", "kernel");
  REQUIRE_FALSE(missing);
  CHECK(missing.error().code == ErrorCode::kIo);
  CHECK(missing.error().message.find("cannot open kernel '/nonexistent/bzImage'") != std::string::npos);

  auto directory = ImageSource::open("/tmp", "initrd");
  REQUIRE_FALSE(directory);
  CHECK(directory.error().message.find("not a regular file") != std::string::npos);
}

TEST_CASE("a bzImage loads from a file straight into guest memory", "[image][kernel]") {
  std::vector<uint8_t> bytes = crosvm::testing::make_bzimage();
  const size_t setup = (static_cast<size_t>(bytes[0x1f1]) + 1) * 512;
  for (size_t i = setup; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i * 7 + 1);
  TempFile file("bzimage", bytes);
  const GuestRegion region{0, 64ull << 20};
  GuestMemory memory = std::move(GuestMemory::create(std::span(&region, 1))).value();
  auto image = ImageSource::open(file.path(), "kernel");
  REQUIRE(image);

  auto kernel = x86_64::load_kernel(memory, 64ull << 20, *image);
  REQUIRE(kernel);
  auto loaded = memory.slice(x86_64::kKernelLoadAddress, bytes.size() - setup);
  REQUIRE(loaded);
  CHECK(std::equal(loaded->begin(), loaded->end(), bytes.begin() + static_cast<ptrdiff_t>(setup)));
}
