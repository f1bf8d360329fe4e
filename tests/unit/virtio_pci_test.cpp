// The virtio-pci transport as a (sometimes hostile) driver drives it through
// BAR 0: negotiation, queue set-up checked at DRIVER_OK, registers that go
// read-only, out-of-range selects and offsets, MSI-X vectors, ISR and INTx,
// notifications.
#include <catch2/catch.hpp>

#include <cstring>

#include "devices/virtio/virtio_pci.h"
#include "fakes.h"
#include "virtio_rings.h"

using namespace crosvm;
using namespace crosvm::virtio;
using crosvm::testing::DriverRing;

namespace {

using Pci = VirtioPciDevice;
constexpr uint64_t kBar = 0xc000'0000;
constexpr uint64_t kFeatureA = 1ull << 0;
constexpr uint64_t kFeatureB = 1ull << 5;

// Common configuration offsets (virtio 1.x 4.1.4.3).
constexpr uint64_t kDriverFeatureSelect = 0x08, kDriverFeature = 0x0c, kDeviceFeatureSelect = 0x00,
                   kDeviceFeature = 0x04, kConfigVector = 0x10, kNumQueues = 0x12, kStatus = 0x14,
                   kQueueSelect = 0x16, kQueueSize = 0x18, kQueueVector = 0x1a, kQueueEnable = 0x1c,
                   kQueueDesc = 0x20, kQueueDriver = 0x28, kQueueDevice = 0x30;

class FakeDevice final : public VirtioDevice {
 public:
  DeviceType type() const override { return DeviceType::kRng; }
  std::string_view name() const override { return "fake"; }
  uint32_t pci_class() const override { return 0xff0000; }
  std::vector<uint16_t> queue_max_sizes() const override { return {16, 16}; }
  uint64_t device_features() const override { return kFeatureA | kFeatureB; }
  void read_config(uint64_t offset, std::span<uint8_t> data) override {
    const uint8_t config[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    read_config_bytes(config, offset, data);
  }
  void write_config(uint64_t, std::span<const uint8_t>) override { ++config_writes; }
  Result<void> activate(Activation activation) override {
    ++activations;
    features = activation.features;
    queue_count = activation.queues.size();
    interrupt = activation.interrupt;
    return {};
  }
  void reset() override { ++resets; }

  int activations = 0;
  int resets = 0;
  int config_writes = 0;
  uint64_t features = 0;
  size_t queue_count = 0;
  std::shared_ptr<Interrupt> interrupt;
};

struct Transport {
  GuestMemory memory = crosvm::testing::make_guest_memory();
  crosvm::testing::FakeMsiRouter msi;
  crosvm::testing::RecordingIoEvents io;
  std::shared_ptr<crosvm::testing::RecordingLevelIrq> intx = std::make_shared<crosvm::testing::RecordingLevelIrq>();
  std::shared_ptr<FakeDevice> device = std::make_shared<FakeDevice>();
  std::shared_ptr<Pci> pci;

  explicit Transport(Logger logger = crosvm::testing::quiet_logger()) {
    PciTransportResources resources{&memory, &msi, &io, intx, 20, kBar, std::move(logger)};
    pci = std::move(Pci::create(device, resources)).value();
    pci->bar_mapped(0, kBar);
  }

  void write(uint64_t offset, uint64_t value, size_t width) {
    uint8_t bytes[8];
    std::memcpy(bytes, &value, 8);
    pci->bar_write(0, offset, std::span(bytes, width));
  }
  uint64_t read(uint64_t offset, size_t width) {
    uint8_t bytes[8] = {};
    pci->bar_read(0, offset, std::span(bytes, width));
    uint64_t value = 0;
    std::memcpy(&value, bytes, 8);
    return value;
  }
  uint8_t status() { return static_cast<uint8_t>(read(kStatus, 1)); }

