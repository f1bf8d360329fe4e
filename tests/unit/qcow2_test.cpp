// qcow2 images against QEMU's own tools: images made by `qemu-img` are read
// and written here, then `qemu-img check` must find them clean and
// `qemu-img compare` equal to a raw file that received the same writes.
// Crafted images for each hostile case, and a process killed while it writes.
// direct=true (O_DIRECT) on raw and qcow2 images.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <future>
#include <atomic>
#include <chrono>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "disk/disk_file.h"
#include "disk/qcow2.h"
#include "temp_dir.h"

using namespace crosvm;

namespace {

struct Ran {
  int status = -1;
  std::string output;
};

Ran run(const std::string& command) {
  Ran ran;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  REQUIRE(pipe != nullptr);
  char buffer[4096];
  size_t got = 0;
  while ((got = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) ran.output.append(buffer, got);
  const int status = ::pclose(pipe);
  ran.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return ran;
}

void qemu_img(const std::string& arguments) {
  const Ran ran = run("qemu-img " + arguments);
  INFO("qemu-img " << arguments << "\n" << ran.output);
  REQUIRE(ran.status == 0);
}

// `qemu-img check`: 0 is clean, 3 is leaked clusters only.
void require_clean(const std::string& path, bool leaks_allowed = false) {
  const Ran ran = run("qemu-img check -f qcow2 '" + path + "'");
  INFO(ran.output);
  if (leaks_allowed) {
    REQUIRE((ran.status == 0 || ran.status == 3));
  } else {
    REQUIRE(ran.status == 0);
  }
}

void require_same(const std::string& image, const std::string& raw) {
  const Ran ran = run("qemu-img compare -f qcow2 -F raw '" + image + "' '" + raw + "'");
  INFO(ran.output);
  REQUIRE(ran.status == 0);
}

std::vector<uint8_t> pattern(size_t length, uint32_t seed) {
  std::vector<uint8_t> bytes(length);
  uint32_t state = seed * 2654435761u + 1;
  for (uint8_t& byte : bytes) {
    state = state * 1103515245u + 12345u;
    byte = static_cast<uint8_t>(state >> 16);
  }
  return bytes;
}

std::unique_ptr<disk::DiskFile> open_image(const std::string& path, bool read_only = false, bool backing = false) {
  auto opened = disk::open_disk({.path = path, .read_only = read_only, .allow_backing = backing});
  INFO((opened ? std::string() : opened.error().message));
  REQUIRE(opened.ok());
  return std::move(opened).value();
}

std::string open_error(const std::string& path, bool read_only = false, bool backing = false) {
  auto opened = disk::open_disk({.path = path, .read_only = read_only, .allow_backing = backing});
  REQUIRE_FALSE(opened.ok());
  return opened.error().message;
}

std::vector<uint8_t> read(disk::DiskFile& disk, uint64_t offset, size_t length) {
  std::vector<uint8_t> bytes(length, 0xee);
  // Two buffers, so that pieces cross buffer edges too.
  const size_t half = length / 3;
  const iovec buffers[2] = {{bytes.data(), half}, {bytes.data() + half, length - half}};
  auto done = disk.read_at(offset, buffers);
  INFO((done ? std::string() : done.error().message));
  REQUIRE(done.ok());
  return bytes;
}

Result<void> write(disk::DiskFile& disk, uint64_t offset, const std::vector<uint8_t>& bytes) {
  const iovec buffer{const_cast<uint8_t*>(bytes.data()), bytes.size()};
  return disk.write_at(offset, std::span(&buffer, 1));
}

// A raw file that receives the same writes as the image under test.
class Reference {
 public:
  Reference(const std::string& path, uint64_t size) : path_(path) {
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
    REQUIRE(fd_ >= 0);
    REQUIRE(::ftruncate(fd_, static_cast<off_t>(size)) == 0);
  }
  ~Reference() { ::close(fd_); }
  void write(uint64_t offset, const std::vector<uint8_t>& bytes) {
    REQUIRE(::pwrite(fd_, bytes.data(), bytes.size(), static_cast<off_t>(offset)) ==
            static_cast<ssize_t>(bytes.size()));
  }
  void zero(uint64_t offset, uint64_t length) { write(offset, std::vector<uint8_t>(length, 0)); }
  std::vector<uint8_t> read(uint64_t offset, size_t length) const {
    std::vector<uint8_t> bytes(length);
    REQUIRE(::pread(fd_, bytes.data(), length, static_cast<off_t>(offset)) == static_cast<ssize_t>(length));
    return bytes;
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  int fd_ = -1;
};

// The same writes to both, checked by reading back through the image.
void write_both(disk::DiskFile& disk, Reference& reference, uint64_t offset, const std::vector<uint8_t>& bytes) {
  auto done = write(disk, offset, bytes);
  INFO((done ? std::string() : done.error().message));
  REQUIRE(done.ok());
  reference.write(offset, bytes);
}

void require_reads_match(disk::DiskFile& disk, const Reference& reference, uint64_t size, size_t step) {
  for (uint64_t offset = 0; offset < size; offset += step) {
    const size_t length = static_cast<size_t>(std::min<uint64_t>(step, size - offset));
    REQUIRE(read(disk, offset, length) == reference.read(offset, length));
  }
}

void patch(const std::string& path, uint64_t offset, std::vector<uint8_t> bytes) {
  const int fd = ::open(path.c_str(), O_RDWR);
  REQUIRE(fd >= 0);
  REQUIRE(::pwrite(fd, bytes.data(), bytes.size(), static_cast<off_t>(offset)) == static_cast<ssize_t>(bytes.size()));
  ::close(fd);
}

void patch_be(const std::string& path, uint64_t offset, uint64_t value, size_t width) {
  std::vector<uint8_t> bytes(width);
  for (size_t i = width; i-- > 0;) {
    bytes[i] = static_cast<uint8_t>(value);
    value >>= 8;
  }
  patch(path, offset, bytes);
}

uint64_t read_be(const std::string& path, uint64_t offset, size_t width) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  REQUIRE(fd >= 0);
  std::vector<uint8_t> bytes(width);
  REQUIRE(::pread(fd, bytes.data(), width, static_cast<off_t>(offset)) == static_cast<ssize_t>(width));
  ::close(fd);
  uint64_t value = 0;
  for (uint8_t byte : bytes) value = (value << 8) | byte;
  return value;
}

constexpr uint64_t kMiB = 1024 * 1024;

// Writes that cover every path: partial clusters, clusters crossed, whole
// clusters, rewrites of what was written.
void exercise(disk::DiskFile& disk, Reference& reference, uint64_t cluster) {
  write_both(disk, reference, 0, pattern(512, 1));
  write_both(disk, reference, cluster - 512, pattern(1024, 2));
  write_both(disk, reference, 3 * cluster, pattern(4 * cluster, 3));
  write_both(disk, reference, 3 * cluster + 4096, pattern(8192, 4));
  write_both(disk, reference, 2 * kMiB + 512, pattern(3 * cluster + 1024, 5));
  write_both(disk, reference, 7 * kMiB, pattern(512 * 1024, 6));
}

}  // namespace

TEST_CASE("qcow2: a qemu-img image round-trips, checked clean and equal", "[qcow2]") {
  REQUIRE(run("qemu-img --version").status == 0);
  const auto [cluster, refcount_bits] = GENERATE(std::pair<uint64_t, int>{65536, 16}, std::pair<uint64_t, int>{512, 16},
                                                 std::pair<uint64_t, int>{4096, 1}, std::pair<uint64_t, int>{2048, 64});
  INFO("cluster " << cluster << ", refcount bits " << refcount_bits);
  TempDir dir("crosvm-qcow2");
  const std::string image = dir.file("disk.qcow2");
  qemu_img(fmt::format("create -q -f qcow2 -o cluster_size={},refcount_bits={} '{}' 8M", cluster, refcount_bits,
                       image));
  Reference reference(dir.file("disk.raw"), 8 * kMiB);
  {
    auto disk = open_image(image);
    CHECK(disk->format() == "qcow2");
    CHECK(disk->size() == 8 * kMiB);
    REQUIRE(read(*disk, 0, 65536) == std::vector<uint8_t>(65536, 0));
    exercise(*disk, reference, cluster);
    require_reads_match(*disk, reference, 8 * kMiB, 192 * 1024);
    REQUIRE(disk->flush().ok());
  }
  require_clean(image);
  require_same(image, reference.path());

  // Again, through a second open: what was written is what is read.
  auto disk = open_image(image, true);
  require_reads_match(*disk, reference, 8 * kMiB, 256 * 1024);
}

TEST_CASE("qcow2: images qemu-img wrote are read as qemu-img reads them", "[qcow2]") {
  TempDir dir("crosvm-qcow2");
  Reference reference(dir.file("source.raw"), 4 * kMiB);
  // Some data, some zeros, some repetitive: compressed, sparse and plain.
  reference.write(0, pattern(300 * 1024, 7));
  reference.write(kMiB + 4096, std::vector<uint8_t>(200 * 1024, 0x5a));
  reference.write(3 * kMiB, pattern(512 * 1024, 8));
  const std::string options = GENERATE(std::string("-o compat=1.1"), std::string("-o compat=0.10"),
                                       std::string("-c -o compat=1.1"), std::string("-c -o compat=0.10"),
                                       std::string("-c -o compression_type=zstd"),
                                       std::string("-o cluster_size=2M"), std::string("-c -o cluster_size=4096"));
  INFO("qemu-img convert " << options);
  const std::string image = dir.file("disk.qcow2");
  qemu_img(fmt::format("convert -q -O qcow2 {} '{}' '{}'", options, reference.path(), image));
  {
    auto disk = open_image(image, true);
    CHECK(disk->size() == 4 * kMiB);
    require_reads_match(*disk, reference, 4 * kMiB, 100 * 1024);
  }
  if (options.find("0.10") != std::string::npos) {
    CHECK_THAT(open_error(image), Catch::Contains("version 2 images are read-only"));
    return;
  }
  // Writes over compressed and plain clusters; the old compressed clusters
  // are freed (no leaks).
  {
    auto disk = open_image(image);
    write_both(*disk, reference, 4096, pattern(8192, 9));
    write_both(*disk, reference, 3 * kMiB + 65536, pattern(128 * 1024, 10));
    require_reads_match(*disk, reference, 4 * kMiB, 128 * 1024);
  }
  require_clean(image);
  require_same(image, reference.path());
}

TEST_CASE("qcow2: discard and write-zeroes free clusters and read as zeros", "[qcow2]") {
  TempDir dir("crosvm-qcow2");
  const std::string image = dir.file("disk.qcow2");
  qemu_img(fmt::format("create -q -f qcow2 '{}' 8M", image));
  Reference reference(dir.file("disk.raw"), 8 * kMiB);
  {
    auto disk = open_image(image);
    write_both(*disk, reference, 0, pattern(4 * kMiB, 11));
    REQUIRE(disk->flush().ok());
    // Whole clusters dropped; a partial cluster is advice only (kept).
    REQUIRE(disk->discard(65536, 3 * 65536 + 512).ok());
    reference.zero(65536, 3 * 65536);
    REQUIRE(disk->write_zeroes(kMiB + 100 * 512, 5 * 65536, true).ok());
    reference.zero(kMiB + 100 * 512, 5 * 65536);
    REQUIRE(disk->write_zeroes(2 * kMiB, 4 * 65536, false).ok());
    reference.zero(2 * kMiB, 4 * 65536);
    require_reads_match(*disk, reference, 8 * kMiB, 256 * 1024);
    // A discarded cluster written again.
    write_both(*disk, reference, 65536 + 512, pattern(1024, 12));
    require_reads_match(*disk, reference, kMiB, 65536);
  }
  require_clean(image);
  require_same(image, reference.path());
  // The discarded space went back to the host.
  struct stat info{};
  REQUIRE(::stat(image.c_str(), &info) == 0);
  CHECK(static_cast<uint64_t>(info.st_blocks) * 512 < 4 * kMiB);
}

namespace {

// A transfer without the image's lock, held in the hook until the test
// lets it go: the first write's, or the first read's.
struct HeldTransfer {
  static inline std::atomic<int> hold_kind{-1};  // 1: a write, 0: a read, -1: none
  static inline std::promise<void> reached;
  static inline std::shared_future<void> go;

