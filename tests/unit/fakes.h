// Test doubles for the interfaces devices talk to.
#pragma once

#include <string>
#include <vector>

#include "devices/irq.h"
#include "devices/power_events.h"

namespace crosvm::testing {

class CountingIrq final : public IrqLine {
 public:
  void trigger() override { ++count; }
  int take() { return std::exchange(count, 0); }
  int count = 0;
};

class RecordingPowerEvents final : public PowerEvents {
 public:
  void request_power_off(const std::string& source) override { events.push_back("poweroff:" + source); }
  void request_reset(const std::string& source) override { events.push_back("reset:" + source); }
  void report_panic(const std::string& source) override { events.push_back("panic:" + source); }
  std::vector<std::string> events;
};

}  // namespace crosvm::testing
