// virtio-blk requests against a temporary raw image: read, write, flush,
// discard, write-zeroes, GET_ID, and the ones that must fail with nothing
// written (past the end, read-only, malformed). Also the image lock.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "devices/virtio/block.h"
#include "disk/disk_file.h"
#include "fakes.h"
#include "temp_file.h"
#include "virtio_rings.h"

using namespace crosvm;
using namespace crosvm::virtio;

namespace {

constexpr uint64_t kImageSize = 64 * 1024;
constexpr uint64_t kHeader = 0x10000;
constexpr uint64_t kData = 0x20000;
constexpr uint64_t kStatus = 0x30000;

std::vector<uint8_t> image_pattern() {
  std::vector<uint8_t> bytes(kImageSize);
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = static_cast<uint8_t>(i * 7);
  return bytes;
}

// A temporary image whose byte i is (i * 7) & 0xff.
class TempImage {
 public:
  TempImage() : file_("crosvm-block", image_pattern()) {}
  const std::string& path() const { return file_.path(); }

  std::vector<uint8_t> contents() const {
    std::vector<uint8_t> bytes(kImageSize + 1);
    const int fd = ::open(path().c_str(), O_RDONLY);
    const ssize_t got = ::read(fd, bytes.data(), bytes.size());
    ::close(fd);
    bytes.resize(static_cast<size_t>(got));
    return bytes;
  }
  std::unique_ptr<disk::DiskFile> open(bool read_only = false) const {
    return std::move(disk::open_disk({.path = path(), .read_only = read_only})).value();
  }

 private:
  TempFile file_;
};

struct Request {
  GuestMemory memory = crosvm::testing::make_guest_memory();
  DescriptorChain chain;
  std::string problem;

  // header, then `data` readable bytes (for writes) or writable (for reads), then the status.
  void build(uint32_t type, uint64_t sector, uint32_t data_bytes, bool device_writes_data) {
    const uint32_t header[4] = {type, 0, static_cast<uint32_t>(sector), static_cast<uint32_t>(sector >> 32)};
    REQUIRE(memory.write(kHeader, std::span(reinterpret_cast<const uint8_t*>(header), 16)).ok());
    REQUIRE(memory.write_object<uint8_t>(kStatus, 0xee).ok());
    chain = {};
    chain.readable.push_back({kHeader, 16});
    if (data_bytes > 0) {
      (device_writes_data ? chain.writable : chain.readable).push_back({kData, data_bytes});
    }
    chain.writable.push_back({kStatus, 1});
  }
  uint32_t serve(disk::DiskFile& disk, const BlockLimits& limits = {}) {
    problem.clear();
    return serve_block_request(disk, memory, chain, "crosvm-disk-7", limits, &problem);
  }
  uint8_t status() const { return memory.read_object<uint8_t>(kStatus).value(); }
  std::vector<uint8_t> data(size_t bytes) const {
    std::vector<uint8_t> out(bytes);
    REQUIRE(memory.read(kData, out).ok());
    return out;
  }
  void fill_data(uint8_t value, size_t bytes) {
    std::vector<uint8_t> pattern(bytes, value);
    REQUIRE(memory.write(kData, pattern).ok());
  }
};

// Segments for DISCARD / WRITE_ZEROES, placed as the request's readable data.
void segment(Request& request, uint64_t sector, uint32_t sectors, uint32_t flags) {
  uint8_t raw[16];
  std::memcpy(raw, &sector, 8);
  std::memcpy(raw + 8, &sectors, 4);
  std::memcpy(raw + 12, &flags, 4);
  REQUIRE(request.memory.write(kData, raw).ok());
}

}  // namespace

TEST_CASE("a read copies the image into the guest's buffers", "[block]") {
  TempImage image;
  auto disk = image.open();
  Request request;
  request.build(kBlockRequestIn, 2, 1024, true);
  CHECK(request.serve(*disk) == 1024 + 1);
  CHECK(request.status() == kBlockStatusOk);
  const std::vector<uint8_t> data = request.data(1024);
  const std::vector<uint8_t> expected = image.contents();
  CHECK(std::equal(data.begin(), data.end(), expected.begin() + 1024));
}

TEST_CASE("a write lands in the image and flush succeeds", "[block]") {
  TempImage image;
  auto disk = image.open();
  Request request;
  request.fill_data(0x5a, 512);
  request.build(kBlockRequestOut, 3, 512, false);
  CHECK(request.serve(*disk) == 1);
  CHECK(request.status() == kBlockStatusOk);
  request.build(kBlockRequestFlush, 0, 0, false);
  CHECK(request.serve(*disk) == 1);
  CHECK(request.status() == kBlockStatusOk);
  const std::vector<uint8_t> contents = image.contents();
  CHECK(std::all_of(contents.begin() + 1536, contents.begin() + 2048, [](uint8_t b) { return b == 0x5a; }));
  CHECK(contents[1535] == static_cast<uint8_t>(1535 * 7));
  CHECK(contents.size() == kImageSize);
}