  static void hook(bool write) {
    int expected = write ? 1 : 0;
    if (!hold_kind.compare_exchange_strong(expected, -1)) return;
    reached.set_value();
    (void)go.wait_for(std::chrono::seconds(30));  // a hang guard: the test fails, not hangs
  }

  explicit HeldTransfer(bool write) {
    reached = {};
    go = release.get_future().share();
    hold_kind = write ? 1 : 0;
    disk::set_qcow2_transfer_hook_for_testing(&hook);
  }
  ~HeldTransfer() {
    let_go();
    disk::set_qcow2_transfer_hook_for_testing(nullptr);
    hold_kind = -1;
  }
  void wait_until_held() { REQUIRE(reached.get_future().wait_for(std::chrono::seconds(30)) == std::future_status::ready); }
  void let_go() {
    if (!released) release.set_value();
    released = true;
  }

  std::promise<void> release;
  bool released = false;
};

}  // namespace

TEST_CASE("qcow2: requests to allocated clusters do not wait for each other's data", "[qcow2]") {
  TempDir dir("crosvm-qcow2");
  const std::string image = dir.file("disk.qcow2");
  qemu_img(fmt::format("create -q -f qcow2 '{}' 8M", image));
  auto disk = open_image(image);
  const std::vector<uint8_t> first = pattern(65536, 21), second = pattern(65536, 22);
  REQUIRE(write(*disk, 0, first).ok());
  REQUIRE(write(*disk, 5 * 65536, second).ok());

  // A write to cluster 0 stays in its transfer; a read of cluster 5, a
  // rewrite of cluster 5 and a flush all finish meanwhile.
  HeldTransfer held(true);
  auto writer = std::async(std::launch::async, [&] { return write(*disk, 0, pattern(65536, 23)); });
  held.wait_until_held();
  CHECK(read(*disk, 5 * 65536, 65536) == second);
  REQUIRE(write(*disk, 5 * 65536, pattern(65536, 24)).ok());
  REQUIRE(disk->flush().ok());
  held.let_go();
  REQUIRE(writer.get().ok());
  CHECK(read(*disk, 0, 65536) == pattern(65536, 23));
  CHECK(read(*disk, 5 * 65536, 65536) == pattern(65536, 24));
  REQUIRE(disk->flush().ok());
  disk.reset();
  require_clean(image);
}

TEST_CASE("qcow2: a cluster freed during a transfer is not handed out until the transfer ends",
          "[qcow2][hostile]") {
  // A guest that discards a block while its write to that block is still
  // in flight, then writes elsewhere: the freed cluster must not become the
  // new block's, or the late write would land in it.
  TempDir dir("crosvm-qcow2");
  const std::string image = dir.file("disk.qcow2");
  qemu_img(fmt::format("create -q -f qcow2 '{}' 8M", image));
  auto disk = open_image(image);
  REQUIRE(write(*disk, 0, pattern(65536, 31)).ok());
  REQUIRE(disk->flush().ok());

  HeldTransfer held(true);
  auto late = std::async(std::launch::async, [&] { return write(*disk, 0, pattern(65536, 32)); });
  held.wait_until_held();
  REQUIRE(disk->discard(0, 65536).ok());
  REQUIRE(disk->flush().ok());  // the cluster's refcount drops to 0: free for reuse
  const std::vector<uint8_t> other = pattern(65536, 33);
  REQUIRE(write(*disk, 7 * 65536, other).ok());
  held.let_go();
  REQUIRE(late.get().ok());
  CHECK(read(*disk, 7 * 65536, 65536) == other);
  CHECK(read(*disk, 0, 65536) == std::vector<uint8_t>(65536, 0));  // discarded: the late write went nowhere
  // Once the transfer is over, the freed cluster is used again.
  REQUIRE(write(*disk, 3 * 65536, pattern(65536, 34)).ok());
  CHECK(read(*disk, 7 * 65536, 65536) == other);
  REQUIRE(disk->flush().ok());
  disk.reset();
  require_clean(image);
}

TEST_CASE("qcow2: many threads reading and writing at once leave the image clean and right", "[qcow2]") {
  TempDir dir("crosvm-qcow2");
  const std::string image = dir.file("disk.qcow2");
  qemu_img(fmt::format("create -q -f qcow2 '{}' 8M", image));
  auto disk = open_image(image);
  constexpr int kThreads = 4;
  constexpr uint64_t kSlice = 2 * kMiB;  // each thread's own part of the disk
  // Catch's assertions are for the test's own thread: the workers only report.
  auto read_back = [&](uint64_t offset, size_t length) {
    std::vector<uint8_t> bytes(length);
    const iovec buffer{bytes.data(), length};
    if (!disk->read_at(offset, std::span(&buffer, 1)).ok()) bytes.clear();
    return bytes;
  };
  std::vector<std::future<bool>> workers;
  for (int t = 0; t < kThreads; ++t) {
    workers.push_back(std::async(std::launch::async, [&, t] {
      const uint64_t base = static_cast<uint64_t>(t) * kSlice;
      std::vector<uint8_t> expected(kSlice, 0);
      uint32_t state = static_cast<uint32_t>(t) + 1;
      for (int i = 0; i < 300; ++i) {
        state = state * 1103515245u + 12345u;
        const uint64_t offset = (state >> 8) % (kSlice - 8192) & ~511ull;
        const size_t length = 512 * (1 + (state >> 4) % 16);
        const std::vector<uint8_t> bytes = pattern(length, state);
        if (!write(*disk, base + offset, bytes).ok()) return false;
        std::copy(bytes.begin(), bytes.end(), expected.begin() + static_cast<ptrdiff_t>(offset));
        if (i % 50 == 0 && !disk->discard(base + 65536, 65536).ok()) return false;
        if (i % 50 == 0) std::fill_n(expected.begin() + 65536, 65536, 0);
        if (i % 7 == 0 && read_back(base, kSlice) != expected) return false;
      }
      return read_back(base, kSlice) == expected;
    }));
  }
  for (auto& worker : workers) CHECK(worker.get());
  REQUIRE(disk->flush().ok());
  disk.reset();
  require_clean(image);
}

TEST_CASE("qcow2: growing the disk past its L1 table", "[qcow2]") {
  TempDir dir("crosvm-qcow2");
  const std::string image = dir.file("disk.qcow2");
  // 512-byte clusters: one L1 entry covers 32 KiB, so 1 MiB has 32 of them.
  qemu_img(fmt::format("create -q -f qcow2 -o cluster_size=512 '{}' 1M", image));
  Reference reference(dir.file("disk.raw"), 8 * kMiB);
  {
    auto disk = open_image(image);
    write_both(*disk, reference, 4096, pattern(64 * 1024, 13));
    REQUIRE(disk->resize(8 * kMiB).ok());
    CHECK(disk->size() == 8 * kMiB);
    write_both(*disk, reference, 8 * kMiB - 64 * 1024, pattern(64 * 1024, 14));
    require_reads_match(*disk, reference, 8 * kMiB, 512 * 1024);
    auto smaller = disk->resize(kMiB);
    REQUIRE_FALSE(smaller.ok());
    CHECK_THAT(smaller.error().message, Catch::Contains("shrinking"));
  }
  require_clean(image);
  require_same(image, reference.path());
  CHECK_THAT(run("qemu-img info '" + image + "'").output, Catch::Contains("8 MiB"));
}

TEST_CASE("qcow2: backing files only when allowed, bounded, without loops", "[qcow2]") {
  TempDir dir("crosvm-qcow2");
  Reference reference(dir.file("base.raw"), 2 * kMiB);
  reference.write(0, pattern(2 * kMiB, 15));
  const std::string overlay = dir.file("overlay.qcow2");
  // A relative name: found beside the image.
  qemu_img(fmt::format("create -q -f qcow2 -b base.raw -F raw '{}' 4M", overlay));
  CHECK_THAT(open_error(overlay), Catch::Contains("allow-backing=true"));
  CHECK_THAT(open_error(overlay), Catch::Contains("base.raw"));

  Reference expected(dir.file("expected.raw"), 4 * kMiB);
  expected.write(0, reference.read(0, 2 * kMiB));
  {
    auto disk = open_image(overlay, false, true);
    require_reads_match(*disk, expected, 4 * kMiB, 256 * 1024);
    // A partial cluster: the rest of it comes from the backing file.
    write_both(*disk, expected, 65536 + 512, pattern(1024, 16));
    // Past the backing file's end: zeros around the write.
    write_both(*disk, expected, 3 * kMiB + 512, pattern(512, 17));
    // Discarded over the backing file: zeros, not the backing file's bytes.
    REQUIRE(disk->discard(4 * 65536, 65536).ok());
    expected.zero(4 * 65536, 65536);
    require_reads_match(*disk, expected, 4 * kMiB, 256 * 1024);
  }
  require_clean(overlay);
  const Ran compared = run("qemu-img compare -f qcow2 -F raw '" + overlay + "' '" + expected.path() + "'");
  INFO(compared.output);
  CHECK(compared.status == 0);
  // The backing file was only read.
  CHECK(reference.read(0, 2 * kMiB) == pattern(2 * kMiB, 15));

  // A loop: a -> b -> a.
  const std::string a = dir.file("a.qcow2");
  const std::string b = dir.file("b.qcow2");
  qemu_img(fmt::format("create -q -f qcow2 '{}' 1M", a));
  qemu_img(fmt::format("create -q -f qcow2 -b a.qcow2 -F qcow2 '{}' 1M", b));
  qemu_img(fmt::format("rebase -q -u -f qcow2 -b b.qcow2 -F qcow2 '{}'", a));
  CHECK_THAT(open_error(b, true, true), Catch::Contains("loop"));

  // Too deep: ten images, each on the one before.
  std::string previous = "chain0.qcow2";
  qemu_img(fmt::format("create -q -f qcow2 '{}' 1M", dir.file(previous)));
  for (int i = 1; i < 10; ++i) {
    const std::string next = fmt::format("chain{}.qcow2", i);
    qemu_img(fmt::format("create -q -f qcow2 -b {} -F qcow2 '{}' 1M", previous, dir.file(next)));
    previous = next;
  }
  CHECK_THAT(open_error(dir.file(previous), true, true), Catch::Contains("deeper than"));
  CHECK(disk::open_disk({.path = dir.file("chain8.qcow2"), .read_only = true, .allow_backing = true}).ok());
}

TEST_CASE("qcow2: hostile images are refused at open or fail the request", "[qcow2]") {
  TempDir dir("crosvm-qcow2");
  const std::string image = dir.file("disk.qcow2");
  auto fresh = [&] {
    ::unlink(image.c_str());
    qemu_img(fmt::format("create -q -f qcow2 '{}' 4M", image));
    // Data in the first cluster, so that an L2 table exists.
    auto disk = open_image(image);
    REQUIRE(write(*disk, 0, pattern(65536, 18)).ok());
  };
  // qemu-img create's layout at 64 KiB clusters: header, refcount table,
  // refcount block, L1 table; the first L2 table follows.
  const uint64_t l1 = [&] {
    fresh();
    return read_be(image, 40, 8);
  }();
  const uint64_t reftable = read_be(image, 48, 8);
  const uint64_t l2 = read_be(image, l1, 8) & 0x00fffffffffffe00ull;
  REQUIRE(l2 != 0);

  SECTION("an L1 entry past the end of the file") {
    patch_be(image, l1, (1ull << 63) | (1ull << 40), 8);
    CHECK_THAT(open_error(image, true), Catch::Contains("L1 entry 0"));
  }
  SECTION("an L2 table on the refcount table") {
    patch_be(image, l1, (1ull << 63) | reftable, 8);
    CHECK_THAT(open_error(image, true), Catch::Contains("share the cluster"));
  }
  SECTION("a refcount block past the end of the file") {
    patch_be(image, reftable, 1ull << 40, 8);
    CHECK_THAT(open_error(image, true), Catch::Contains("refcount table entry 0"));
  }
  SECTION("a data cluster on one of the image's tables fails the request") {
    const uint64_t target = GENERATE_COPY(l1, l2, reftable);
    patch_be(image, l2 + 8, (1ull << 63) | target, 8);
    const uint64_t table_before = read_be(image, target, 8);
    auto disk = open_image(image);
    std::vector<uint8_t> bytes(512);
    const iovec buffer{bytes.data(), bytes.size()};
    auto reading = disk->read_at(65536, std::span(&buffer, 1));
    REQUIRE_FALSE(reading.ok());
    CHECK_THAT(reading.error().message, Catch::Contains("one of its tables"));
    REQUIRE_FALSE(write(*disk, 65536, pattern(512, 19)).ok());
    REQUIRE(disk->flush().ok());
    CHECK(read_be(image, target, 8) == table_before);
  }
  SECTION("a header that claims more than its cluster") {
    patch_be(image, 100, 1 << 20, 4);
    CHECK_THAT(open_error(image, true), Catch::Contains("its header claims"));
  }
  SECTION("a size whose tables would overflow") {
    patch_be(image, 24, 1ull << 63, 8);
    CHECK_THAT(open_error(image, true), Catch::Contains("too large"));
    patch_be(image, 24, 1ull << 40, 8);
    CHECK_THAT(open_error(image, true), Catch::Contains("does not cover"));
  }
  SECTION("a refcount at its maximum is never raised") {
    // The cluster the next write would take is the file's end; its count,
    // in the first refcount block, already at 65535: it is not taken (only
    // clusters counted 0 are), so it cannot overflow.
    struct stat info{};
    REQUIRE(::stat(image.c_str(), &info) == 0);
    const uint64_t next = static_cast<uint64_t>(info.st_size) / 65536;
    const uint64_t block = read_be(image, reftable, 8);
    patch_be(image, block + next * 2, 0xffff, 2);
    {
      auto disk = open_image(image);
      REQUIRE(write(*disk, 5 * 65536, pattern(512, 20)).ok());
    }
    CHECK(read_be(image, block + next * 2, 2) == 0xffff);
    require_clean(image, true);
  }
  SECTION("clusters past the end of the file already counted (leaked) are stepped over") {
    struct stat info{};
    REQUIRE(::stat(image.c_str(), &info) == 0);
    const uint64_t next = static_cast<uint64_t>(info.st_size) / 65536;
    const uint64_t block = read_be(image, reftable, 8);
    patch_be(image, block + next * 2, 1, 2);
    patch_be(image, block + (next + 1) * 2, 1, 2);
    {
      auto disk = open_image(image);
      REQUIRE(write(*disk, 5 * 65536, pattern(512, 24)).ok());
      REQUIRE(write(*disk, 7 * 65536, pattern(65536, 25)).ok());
      CHECK(read(*disk, 7 * 65536, 65536) == pattern(65536, 25));
    }
    const Ran checked = run("qemu-img check -f qcow2 '" + image + "'");
    INFO(checked.output);
    CHECK(checked.status == 3);  // the two leaks, and nothing else
    CHECK_THAT(checked.output, Catch::Contains("2 leaked clusters"));
  }
  SECTION("a compressed entry on the header, discarded, frees nothing of the header's") {
    // Found by the fuzz target: the header's cluster was freed, punched and
    // then handed to the next write.
    patch_be(image, l2 + 8, (1ull << 62) | 0x100, 8);
    {
      auto disk = open_image(image);
      REQUIRE(disk->discard(65536, 65536).ok());
      REQUIRE(disk->flush().ok());
      REQUIRE(write(*disk, 2 * 65536, pattern(65536, 26)).ok());
      CHECK(read(*disk, 2 * 65536, 65536) == pattern(65536, 26));
    }
    CHECK(read_be(image, 0, 4) == 0x514649fb);
    auto reopened = open_image(image, true);
    CHECK(read(*reopened, 2 * 65536, 65536) == pattern(65536, 26));
  }
  SECTION("features this VMM lacks") {
    patch_be(image, 72, 1ull << 4, 8);
    CHECK_THAT(open_error(image, true), Catch::Contains("extended L2"));
    patch_be(image, 72, 1ull << 9, 8);
    CHECK_THAT(open_error(image, true), Catch::Contains("incompatible features"));
    patch_be(image, 72, 0, 8);
    patch_be(image, 32, 1, 4);
    CHECK_THAT(open_error(image, true), Catch::Contains("encrypted"));
  }
  SECTION("a dirty image is read but not written") {
    patch_be(image, 72, 1, 8);
    CHECK(disk::open_disk({.path = image, .read_only = true}).ok());
    CHECK_THAT(open_error(image), Catch::Contains("qemu-img check -r all"));
  }
  SECTION("a compressed cluster outside the file, or on its header") {
    const uint64_t where = GENERATE(uint64_t{1} << 40, uint64_t{0x100});
    patch_be(image, l2, (1ull << 62) | where, 8);
    auto disk = open_image(image, true);
    std::vector<uint8_t> bytes(512);
    const iovec buffer{bytes.data(), bytes.size()};
    auto reading = disk->read_at(0, std::span(&buffer, 1));
    REQUIRE_FALSE(reading.ok());
    CHECK_THAT(reading.error().message, Catch::Contains("compressed"));
  }
}

TEST_CASE("qcow2: other formats are refused by name, and raw images cannot become one", "[qcow2]") {
  TempDir dir("crosvm-qcow2");
  const std::string image = dir.file("disk.vmdk");
  qemu_img(fmt::format("create -q -f vmdk '{}' 1M", image));
  CHECK_THAT(open_error(image), Catch::Contains("VMDK"));

  const std::string raw = dir.file("disk.qcow2");  // the name says qcow2; the bytes are raw
  qemu_img(fmt::format("create -q -f raw '{}' 1M", raw));
  auto disk = open_image(raw);
  CHECK(disk->format() == "raw");
  std::vector<uint8_t> header(512, 0);
  std::memcpy(header.data(), "QFI\xfb", 4);
  auto written = write(*disk, 0, header);
  REQUIRE_FALSE(written.ok());
  CHECK_THAT(written.error().message, Catch::Contains("first sector"));
  CHECK(read_be(raw, 0, 4) == 0);
  // Elsewhere, or other bytes at the start, are the guest's business.
  CHECK(write(*disk, 512, header).ok());
  CHECK(write(*disk, 0, pattern(512, 21)).ok());
}

TEST_CASE("qcow2: a raw image's first block is written as it was checked, even while the guest changes it",
          "[qcow2][hostile]") {
  TempDir dir("crosvm-qcow2");
  const std::string raw = dir.file("disk.img");
  qemu_img(fmt::format("create -q -f raw '{}' 1M", raw));
  auto disk = open_image(raw);

  // Pieces of odd sizes across the first block: the write lands whole.
  const std::vector<uint8_t> whole = pattern(8192, 5);
  std::vector<iovec> pieces{{const_cast<uint8_t*>(whole.data()), 100},
                            {const_cast<uint8_t*>(whole.data()) + 100, 5000},
                            {const_cast<uint8_t*>(whole.data()) + 5100, 3092}};
  REQUIRE(disk->write_at(0, pieces).ok());
  std::vector<uint8_t> back(8192);
  const iovec into{back.data(), back.size()};
  REQUIRE(disk->read_at(0, std::span(&into, 1)).ok());
  CHECK(back == whole);

  // Another vCPU flips the buffer between harmless bytes and a qcow2 header
  // while this one writes it to sector 0 again and again: what reaches the
  // image is what was checked, so the header never does.
  std::vector<uint8_t> buffer(512, 0);
  std::atomic<bool> done{false};
  std::thread flipper([&] {
    auto* magic = reinterpret_cast<volatile uint8_t*>(buffer.data());
    while (!done.load(std::memory_order_relaxed)) {
      magic[0] = 'Q'; magic[1] = 'F'; magic[2] = 'I'; magic[3] = 0xfb;
      magic[0] = 0; magic[1] = 0; magic[2] = 0; magic[3] = 0;
    }
  });
  bool header_landed = false;
  for (int i = 0; i < 2000 && !header_landed; ++i) {
    const iovec from{buffer.data(), buffer.size()};
    (void)disk->write_at(0, std::span(&from, 1));  // refused or not, by what it saw
    header_landed = read_be(raw, 0, 4) == 0x514649fb;
  }
  done = true;
  flipper.join();
  CHECK_FALSE(header_landed);
}

TEST_CASE("qcow2: a writer killed at any moment leaves no corruption", "[qcow2]") {
  TempDir dir("crosvm-qcow2");
  const std::string image = dir.file("disk.qcow2");
  for (int round = 0; round < 6; ++round) {
    ::unlink(image.c_str());
    // Small clusters: many L2 tables and refcount blocks are made, and the
    // caches write back while the writer runs.
    qemu_img(fmt::format("create -q -f qcow2 -o cluster_size=4096 '{}' 64M", image));
    const pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
      auto opened = disk::open_disk({.path = image});
      if (!opened) ::_exit(2);
      auto& disk = **opened;
      for (uint32_t i = 0;; ++i) {
        const uint64_t offset = (uint64_t{i} * 7919 * 4096 + (i % 3) * 512) % (60 * kMiB);
        if (!write(disk, offset, pattern(4096 * (1 + i % 5), i))) ::_exit(3);
        if (i % 7 == 0 && !disk.discard(offset / 2 & ~4095ull, 8192)) ::_exit(4);
        if (i % 16 == 0 && !disk.flush()) ::_exit(5);
      }
    }
    ::usleep(static_cast<useconds_t>(20000 + round * 37000));
    ::kill(child, SIGKILL);
    int status = 0;
    REQUIRE(::waitpid(child, &status, 0) == child);
    INFO("round " << round);
    REQUIRE(WIFSIGNALED(status));
    require_clean(image, true);
    // And it opens and writes again; flushed, the leaks stay the only finding.
    {
      auto disk = open_image(image);
      REQUIRE(write(*disk, 0, pattern(8192, 99)).ok());
    }
    require_clean(image, true);
  }
}

