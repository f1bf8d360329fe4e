// What devices tell the VM about the machine's power: the guest asked to power
// off or reset, or its kernel panicked. The VM implements this; devices know
// nothing else of it.
#pragma once

#include <string>

namespace crosvm {

class PowerEvents {
 public:
  virtual ~PowerEvents() = default;
  virtual void request_power_off(const std::string& source) = 0;
  virtual void request_reset(const std::string& source) = 0;
  virtual void report_panic(const std::string& source) = 0;
};

}  // namespace crosvm