TEST_CASE("write-zeroes and discard change the range and nothing else", "[block]") {
  TempImage image;
  auto disk = image.open();
  Request request;
  request.build(kBlockRequestWriteZeroes, 0, 16, false);
  segment(request, 8, 8, 0);  // 4 KiB at 4 KiB
  CHECK(request.serve(*disk) == 1);
  CHECK(request.status() == kBlockStatusOk);
  std::vector<uint8_t> contents = image.contents();
  CHECK(std::all_of(contents.begin() + 4096, contents.begin() + 8192, [](uint8_t b) { return b == 0; }));
  CHECK(contents[8192] == static_cast<uint8_t>(8192 * 7));

  request.build(kBlockRequestWriteZeroes, 0, 16, false);
  segment(request, 16, 8, 1);  // unmap allowed
  CHECK(request.serve(*disk) == 1);
  contents = image.contents();
  CHECK(std::all_of(contents.begin() + 8192, contents.begin() + 12288, [](uint8_t b) { return b == 0; }));

  request.build(kBlockRequestDiscard, 0, 16, false);
  segment(request, 32, 8, 0);
  CHECK(request.serve(*disk) == 1);
  CHECK(request.status() == kBlockStatusOk);
  CHECK(image.contents().size() == kImageSize);  // discarding never changes the size
}

TEST_CASE("sparse=false offers no discard and keeps the space write-zeroes covers", "[block]") {
  TempImage image;
  auto blocks = [&] {
    struct stat info{};
    REQUIRE(::stat(image.path().c_str(), &info) == 0);
    return info.st_blocks;
  };
  const auto before = blocks();
  {
    Block device(image.open(), BlockOptions{.id = "x", .block_size = 4096, .sparse = false}, "disk",
                 crosvm::testing::quiet_logger());
    CHECK((device.device_features() & (1ull << 13)) == 0);  // VIRTIO_BLK_F_DISCARD
    CHECK((device.device_features() & (1ull << 14)) != 0);  // VIRTIO_BLK_F_WRITE_ZEROES
    uint8_t config[64] = {};
    device.read_config(0, config);
    uint32_t block_size = 0;
    std::memcpy(&block_size, config + 20, 4);
    CHECK(block_size == 4096);
    CHECK(config[56] == 0);  // write_zeroes_may_unmap
  }
  TempImage other;
  Block sparse(other.open(), BlockOptions{}, "disk", crosvm::testing::quiet_logger());
  CHECK((sparse.device_features() & (1ull << 13)) != 0);

  auto disk = image.open();
  Request request;
  request.build(kBlockRequestWriteZeroes, 0, 16, false);
  segment(request, 0, 64, 1);  // all 32 KiB, unmap allowed by the driver
  CHECK(request.serve(*disk, BlockLimits{.may_unmap = false}) == 1);
  CHECK(request.status() == kBlockStatusOk);
  std::vector<uint8_t> contents = image.contents();
  CHECK(std::all_of(contents.begin(), contents.begin() + 32768, [](uint8_t b) { return b == 0; }));
  CHECK(blocks() == before);
  request.build(kBlockRequestDiscard, 0, 16, false);
  segment(request, 0, 8, 0);
  CHECK(request.serve(*disk, BlockLimits{.may_unmap = false}) == 1);
  CHECK(request.status() == kBlockStatusUnsupported);
}

TEST_CASE("lock=false opens an image another process has locked", "[block]") {
  TempImage image;
  auto first = image.open();
  CHECK_FALSE(disk::open_disk({.path = image.path()}).ok());
  CHECK(disk::open_disk({.path = image.path(), .lock = false}).ok());
}

TEST_CASE("GET_ID returns the disk's id", "[block]") {
  TempImage image;
  auto disk = image.open();
  Request request;
  request.build(kBlockRequestGetId, 0, 20, true);
  CHECK(request.serve(*disk) == 20 + 1);
  const std::vector<uint8_t> id = request.data(20);
  CHECK(std::string(id.begin(), id.begin() + 13) == "crosvm-disk-7");
  CHECK(id[13] == 0);
}

