#include "vm/vm_config.h"

#include <fmt/format.h>

#include "devices/legacy/serial.h"

namespace crosvm {

std::string VmConfig::kernel_cmdline() const {
  // panic=-1: a panicking guest resets at once instead of hanging forever.
  std::string cmdline = "panic=-1";
  for (const SerialConfig& serial : serials) {
    if (serial.earlycon) {
      cmdline += fmt::format(" earlycon=uart8250,io,{:#x}", Serial::kPorts[serial.number - 1]);
    }
  }
  for (const SerialConfig& serial : serials) {
    if (serial.console) cmdline += fmt::format(" console=ttyS{}", serial.number - 1);
  }
  for (const std::string& param : params) {
    if (!param.empty()) cmdline += " " + param;
  }
  return cmdline;
}

}  // namespace crosvm
