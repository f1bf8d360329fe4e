#include "options.h"

#include <algorithm>
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

// -d PATH[,key=value...] and friends as a block list, as crosvm reads them:
// the path, then the disk's keys, with ro= and root= set by the flag.
std::variant<DeviceArg, std::string> disk_shorthand(const std::string& flag, const std::string& list,
                                                    bool read_only, bool root) {
  if (list.empty() || list.front() == ',') return flag + " needs a path";
  for (size_t start = 0; start < list.size();) {
    const size_t comma = std::min(list.find(',', start), list.size());
    const std::string key = list.substr(start, std::min(list.find('=', start), comma) - start);
    if (start > 0 && (key == "ro" || key == "root")) {
      return flag + " sets " + key + "= itself (ro=" + (read_only ? "true" : "false") + ", root=" +
             (root ? "true" : "false") + "); use --block for another combination";
    }
    start = comma + 1;
  }
  return DeviceArg{"block", list + ",ro=" + (read_only ? "true" : "false") + ",root=" + (root ? "true" : "false")};
}

// --jail's keys, crosvm's where it has them.
std::optional<std::string> parse_jail(const std::string& text, RunOptions& options) {
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = std::min(text.find(',', start), text.size());
    const std::string item = text.substr(start, comma - start);
    start = comma + 1;
    const size_t equals = item.find('=');
    const std::string key = item.substr(0, equals);
    const std::string value = equals == std::string::npos ? "" : item.substr(equals + 1);
    if (key == "seccomp-log-failures") {
      if (value.empty() || value == "true") {
        options.seccomp_log_failures = true;
      } else if (value == "false") {
        options.seccomp_log_failures = false;
      } else {
        return "--jail seccomp-log-failures is true or false, not '" + value + "'";
      }
    } else if (key == "seccomp-deny") {
      if (value.empty()) return "--jail seccomp-deny= needs a syscall name";
      options.seccomp_denied.push_back(value);
    } else {
      return "--jail: unknown key '" + key + "' (seccomp-log-failures, seccomp-deny=NAME)";
    }
  }
  return std::nullopt;
}

