#include "vm/irq_routing.h"

namespace crosvm {
namespace {

constexpr uint32_t kPicPins = 8;

kvm_irq_routing_entry chip_route(uint32_t gsi, uint32_t chip, uint32_t pin) {
  kvm_irq_routing_entry entry{};
  entry.gsi = gsi;
  entry.type = KVM_IRQ_ROUTING_IRQCHIP;
  entry.u.irqchip.irqchip = chip;
  entry.u.irqchip.pin = pin;
  return entry;
}

}  // namespace

// One function's view of a shared INTx pin.
class IrqRouting::Source final : public LevelIrqLine {
 public:
  Source(const kvm::VmFd& vm, uint32_t gsi, std::shared_ptr<SharedPin> pin)
      : vm_(vm), gsi_(gsi), pin_(std::move(pin)) {}

  void set_level(bool asserted) override {
    std::lock_guard lock(pin_->mutex);
    if (asserted == asserted_) return;
    asserted_ = asserted;
    const uint32_t before = pin_->asserted;
    pin_->asserted = asserted ? before + 1 : before - 1;
    if ((before == 0) != (pin_->asserted == 0)) (void)vm_.set_irq_line(gsi_, pin_->asserted != 0);
  }

 private:
  const kvm::VmFd& vm_;
  uint32_t gsi_;
  std::shared_ptr<SharedPin> pin_;
  bool asserted_ = false;
};

Result<void> IrqRouting::initialize() {
  std::lock_guard lock(mutex_);
  return commit_locked();
}

Result<void> IrqRouting::commit_locked() {
  std::vector<kvm_irq_routing_entry> entries;
  for (uint32_t irq = 0; irq < 2 * kPicPins; ++irq) {
    if (irq == 2) continue;  // the cascade
    entries.push_back(chip_route(irq, irq < kPicPins ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE,
                                 irq % kPicPins));
  }
  for (uint32_t gsi = 0; gsi < kIoApicPins; ++gsi) {
    if (gsi == 2) continue;
    entries.push_back(chip_route(gsi, KVM_IRQCHIP_IOAPIC, gsi == 0 ? 2 : gsi));
  }
  for (const auto& [gsi, route] : msi_routes_) entries.push_back(route);
  return vm_.set_gsi_routing(entries);
}

Result<pci::MsiRouter::Line> IrqRouting::allocate_msi_line() {
  std::lock_guard lock(mutex_);
  if (next_gsi_ >= gsi_limit_) {
    return make_error(ErrorCode::kDevice, "out of interrupt routes: KVM routes {} GSIs", gsi_limit_);
  }
  EventFd event = CROSVM_TRY(EventFd::create());
  const uint32_t gsi = next_gsi_;
  CROSVM_TRY(vm_.register_irqfd(event.fd(), gsi));
  ++next_gsi_;
  return Line{gsi, std::move(event)};
}

Result<void> IrqRouting::route_msi(uint32_t gsi, uint64_t address, uint32_t data) {
  std::lock_guard lock(mutex_);
  if (gsi < kIoApicPins || gsi >= next_gsi_) {
    return make_error(ErrorCode::kInternal, "GSI {} is not an MSI line", gsi);
  }
  kvm_irq_routing_entry entry{};
  entry.gsi = gsi;
  entry.type = KVM_IRQ_ROUTING_MSI;
  entry.u.msi.address_lo = static_cast<uint32_t>(address);
  entry.u.msi.address_hi = static_cast<uint32_t>(address >> 32);
  entry.u.msi.data = data;
  msi_routes_[gsi] = entry;
  return commit_locked();
}

Result<std::shared_ptr<LevelIrqLine>> IrqRouting::level_line(uint32_t gsi) {
  if (gsi >= kIoApicPins) return make_error(ErrorCode::kInternal, "GSI {} is not an IO-APIC pin", gsi);
  std::lock_guard lock(mutex_);
  std::shared_ptr<SharedPin>& pin = pins_[gsi];
  if (!pin) pin = std::make_shared<SharedPin>();
  return std::shared_ptr<LevelIrqLine>(std::make_shared<Source>(vm_, gsi, pin));
}

}  // namespace crosvm