TEST_CASE("qcow2: stopped after any write, the image has no corruption", "[qcow2]") {
  // The host stops (power lost) after the first N writes and flushes, for
  // every N: each prefix of what the image wrote, in order, must check clean
  // but for leaked clusters. 512-byte clusters, so that L2 tables and
  // refcount blocks are made, evicted from their caches and written back
  // during the run, and the L1 table grows.
  TempDir dir("crosvm-qcow2");
  const std::string image = dir.file("disk.qcow2");
  auto workload = [&](disk::DiskFile& disk) {
    auto place = [](uint32_t i) { return (uint64_t{i} * 104729 * 512) % (15 * kMiB); };
    for (uint32_t i = 0; i < 120; ++i) {
      if (!write(disk, place(i), pattern(512 * (1 + i % 3), i))) return;
      // Clusters written (and flushed) a while ago are dropped.
      if (i % 11 == 10 && !disk.discard(place(i - 40 * (i / 40)), 1024)) return;
      if (i % 30 == 29 && !disk.flush()) return;
      if (i == 60 && !disk.resize(32 * kMiB)) return;
    }
  };
  const std::string blank = dir.file("blank.qcow2");
  qemu_img(fmt::format("create -q -f qcow2 -o cluster_size=512 '{}' 16M", blank));
  auto fresh = [&] {
    std::filesystem::copy_file(blank, image, std::filesystem::copy_options::overwrite_existing);
  };
  // Four tables per cache: write-back on eviction happens in every stretch.
  disk::set_qcow2_cache_tables_for_testing(4);
  struct Restore {
    ~Restore() {
      disk::set_qcow2_cache_tables_for_testing(0);
      disk::set_qcow2_crash_after_for_testing(-1);
    }
  } restore;
  fresh();
  disk::set_qcow2_crash_after_for_testing(1'000'000);
  {
    auto disk = open_image(image);
    workload(*disk);
  }
  const int64_t total = 1'000'000 - disk::set_qcow2_crash_after_for_testing(-1);
  REQUIRE(total > 300);
  require_clean(image);
  int checked = 0;
  for (int64_t point = 0; point < total; point += 1) {
    fresh();
    disk::set_qcow2_crash_after_for_testing(point);
    {
      auto disk = open_image(image);
      workload(*disk);
    }
    disk::set_qcow2_crash_after_for_testing(-1);
    INFO("stopped after " << point << " of " << total << " writes");
    require_clean(image, true);
    ++checked;
  }
  CHECK(checked >= 60);
}

