// Writes a VM's ACPI tables to files (SIGNATURE.dat) in a directory, for
// check_acpi.sh to disassemble with iasl.
#include <cstdio>
#include <fstream>
#include <string>

#include "arch/x86_64/acpi/tables.h"
#include "arch/x86_64/layout.h"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: acpi-dump DIRECTORY VCPUS\n");
    return 2;
  }
  crosvm::acpi::MachineDescription machine;
  machine.vcpu_count = static_cast<uint32_t>(std::stoul(argv[2]));
  machine.serial_ports = {{1, 0x3f8, 4}, {2, 0x2f8, 3}};
  machine.pci_mmio32_base = crosvm::x86_64::kPciMmioStart;
  machine.pci_mmio32_size = crosvm::x86_64::kPciMmioSize;
  machine.pci_mmio64_base = 0x180000000ull;
  machine.pci_mmio64_size = 64ull << 30;
  machine.ecam_base = crosvm::x86_64::kEcamAddress;
  machine.pm1a_event_port = 0x600;
  machine.pm1a_control_port = 0x604;
  machine.sleep_type_s5 = 5;
  machine.reset_port = 0xcf9;
  machine.reset_value = 6;
  machine.pvpanic_port = 0x505;
  auto tables = crosvm::acpi::build_tables(machine, crosvm::x86_64::kAcpiTablesAddress,
                                           crosvm::x86_64::kHighMemoryStart);
  if (!tables) {
    std::fprintf(stderr, "%s\n", tables.error().message.c_str());
    return 1;
  }
  for (const auto& table : tables->tables) {
    if (table.signature == "RSDP" || table.signature == "FACS") continue;  // not AML-bearing tables
    std::ofstream out(std::string(argv[1]) + "/" + table.signature + ".dat", std::ios::binary);
    out.write(reinterpret_cast<const char*>(table.bytes.data()), static_cast<std::streamsize>(table.bytes.size()));
  }
  return 0;
}