  void negotiate(uint64_t features) {
    write(kStatus, kStatusAcknowledge | kStatusDriver, 1);
    write(kDriverFeatureSelect, 0, 4);
    write(kDriverFeature, features & 0xffffffff, 4);
    write(kDriverFeatureSelect, 1, 4);
    write(kDriverFeature, features >> 32, 4);
    write(kStatus, kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk, 1);
  }
  void set_up_queue(uint16_t index, uint16_t size, uint64_t descriptors = DriverRing::kDescriptors) {
    write(kQueueSelect, index, 2);
    write(kQueueSize, size, 2);
    write(kQueueDesc, descriptors, 8);
    write(kQueueDriver, DriverRing::kAvailable + index * 0x2000, 8);
    write(kQueueDevice, DriverRing::kUsed + index * 0x2000, 8);
    write(kQueueEnable, 1, 2);
  }
  void driver_ok() { write(kStatus, status() | kStatusDriverOk, 1); }
};

}  // namespace

TEST_CASE("a virtio-pci function presents the modern IDs and its capabilities", "[virtio-pci]") {
  Transport t;
  const uint32_t ids = t.pci->config_read(0);
  CHECK((ids & 0xffff) == 0x1af4);
  CHECK((ids >> 16) == 0x1040 + 4);
  // Walk the capability list: MSI-X and the five virtio structures.
  std::vector<uint8_t> types;
  bool msix = false;
  for (uint8_t at = t.pci->config_read(0x34) & 0xff; at != 0;) {
    const uint32_t head = t.pci->config_read(at);
    if ((head & 0xff) == 0x11) msix = true;
    if ((head & 0xff) == 0x09) types.push_back(static_cast<uint8_t>(head >> 24));
    at = static_cast<uint8_t>(head >> 8);
  }
  CHECK(msix);
  std::sort(types.begin(), types.end());
  CHECK(types == std::vector<uint8_t>{1, 2, 3, 4, 5});
  CHECK(t.read(kNumQueues, 2) == 2);
}

TEST_CASE("FEATURES_OK is refused for features not offered or without VERSION_1", "[virtio-pci][hostile]") {
  SECTION("a feature the device does not have") {
    Transport t;
    t.negotiate(kFeatureVersion1 | kFeatureA | (1ull << 7));
    CHECK((t.status() & kStatusFeaturesOk) == 0);
  }
  SECTION("no VERSION_1") {
    Transport t;
    t.negotiate(kFeatureA);
    CHECK((t.status() & kStatusFeaturesOk) == 0);
  }
  SECTION("a subset of what is offered") {
    Transport t;
    t.negotiate(kFeatureVersion1 | kFeatureB);
    CHECK((t.status() & kStatusFeaturesOk) != 0);
    t.write(kDeviceFeatureSelect, 1, 4);
    CHECK((t.read(kDeviceFeature, 4) & 1) == 1);  // VERSION_1 is bit 32
  }
}

TEST_CASE("a driver refused FEATURES_OK over and over, with resets between, floods no log", "[virtio-pci][hostile]") {
  // One warning per refused FEATURES_OK used to reach the log each time
  // (100 000 lines in 0.6 s), and the limit on bad requests was renewed by
  // every reset. The device's guest log outlives resets.
  size_t lines = 0;
  Transport t(Logger([&](LogLevel, std::string_view) { ++lines; }, LogLevel::kInfo));
  for (int i = 0; i < 100000; ++i) {
    t.negotiate(kFeatureA);  // no VERSION_1: refused
    t.write(kStatus, 0, 1);  // reset
  }
  CHECK(lines >= 1);
  CHECK(lines <= GuestLog::kBurst + 5);  // a burst, and one a second at most
}

TEST_CASE("DRIVER_OK without FEATURES_OK does not activate the device", "[virtio-pci][hostile]") {
  Transport t;
  t.write(kStatus, kStatusAcknowledge | kStatusDriver | kStatusDriverOk, 1);
  CHECK(t.device->activations == 0);
  CHECK((t.status() & kStatusDriverOk) == 0);
}

TEST_CASE("bad queue set-up at DRIVER_OK gives DEVICE_NEEDS_RESET, not an activation", "[virtio-pci][hostile]") {
  struct Case {
    uint16_t size;
    uint64_t descriptors;
    const char* what;
  };
  for (const Case& bad : {Case{0, DriverRing::kDescriptors, "size 0"}, Case{12, DriverRing::kDescriptors, "not a power of two"},
                          Case{32, DriverRing::kDescriptors, "beyond the maximum"},
                          Case{16, (1 << 20) - 64, "rings outside RAM"}}) {
    INFO(bad.what);
    Transport t;
    t.negotiate(kFeatureVersion1);
    t.set_up_queue(0, bad.size, bad.descriptors);
    t.driver_ok();
    CHECK(t.device->activations == 0);
    CHECK((t.status() & kStatusNeedsReset) != 0);
    // A reset clears it, and a good set-up then works.
    t.write(kStatus, 0, 1);
    CHECK(t.status() == 0);
    t.negotiate(kFeatureVersion1);
    t.set_up_queue(0, 16);
    t.driver_ok();
    CHECK(t.device->activations == 1);
    CHECK(t.device->queue_count == 1);
  }
}

TEST_CASE("transport registers are read-only after DRIVER_OK", "[virtio-pci][hostile]") {
  Transport t;
  t.negotiate(kFeatureVersion1 | kFeatureA);
  t.set_up_queue(0, 16);
  t.write(kConfigVector, 0, 2);
  t.driver_ok();
  REQUIRE(t.device->activations == 1);

  t.write(kQueueSelect, 0, 2);
  t.write(kQueueSize, 8, 2);
  t.write(kQueueDesc, 0x9000, 8);
  t.write(kQueueVector, 1, 2);
  t.write(kConfigVector, 2, 2);
  t.write(kDriverFeatureSelect, 0, 4);
  t.write(kDriverFeature, kFeatureB, 4);
  CHECK(t.read(kQueueSize, 2) == 16);
  CHECK(t.read(kQueueDesc, 8) == DriverRing::kDescriptors);
  CHECK(t.read(kQueueVector, 2) == Pci::kNoVector);
  CHECK(t.read(kConfigVector, 2) == 0);
  CHECK(t.read(kDriverFeature, 4) == kFeatureA);
  CHECK(t.device->activations == 1);
}

TEST_CASE("an enabled queue's registers cannot change before DRIVER_OK either", "[virtio-pci][hostile]") {
  Transport t;
  t.negotiate(kFeatureVersion1);
  t.set_up_queue(0, 16);
  t.write(kQueueSize, 4, 2);
  CHECK(t.read(kQueueSize, 2) == 16);
}

TEST_CASE("a queue select out of range reads as absent and ignores writes", "[virtio-pci][hostile]") {
  Transport t;
  t.write(kQueueSelect, 7, 2);
  CHECK(t.read(kQueueSize, 2) == 0);
  t.write(kQueueSize, 16, 2);
  t.write(kQueueEnable, 1, 2);
  t.write(kQueueSelect, 0xffff, 2);
  CHECK(t.read(kQueueSize, 2) == 0);
  CHECK(t.read(kQueueEnable, 2) == 0);
}

TEST_CASE("device configuration reads past its end are zero, odd accesses harmless", "[virtio-pci][hostile]") {
  Transport t;
  CHECK(t.read(Pci::kDeviceConfigOffset, 4) == 0x04030201);
  CHECK(t.read(Pci::kDeviceConfigOffset + 6, 4) == 0x0807);
  CHECK(t.read(Pci::kDeviceConfigOffset + 0x800, 8) == 0);
  CHECK(t.read(Pci::kDeviceConfigOffset + Pci::kDeviceConfigSize - 2, 4) == 0);  // straddles the end
  CHECK(t.read(Pci::kBarSize - 1, 8) == 0);
  t.write(Pci::kBarSize - 4, 0xffffffff, 4);
  t.write(0x37, 0xff, 4);  // straddles the common configuration's end
  CHECK(t.status() == 0);
}

TEST_CASE("MSI-X vectors outside the table read back as NO_VECTOR", "[virtio-pci][hostile]") {
  Transport t;
  t.write(kConfigVector, 3, 2);  // 3 vectors: 0..2
  CHECK(t.read(kConfigVector, 2) == Pci::kNoVector);
  t.write(kQueueSelect, 1, 2);
  t.write(kQueueVector, 0x7fff, 2);
  CHECK(t.read(kQueueVector, 2) == Pci::kNoVector);
  t.write(kQueueVector, 2, 2);
  CHECK(t.read(kQueueVector, 2) == 2);
}

TEST_CASE("status bits are cleared only by a reset, which resets the device", "[virtio-pci]") {
  Transport t;
  t.negotiate(kFeatureVersion1);
  t.write(kStatus, kStatusAcknowledge, 1);  // tries to drop DRIVER and FEATURES_OK
  CHECK(t.status() == (kStatusAcknowledge | kStatusDriver | kStatusFeaturesOk));
  const int resets = t.device->resets;
  t.write(kStatus, 0, 1);
  CHECK(t.status() == 0);
  CHECK(t.device->resets == resets + 1);
  CHECK(t.read(kQueueSize, 2) == 16);  // back to the maximum
}

TEST_CASE("notifications reach the queue's eventfd, by ioeventfd or by MMIO", "[virtio-pci]") {
  Transport t;
  // Registered where the BAR is, one per queue, and moved with the BAR.
  CHECK(t.io.registered.count(kBar + Pci::kNotifyOffset) == 1);
  CHECK(t.io.registered.count(kBar + Pci::kNotifyOffset + 4) == 1);
  t.pci->bar_mapped(0, 0xd000'0000);
  CHECK(t.io.registered.count(kBar + Pci::kNotifyOffset) == 0);
  CHECK(t.io.registered.count(0xd000'0000 + Pci::kNotifyOffset) == 1);
  t.pci->bar_mapped(0, std::nullopt);
  CHECK(t.io.registered.empty());

  // A write that exits to the VMM (here: any) signals the same eventfd.
  t.pci->bar_mapped(0, kBar);
  const int kick = t.io.registered.at(kBar + Pci::kNotifyOffset + 4).first;
  t.write(Pci::kNotifyOffset + 4, 1, 2);
  uint64_t count = 0;
  REQUIRE(::read(kick, &count, sizeof(count)) == sizeof(count));
  CHECK(count == 1);
}

TEST_CASE("without MSI-X an interrupt sets the ISR and INTx; reading the ISR clears both", "[virtio-pci]") {
  Transport t;
  t.negotiate(kFeatureVersion1);
  t.set_up_queue(0, 16);
  t.driver_ok();
  REQUIRE(t.device->interrupt);
  t.device->interrupt->signal_used(0);
  CHECK(t.intx->level);
  CHECK(t.read(Pci::kIsrOffset, 1) == 1);
  CHECK_FALSE(t.intx->level);
  CHECK(t.read(Pci::kIsrOffset, 1) == 0);
  t.device->interrupt->signal_config_change();
  CHECK(t.read(Pci::kIsrOffset, 1) == 2);
}

TEST_CASE("with MSI-X a queue interrupt fires its vector's line", "[virtio-pci]") {
  Transport t;
  // Vector 1 programmed and unmasked, then MSI-X enabled in the capability.
  t.write(Pci::kMsixTableOffset + 16, 0xfee00000, 4);
  t.write(Pci::kMsixTableOffset + 16 + 8, 0x41, 4);
  t.write(Pci::kMsixTableOffset + 16 + 12, 0, 4);
  uint8_t at = t.pci->config_read(0x34) & 0xff;
  while ((t.pci->config_read(at) & 0xff) != 0x11) at = static_cast<uint8_t>(t.pci->config_read(at) >> 8);
  const uint8_t enable[2] = {0x00, 0x80};
  t.pci->config_write(static_cast<uint16_t>(at + 2), enable);

  t.negotiate(kFeatureVersion1);
  t.write(kQueueSelect, 0, 2);
  t.write(kQueueVector, 1, 2);
  t.set_up_queue(0, 16);
  t.driver_ok();
  REQUIRE(t.device->interrupt);
  t.device->interrupt->signal_used(0);
  const uint32_t gsi = 24 + 1;  // vector 1's line
  CHECK(t.msi.routes.at(gsi) == std::pair<uint64_t, uint32_t>{0xfee00000, 0x41});
  CHECK(t.msi.fired(gsi) == 1);
  CHECK_FALSE(t.intx->level);
}

TEST_CASE("the PCI configuration window reaches the common configuration", "[virtio-pci]") {
  Transport t;
  uint8_t at = t.pci->config_read(0x34) & 0xff;
  while ((t.pci->config_read(at) >> 24) != 5 || (t.pci->config_read(at) & 0xff) != 0x09) {
    at = static_cast<uint8_t>(t.pci->config_read(at) >> 8);
  }
  const uint32_t offset = kNumQueues, length = 2;
  t.pci->config_write(static_cast<uint16_t>(at + 8), std::span(reinterpret_cast<const uint8_t*>(&offset), 4));
  t.pci->config_write(static_cast<uint16_t>(at + 12), std::span(reinterpret_cast<const uint8_t*>(&length), 4));
  CHECK((t.pci->config_read(static_cast<uint16_t>(at + 16)) & 0xffff) == 2);
}