TEST_CASE("qcow2: the refcount table grows when the image outgrows it", "[qcow2]") {
  // 512-byte clusters with 64-bit refcounts: a block counts 64 clusters and
  // qemu-img's one-cluster table 4096, so 2 MiB of file fills it.
  TempDir dir("crosvm-qcow2");
  const std::string blank = dir.file("blank.qcow2");
  qemu_img(fmt::format("create -q -f qcow2 -o cluster_size=512,refcount_bits=64 '{}' 8M", blank));
  const uint64_t table_before = read_be(blank, 48, 8);
  const std::string image = dir.file("disk.qcow2");
  auto workload = [&](disk::DiskFile& disk, Reference* reference) {
    for (uint32_t i = 0; i < 48; ++i) {
      const std::vector<uint8_t> bytes = pattern(65536 + 512 * (i % 3), i);
      const uint64_t offset = (uint64_t{i} * 163840 + 512 * (i % 5)) % (7 * kMiB);
      if (reference != nullptr) {
        write_both(disk, *reference, offset, bytes);
      } else if (!write(disk, offset, bytes)) {
        return;
      }
      if (i % 16 == 15 && !disk.flush()) return;
    }
  };
  std::filesystem::copy_file(blank, image);
  Reference reference(dir.file("disk.raw"), 8 * kMiB);
  disk::set_qcow2_crash_after_for_testing(1'000'000);
  {
    auto disk = open_image(image);
    workload(*disk, &reference);
    require_reads_match(*disk, reference, 8 * kMiB, 256 * 1024);
  }
  const int64_t total = 1'000'000 - disk::set_qcow2_crash_after_for_testing(-1);
  CHECK(read_be(image, 48, 8) != table_before);
  CHECK(read_be(image, 56, 4) > 1);
  require_clean(image);
  require_same(image, reference.path());

  // Stopped anywhere in the run, growth included: leaks at most.
  struct Restore {
    ~Restore() { disk::set_qcow2_crash_after_for_testing(-1); }
  } restore;
  for (int64_t point = 0; point < total; point += std::max<int64_t>(1, total / 120)) {
    std::filesystem::copy_file(blank, image, std::filesystem::copy_options::overwrite_existing);
    disk::set_qcow2_crash_after_for_testing(point);
    {
      auto disk = open_image(image);
      workload(*disk, nullptr);
    }
    disk::set_qcow2_crash_after_for_testing(-1);
    INFO("stopped after " << point << " of " << total << " writes");
    require_clean(image, true);
  }
}

