#include <catch2/catch.hpp>

#include <cstring>

#include "arch/x86_64/acpi/aml.h"
#include "arch/x86_64/acpi/tables.h"
#include "arch/x86_64/boot_setup.h"
#include "arch/x86_64/layout.h"

using namespace crosvm;
using namespace crosvm::acpi;
namespace a = crosvm::acpi::aml;

namespace {

acpi::MachineDescription machine_with(uint32_t vcpus) {
  acpi::MachineDescription machine;
  machine.vcpu_count = vcpus;
  machine.serial_ports = {{1, 0x3f8, 4}};
  machine.pci_mmio32_base = x86_64::kPciMmioStart;
  machine.pci_mmio32_size = x86_64::kPciMmioSize;
  machine.pci_mmio64_base = 0x180000000ull;
  machine.pci_mmio64_size = 64ull << 30;
  machine.ecam_base = x86_64::kEcamAddress;
  machine.pm1a_event_port = 0x600;
  machine.pm1a_control_port = 0x604;
  machine.sleep_type_s5 = 5;
  machine.reset_port = 0xcf9;
  machine.reset_value = 6;
  machine.pvpanic_port = 0x505;
  return machine;
}

uint32_t le32(const a::Bytes& bytes, size_t offset) {
  uint32_t value;
  std::memcpy(&value, bytes.data() + offset, 4);
  return value;
}

uint64_t le64(const a::Bytes& bytes, size_t offset) {
  uint64_t value;
  std::memcpy(&value, bytes.data() + offset, 8);
  return value;
}

uint8_t sum(const a::Bytes& bytes) {
  uint8_t total = 0;
  for (uint8_t byte : bytes) total = static_cast<uint8_t>(total + byte);
  return total;
}

size_t count_entries(const a::Bytes& madt, uint8_t type) {
  size_t count = 0;
  for (size_t offset = 44; offset + 1 < madt.size(); offset += madt[offset + 1]) {
    count += madt[offset] == type ? 1 : 0;
  }
  return count;
}

}  // namespace

TEST_CASE("AML integers use the smallest encoding", "[aml]") {
  CHECK(a::integer(0) == a::Bytes{0x00});
  CHECK(a::integer(1) == a::Bytes{0x01});
  CHECK(a::integer(0x12) == a::Bytes{0x0a, 0x12});
  CHECK(a::integer(0x1234) == a::Bytes{0x0b, 0x34, 0x12});
  CHECK(a::integer(0x12345678) == a::Bytes{0x0c, 0x78, 0x56, 0x34, 0x12});
  CHECK(a::integer(0x100000000ull) == a::Bytes{0x0e, 0, 0, 0, 0, 1, 0, 0, 0});
}

TEST_CASE("AML names are padded segments with the right prefixes", "[aml]") {
  CHECK(a::name_string("_S5") == a::Bytes{'_', 'S', '5', '_'});
  CHECK(a::name_string("_SB.PCI0") == a::Bytes{0x2e, '_', 'S', 'B', '_', 'P', 'C', 'I', '0'});
  CHECK(a::name_string("\\_SB.PCI0.COM1") ==
        a::Bytes{0x5c, 0x2f, 3, '_', 'S', 'B', '_', 'P', 'C', 'I', '0', 'C', 'O', 'M', '1'});
  CHECK(a::name_string("\\") == a::Bytes{0x5c, 0x00});
  CHECK(a::name_string("^RTC") == a::Bytes{0x5e, 'R', 'T', 'C', '_'});
}

TEST_CASE("AML package lengths count their own bytes", "[aml]") {
  CHECK(a::pkg_length(10) == a::Bytes{11});
  CHECK(a::pkg_length(62) == a::Bytes{63});
  CHECK(a::pkg_length(63) == a::Bytes{0x41, 0x04});       // 65 = 0x041
  CHECK(a::pkg_length(4093) == a::Bytes{0x4f, 0xff});     // 4095
  CHECK(a::pkg_length(4094) == a::Bytes{0x81, 0x00, 0x01});  // 4097 = 0x1001
}

