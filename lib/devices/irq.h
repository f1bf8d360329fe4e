// How a device interrupts the guest: an edge on a line. In a VM the line is an
// eventfd bound to a GSI with KVM's irqfd, so raising it is one write(2) from
// any thread and never passes through a vCPU.
#pragma once

#include <cstdint>

#include "base/event_fd.h"

namespace crosvm {

class IrqLine {
 public:
  virtual ~IrqLine() = default;
  virtual void trigger() = 0;
};

class EventFdIrqLine final : public IrqLine {
 public:
  EventFdIrqLine(EventFd event, uint32_t gsi) : event_(std::move(event)), gsi_(gsi) {}
  void trigger() override { event_.signal(); }
  const EventFd& event() const { return event_; }
  uint32_t gsi() const { return gsi_; }

 private:
  EventFd event_;
  uint32_t gsi_;
};

// A level-triggered line (PCI INTx). Several functions may share one GSI, so
// the VM keeps each source's level and drives the pin with their OR.
class LevelIrqLine {
 public:
  virtual ~LevelIrqLine() = default;
  virtual void set_level(bool asserted) = 0;
};

}  // namespace crosvm