TEST_CASE("qcow2: create_qcow2 makes images qemu-img checks clean", "[qcow2]") {
  TempDir dir("crosvm-qcow2");
  const std::string image = dir.file("new.qcow2");
  // 3 TiB: an L1 table of several clusters.
  REQUIRE(disk::create_qcow2(image, 3ull << 40, "").ok());
  require_clean(image);
  CHECK_THAT(run("qemu-img info '" + image + "'").output, Catch::Contains("virtual size: 3 TiB"));
  {
    auto disk = open_image(image);
    CHECK(disk->size() == 3ull << 40);
    REQUIRE(write(*disk, (3ull << 40) - 4096, pattern(4096, 22)).ok());
    CHECK(read(*disk, (3ull << 40) - 4096, 4096) == pattern(4096, 22));
  }
  require_clean(image);
  CHECK_THAT(disk::create_qcow2(image, kMiB, "").error().message, Catch::Contains("File exists"));

  // Over a backing file: its size, its format, read through.
  Reference base(dir.file("base.raw"), 3 * kMiB);
  base.write(kMiB, pattern(65536, 23));
  const std::string overlay = dir.file("overlay.qcow2");
  REQUIRE(disk::create_qcow2(overlay, 0, "base.raw").ok());
  require_clean(overlay);
  const std::string info = run("qemu-img info '" + overlay + "'").output;
  CHECK_THAT(info, Catch::Contains("backing file: base.raw"));
  CHECK_THAT(info, Catch::Contains("backing file format: raw"));
  {
    auto disk = open_image(overlay, false, true);
    CHECK(disk->size() == 3 * kMiB);
    CHECK(read(*disk, kMiB, 65536) == pattern(65536, 23));
  }
  CHECK_THAT(disk::create_qcow2(dir.file("x.qcow2"), kMiB, "base.raw").error().message,
             Catch::Contains("backing file's"));
  CHECK_THAT(disk::create_qcow2(dir.file("y.qcow2"), 0, "").error().message, Catch::Contains("needs a size"));
  // A size the user gives never sizes an allocation past QEMU's L1 limit.
  CHECK_THAT(disk::create_qcow2(dir.file("w.qcow2"), 1ull << 61, "").error().message,
             Catch::Contains("above 32 MiB"));
  CHECK(::access(dir.file("w.qcow2").c_str(), F_OK) != 0);
  CHECK_THAT(disk::create_qcow2(dir.file("z.qcow2"), 0, "missing.raw").error().message,
             Catch::Contains("missing.raw"));
  CHECK(::access(dir.file("z.qcow2").c_str(), F_OK) != 0);
}

