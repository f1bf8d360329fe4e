// How a device asks for guest writes to reach an eventfd without a vCPU exit
// (KVM_IOEVENTFD): the VM implements this, tests use a fake.
#pragma once

#include <cstdint>

#include "base/event_fd.h"
#include "base/result.h"

namespace crosvm {

class IoEventRegistry {
 public:
  virtual ~IoEventRegistry() = default;
  // A guest write of `length` bytes (1, 2, 4 or 8) of any value at the MMIO
  // `address` signals `event` instead of exiting to the VMM.
  virtual Result<void> register_mmio(const EventFd& event, uint64_t address, uint32_t length) = 0;
  virtual Result<void> unregister_mmio(const EventFd& event, uint64_t address, uint32_t length) = 0;
};

}  // namespace crosvm
