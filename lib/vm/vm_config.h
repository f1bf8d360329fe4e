// Everything that describes a VM before it is built. The C ABI's
// crosvm_config fills one of these; Vm::create turns it into a machine.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/log.h"

namespace crosvm {

enum class SerialOutput { kSink, kStdout, kFile, kCallback };

struct SerialConfig {
  uint32_t number = 1;  // 1..4: COM1..COM4, ttyS0..ttyS3 in the guest
  SerialOutput output = SerialOutput::kStdout;
  std::string path;     // for kFile
  std::function<void(std::span<const uint8_t>)> callback;  // for kCallback
  bool console = false;     // console=ttySn on the command line
  bool earlycon = false;    // earlycon=uart8250,io,PORT
  bool read_stdin = false;  // the process's stdin feeds this port
};

struct VmConfig {
  static constexpr uint64_t kDefaultMemoryMib = 256;  // crosvm's default

  uint64_t memory_mib = kDefaultMemoryMib;
  uint32_t vcpu_count = 1;
  std::string kernel_path;
  bool demo_kernel = false;  // the built-in tiny guest instead of a kernel file
  std::string initrd_path;
  std::vector<std::string> params;  // appended to the command line in order
  std::vector<SerialConfig> serials;
  std::string kvm_path = "/dev/kvm";
  Logger logger;

  // The command line the guest gets: defaults, serial consoles, then params.
  std::string kernel_cmdline() const;
};

}  // namespace crosvm