// The rows of docs/launcher.md's table of crosvm's run options.
constexpr CrosvmOptionSupport kYes = CrosvmOptionSupport::kSupported;
constexpr CrosvmOptionSupport kHarmless = CrosvmOptionSupport::kHarmless;
constexpr CrosvmOptionSupport kNo = CrosvmOptionSupport::kUnsupported;
constexpr CrosvmRunOption kCrosvmRunOptions[] = {
    // Kernel, boot and firmware
    {"--initrd", "-i", kYes}, {"--params", "-p", kYes}, {"--bios", "", kNo}, {"--pflash", "", kNo},
    {"--android-fstab", "", kNo}, {"--acpi-table", "", kNo}, {"--device-tree-overlay", "", kNo},
    {"--dump-device-tree-blob", "", kNo}, {"--fdt-position", "", kNo}, {"--fw-cfg", "", kNo},
    {"--enable-fw-cfg", "", kNo}, {"--restore", "", kNo}, {"--suspended", "", kNo},
    {"--protected-vm", "", kNo}, {"--protected-vm-with-firmware", "", kNo},
    {"--protected-vm-without-firmware", "", kNo}, {"--unprotected-vm-with-firmware", "", kNo},
    // CPUs and memory
    {"--cpus", "-c", kYes}, {"--mem", "-m", kYes}, {"--cpu-affinity", "", kNo}, {"--cpu-capacity", "", kNo},
    {"--cpu-cluster", "", kNo}, {"--rt-cpus", "", kNo}, {"--delay-rt", "", kNo},
    {"--host-cpu-topology", "", kNo}, {"--no-smt", "", kNo}, {"--core-scheduling", "", kNo},
    {"--per-vm-core-scheduling", "", kNo}, {"--vcpu-cgroup-path", "", kNo}, {"--boost-uclamp", "", kNo},
    {"--enable-hwp", "", kNo}, {"--force-calibrated-tsc-leaf", "", kNo}, {"--bus-lock-ratelimit", "", kNo},
    {"--s2idle", "", kNo}, {"--pci-start", "", kNo}, {"--no-i8042", "", kNo}, {"--no-rtc", "", kNo},
    {"--oem-strings", "", kNo}, {"--smbios", "", kNo}, {"--split-irqchip", "", kNo}, {"--irqchip", "", kNo},
    {"--nested", "", kNo}, {"--hugepages", "", kYes}, {"--lock-guest-memory", "", kNo},
    {"--file-backed-mapping", "", kNo}, {"--swap", "", kNo}, {"--mmio-address-range", "", kNo},
    {"--pci", "", kNo},
    // Hypervisor and sandbox
    {"--hypervisor", "", kNo}, {"--kvm-device", "", kNo}, {"--disable-sandbox", "", kYes},
    {"--pivot-root", "", kNo}, {"--seccomp-policy-dir", "", kNo}, {"--seccomp-log-failures", "", kYes},
    {"--async-executor", "", kNo}, {"--name", "", kYes}, {"--gdb", "", kNo},
    // Disks
    {"--block", "-b", kYes}, {"--disk", "-d", kYes}, {"--rwdisk", "", kYes}, {"--root", "-r", kYes},
    {"--rwroot", "", kYes}, {"--scsi-block", "", kNo}, {"--pmem", "", kNo}, {"--pmem-device", "", kNo},
    {"--rw-pmem-device", "", kNo},
    // Consoles, network, vsock and other devices
    {"--serial", "", kYes}, {"--vhost-user", "", kYes}, {"--vhost-user-connect-timeout-ms", "", kNo},
    {"--net", "", kYes}, {"--tap-name", "", kYes}, {"--tap-fd", "", kYes}, {"--host-ip", "", kYes},
    {"--netmask", "", kYes}, {"--mac", "", kYes}, {"--net-vq-pairs", "", kYes}, {"--vhost-net", "", kYes},
    {"--vhost-net-device", "", kNo}, {"--vsock", "", kYes}, {"--cid", "", kYes},
    {"--vhost-vsock-device", "", kYes}, {"--vhost-vsock-fd", "", kNo},
    {"--shared-dir", "", kNo}, {"--no-balloon", "", kHarmless}, {"--no-usb", "", kHarmless},
    {"--no-rng", "", kYes}, {"--balloon-bias-mib", "", kNo}, {"--balloon-control", "", kNo},
    {"--balloon-page-reporting", "", kNo}, {"--init-mem", "", kNo}, {"--gpu", "", kNo},
    {"--gpu-display", "", kNo}, {"--input", "", kNo}, {"--evdev", "", kNo}, {"--virtio-snd", "", kNo},
    {"--sound", "", kNo}, {"--battery", "", kNo}, {"--vfio", "", kNo}, {"--wayland-sock", "", kNo},
    {"--x-display", "", kNo}, {"--pstore", "", kNo}, {"--disable-virtio-intx", "", kNo},
    {"--vtpm-proxy", "", kNo}, {"--pvclock", "", kNo},
    // Input, display, media, GPU and more of crosvm's devices
    {"--keyboard", "", kNo}, {"--mouse", "", kNo}, {"--switches", "", kNo}, {"--trackpad", "", kNo},
    {"--single-touch", "", kNo}, {"--multi-touch", "", kNo}, {"--rotary", "", kNo},
    {"--display-window-keyboard", "", kNo}, {"--display-window-mouse", "", kNo},
    {"--android-display-service", "", kNo}, {"--gpu-cgroup-path", "", kNo}, {"--gpu-render-server", "", kNo},
    {"--gpu-server-cgroup-path", "", kNo}, {"--video-decoder", "", kNo}, {"--video-encoder", "", kNo},
    {"--media-decoder", "", kNo}, {"--v4l2-proxy", "", kNo}, {"--simple-media-device", "", kNo},
    {"--balloon-ws-num-bins", "", kNo}, {"--balloon-ws-reporting", "", kNo}, {"--slirp-capture-file", "", kNo},
    {"--stub-pci-device", "", kNo}, {"--pci-hotplug-slots", "", kNo}, {"--coiommu", "", kNo},
    {"--vfio-platform", "", kNo}, {"--vfio-platform-pm", "", kNo}, {"--vfio-isolate-hotplug", "", kNo},
    {"--vhost-scmi", "", kNo}, {"--dev-pm", "", kNo},
    // Platform and process (several are crosvm's on other architectures or systems)
    {"--suspended-vcpus", "", kNo}, {"--unmap-guest-memory-on-fork", "", kNo},
    {"--break-linux-pci-config-io", "", kNo}, {"--force-disable-readonly-mem", "", kNo}, {"--itmt", "", kNo},
    {"--swiotlb", "", kNo}, {"--no-pmu", "", kNo}, {"--mte", "", kNo}, {"--ffa", "", kNo},
    {"--smccc-trng", "", kNo}, {"--virt-cpufreq", "", kNo}, {"--virt-cpufreq-upstream", "", kNo},
    {"--task-profiles", "", kNo}, {"--crash-pipe-name", "", kNo}, {"--process-invariants-handle", "", kNo},
    {"--process-invariants-size", "", kNo},
    // Control and logging
    {"--socket", "-s", kYes}, {"--syslog-tag", "", kYes},
};

