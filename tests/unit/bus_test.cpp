#include <catch2/catch.hpp>

#include "devices/bus.h"

using namespace crosvm;

namespace {

class RecordingDevice final : public BusDevice {
 public:
  std::string_view name() const override { return "recorder"; }
  void read(uint64_t offset, std::span<uint8_t> data) override {
    last_offset = offset;
    std::fill(data.begin(), data.end(), static_cast<uint8_t>(offset));
  }
  void write(uint64_t offset, std::span<const uint8_t> data) override {
    last_offset = offset;
    last_size = data.size();
  }
  uint64_t last_offset = ~0ull;
  size_t last_size = 0;
};

}  // namespace

TEST_CASE("an access inside a range reaches its device at the right offset", "[bus]") {
  Bus bus("test");
  auto device = std::make_shared<RecordingDevice>();
  REQUIRE(bus.insert(device, 0x3f8, 8).ok());

  uint8_t value = 0;
  CHECK(bus.read(0x3fd, std::span(&value, 1)));
  CHECK(value == 5);
  const uint8_t data[2] = {1, 2};
  CHECK(bus.write(0x3fe, data));
  CHECK(device->last_offset == 6);
  CHECK(device->last_size == 2);
}

TEST_CASE("an unclaimed read returns all-ones and reports no device", "[bus]") {
  Bus bus("test");
  REQUIRE(bus.insert(std::make_shared<RecordingDevice>(), 0x60, 5).ok());
  uint8_t data[4] = {};
  CHECK_FALSE(bus.read(0x80, data));
  CHECK(data[0] == 0xff);
  CHECK(data[3] == 0xff);
  CHECK_FALSE(bus.write(0x80, data));
}

TEST_CASE("the edges of a range belong to it, the next byte does not", "[bus]") {
  Bus bus("test");
  REQUIRE(bus.insert(std::make_shared<RecordingDevice>(), 0x100, 0x10).ok());
  CHECK(bus.find(0x100, 1).device);
  CHECK(bus.find(0x10f, 1).device);
  CHECK_FALSE(bus.find(0x110, 1).device);
  CHECK_FALSE(bus.find(0xff, 1).device);
  CHECK_FALSE(bus.find(0x10e, 4).device);  // straddles the end
}

TEST_CASE("overlapping ranges are refused", "[bus]") {
  Bus bus("test");
  REQUIRE(bus.insert(std::make_shared<RecordingDevice>(), 0x100, 0x10).ok());
  CHECK_FALSE(bus.insert(std::make_shared<RecordingDevice>(), 0x108, 0x10).ok());
  CHECK_FALSE(bus.insert(std::make_shared<RecordingDevice>(), 0xf8, 0x10).ok());
  CHECK_FALSE(bus.insert(std::make_shared<RecordingDevice>(), 0x100, 1).ok());
  CHECK(bus.insert(std::make_shared<RecordingDevice>(), 0x110, 0x10).ok());
  CHECK(bus.insert(std::make_shared<RecordingDevice>(), 0xf0, 0x10).ok());
}

TEST_CASE("empty and wrapping ranges are refused", "[bus]") {
  Bus bus("test");
  CHECK_FALSE(bus.insert(std::make_shared<RecordingDevice>(), 0x100, 0).ok());
  CHECK_FALSE(bus.insert(std::make_shared<RecordingDevice>(), ~0ull - 4, 0x10).ok());
}

TEST_CASE("a removed range no longer claims accesses", "[bus]") {
  Bus bus("test");
  REQUIRE(bus.insert(std::make_shared<RecordingDevice>(), 0x100, 0x10).ok());
  CHECK(bus.remove(0x100));
  CHECK_FALSE(bus.remove(0x100));
  CHECK_FALSE(bus.find(0x100, 1).device);
}
