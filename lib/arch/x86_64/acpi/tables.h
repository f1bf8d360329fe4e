// The ACPI tables of an x86_64 VM, generated per VM: RSDP, XSDT, FADT (with
// the PM1a blocks and the reset register), FACS, DSDT (PCI root bridge,
// serial ports, RTC, keyboard controller, pvpanic, \_S5), MADT (a local
// APIC per vCPU, the IO-APIC, interrupt overrides) and MCFG (the ECAM window).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "arch/x86_64/acpi/aml.h"
#include "base/result.h"
#include "memory/guest_memory.h"

namespace crosvm::acpi {

using aml::Bytes;

struct SerialPortInfo {
  uint32_t number;  // 1..4
  uint16_t port;
  uint8_t irq;
};

// What the tables describe; the VM fills this from its devices and layout.
struct MachineDescription {
  uint32_t vcpu_count = 1;
  std::vector<SerialPortInfo> serial_ports;
  uint64_t pci_mmio32_base = 0;
  uint64_t pci_mmio32_size = 0;
  uint64_t pci_mmio64_base = 0;  // 0: no 64-bit window
  uint64_t pci_mmio64_size = 0;
  uint64_t ecam_base = 0;
  uint8_t ecam_last_bus = 0;
  uint16_t pm1a_event_port = 0;
  uint16_t pm1a_control_port = 0;
  uint8_t sleep_type_s5 = 0;
  uint8_t sci_irq = 9;
  uint16_t reset_port = 0;
  uint8_t reset_value = 0;
  uint16_t pvpanic_port = 0;  // 0: none
  uint8_t pci_irq_base = 16;  // INTx of slot S pin P -> base + (S + P) % pci_irq_count
  uint8_t pci_irq_count = 8;

  // The IO-APIC pin (GSI) of a slot's INTx; `pin` 0 is INTA. The _PRT says
  // the same to the guest.
  uint8_t pci_intx_gsi(uint32_t slot, uint32_t pin) const {
    return static_cast<uint8_t>(pci_irq_base + (slot + pin) % pci_irq_count);
  }
};

struct Table {
  std::string signature;
  uint64_t address;
  Bytes bytes;
};

struct AcpiTables {
  uint64_t rsdp_address;
  std::vector<Table> tables;  // the RSDP first
};

// Lays the tables out from `base` (16-byte aligned, below 1 MiB for the
// RSDP scan); fails if they would pass `limit`.
Result<AcpiTables> build_tables(const MachineDescription& machine, uint64_t base, uint64_t limit);
Result<void> write_tables(const GuestMemory& memory, const AcpiTables& tables);

// The pieces, for tests.
Bytes build_dsdt(const MachineDescription& machine);
Bytes build_madt(const MachineDescription& machine);
Bytes build_mcfg(const MachineDescription& machine);
Bytes build_fadt(const MachineDescription& machine, uint64_t dsdt_address, uint64_t facs_address);
Bytes build_facs();
Bytes build_xsdt(std::span<const uint64_t> table_addresses);
Bytes build_rsdp(uint64_t xsdt_address);
// The byte that makes `bytes` sum to zero.
uint8_t checksum(std::span<const uint8_t> bytes);

}  // namespace crosvm::acpi