const CrosvmRunOption* find_crosvm_option(const std::string& arg) {
  for (const CrosvmRunOption& option : kCrosvmRunOptions) {
    if (arg == option.name || (option.alias[0] != '\0' && arg == option.alias)) return &option;
  }
  return nullptr;
}

// A device list's keys as given ("console" alone meaning console=true).
// Only for the launcher's own rule below: the library reads the lists.
std::map<std::string, std::string> list_keys(const std::string& list) {
  std::map<std::string, std::string> keys;
  size_t start = 0;
  while (start < list.size()) {
    size_t end = start;
    bool quoted = false;
    while (end < list.size() && (quoted || list[end] != ',')) quoted ^= list[end++] == '"';
    const std::string item = list.substr(start, end - start);
    const size_t equals = item.find('=');
    if (equals == std::string::npos) {
      keys.emplace(item, "true");
    } else {
      keys.emplace(item.substr(0, equals), item.substr(equals + 1));
    }
    start = end + 1;
  }
  return keys;
}

// crosvm's default console: when no port is the console (nor a vhost-user
// console) and COM1 is not given, COM1 on stdout is the console and reads
// stdin (unless another port does).
void add_default_console(std::vector<DeviceArg>& devices) {
  bool console = false, com1 = false, stdin_taken = false;
  for (const DeviceArg& device : devices) {
    const auto keys = list_keys(device.options);
    auto value = [&](const char* key, const char* fallback) {
      auto found = keys.find(key);
      return found == keys.end() ? std::string(fallback) : found->second;
    };
    // A flag as the library reads it (true, yes, on, 1; bare means true).
    auto set = [&](const char* key) {
      const std::string text = value(key, "false");
      return text == "true" || text == "yes" || text == "on" || text == "1";
    };
    if (device.kind == "serial") {
      console |= set("console");
      stdin_taken |= set("stdin");
      com1 |= value("hardware", "serial") == "serial" && value("num", "1") == "1";
    } else if (device.kind == "vhost-user") {
      // type=console, or crosvm's bare first item ("console,socket=...").
      console |= value("type", "") == "console" || (keys.contains("console") && keys.at("console") == "true");
    }
  }
  if (console || com1) return;
  devices.push_back(DeviceArg{"serial", std::string("type=stdout,num=1,console=true") + (stdin_taken ? "" : ",stdin=true")});
}