TEST_CASE("AML terms match what iasl compiles from the same ASL", "[aml]") {
  // Name (_HID, EisaId ("PNP0A03"))
  CHECK(a::name("_HID", a::eisa_id("PNP0A03")) ==
        a::Bytes{0x08, '_', 'H', 'I', 'D', 0x0c, 0x41, 0xd0, 0x0a, 0x03});
  // Device (COM1) {}
  CHECK(a::device("COM1", {}) == a::Bytes{0x5b, 0x82, 0x05, 'C', 'O', 'M', '1'});
  // Method (_STA, 0, NotSerialized) { Return (0x0F) }
  CHECK(a::method("_STA", 0, false, {a::return_value(a::integer(0x0f))}) ==
        a::Bytes{0x14, 0x09, '_', 'S', 'T', 'A', 0x00, 0xa4, 0x0a, 0x0f});
  // ResourceTemplate () { IO (Decode16, 0x3F8, 0x3F8, 0x01, 0x08) IRQNoFlags () {4} }
  CHECK(a::resource_template({a::io_port(0x3f8, 8), a::irq(4)}) ==
        a::Bytes{0x11, 0x10, 0x0a, 0x0d, 0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x01, 0x08,
                 0x22, 0x10, 0x00, 0x79, 0x00});
  // Package () { 5, 5, 0, 0 }
  CHECK(a::package({a::integer(5), a::integer(5), a::integer(0), a::integer(0)}) ==
        a::Bytes{0x12, 0x08, 0x04, 0x0a, 0x05, 0x0a, 0x05, 0x00, 0x00});
  // "QEMU0001"
  CHECK(a::string("AB") == a::Bytes{0x0d, 'A', 'B', 0x00});
}

TEST_CASE("every ACPI table has its length and a zero checksum", "[acpi]") {
  auto tables = build_tables(machine_with(2), x86_64::kAcpiTablesAddress, x86_64::kHighMemoryStart);
  REQUIRE(tables.ok());
  REQUIRE(tables->tables.size() == 7);
  for (const Table& table : tables->tables) {
    INFO(table.signature);
    CHECK(table.address % 16 == 0);
    if (table.signature == "RSDP") {
      CHECK(sum(a::Bytes(table.bytes.begin(), table.bytes.begin() + 20)) == 0);
      CHECK(sum(table.bytes) == 0);
      CHECK(std::memcmp(table.bytes.data(), "RSD PTR ", 8) == 0);
    } else if (table.signature == "FACS") {
      CHECK(table.address % 64 == 0);
      CHECK(le32(table.bytes, 4) == 64);
    } else {
      CHECK(std::memcmp(table.bytes.data(), table.signature.data(), 4) == 0);
      CHECK(le32(table.bytes, 4) == table.bytes.size());
      CHECK(sum(table.bytes) == 0);
    }
  }
  CHECK(tables->rsdp_address == x86_64::kAcpiTablesAddress);
}

TEST_CASE("the RSDP, XSDT and FADT point at each other", "[acpi]") {
  auto tables = build_tables(machine_with(1), x86_64::kAcpiTablesAddress, x86_64::kHighMemoryStart);
  REQUIRE(tables.ok());
  auto find = [&](const std::string& signature) -> const Table& {
    for (const Table& table : tables->tables) {
      if (table.signature == signature) return table;
    }
    FAIL("no " << signature);
    return tables->tables.front();
  };
  const Table& xsdt = find("XSDT");
  CHECK(le64(find("RSDP").bytes, 24) == xsdt.address);
  CHECK(xsdt.bytes.size() == 36 + 3 * 8);
  CHECK(le64(xsdt.bytes, 36) == find("FACP").address);
  CHECK(le64(xsdt.bytes, 44) == find("APIC").address);
  CHECK(le64(xsdt.bytes, 52) == find("MCFG").address);
  const Table& fadt = find("FACP");
  CHECK(fadt.bytes.size() == 276);
  CHECK(le64(fadt.bytes, 140) == find("DSDT").address);
  CHECK(le64(fadt.bytes, 132) == find("FACS").address);
  CHECK(le32(fadt.bytes, 36) == 0);  // FIRMWARE_CTRL: X_FIRMWARE_CTRL is set
  CHECK(le32(fadt.bytes, 40) == 0);  // DSDT: X_DSDT is set
  CHECK(le32(fadt.bytes, 56) == 0x600);  // PM1a event block
  CHECK((le32(fadt.bytes, 112) & (1 << 4)) == 0);  // a fixed power button (crosvm's powerbtn)
  CHECK((le32(fadt.bytes, 112) & (1 << 5)) != 0);  // no sleep button
  CHECK(le32(fadt.bytes, 64) == 0x604);  // PM1a control block
  CHECK(le64(fadt.bytes, 120) == 0xcf9);  // reset register
  CHECK(fadt.bytes[128] == 6);
}

