// A VM's interrupt routing: the IRQ-chip routes a PC has (PIC and IO-APIC,
// with ISA IRQ 0 on IO-APIC pin 2 as the MADT says), MSI routes for PCI
// functions' MSI-X vectors (one GSI each, fired through an irqfd), and
// level-triggered INTx lines that several functions may share.
// KVM_SET_GSI_ROUTING replaces the whole table, so every change commits all.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "devices/irq.h"
#include "devices/pci/msix.h"
#include "kvm/kvm.h"

namespace crosvm {

class IrqRouting final : public pci::MsiRouter {
 public:
  static constexpr uint32_t kIoApicPins = 24;

  // `gsi_limit`: how many GSIs this KVM routes (KVM_CAP_IRQ_ROUTING).
  IrqRouting(const kvm::VmFd& vm, uint32_t gsi_limit) : vm_(vm), gsi_limit_(gsi_limit) {}

  // Installs the IRQ-chip routes.
  Result<void> initialize();

  Result<Line> allocate_msi_line() override;
  Result<void> route_msi(uint32_t gsi, uint64_t address, uint32_t data) override;

  // A source on the level-triggered IO-APIC pin `gsi`; the pin is high while
  // any of its sources is.
  Result<std::shared_ptr<LevelIrqLine>> level_line(uint32_t gsi);

 private:
  class Source;
  struct SharedPin {
    std::mutex mutex;
    uint32_t asserted = 0;
  };
  Result<void> commit_locked();

  const kvm::VmFd& vm_;
  uint32_t gsi_limit_;
  std::mutex mutex_;
  uint32_t next_gsi_ = kIoApicPins;
  std::map<uint32_t, kvm_irq_routing_entry> msi_routes_;
  std::map<uint32_t, std::shared_ptr<SharedPin>> pins_;
};

}  // namespace crosvm