// crosvm refuses a second --serial of the same hardware and number (the
// library's lists would replace the first).
std::optional<std::string> duplicate_serial(const std::vector<DeviceArg>& devices) {
  std::map<std::pair<std::string, std::string>, int> seen;
  for (const DeviceArg& device : devices) {
    if (device.kind != "serial") continue;
    const auto keys = list_keys(device.options);
    auto value = [&](const char* key, const char* fallback) {
      auto found = keys.find(key);
      return found == keys.end() ? std::string(fallback) : found->second;
    };
    std::string hardware = value("hardware", "serial");
    if (hardware == "legacy-virtio-console") hardware = "virtio-console";
    const std::string number = value("num", "1");
    if (++seen[{hardware, number}] == 2) {
      return "--serial hardware=" + hardware + ",num=" + number + " is given twice";
    }
  }
  return std::nullopt;
}

// crosvm's older spellings of --net and --vsock keys (--tap-name, --cid,
// ...), gathered into the lists they stand for, as crosvm does: a NIC per
// --tap-name and per --tap-fd, one for --host-ip/--netmask/--mac, each with
// --net-vq-pairs and --vhost-net; --cid and --vhost-vsock-device one vsock.
struct LegacyNet {
  std::vector<std::string> taps;  // "tap-name=X", "tap-fd=N"
  std::string host_ip, netmask, mac, vq_pairs, vsock_cid, vsock_device;
  bool vhost_net = false;

  void add_to(std::vector<DeviceArg>& devices) const {
    std::string shared;
    if (!vq_pairs.empty()) shared += ",vq-pairs=" + vq_pairs;
    if (vhost_net) shared += ",vhost-net=true";
    for (const std::string& tap : taps) devices.push_back(DeviceArg{"net", tap + shared});
    if (!host_ip.empty() || !netmask.empty() || !mac.empty()) {
      std::string list;
      if (!host_ip.empty()) list += ",host-ip=" + host_ip;
      if (!netmask.empty()) list += ",netmask=" + netmask;
      if (!mac.empty()) list += ",mac=" + mac;
      devices.push_back(DeviceArg{"net", list.substr(1) + shared});
    } else if (taps.empty() && !shared.empty()) {
      devices.push_back(DeviceArg{"net", shared.substr(1)});  // the library says what is missing
    }
    if (!vsock_cid.empty() || !vsock_device.empty()) {
      std::string list;
      if (!vsock_cid.empty()) list += ",cid=" + vsock_cid;
      if (!vsock_device.empty()) list += ",device=" + vsock_device;
      devices.push_back(DeviceArg{"vsock", list.substr(1)});
    }
  }
};

}  // namespace

std::span<const CrosvmRunOption> crosvm_run_options() { return kCrosvmRunOptions; }

std::optional<int> parse_log_level(const std::string& text) {
  static const std::map<std::string, int> kLevels = {{"off", -1},   {"error", 0}, {"warn", 1}, {"warning", 1},
                                                     {"info", 2},   {"debug", 3}, {"trace", 3}};
  auto found = kLevels.find(text);
  if (found == kLevels.end()) return std::nullopt;
  return found->second;
}

namespace {

std::optional<std::string> log_level_error(const std::string& text) {
  if (text.find_first_of(",=") != std::string::npos) {
    return "--log-level '" + text + "': per-module filters are not supported; give one level (off, error, warn, "
           "info, debug, trace)";
  }
  return "--log-level needs off, error, warn, info, debug or trace, not '" + text + "'";
}

}  // namespace

