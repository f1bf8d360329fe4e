// The PCI root (0xCF8/0xCFC and ECAM) and a virtio-pci function behind it
// (common configuration, ISR, device configuration, notifications, MSI-X
// table and PBA) driven by a hostile guest: any access width, offset and
// value, BAR moves, resets, and the device signalling in between.
#include <memory>

#include "devices/bus.h"
#include "devices/pci/pci_root.h"
#include "devices/virtio/virtio_pci.h"
#include "fakes.h"
#include "fuzz_common.h"

using namespace crosvm;
using namespace crosvm::virtio;

namespace {

constexpr uint64_t kBarBase = 0xc000'0000;

class FuzzedDevice final : public VirtioDevice {
 public:
  DeviceType type() const override { return DeviceType::kBlock; }
  std::string_view name() const override { return "fuzzed"; }
  uint32_t pci_class() const override { return 0x018000; }
  std::vector<uint16_t> queue_max_sizes() const override { return {16, 256, 1}; }
  uint64_t device_features() const override { return 0x3f; }
  void read_config(uint64_t offset, std::span<uint8_t> data) override {
    const uint8_t config[24] = {1, 2, 3, 4, 5, 6, 7, 8};
    read_config_bytes(config, offset, data);
  }
  void write_config(uint64_t, std::span<const uint8_t>) override {}
  Result<void> activate(Activation activation) override {
    for (const ActiveQueue& queue : activation.queues) {
      FUZZ_CHECK(queue.index < 3 && queue.queue.size() <= queue_max_sizes()[queue.index]);
    }
    interrupt = activation.interrupt;
    return {};
  }
  void reset() override { interrupt.reset(); }
  std::shared_ptr<Interrupt> interrupt;
};

class Recorder final : public BusDevice {
 public:
  std::string_view name() const override { return "reset control"; }
  void read(uint64_t, std::span<uint8_t> data) override { std::memset(data.data(), 0, data.size()); }
  void write(uint64_t, std::span<const uint8_t>) override {}
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider input(data, size);
  GuestMemory& memory = fuzz::memory();
  testing::FakeMsiRouter router;
  testing::RecordingIoEvents io_events;
  auto intx = std::make_shared<testing::RecordingLevelIrq>();
  auto device = std::make_shared<FuzzedDevice>();
  Bus mmio("MMIO");
  auto root = std::make_shared<pci::PciRoot>(mmio, testing::quiet_logger());
  auto transport = VirtioPciDevice::create(
      device, PciTransportResources{&memory, &router, &io_events, intx, 20, kBarBase, testing::quiet_logger()});
  FUZZ_CHECK(transport.ok());
  FUZZ_CHECK(root->add_device(1, *transport).ok());
  auto ports = root->io_access(std::make_shared<Recorder>());
  auto ecam = root->ecam_access();

  static constexpr size_t kWidths[] = {1, 2, 3, 4, 8};
  for (int step = 0; step < 256 && input.remaining_bytes() > 0; ++step) {
    const uint8_t op = input.ConsumeIntegralInRange<uint8_t>(0, 6);
    const size_t width = kWidths[input.ConsumeIntegralInRange<size_t>(0, 4)];
    uint8_t bytes[8] = {};
    const uint64_t value = input.ConsumeIntegral<uint64_t>();
    std::memcpy(bytes, &value, sizeof(bytes));
    const std::span<uint8_t> access(bytes, width);
    switch (op) {
      case 0:
      case 1: {  // ECAM: slots 0-2 and beyond, any register
        const uint64_t offset = input.ConsumeIntegralInRange<uint64_t>(0, 3 << 15);
        if (op == 0) {
          ecam->read(offset, access);
        } else {
          ecam->write(offset, access);
        }
        break;
      }
      case 2:
      case 3: {  // 0xCF8-0xCFF
        const uint64_t offset = input.ConsumeIntegralInRange<uint64_t>(0, 7);
        if (op == 2) {
          ports->read(offset, access);
        } else {
          ports->write(offset, access);
        }
        break;
      }
      case 4:
      case 5: {  // MMIO, mostly where the guest put the BAR
        uint8_t bar[8] = {};
        ecam->read((1 << 15) | 0x10, std::span(bar, 4));
        ecam->read((1 << 15) | 0x14, std::span(bar + 4, 4));
        uint64_t base = 0;
        std::memcpy(&base, bar, 8);
        base &= ~uint64_t{0xf};
        const uint64_t address = input.ConsumeBool() ? input.ConsumeIntegral<uint64_t>()
                                                     : base + input.ConsumeIntegralInRange<uint64_t>(0, 0x8100);
        if (op == 4) {
          (void)mmio.read(address, access);
        } else {
          (void)mmio.write(address, access);
        }
        break;
      }
      case 6:  // the device, from its own side
        if (auto interrupt = device->interrupt) {
          switch (input.ConsumeIntegralInRange<uint8_t>(0, 2)) {
            case 0: interrupt->signal_used(input.ConsumeIntegral<uint16_t>()); break;
            case 1: interrupt->signal_config_change(); break;
            default: interrupt->report_needs_reset("fuzzed"); break;
          }
        }
        break;
    }
  }
  return 0;
}