TEST_CASE("the MADT has one enabled local APIC per vCPU and the IO-APIC", "[acpi]") {
  for (uint32_t vcpus : {1u, 2u, 64u}) {
    INFO(vcpus << " vCPUs");
    const a::Bytes madt = build_madt(machine_with(vcpus));
    CHECK(count_entries(madt, 0) == vcpus);
    CHECK(count_entries(madt, 1) == 1);
    CHECK(count_entries(madt, 2) == 2);  // IRQ0 -> GSI 2, and the SCI
    CHECK(madt.size() == 44 + 8 * vcpus + 12 + 2 * 10 + 6);
    for (uint32_t id = 0; id < vcpus; ++id) {
      const size_t entry = 44 + 8 * id;
      CHECK(madt[entry + 2] == id);  // processor UID
      CHECK(madt[entry + 3] == id);  // APIC ID
      CHECK(le32(madt, entry + 4) == 1);
    }
    CHECK(le32(madt, 36) == 0xfee00000);
    CHECK(sum(madt) == 0);
  }
}

TEST_CASE("MCFG describes the ECAM window", "[acpi]") {
  const a::Bytes mcfg = build_mcfg(machine_with(1));
  CHECK(mcfg.size() == 60);
  CHECK(le64(mcfg, 44) == x86_64::kEcamAddress);
  CHECK(mcfg[54] == 0);  // first bus
  CHECK(mcfg[55] == 0);  // last bus
}

TEST_CASE("the tables fit in the BIOS area with the most vCPUs", "[acpi]") {
  CHECK(build_tables(machine_with(x86_64::kMaxVcpus), x86_64::kAcpiTablesAddress,
                     x86_64::kHighMemoryStart).ok());
  CHECK_FALSE(build_tables(machine_with(2), x86_64::kAcpiTablesAddress,
                           x86_64::kAcpiTablesAddress + 256).ok());
}

TEST_CASE("e820 and the ACPI description agree around the hole", "[acpi]") {
  for (uint64_t mib : {64ull, 3584ull, 5120ull}) {
    INFO(mib << " MiB");
    const auto layout = std::move(x86_64::plan_memory(mib << 20, 46)).value();
    const auto map = x86_64::build_e820_map(layout);
    auto overlaps_ram = [&](uint64_t base, uint64_t size) {
      for (const auto& entry : map) {
        if (entry.type == x86_64::kE820Ram && base < entry.address + entry.size &&
            entry.address < base + size) {
          return true;
        }
      }
      return false;
    };
    // The PCI windows of the DSDT and the ACPI tables are never RAM.
    CHECK_FALSE(overlaps_ram(x86_64::kPciMmioStart, x86_64::kPciMmioSize));
    CHECK_FALSE(overlaps_ram(layout.pci_mmio64_base, layout.pci_mmio64_size));
    CHECK(layout.pci_mmio64_base >= layout.top_of_ram());
    CHECK_FALSE(overlaps_ram(x86_64::kAcpiTablesAddress,
                             x86_64::kHighMemoryStart - x86_64::kAcpiTablesAddress));
    CHECK_FALSE(overlaps_ram(x86_64::kEcamAddress, x86_64::kEcamSize));
  }
}