std::variant<GlobalOptions, std::string> parse_global_options(const std::vector<std::string>& args) {
  GlobalOptions options;
  size_t i = 0;
  for (; i < args.size(); ++i) {
    std::string arg = args[i];
    std::optional<std::string> value;
    if (const size_t equals = arg.find('='); arg.starts_with("--") && equals != std::string::npos) {
      value = arg.substr(equals + 1);
      arg = arg.substr(0, equals);
    }
    if (arg == "--log-level") {
      if (!value && i + 1 < args.size()) value = args[++i];
      if (!value) return std::string("--log-level needs a level");
      auto level = parse_log_level(*value);
      if (!level) return *log_level_error(*value);
      options.log_level = level;
    } else if (arg == "--extended-status") {
      options.extended_status = true;
    } else if (arg == "--no-syslog") {
      // Ours never logs to syslog: nothing to turn off.
    } else if (arg == "--syslog-tag") {
      if (!value && i + 1 < args.size()) value = args[++i];
      if (!value || value->empty()) return std::string("--syslog-tag needs a tag");
      options.syslog_tag = *value;
    } else {
      break;
    }
  }
  options.consumed = i;
  return options;
}

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
    "  -r, --root PATH[,KEYS] read-only root disk (root=/dev/vda ro)\n"
    "      --rwroot PATH[,KEYS]\n"
    "                         writable root disk (root=/dev/vda rw)\n"
    "  -d, --disk PATH[,KEYS] read-only disk (repeatable); KEYS as --block's\n"
    "      --rwdisk PATH[,KEYS]\n"
    "                         writable disk (repeatable)\n"
    "  -b                     --block\n"
    "      --no-rng           no virtio-rng device (there is one by default)\n"
    "      --no-hugepages     guest RAM in small pages only (default: transparent\n"
    "                         huge pages; --hugepages is accepted, as crosvm's)\n"
    "      --disable-sandbox  run the virtio devices in the VMM process (by default\n"
    "                         each runs in a jailed process of its own: namespaces,\n"
    "                         no capabilities, seccomp; --sandbox is accepted)\n"
    "      --seccomp-log-failures\n"
    "                         as --jail seccomp-log-failures\n"
    "      --jail LIST        seccomp-log-failures: a syscall outside a device's\n"
    "                         policy fails and is logged instead of killing it;\n"
    "                         seccomp-deny=NAME: NAME taken out of every policy\n"
    "                         (to test the sandbox itself)\n"
    "      --demo             boot the built-in demo guest\n"
    "  -s, --socket PATH      control socket for stop/suspend/resume/status/disk\n"
    "                         (a directory: crosvm-PID.sock in it)\n"
    "      --log-level LEVEL  off, error, warn, info (default), debug or trace (also\n"
    "                         before run, as crosvm's)\n"
    "      --name NAME        the process's name (15 bytes)\n"
    "      --tap-name, --tap-fd, --host-ip, --netmask, --mac, --net-vq-pairs,\n"
    "      --vhost-net, --cid, --vhost-vsock-device\n"
    "                         crosvm's older spellings of --net and --vsock keys\n"
    "  -h, --help             this text\n";

const char* const kRunUsageEnd =
    "\n"
    "On a terminal, every key (Ctrl-C too) goes to the guest's console, except\n"
    "QEMU's escapes: Ctrl-A x stops the VM and exits, Ctrl-A c prints the VM's\n"
    "state, Ctrl-A a (or Ctrl-A Ctrl-A) sends Ctrl-A, Ctrl-A h lists them.\n"
    "\n"
    "crosvm's run options this launcher does not have are refused by name (the\n"
    "table is in docs/launcher.md); --no-balloon and --no-usb are accepted.\n"
    "\n"
    "exit status, as crosvm's: 0 the VM ended (however it ended, unless\n"
    "--extended-status before run: then 32 it reset, 33 it crashed or a jailed\n"
    "device process died, 34 its kernel panicked), 35 a command line that cannot\n"
    "be used, 1 a set-up error.\n";

