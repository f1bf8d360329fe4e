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
  bool hugepages = true;  // on unless --no-hugepages (crosvm's --hugepages is accepted)
  int log_level = 2;  // info
  std::string socket;  // -s/--socket: the control socket (a path or a directory)
  bool help = false;
};

// stop|suspend|resume|status SOCKET, disk resize INDEX SIZE SOCKET: one
// request for a running VM's control socket.
struct ControlCommand {
  std::string socket;
  std::string request_json;
  bool print_response = false;  // status prints the VM's answer
};

// Parses a control command (`command` is its first word, `args` the rest).
// Returns nullopt when `command` is not one.
std::optional<std::variant<ControlCommand, std::string>> parse_control_command(
    const std::string& command, const std::vector<std::string>& args);

// "1073741824", "512M", "10G" (binary units) into bytes.
std::optional<uint64_t> parse_size(const std::string& text);

extern const char* const kControlUsage;

// Parses the arguments after "run". Returns the options or one line saying
// what is wrong.
std::variant<RunOptions, std::string> parse_run_options(const std::vector<std::string>& args);

// "key=value,key,..." into pairs; a bare key means "true".
std::vector<std::pair<std::string, std::string>> split_key_values(const std::string& text);

extern const char* const kRunUsage;

}  // namespace launcher
