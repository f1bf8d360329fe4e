// Command-line parsing for crosvm-launch, following crosvm's option names,
// defaults and key=value list syntax (e.g. --serial type=stdout,num=1).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace launcher {

struct SerialOption {
  bool virtio_console = false;  // hardware=virtio-console (hvcN) instead of a UART
  uint32_t number = 1;
  std::string type = "stdout";  // stdout, file, sink
  std::string path;
  bool console = false;
  bool earlycon = false;
  bool stdin_input = false;
};

struct DiskOption {
  std::string path;
  bool read_only = true;  // crosvm's -d/--disk and -r/--root are read-only
  bool root = false;
  std::string id;
};

struct RunOptions {
  uint64_t memory_mib = 256;
  uint32_t cpus = 1;
  std::vector<std::string> params;
  std::string initrd;
  std::string kernel;
  bool demo = false;  // the built-in demo guest (also when no kernel is given)
  std::vector<SerialOption> serials;  // empty: serial 1 on stdout as console, reading stdin
  std::vector<DiskOption> disks;
  bool rng = true;  // as crosvm: on unless --no-rng
  int log_level = 2;  // info
  bool help = false;
};

// Parses the arguments after "run". Returns the options or one line saying
// what is wrong.
std::variant<RunOptions, std::string> parse_run_options(const std::vector<std::string>& args);

// "key=value,key,..." into pairs; a bare key means "true".
std::vector<std::pair<std::string, std::string>> split_key_values(const std::string& text);

extern const char* const kRunUsage;

}  // namespace launcher