const char* const kControlUsage =
    "  stop SOCKET              stop the VM (crosvm-launch run exits 0)\n"
    "  powerbtn SOCKET          press the ACPI power button: the guest shuts down\n"
    "                           in order, if it listens\n"
    "  suspend [--full] SOCKET  hold every vCPU\n"
    "  resume [--full] SOCKET   let them run again\n"
    "  status SOCKET            the VM's state, vCPUs, memory and devices (JSON)\n"
    "  disk resize INDEX SIZE SOCKET\n"
    "                           grow disk INDEX (0 is vda) to SIZE bytes (K, M, G, T\n"
    "                           suffixes: binary units)\n"
    "  sleepbtn, balloon SIZE, balloon_stats, make_rt SOCKET\n"
    "                           crosvm's requests for devices this VMM has not:\n"
    "                           answered 'not supported'\n"
    "  create_qcow2 PATH [SIZE] [--backing-file FILE]\n"
    "                           make an empty qcow2 image of SIZE bytes (K, M, G, T),\n"
    "                           or the size of FILE, which it then reads through\n";

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
  // crosvm's requests (serde's encoding of its VmRequest) for crosvm's
  // commands; ours for status, which crosvm lacks.
  static const std::map<std::string, std::string> kUnitRequests = {
      {"stop", "\"Exit\""},          {"powerbtn", "\"Powerbtn\""},   {"sleepbtn", "\"Sleepbtn\""},
      {"suspend", "\"SuspendVcpus\""}, {"resume", "\"ResumeVcpus\""}, {"make_rt", "\"MakeRT\""},
      {"balloon_stats", "{\"BalloonCommand\":\"Stats\"}"},
      {"status", "{\"request\":\"status\"}"},
  };
  ControlCommand control;
  if (auto found = kUnitRequests.find(command); found != kUnitRequests.end()) {
    std::vector<std::string> rest = args;
    bool full = false;
    if ((command == "suspend" || command == "resume") && !rest.empty()) {
      // crosvm's --full (devices asleep too) is the same here: see docs/control-socket.md.
      auto flag = std::find(rest.begin(), rest.end(), "--full");
      if (flag != rest.end()) {
        full = true;
        rest.erase(flag);
      }
    }
    if (rest.size() != 1) {
      const char* options = command == "suspend" || command == "resume" ? " [--full]" : "";
      return "usage: crosvm-launch " + command + options + " SOCKET";
    }
    control.socket = rest[0];
    control.request_json = full ? (command == "suspend" ? "\"SuspendVm\"" : "\"ResumeVm\"") : found->second;
    control.print_response = command == "status" || command == "balloon_stats";
    return control;
  }
  if (command == "balloon") {
    std::vector<std::string> rest = args;
    bool wait = false;
    if (auto flag = std::find(rest.begin(), rest.end(), "--wait"); flag != rest.end()) {
      wait = true;
      rest.erase(flag);
    }
    if (rest.size() != 2) return std::string("usage: crosvm-launch balloon SIZE SOCKET [--wait]");
    auto size = parse_size(rest[0]);
    if (!size) return "balloon: SIZE must be a number of bytes (or with K, M, G, T), not '" + rest[0] + "'";
    control.socket = rest[1];
    control.request_json = "{\"BalloonCommand\":{\"Adjust\":{\"num_bytes\":" + std::to_string(*size) +
                           ",\"wait_for_success\":" + (wait ? "true" : "false") + "}}}";
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
    control.request_json = "{\"DiskCommand\":{\"disk_index\":" + std::to_string(*index) +
                           ",\"command\":{\"Resize\":{\"new_size\":" + std::to_string(*size) + "}}}}";
    return control;
  }
  return std::nullopt;
}