TEST_CASE("qcow2: the header parser refuses what it cannot trust", "[qcow2]") {
  std::vector<uint8_t> header(512, 0);
  std::memcpy(header.data(), "QFI\xfb", 4);
  auto put = [&](size_t offset, uint64_t value, size_t width) {
    for (size_t i = width; i-- > 0;) {
      header[offset + i] = static_cast<uint8_t>(value);
      value >>= 8;
    }
  };
  put(4, 3, 4);
  put(20, 9, 4);     // 512-byte clusters
  put(24, 4096, 8);  // an 8-sector disk
  put(36, 1, 4);
  put(40, 1024, 8);
  put(48, 512, 8);
  put(56, 1, 4);
  put(96, 4, 4);
  put(100, 104, 4);
  REQUIRE(disk::parse_qcow2_header(header, 4096, "t").ok());
  SECTION("tables past the end of the file") {
    auto parsed = disk::parse_qcow2_header(header, 1024, "t");
    REQUIRE_FALSE(parsed.ok());
    CHECK_THAT(parsed.error().message, Catch::Contains("past the end"));
  }
  SECTION("a backing name that leaves the header cluster") {
    put(8, 500, 8);
    put(16, 100, 4);
    auto parsed = disk::parse_qcow2_header(header, 4096, "t");
    REQUIRE_FALSE(parsed.ok());
    CHECK_THAT(parsed.error().message, Catch::Contains("backing file name"));
  }
  SECTION("an extension that runs past its cluster") {
    put(104, 0x12345678, 4);
    put(108, 1000, 4);
    auto parsed = disk::parse_qcow2_header(header, 4096, "t");
    REQUIRE_FALSE(parsed.ok());
    CHECK_THAT(parsed.error().message, Catch::Contains("extension"));
  }
  SECTION("cluster bits out of range") {
    put(20, 30, 4);
    CHECK_FALSE(disk::parse_qcow2_header(header, 4096, "t").ok());
  }
}