TEST_CASE("requests past the end fail with IOERR and touch nothing", "[block][hostile]") {
  TempImage image;
  auto disk = image.open();
  const std::vector<uint8_t> before = image.contents();
  Request request;
  const uint64_t last_sector = kImageSize / 512 - 1;

  request.fill_data(0x11, 1024);
  request.build(kBlockRequestIn, last_sector, 1024, true);  // one sector too far
  CHECK(request.serve(*disk) == 1);
  CHECK(request.status() == kBlockStatusIoError);
  CHECK(request.data(1024) == std::vector<uint8_t>(1024, 0x11));  // the guest buffer is untouched

  request.build(kBlockRequestOut, last_sector, 1024, false);
  CHECK(request.serve(*disk) == 1);
  CHECK(request.status() == kBlockStatusIoError);

  request.build(kBlockRequestOut, UINT64_MAX / 256, 512, false);  // sector * 512 overflows
  CHECK(request.serve(*disk) == 1);
  CHECK(request.status() == kBlockStatusIoError);

  request.build(kBlockRequestWriteZeroes, 0, 16, false);
  segment(request, last_sector, 2, 0);
  CHECK(request.serve(*disk) == 1);
  CHECK(request.status() == kBlockStatusIoError);

  CHECK(image.contents() == before);
}

TEST_CASE("a read-only disk refuses every write with nothing written", "[block][hostile]") {
  TempImage image;
  auto disk = image.open(true);
  const std::vector<uint8_t> before = image.contents();
  Request request;
  request.fill_data(0x22, 512);
  for (uint32_t type : {kBlockRequestOut, kBlockRequestDiscard, kBlockRequestWriteZeroes}) {
    INFO("request type " << type);
    request.build(type, 0, type == kBlockRequestOut ? 512 : 16, false);
    if (type != kBlockRequestOut) segment(request, 0, 1, 0);
    CHECK(request.serve(*disk) == 1);
    CHECK(request.status() == kBlockStatusIoError);
    CHECK_THAT(request.problem, Catch::Contains("read-only"));
  }
  CHECK(image.contents() == before);
  request.build(kBlockRequestIn, 0, 512, true);
  request.serve(*disk);
  CHECK(request.status() == kBlockStatusOk);
}

TEST_CASE("malformed requests get an error status, or nothing when there is no status byte", "[block][hostile]") {
  TempImage image;
  auto disk = image.open();
  const std::vector<uint8_t> before = image.contents();
  Request request;

  SECTION("no room for a status") {
    request.build(kBlockRequestIn, 0, 512, true);
    request.chain.writable.clear();
    CHECK(request.serve(*disk) == 0);
    CHECK_THAT(request.problem, Catch::Contains("status"));
  }
  SECTION("a header cut short") {
    request.build(kBlockRequestIn, 0, 512, true);
    request.chain.readable[0].length = 8;
    CHECK(request.serve(*disk) == 1);
    CHECK(request.status() == kBlockStatusIoError);
  }
  SECTION("a length that is not whole sectors") {
    request.build(kBlockRequestOut, 0, 100, false);
    CHECK(request.serve(*disk) == 1);
    CHECK(request.status() == kBlockStatusIoError);
  }
  SECTION("an unknown request type") {
    request.build(99, 0, 0, false);
    CHECK(request.serve(*disk) == 1);
    CHECK(request.status() == kBlockStatusUnsupported);
  }
  SECTION("discard with the unmap flag, or segments not whole") {
    request.build(kBlockRequestDiscard, 0, 16, false);
    segment(request, 0, 1, 1);
    request.serve(*disk);
    CHECK(request.status() == kBlockStatusUnsupported);
    request.build(kBlockRequestDiscard, 0, 12, false);
    request.serve(*disk);
    CHECK(request.status() == kBlockStatusIoError);
  }
  CHECK(image.contents() == before);
}

TEST_CASE("a writable image is locked against a second writer and readers", "[block]") {
  TempImage image;
  auto first = image.open();
  auto second = disk::open_disk({.path = image.path(), .read_only = false});
  REQUIRE_FALSE(second.ok());
  CHECK_THAT(second.error().message, Catch::Contains("in use"));
  auto reader = disk::open_disk({.path = image.path(), .read_only = true});
  CHECK_FALSE(reader.ok());
  first.reset();
  CHECK(disk::open_disk({.path = image.path(), .read_only = false}).ok());
}

TEST_CASE("read-only images can be shared; a missing image is a clear error", "[block]") {
  TempImage image;
  auto first = image.open(true);
  CHECK(disk::open_disk({.path = image.path(), .read_only = true}).ok());
  auto missing = disk::open_disk({.path = image.path() + ".missing", .read_only = true});
  REQUIRE_FALSE(missing.ok());
  CHECK_THAT(missing.error().message, Catch::Contains("No such file"));
}