std::variant<CreateQcow2Command, std::string> parse_create_qcow2(const std::vector<std::string>& args) {
  const char* usage = "usage: crosvm-launch create_qcow2 PATH [SIZE] [--backing-file FILE]";
  CreateQcow2Command command;
  std::vector<std::string> positional;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--backing-file" || args[i] == "--backing_file") {
      if (i + 1 >= args.size()) return "create_qcow2: " + args[i] + " needs a file";
      command.backing_file = args[++i];
    } else if (args[i].starts_with("--backing-file=")) {
      command.backing_file = args[i].substr(15);
    } else if (args[i].starts_with("-")) {
      return "create_qcow2: unknown option '" + args[i] + "'";
    } else {
      positional.push_back(args[i]);
    }
  }
  if (positional.empty() || positional.size() > 2) return std::string(usage);
  command.path = positional[0];
  if (positional.size() == 2) {
    auto size = parse_size(positional[1]);
    if (!size || *size == 0) {
      return "create_qcow2: SIZE must be a number of bytes (or with K, M, G, T), not '" + positional[1] + "'";
    }
    command.size = *size;
  }
  if (command.size == 0 && command.backing_file.empty()) return "create_qcow2: give a SIZE or --backing-file";
  if (command.size != 0 && !command.backing_file.empty()) {
    return "create_qcow2: SIZE and --backing-file together (the image takes the backing file's size)";
  }
  return command;
}

const char* const kDeviceUsage =
    "usage: crosvm-launch device KIND (--socket PATH | --fd N) [OPTIONS]\n"
    "\n"
    "Serves one virtio device to a vhost-user frontend (another crosvm-launch\n"
    "with --vhost-user type=KIND,socket=PATH, or QEMU) until it disconnects.\n"
    "\n"
    "  KIND                 block or rng\n"
    "  --socket PATH        listen on a Unix socket at PATH (--socket-path too)\n"
    "  --fd N               serve the connected socket N instead\n"
    "  OPTIONS              the device's list, as for run: for block\n"
    "                       path=disk.img,ro=true,id=SERIAL (--file LIST too)\n";

std::variant<DeviceCommand, std::string> parse_device_command(const std::vector<std::string>& args) {
  DeviceCommand command;
  std::vector<std::string> lists;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "-h" || arg == "--help") {
      command.help = true;
      return command;
    }
    const bool takes_value = arg == "--socket" || arg == "--socket-path" || arg == "--fd" || arg == "--file";
    if (takes_value) {
      if (i + 1 >= args.size()) return "device: " + arg + " needs a value";
      const std::string& value = args[++i];
      if (arg == "--fd") {
        auto fd = parse_number<uint32_t>(value);
        if (!fd || *fd > INT32_MAX) return "device: --fd needs a file descriptor number, not '" + value + "'";
        command.fd = static_cast<int>(*fd);
      } else if (arg == "--file") {
        lists.push_back(value);
      } else {
        command.socket = value;
      }
    } else if (arg.starts_with("-")) {
      return "device: unknown option '" + arg + "' (see crosvm-launch device --help)";
    } else if (command.kind.empty()) {
      command.kind = arg;
    } else {
      lists.push_back(arg);
    }
  }
  if (command.kind.empty()) return std::string("device: which KIND? (see crosvm-launch device --help)");
  if (command.socket.empty() == (command.fd < 0)) return std::string("device: give one of --socket PATH or --fd N");
  if (lists.size() > 1) return std::string("device: give the device's options as one list");
  if (!lists.empty()) command.options = lists.front();
  return command;
}