namespace {

// Whether this process holds `path` open with O_DIRECT (fdinfo's flags).
bool held_with_o_direct(const std::string& path) {
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code error;
    if (std::filesystem::read_symlink(entry.path(), error) != path) continue;
    std::ifstream info("/proc/self/fdinfo/" + entry.path().filename().string());
    std::string key;
    std::string value;
    while (info >> key >> value) {
      if (key == "flags:" && (std::stoul(value, nullptr, 8) & O_DIRECT) != 0) return true;
    }
  }
  return false;
}

// Whether the host's page cache holds the page of `path` at `offset`.
bool cached(const std::string& path, uint64_t offset) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  REQUIRE(fd >= 0);
  void* map = ::mmap(nullptr, 4096, PROT_READ, MAP_SHARED, fd, static_cast<off_t>(offset));
  ::close(fd);
  REQUIRE(map != MAP_FAILED);
  unsigned char resident = 0;
  REQUIRE(::mincore(map, 4096, &resident) == 0);
  ::munmap(map, 4096);
  return (resident & 1) != 0;
}

// Brings the page of `path` at `offset` into the page cache.
void cache_page(const std::string& path, uint64_t offset) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  REQUIRE(fd >= 0);
  uint8_t byte = 0;
  REQUIRE(::pread(fd, &byte, 1, static_cast<off_t>(offset)) == 1);
  ::close(fd);
}

}  // namespace

