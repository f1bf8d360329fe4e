#include "arch/x86_64/acpi/tables.h"

#include <fmt/format.h>

#include <cstring>
#include <numeric>

namespace crosvm::acpi {
namespace {

namespace a = aml;

constexpr char kOemId[] = "CROSVM";         // 6 bytes
constexpr char kOemTableId[] = "LIBCROSV";  // 8 bytes
constexpr char kCreatorId[] = "CRVM";       // 4 bytes
constexpr uint32_t kOemRevision = 1;
constexpr uint32_t kCreatorRevision = 1;
constexpr size_t kHeaderSize = 36;
constexpr size_t kChecksumOffset = 9;

constexpr uint64_t kLocalApicAddress = 0xfee00000;
constexpr uint64_t kIoApicAddress = 0xfec00000;

template <typename T>
void put(Bytes& bytes, size_t offset, T value) {
  for (size_t i = 0; i < sizeof(T); ++i) bytes[offset + i] = static_cast<uint8_t>(value >> (8 * i));
}

template <typename T>
void append(Bytes& bytes, T value) {
  for (size_t i = 0; i < sizeof(T); ++i) bytes.push_back(static_cast<uint8_t>(value >> (8 * i)));
}

void put_text(Bytes& bytes, size_t offset, const char* text, size_t length) {
  std::memcpy(bytes.data() + offset, text, length);
}

// A table of `length` bytes with its standard header; the length and the
// checksum are fixed by finish().
Bytes table(const char* signature, uint8_t revision, size_t length) {
  Bytes bytes(length, 0);
  put_text(bytes, 0, signature, 4);
  bytes[8] = revision;
  put_text(bytes, 10, kOemId, 6);
  put_text(bytes, 16, kOemTableId, 8);
  put<uint32_t>(bytes, 24, kOemRevision);
  put_text(bytes, 28, kCreatorId, 4);
  put<uint32_t>(bytes, 32, kCreatorRevision);
  return bytes;
}

Bytes finish(Bytes bytes) {
  put<uint32_t>(bytes, 4, static_cast<uint32_t>(bytes.size()));
  bytes[kChecksumOffset] = 0;
  bytes[kChecksumOffset] = checksum(bytes);
  return bytes;
}

// A Generic Address Structure in system I/O space.
void put_io_address(Bytes& bytes, size_t offset, uint16_t port, uint8_t bit_width) {
  bytes[offset] = 1;  // system I/O
  bytes[offset + 1] = bit_width;
  bytes[offset + 2] = 0;
  bytes[offset + 3] = static_cast<uint8_t>(bit_width / 8 == 4 ? 3 : bit_width / 8 == 2 ? 2 : 1);
  put<uint64_t>(bytes, offset + 4, port);
}

Bytes pci_root_bridge(const MachineDescription& machine) {
  std::vector<Bytes> resources = {
      a::word_bus_number(0, machine.ecam_last_bus),
      a::word_io_range(0x0000, 0x0cf7),
      a::io_port(0x0cf8, 8),
      a::word_io_range(0x0d00, 0xffff),
      a::dword_memory_range(static_cast<uint32_t>(machine.pci_mmio32_base),
                            static_cast<uint32_t>(machine.pci_mmio32_base + machine.pci_mmio32_size - 1),
                            false),
  };
  if (machine.pci_mmio64_size != 0) {
    resources.push_back(a::qword_memory_range(
        machine.pci_mmio64_base, machine.pci_mmio64_base + machine.pci_mmio64_size - 1, false));
  }
  // _PRT: INTx of every slot and pin, swizzled over the PCI GSIs.
  std::vector<Bytes> routes;
  for (uint32_t slot = 0; slot < 32; ++slot) {
    for (uint32_t pin = 0; pin < 4; ++pin) {
      const uint32_t gsi = machine.pci_intx_gsi(slot, pin);
      routes.push_back(a::package({a::integer((slot << 16) | 0xffff), a::integer(pin),
                                   a::integer(0), a::integer(gsi)}));
    }
  }
  return a::device("PCI0", {
      a::name("_HID", a::eisa_id("PNP0A08")),
      a::name("_CID", a::eisa_id("PNP0A03")),
      a::name("_SEG", a::integer(0)),
      a::name("_UID", a::integer(0)),
      a::name("_BBN", a::integer(0)),
      a::name("_CRS", a::resource_template(resources)),
      a::name("_PRT", a::package(routes)),
  });
}

}  // namespace

uint8_t checksum(std::span<const uint8_t> bytes) {
  const uint8_t sum = std::accumulate(bytes.begin(), bytes.end(), uint8_t{0},
                                      [](uint8_t total, uint8_t byte) { return static_cast<uint8_t>(total + byte); });
  return static_cast<uint8_t>(-sum);
}

Bytes build_dsdt(const MachineDescription& machine) {
  std::vector<Bytes> devices = {pci_root_bridge(machine)};
  for (const SerialPortInfo& serial : machine.serial_ports) {
    devices.push_back(a::device(fmt::format("COM{}", serial.number), {
        a::name("_HID", a::eisa_id("PNP0501")),
        a::name("_UID", a::integer(serial.number)),
        a::name("_CRS", a::resource_template({a::io_port(serial.port, 8), a::irq(serial.irq)})),
    }));
  }
  devices.push_back(a::device("RTC", {
      a::name("_HID", a::eisa_id("PNP0B00")),
      a::name("_CRS", a::resource_template({a::io_port(0x70, 2), a::irq(8)})),
  }));
  devices.push_back(a::device("KBD", {
      a::name("_HID", a::eisa_id("PNP0303")),
      a::name("_CRS", a::resource_template({a::io_port(0x60, 1), a::io_port(0x64, 1), a::irq(1)})),
  }));
  if (machine.pvpanic_port != 0) {
    devices.push_back(a::device("PEVT", {
        a::name("_HID", a::string("QEMU0001")),  // the pvpanic device Linux knows
        a::name("_CRS", a::resource_template({a::io_port(machine.pvpanic_port, 1)})),
    }));
  }
  // Motherboard resources: the ports of fixed hardware and the ECAM window,
  // so nothing else claims them. (The reset register, 0xcf9, lies inside the
  // root bridge's 0xcf8-0xcff.)
  std::vector<Bytes> reserved = {
      a::io_port(machine.pm1a_event_port, 4),
      a::io_port(machine.pm1a_control_port, 2),
      a::memory32_fixed(static_cast<uint32_t>(machine.ecam_base),
                        static_cast<uint32_t>((machine.ecam_last_bus + 1u) << 20)),
  };
  devices.push_back(a::device("MBRD", {
      a::name("_HID", a::eisa_id("PNP0C02")),
      a::name("_UID", a::integer(0)),
      a::name("_CRS", a::resource_template(reserved)),
  }));

  Bytes body = a::join({
      a::name("\\_S5", a::package({a::integer(machine.sleep_type_s5), a::integer(machine.sleep_type_s5),
                                   a::integer(0), a::integer(0)})),
      a::scope("\\_SB", devices),
  });
  Bytes dsdt = table("DSDT", 2, kHeaderSize);
  dsdt.insert(dsdt.end(), body.begin(), body.end());
  return finish(std::move(dsdt));
}

Bytes build_madt(const MachineDescription& machine) {
  constexpr uint8_t kLocalApic = 0, kIoApic = 1, kInterruptOverride = 2, kLocalApicNmi = 4;
  Bytes madt = table("APIC", 5, 44);
  put<uint32_t>(madt, 36, static_cast<uint32_t>(kLocalApicAddress));
  put<uint32_t>(madt, 40, 1);  // PCAT_COMPAT: the 8259 PICs are there too
  for (uint32_t id = 0; id < machine.vcpu_count; ++id) {
    madt.insert(madt.end(), {kLocalApic, 8, static_cast<uint8_t>(id), static_cast<uint8_t>(id)});
    append<uint32_t>(madt, 1);  // enabled
  }
  madt.insert(madt.end(), {kIoApic, 12, 0 /* IO-APIC ID */, 0});
  append<uint32_t>(madt, static_cast<uint32_t>(kIoApicAddress));
  append<uint32_t>(madt, 0);  // first GSI
  // ISA IRQ 0 (the PIT) arrives on GSI 2; the SCI is level-triggered, active high.
  madt.insert(madt.end(), {kInterruptOverride, 10, 0, 0});
  append<uint32_t>(madt, 2);
  append<uint16_t>(madt, 0);
  madt.insert(madt.end(), {kInterruptOverride, 10, 0, machine.sci_irq});
  append<uint32_t>(madt, machine.sci_irq);
  append<uint16_t>(madt, 0x000d);
  // NMI on every processor's LINT1.
  madt.insert(madt.end(), {kLocalApicNmi, 6, 0xff, 0, 0, 1});
  return finish(std::move(madt));
}

Bytes build_mcfg(const MachineDescription& machine) {
  Bytes mcfg = table("MCFG", 1, 44);
  append<uint64_t>(mcfg, machine.ecam_base);
  append<uint16_t>(mcfg, 0);  // PCI segment
  mcfg.push_back(0);          // first bus
  mcfg.push_back(machine.ecam_last_bus);
  append<uint32_t>(mcfg, 0);
  return finish(std::move(mcfg));
}

Bytes build_fadt(const MachineDescription& machine, uint64_t dsdt_address, uint64_t facs_address) {
  constexpr uint32_t kWbinvd = 1 << 0, kProcC1 = 1 << 2, kSleepButtonNotFixed = 1 << 5,
                     kResetRegisterSupported = 1 << 10;
  constexpr uint16_t kLegacyDevices = 1 << 0, kHas8042 = 1 << 1, kNoVga = 1 << 2;
  Bytes fadt = table("FACP", 6, 276);
  // FIRMWARE_CTRL (36) and DSDT (40) stay 0: the spec wants them 0 when the
  // 64-bit X_ fields are set, and Linux installs a table from each field
  // (it listed the FACS twice).
  put<uint16_t>(fadt, 46, machine.sci_irq);
  // SMI_CMD 0: the machine is always in ACPI mode.
  put<uint32_t>(fadt, 56, machine.pm1a_event_port);
  put<uint32_t>(fadt, 64, machine.pm1a_control_port);
  fadt[88] = 4;  // PM1_EVT_LEN
  fadt[89] = 2;  // PM1_CNT_LEN
  put<uint16_t>(fadt, 96, 101);   // C2 latency > 100: no C2
  put<uint16_t>(fadt, 98, 1001);  // C3 latency > 1000: no C3
  fadt[108] = 0x32;               // CMOS index of the century
  put<uint16_t>(fadt, 109, kLegacyDevices | kHas8042 | kNoVga);
  // A fixed power button (crosvm's powerbtn); no sleep button.
  put<uint32_t>(fadt, 112, kWbinvd | kProcC1 | kSleepButtonNotFixed | kResetRegisterSupported);
  put_io_address(fadt, 116, machine.reset_port, 8);
  fadt[128] = machine.reset_value;
  fadt[131] = 4;  // minor version: ACPI 6.4
  put<uint64_t>(fadt, 132, facs_address);
  put<uint64_t>(fadt, 140, dsdt_address);
  put_io_address(fadt, 148, machine.pm1a_event_port, 32);
  put_io_address(fadt, 172, machine.pm1a_control_port, 16);
  put_text(fadt, 268, "CROSVM\0\0", 8);  // hypervisor vendor identity
  return finish(std::move(fadt));
}

Bytes build_facs() {
  Bytes facs(64, 0);
  put_text(facs, 0, "FACS", 4);
  put<uint32_t>(facs, 4, 64);
  facs[32] = 2;  // version
  return facs;   // the FACS has no checksum
}

Bytes build_xsdt(std::span<const uint64_t> table_addresses) {
  Bytes xsdt = table("XSDT", 1, kHeaderSize);
  for (uint64_t address : table_addresses) append<uint64_t>(xsdt, address);
  return finish(std::move(xsdt));
}

Bytes build_rsdp(uint64_t xsdt_address) {
  Bytes rsdp(36, 0);
  put_text(rsdp, 0, "RSD PTR ", 8);
  put_text(rsdp, 9, kOemId, 6);
  rsdp[15] = 2;  // ACPI 2.0+: the XSDT is used
  put<uint32_t>(rsdp, 20, 36);
  put<uint64_t>(rsdp, 24, xsdt_address);
  rsdp[8] = checksum(std::span(rsdp).first(20));
  rsdp[32] = checksum(rsdp);
  return rsdp;
}

Result<AcpiTables> build_tables(const MachineDescription& machine, uint64_t base, uint64_t limit) {
  AcpiTables result{};
  uint64_t next = base;
  auto place = [&](const char* signature, Bytes bytes, uint64_t alignment) {
    next = (next + alignment - 1) & ~(alignment - 1);
    const uint64_t address = next;
    next += bytes.size();
    result.tables.push_back({signature, address, std::move(bytes)});
    return address;
  };
  // The RSDP goes first; its content depends on the XSDT address, fixed last.
  place("RSDP", Bytes(36, 0), 16);
  const uint64_t facs = place("FACS", build_facs(), 64);
  const uint64_t dsdt = place("DSDT", build_dsdt(machine), 16);
  const uint64_t fadt = place("FACP", build_fadt(machine, dsdt, facs), 16);
  const uint64_t madt = place("APIC", build_madt(machine), 16);
  const uint64_t mcfg = place("MCFG", build_mcfg(machine), 16);
  const uint64_t entries[] = {fadt, madt, mcfg};
  const uint64_t xsdt = place("XSDT", build_xsdt(entries), 16);
  result.tables.front().bytes = build_rsdp(xsdt);
  result.rsdp_address = result.tables.front().address;
  if (next > limit) {
    return make_error(ErrorCode::kMemory, "the ACPI tables ({} bytes) do not fit below {:#x}",
                      next - base, limit);
  }
  return result;
}

Result<void> write_tables(const GuestMemory& memory, const AcpiTables& tables) {
  for (const Table& table : tables.tables) CROSVM_TRY(memory.write(table.address, table.bytes));
  return {};
}

}  // namespace crosvm::acpi