std::variant<RunOptions, std::string> parse_run_options(const std::vector<std::string>& args,
                                                        const IsDeviceKind& is_device_kind) {
  RunOptions options;
  std::vector<std::string> positional;
  LegacyNet legacy;
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
    } else if (arg.size() > 2) {  // -m512, and crosvm's -m=512
      inline_value = arg.substr(arg[2] == '=' ? 3 : 2);
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
      auto disk = disk_shorthand(arg, text.value_or(""), arg != "--rwroot" && arg != "--rwdisk",
                                 arg == "-r" || arg == "--root" || arg == "--rwroot");
      if (auto* message = std::get_if<std::string>(&disk)) return *message;
      options.devices.push_back(std::get<DeviceArg>(disk));
    } else if (arg == "--no-rng") {
      bool no_rng = false;
      error = flag(no_rng);
      options.rng = !no_rng;
    } else if (arg == "--hugepages" || arg == "--no-hugepages") {
      bool given = false;
      error = flag(given);
      options.hugepages = arg == "--hugepages";
    } else if (arg == "--sandbox" || arg == "--disable-sandbox") {
      bool given = false;
      error = flag(given);
      options.sandbox = arg == "--sandbox";
    } else if (arg == "--jail") {
      auto text = value();
      if (!text || text->empty()) return "--jail needs a list (seccomp-log-failures, seccomp-deny=NAME)";
      if (auto message = parse_jail(*text, options)) return *message;
    } else if (arg == "-s" || arg == "--socket") {
      auto text = value();
      if (!text || text->empty()) return arg + " needs a path";
      options.socket = *text;
    } else if (arg == "--log-level") {
      auto text = value();
      if (!text) return std::string("--log-level needs a level");
      auto level = parse_log_level(*text);
      if (!level) return *log_level_error(*text);
      options.log_level = *level;
    } else if (arg == "--seccomp-log-failures") {
      error = flag(options.seccomp_log_failures);
    } else if (arg == "--name") {
      auto text = value();
      if (!text || text->empty()) return std::string("--name needs a name");
      options.name = *text;
    } else if (arg == "--syslog-tag") {
      // crosvm's older place for it (its global one is preferred).
      auto text = value();
      if (!text || text->empty()) return std::string("--syslog-tag needs a tag");
      options.syslog_tag = *text;
    } else if (arg == "--tap-name" || arg == "--tap-fd" || arg == "--host-ip" || arg == "--netmask" ||
               arg == "--mac" || arg == "--net-vq-pairs" || arg == "--cid" || arg == "--vhost-vsock-device") {
      auto text = value();
      if (!text || text->empty()) return arg + " needs a value";
      if (text->find_first_of(",\"") != std::string::npos) return arg + " '" + *text + "': one value, no list";
      if (arg == "--tap-name" || arg == "--tap-fd") {
        legacy.taps.push_back(arg.substr(2) + "=" + *text);
      } else {
        std::string& slot = arg == "--host-ip"        ? legacy.host_ip
                            : arg == "--netmask"      ? legacy.netmask
                            : arg == "--mac"          ? legacy.mac
                            : arg == "--net-vq-pairs" ? legacy.vq_pairs
                            : arg == "--cid"          ? legacy.vsock_cid
                                                      : legacy.vsock_device;
        if (!slot.empty()) return arg + " is given twice";
        slot = *text;
      }
    } else if (arg == "--vhost-net") {
      error = flag(legacy.vhost_net);
    } else if (arg == "-b" || (arg.rfind("--", 0) == 0 && is_device_kind(arg.substr(2)))) {
      const std::string kind = arg == "-b" ? "block" : arg.substr(2);
      auto text = value();
      if (!text) return arg + " needs a parameter list (see crosvm-launch run --help)";
      options.devices.push_back(DeviceArg{kind, *text});
    } else if (const CrosvmRunOption* crosvm = find_crosvm_option(arg)) {
      if (crosvm->support != CrosvmOptionSupport::kHarmless) {
        return "crosvm's " + arg + " is not supported by crosvm-launch (see docs/launcher.md)";
      }
      // --no-usb, --no-balloon: what they turn off is not here.
      if (inline_value) return arg + " takes no value";
    } else {
      return "unknown option '" + arg + "' (see crosvm-launch run --help)";
    }
    if (error) return *error;
  }
  if (positional.size() > 1) return "more than one kernel given: '" + positional[1] + "'";
  if (!positional.empty()) options.kernel = positional[0];
  if (options.kernel.empty()) options.demo = true;
  if (options.demo && !options.kernel.empty()) return "--demo and a kernel cannot be combined";
  legacy.add_to(options.devices);
  if (auto twice = duplicate_serial(options.devices)) return *twice;
  add_default_console(options.devices);
  return options;
}

}  // namespace launcher
