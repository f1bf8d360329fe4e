#include "options.h"

#include <charconv>
#include <functional>
#include <map>

namespace launcher {
namespace {

template <typename T>
std::optional<T> parse_number(const std::string& text) {
  T value{};
  const char* end = text.data() + text.size();
  auto [stop, error] = std::from_chars(text.data(), end, value);
  if (text.empty() || error != std::errc() || stop != end) return std::nullopt;
  return value;
}

std::optional<bool> parse_bool(const std::string& text) {
  if (text == "true" || text == "1" || text == "yes" || text == "on") return true;
  if (text == "false" || text == "0" || text == "no" || text == "off") return false;
  return std::nullopt;
}

std::optional<int> parse_log_level(const std::string& text) {
  static const std::map<std::string, int> kLevels = {
      {"error", 0}, {"warn", 1}, {"warning", 1}, {"info", 2}, {"debug", 3}, {"trace", 3}};
  auto found = kLevels.find(text);
  if (found == kLevels.end()) return std::nullopt;
  return found->second;
}

// --mem accepts "N" and crosvm's newer "size=N".
std::optional<uint64_t> parse_memory(const std::string& text) {
  if (text.rfind("size=", 0) == 0) return parse_number<uint64_t>(text.substr(5));
  return parse_number<uint64_t>(text);
}

// --cpus accepts "N" and crosvm's newer "num-cores=N".
std::optional<uint32_t> parse_cpus(const std::string& text) {
  if (text.rfind("num-cores=", 0) == 0) return parse_number<uint32_t>(text.substr(10));
  return parse_number<uint32_t>(text);
}

std::variant<SerialOption, std::string> parse_serial(const std::string& text) {
  SerialOption serial;
  for (const auto& [key, value] : split_key_values(text)) {
    if (key == "type") {
      if (value != "stdout" && value != "file" && value != "sink") {
        return "--serial: type must be stdout, file or sink, not '" + value + "'";
      }
      serial.type = value;
    } else if (key == "num") {
      auto number = parse_number<uint32_t>(value);
      if (!number || *number < 1 || *number > 4) return "--serial: num must be 1 to 4";
      serial.number = *number;
    } else if (key == "path") {
      serial.path = value;
    } else if (key == "hardware") {
      if (value != "serial" && value != "virtio-console") {
        return "--serial: hardware must be serial or virtio-console, not '" + value + "'";
      }
      serial.virtio_console = value == "virtio-console";
    } else if (key == "console" || key == "earlycon" || key == "stdin") {
      auto flag = parse_bool(value);
      if (!flag) return "--serial: " + key + " must be true or false";
      (key == "console" ? serial.console : key == "earlycon" ? serial.earlycon : serial.stdin_input) = *flag;
    } else {
      return "--serial: unknown key '" + key + "'";
    }
  }
  if (serial.type == "file" && serial.path.empty()) return "--serial: type=file needs path=";
  if (serial.virtio_console && serial.earlycon) return "--serial: a virtio-console cannot be an earlycon";
  return serial;
}

// crosvm's --block path=P,ro=BOOL,root=BOOL,id=ID (a bare first item is the path).
std::variant<DiskOption, std::string> parse_block(const std::string& text) {
  DiskOption disk;
  disk.read_only = false;
  bool first = true;
  for (const auto& [key, value] : split_key_values(text)) {
    if (first && value == "true" && key.find('=') == std::string::npos && key != "ro" && key != "root") {
      disk.path = key;  // "--block /path/img,ro"
    } else if (key == "path") {
      disk.path = value;
    } else if (key == "ro" || key == "root") {
      auto flag = parse_bool(value);
      if (!flag) return "--block: " + key + " must be true or false";
      (key == "ro" ? disk.read_only : disk.root) = *flag;
    } else if (key == "id") {
      if (value.size() > 20) return "--block: id is at most 20 bytes";
      disk.id = value;
    } else {
      return "--block: unknown key '" + key + "'";
    }
    first = false;
  }
  if (disk.path.empty()) return "--block needs path=";
  return disk;
}

}  // namespace

const char* const kRunUsage =
    "usage: crosvm-launch run [OPTIONS] [KERNEL]\n"
    "\n"
    "Boots KERNEL (a bzImage or an ELF vmlinux). Without KERNEL, or with --demo,\n"
    "boots the built-in demo guest, which greets on the console and powers off.\n"
    "\n"
    "options:\n"
    "  -m, --mem MiB          guest memory (default 256); also size=MiB\n"
    "  -c, --cpus N           number of vCPUs (default 1); also num-cores=N\n"
    "  -p, --params STR       kernel command-line parameters (repeatable)\n"
    "  -i, --initrd PATH      initial ramdisk\n"
    "  -r, --root PATH        read-only root disk (root=/dev/vda ro)\n"
    "      --rwroot PATH      writable root disk (root=/dev/vda rw)\n"
    "  -d, --disk PATH        read-only disk (repeatable)\n"
    "      --rwdisk PATH      writable disk (repeatable)\n"
    "      --block LIST       a disk: path=P,ro=BOOL,root=BOOL,id=ID (repeatable)\n"
    "      --no-rng           no virtio-rng device (there is one by default)\n"
    "      --no-hugepages     guest RAM in small pages only (default: transparent\n"
    "                         huge pages; --hugepages is accepted, as crosvm's)\n"
    "      --serial LIST      a serial port: type=stdout|file|sink,num=1..4,path=P,\n"
    "                         hardware=serial|virtio-console,console=BOOL,\n"
    "                         earlycon=BOOL,stdin=BOOL (repeatable; default:\n"
    "                         type=stdout,num=1,console=true,stdin=true)\n"
    "      --demo             boot the built-in demo guest\n"
    "  -s, --socket PATH      control socket for stop/suspend/resume/status/disk\n"
    "                         (a directory: crosvm-PID.sock in it)\n"
    "      --log-level LEVEL  error, warn, info (default) or debug\n"
    "  -h, --help             this text\n"
    "\n"
    "exit status: 0 the guest powered off or was stopped, 32 it reset,\n"
    "33 it crashed, 34 its kernel panicked, 1 bad arguments or set-up errors.\n";

std::vector<std::pair<std::string, std::string>> split_key_values(const std::string& text) {
  std::vector<std::pair<std::string, std::string>> pairs;
  size_t start = 0;
  while (start <= text.size()) {
    size_t comma = text.find(',', start);
    if (comma == std::string::npos) comma = text.size();
    const std::string item = text.substr(start, comma - start);
    if (!item.empty()) {
      const size_t equals = item.find('=');
      if (equals == std::string::npos) {
        pairs.emplace_back(item, "true");
      } else {
        pairs.emplace_back(item.substr(0, equals), item.substr(equals + 1));
      }
    }
    start = comma + 1;
  }
  return pairs;
}

const char* const kControlUsage =
    "  stop SOCKET              stop the VM (crosvm-launch run exits 0)\n"
    "  suspend SOCKET           hold every vCPU\n"
    "  resume SOCKET            let them run again\n"
    "  status SOCKET            the VM's state, vCPUs, memory and devices (JSON)\n"
    "  disk resize INDEX SIZE SOCKET\n"
    "                           grow disk INDEX (0 is vda) to SIZE bytes (K, M, G, T\n"
    "                           suffixes: binary units)\n";

std::optional<uint64_t> parse_size(const std::string& text) {
  if (text.empty()) return std::nullopt;
  uint64_t shift = 0;
  std::string digits = text;
  switch (text.back()) {
    case 'K': case 'k': shift = 10; break;
    case 'M': case 'm': shift = 20; break;
    case 'G': case 'g': shift = 30; break;
    case 'T': case 't': shift = 40; break;
    default: break;
  }
  if (shift != 0) digits.pop_back();
  auto number = parse_number<uint64_t>(digits);
  if (!number || (shift != 0 && *number > (UINT64_MAX >> shift))) return std::nullopt;
  return *number << shift;
}

std::optional<std::variant<ControlCommand, std::string>> parse_control_command(
    const std::string& command, const std::vector<std::string>& args) {
  ControlCommand control;
  if (command == "stop" || command == "suspend" || command == "resume" || command == "status") {
    if (args.size() != 1) return std::string("usage: crosvm-launch " + command + " SOCKET");
    control.socket = args[0];
    control.request_json = "{\"request\":\"" + command + "\"}";
    control.print_response = command == "status";
    return control;
  }
  if (command == "disk") {
    const char* usage = "usage: crosvm-launch disk resize INDEX SIZE SOCKET";
    if (args.size() != 4 || args[0] != "resize") return std::string(usage);
    auto index = parse_number<uint32_t>(args[1]);
    if (!index) return "disk resize: INDEX must be a disk number (0 is vda), not '" + args[1] + "'";
    auto size = parse_size(args[2]);
    if (!size) return "disk resize: SIZE must be a number of bytes (or with K, M, G, T), not '" + args[2] + "'";
    control.socket = args[3];
    control.request_json = "{\"request\":\"disk_resize\",\"disk\":" + std::to_string(*index) +
                           ",\"size\":" + std::to_string(*size) + "}";
    return control;
  }
  return std::nullopt;
}

std::variant<RunOptions, std::string> parse_run_options(const std::vector<std::string>& args) {
  RunOptions options;
  std::vector<std::string> positional;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string arg = args[i];
    if (arg == "--") {
      positional.insert(positional.end(), args.begin() + static_cast<ptrdiff_t>(i) + 1, args.end());
      break;
    }
    if (arg.empty() || arg[0] != '-' || arg == "-") {
      positional.push_back(arg);
      continue;
    }
    std::optional<std::string> inline_value;
    if (arg.rfind("--", 0) == 0) {
      if (const size_t equals = arg.find('='); equals != std::string::npos) {
        inline_value = arg.substr(equals + 1);
        arg = arg.substr(0, equals);
      }
    } else if (arg.size() > 2) {  // -m512
      inline_value = arg.substr(2);
      arg = arg.substr(0, 2);
    }
    auto value = [&]() -> std::optional<std::string> {
      if (inline_value) return inline_value;
      if (i + 1 < args.size()) return args[++i];
      return std::nullopt;
    };
    auto flag = [&](bool& target) -> std::optional<std::string> {
      if (inline_value) return arg + " takes no value";
      target = true;
      return std::nullopt;
    };

    std::optional<std::string> error;
    if (arg == "-h" || arg == "--help") {
      error = flag(options.help);
    } else if (arg == "--demo") {
      error = flag(options.demo);
    } else if (arg == "-m" || arg == "--mem") {
      auto text = value();
      auto mib = text ? parse_memory(*text) : std::nullopt;
      if (!mib) return arg + " needs a memory size in MiB" + (text ? ", not '" + *text + "'" : "");
      options.memory_mib = *mib;
    } else if (arg == "-c" || arg == "--cpus") {
      auto text = value();
      auto cpus = text ? parse_cpus(*text) : std::nullopt;
      if (!cpus) return arg + " needs a number of vCPUs" + (text ? ", not '" + *text + "'" : "");
      options.cpus = *cpus;
    } else if (arg == "-p" || arg == "--params") {
      auto text = value();
      if (!text) return arg + " needs kernel parameters";
      options.params.push_back(*text);
    } else if (arg == "-i" || arg == "--initrd") {
      auto text = value();
      if (!text || text->empty()) return arg + " needs a path";
      options.initrd = *text;
    } else if (arg == "-r" || arg == "--root" || arg == "--rwroot" || arg == "-d" || arg == "--disk" ||
               arg == "--rwdisk") {
      auto text = value();
      if (!text || text->empty()) return arg + " needs a path";
      DiskOption disk;
      disk.path = *text;
      disk.read_only = arg != "--rwroot" && arg != "--rwdisk";
      disk.root = arg == "-r" || arg == "--root" || arg == "--rwroot";
      options.disks.push_back(disk);
    } else if (arg == "--block") {
      auto text = value();
      if (!text) return "--block needs a parameter list";
      auto disk = parse_block(*text);
      if (auto* message = std::get_if<std::string>(&disk)) return *message;
      options.disks.push_back(std::get<DiskOption>(disk));
    } else if (arg == "--no-rng") {
      bool no_rng = false;
      error = flag(no_rng);
      options.rng = !no_rng;
    } else if (arg == "--hugepages" || arg == "--no-hugepages") {
      bool given = false;
      error = flag(given);
      options.hugepages = arg == "--hugepages";
    } else if (arg == "--serial") {
      auto text = value();
      if (!text) return "--serial needs a parameter list";
      auto serial = parse_serial(*text);
      if (auto* message = std::get_if<std::string>(&serial)) return *message;
      options.serials.push_back(std::get<SerialOption>(serial));
    } else if (arg == "-s" || arg == "--socket") {
      auto text = value();
      if (!text || text->empty()) return arg + " needs a path";
      options.socket = *text;
    } else if (arg == "--log-level") {
      auto text = value();
      auto level = text ? parse_log_level(*text) : std::nullopt;
      if (!level) return "--log-level needs error, warn, info or debug";
      options.log_level = *level;
    } else {
      return "unknown option '" + arg + "' (see crosvm-launch run --help)";
    }
    if (error) return *error;
  }
  if (positional.size() > 1) return "more than one kernel given: '" + positional[1] + "'";
  if (!positional.empty()) options.kernel = positional[0];
  if (options.kernel.empty()) options.demo = true;
  if (options.demo && !options.kernel.empty()) return "--demo and a kernel cannot be combined";
  size_t roots = 0;
  for (const DiskOption& disk : options.disks) roots += disk.root ? 1 : 0;
  if (roots > 1) return "only one root disk can be given";
  if (options.serials.empty()) {
    SerialOption console;
    console.console = true;
    console.stdin_input = true;
    options.serials.push_back(console);
  }
  return options;
}

}  // namespace launcher