TEST_CASE("direct=true: aligned data goes past the page cache, the rest through it, all of it lands", "[qcow2][direct]") {
  const std::string format = GENERATE(std::string("raw"), std::string("qcow2"));
  INFO(format);
  TempDir dir("crosvm-direct");
  const std::string image = dir.file("disk." + format);
  qemu_img(fmt::format("create -q -f {} '{}' 8M", format, image));
  Reference reference(dir.file("reference.raw"), 8 * kMiB);
  {
    auto opened = disk::open_disk({.path = image, .direct = true});
    INFO((opened ? std::string() : opened.error().message));
    REQUIRE(opened.ok());
    disk::DiskFile& disk = **opened;
    CHECK(held_with_o_direct(image));
    // Unaligned requests (memory, offsets or lengths) go through the cache.
    exercise(disk, reference, 65536);
    // An aligned one does not: in a raw image, the page it writes leaves
    // the cache (a direct write drops the cached copy).
    void* aligned = std::aligned_alloc(4096, 65536);
    REQUIRE(aligned != nullptr);
    const std::vector<uint8_t> bytes = pattern(65536, 9);
    std::memcpy(aligned, bytes.data(), bytes.size());
    const uint64_t offset = 5 * kMiB;
    if (format == "raw") {
      cache_page(image, offset);
      REQUIRE(cached(image, offset));
    }
    const iovec buffer{aligned, 65536};
    REQUIRE(disk.write_at(offset, std::span(&buffer, 1)).ok());
    reference.write(offset, bytes);
    if (format == "raw") CHECK_FALSE(cached(image, offset));
    std::memset(aligned, 0, 65536);
    REQUIRE(disk.read_at(offset, std::span(&buffer, 1)).ok());
    CHECK(std::memcmp(aligned, bytes.data(), bytes.size()) == 0);
    std::free(aligned);
    require_reads_match(disk, reference, 8 * kMiB, 192 * 1024);
    REQUIRE(disk.flush().ok());
  }
  if (format == "qcow2") {
    require_clean(image);
    require_same(image, reference.path());
  } else {
    const Ran ran = run("cmp '" + image + "' '" + reference.path() + "'");
    INFO(ran.output);
    CHECK(ran.status == 0);
  }
  // Without direct=, nothing is opened with O_DIRECT.
  auto buffered = open_image(image);
  CHECK_FALSE(held_with_o_direct(image));
}
