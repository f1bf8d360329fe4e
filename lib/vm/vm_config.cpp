#include "vm/vm_config.h"

#include <fmt/format.h>

#include "devices/legacy/serial.h"

namespace crosvm {

std::vector<DiskConfig> VmConfig::ordered_disks() const {
  std::vector<DiskConfig> ordered;
  for (const DiskConfig& disk : disks) {
    if (disk.root) ordered.push_back(disk);
  }
  for (const DiskConfig& disk : disks) {
    if (!disk.root) ordered.push_back(disk);
  }
  return ordered;
}

void VmConfig::set_serial(SerialConfig serial) {
  std::erase_if(serials, [&](const SerialConfig& existing) {
    return existing.number == serial.number && existing.hardware == serial.hardware;
  });
  serials.push_back(std::move(serial));
}

std::string VmConfig::kernel_cmdline() const {
  // panic=-1: a panicking guest resets at once instead of hanging forever.
  std::string cmdline = "panic=-1";
  for (const SerialConfig& serial : serials) {
    if (serial.earlycon && serial.hardware == SerialHardware::kUart) {
      cmdline += fmt::format(" earlycon=uart8250,io,{:#x}", Serial::kPorts[serial.number - 1]);
    }
  }
  const std::vector<DiskConfig> ordered = ordered_disks();
  if (!ordered.empty() && ordered.front().root) {
    cmdline += ordered.front().read_only ? " root=/dev/vda ro" : " root=/dev/vda rw";
  }
  for (const SerialConfig& serial : serials) {
    if (!serial.console) continue;
    cmdline += fmt::format(" console={}{}", serial.hardware == SerialHardware::kUart ? "ttyS" : "hvc",
                           serial.number - 1);
  }
  for (const std::string& param : params) {
    if (!param.empty()) cmdline += " " + param;
  }
  return cmdline;
}

}  // namespace crosvm
