// The PCI root's two access paths and the MSI-X table, at the edges a
// hostile guest pokes: odd widths, misaligned offsets, absent slots, the
// end of configuration space and of the data port.
#include <catch2/catch.hpp>

#include <cstring>
#include <memory>

#include "devices/bus.h"
#include "devices/pci/msix.h"
#include "devices/pci/pci_root.h"
#include "fakes.h"

using namespace crosvm;
using namespace crosvm::pci;

namespace {

struct Root {
  Bus mmio{"MMIO"};
  std::shared_ptr<PciRoot> root = std::make_shared<PciRoot>(mmio, crosvm::testing::quiet_logger());
  std::shared_ptr<BusDevice> ports = root->io_access(nullptr);
  std::shared_ptr<BusDevice> ecam = root->ecam_access();

  void select(uint8_t slot, uint8_t reg) {
    const uint32_t address = 0x8000'0000u | (uint32_t{slot} << 11) | reg;
    uint8_t bytes[4];
    std::memcpy(bytes, &address, 4);
    ports->write(0, bytes);
  }
  uint64_t port_read(uint64_t offset, size_t width) {
    uint8_t bytes[8] = {};
    ports->read(offset, std::span(bytes, width));
    uint64_t value = 0;
    std::memcpy(&value, bytes, width);
    return value;
  }
  uint64_t ecam_read(uint64_t offset, size_t width) {
    uint8_t bytes[8] = {};
    ecam->read(offset, std::span(bytes, width));
    uint64_t value = 0;
    std::memcpy(&value, bytes, width);
    return value;
  }
};

uint64_t ecam_offset(uint8_t slot, uint16_t reg) { return (uint64_t{slot} << 15) | reg; }

}  // namespace

TEST_CASE("the host bridge answers at 00:00.0 through both paths", "[pci]") {
  Root r;
  r.select(0, 0);
  CHECK(r.port_read(4, 4) == 0x0008'1b36);
  CHECK(r.ecam_read(ecam_offset(0, 0), 4) == 0x0008'1b36);
}

TEST_CASE("an absent slot reads all-ones and takes no writes, through both paths", "[pci][hostile]") {
  Root r;
  r.select(7, 0);
  CHECK(r.port_read(4, 4) == 0xffff'ffff);
  CHECK(r.ecam_read(ecam_offset(7, 0), 4) == 0xffff'ffff);
  const uint8_t bytes[4] = {1, 2, 3, 4};
  r.ports->write(4, bytes);
  r.ecam->write(ecam_offset(7, 4), bytes);
  CHECK(r.ecam_read(ecam_offset(7, 4), 4) == 0xffff'ffff);
  // Function 1 and bus 1 do not exist either.
  CHECK(r.ecam_read(ecam_offset(0, 0) | (1 << 12), 4) == 0xffff'ffff);
}

TEST_CASE("a data-port access that crosses 0xCFF reads all-ones and writes nothing", "[pci][hostile]") {
  Root r;
  r.select(0, 0x3c);  // the interrupt line: writable
  const uint8_t value[4] = {0x12, 0x34, 0x56, 0x78};
  r.ports->write(6, value);  // 0xCFE, four bytes: crosses the end
  r.ports->write(7, std::span(value, 2));
  CHECK(r.port_read(6, 4) == 0xffff'ffff);
  CHECK(r.port_read(7, 2) == 0xffff);
  CHECK(r.port_read(4, 1) == 0xff);  // untouched (the host bridge's line is 0xff)
  // The address register takes dword accesses only.
  const uint8_t byte = 0;
  r.ports->write(0, std::span(&byte, 1));
  CHECK(r.port_read(0, 4) == (0x8000'0000u | 0x3c));
}

TEST_CASE("configuration offsets at the end of the 4 KiB space", "[pci][hostile]") {
  Root r;
  CHECK(r.ecam_read(ecam_offset(0, 4095), 1) == 0);           // extended space reads 0
  CHECK(r.ecam_read(ecam_offset(0, 4094), 2) == 0);
  CHECK(r.ecam_read(ecam_offset(0, 4095), 2) == 0xffff);      // crosses the dword: refused
  CHECK(r.ecam_read(ecam_offset(0, 4093), 4) == 0xffff'ffff);  // misaligned dword
  CHECK(r.ecam_read(ecam_offset(0, 0), 8) == 0xffff'ffff'ffff'ffffull);  // no 8-byte accesses
  const uint8_t bytes[4] = {0xaa, 0xbb, 0xcc, 0xdd};
  r.ecam->write(ecam_offset(0, 4095), std::span(bytes, 1));
  CHECK(r.ecam_read(ecam_offset(0, 4092), 4) == 0);
}

TEST_CASE("MSI-X table and PBA accesses at odd widths, misaligned or past the end are harmless",
          "[pci][msix][hostile]") {
  crosvm::testing::FakeMsiRouter router;
  auto log = std::make_shared<GuestLog>(crosvm::testing::quiet_logger(), "test");
  auto table = std::move(MsixTable::create(3, router, log)).value();
  auto read_table = [&](uint64_t offset, size_t width) {
    uint8_t bytes[8];
    std::memset(bytes, 0x5a, sizeof(bytes));
    table->read_table(offset, std::span(bytes, width));
    uint64_t value = 0;
    std::memcpy(&value, bytes, width);
    return value;
  };
  const uint8_t ones[8] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff};
  for (size_t width : {1, 2, 3}) {
    table->write_table(8, std::span(ones, width));  // the data word, not whole
    CHECK(read_table(8, width) == 0);
  }
  table->write_table(2, std::span(ones, 4));  // misaligned dword
  CHECK(read_table(0, 4) == 0);
  table->write_table(4, std::span(ones, 8));  // misaligned qword
  CHECK(read_table(0, 8) == 0);
  table->write_table(3 * MsixTable::kEntrySize, std::span(ones, 4));  // past the last entry
  CHECK(read_table(3 * MsixTable::kEntrySize, 4) == 0);
  CHECK(read_table(UINT64_MAX - 3, 4) == 0);
  CHECK(read_table(12, 4) == 1);  // every vector still masked, as after reset

  uint8_t pba[8];
  table->read_pba(0, std::span(pba, 3));
  CHECK(pba[0] == 0);
  table->read_pba(4, std::span(pba, 8));  // misaligned
  CHECK(pba[0] == 0);
  table->read_pba(1 << 20, std::span(pba, 8));  // far past the end
  CHECK(pba[0] == 0);
  CHECK(router.routes.empty());  // nothing of it reached KVM's routing
}
