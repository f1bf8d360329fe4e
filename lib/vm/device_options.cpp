#include "vm/device_options.h"

#include <algorithm>
#include <array>
#include <utility>

#include "vhost_user/frontend.h"
#include "devices/virtio/block.h"

namespace crosvm {
namespace {

constexpr std::array kBlockKeys = {
    DeviceKey{"path", "the image, raw or qcow2 (a bare first item is the path too)"},
    DeviceKey{"ro", "true: the guest cannot write it (default false)", true},
    DeviceKey{"root", "true: root=/dev/vda on the command line, and the guest sees it first", true},
    DeviceKey{"id", "the serial the guest reads (at most 20 bytes)"},
    DeviceKey{"allow-backing", "true: a qcow2 image's backing file is followed (default false)", true},
    DeviceKey{"sparse", "false: no discard, and write-zeroes never frees space (default true)", true},
    DeviceKey{"lock", "false: the image is not locked against other VMMs (default true)", true},
    DeviceKey{"block-size", "the logical block size the guest sees: 512 (default), 1024, 2048 or 4096", false,
              "block_size"},
    DeviceKey{"num-queues", "request queues the guest may use at once: 1 (default) to 16"},
    DeviceKey{"direct", "true: aligned data bypasses the host's page cache (O_DIRECT; default false)", true,
              "o_direct"},
};

}  // namespace

virtio::BlockOptions block_device_options(const DiskConfig& disk) {
  return {.id = disk.id, .block_size = disk.block_size, .sparse = disk.sparse, .num_queues = disk.num_queues};
}

namespace {

Result<void> add_block(VmConfig& config, const DeviceOptions& options) {
  DiskConfig disk;
  disk.path = options.text("path").value_or("");
  disk.read_only = CROSVM_TRY(options.flag("ro", false));
  disk.root = CROSVM_TRY(options.flag("root", false));
  disk.id = options.text("id").value_or("");
  disk.allow_backing = CROSVM_TRY(options.flag("allow-backing", false));
  disk.sparse = CROSVM_TRY(options.flag("sparse", true));
  disk.lock = CROSVM_TRY(options.flag("lock", true));
  disk.direct = CROSVM_TRY(options.flag("direct", false));
  if (auto text = options.text("block-size")) {
    auto size = options.number("block-size", 512, 4096, 512);
    if (!size || (*size & (*size - 1)) != 0) {
      return options.invalid(fmt::format("block-size must be 512, 1024, 2048 or 4096, not '{}'", *text));
    }
    disk.block_size = static_cast<uint32_t>(*size);
  }
  if (auto text = options.text("num-queues")) {
    auto queues = options.number("num-queues", 1, virtio::kMaxBlockQueues, 1);
    if (!queues) {
      return options.invalid(fmt::format("num-queues must be 1 to {}, not '{}'", virtio::kMaxBlockQueues, *text));
    }
    disk.num_queues = static_cast<uint16_t>(*queues);
  }
  if (disk.id.size() > virtio::kBlockIdLength) {
    return options.invalid(fmt::format("id is at most {} bytes", virtio::kBlockIdLength));
  }
  if (disk.path.empty()) return options.invalid("needs path=");
  config.disks.push_back(std::move(disk));
  return {};
}

constexpr std::array kSerialKeys = {
    DeviceKey{"type", "stdout (default), file, sink, syslog, unix (a datagram per line to the socket at path=) "
                      "or unix-stream (a connection to the socket at path=); a bare first item is the type too"},
    DeviceKey{"num", "1 to 4 (default 1): ttyS0-3, hvc0-3 for a virtio console, one of four debugcons"},
    DeviceKey{"path", "the file for type=file (appended to, created if missing), the socket for type=unix "
                      "and unix-stream"},
    DeviceKey{"hardware", "serial (an 8250 UART, the default), virtio-console, or debugcon (Bochs's debug port, "
                          "output only)"},
    DeviceKey{"name", "what the VMM's log and status call the port"},
    DeviceKey{"console", "true: the kernel's console (console=ttySN or hvcN)", true},
    DeviceKey{"earlycon", "true: earlycon=uart8250,io,PORT (UARTs only)", true},
    DeviceKey{"stdin", "true: the process's stdin is this port's input", true},
    DeviceKey{"input", "a file or FIFO whose bytes are this port's input (not with stdin)"},
    DeviceKey{"input-unix-stream", "true: type=unix-stream's socket is this port's input too", true},
    DeviceKey{"out-timestamp", "true: each line of output starts with the host's UTC time, "
                               "\"[ YYYY-MM-DD HH:MM:SS.NNNNNNNNN ]: \" (not for virtio consoles)", true,
              "out_timestamp"},
    DeviceKey{"debugcon-port", "hardware=debugcon's I/O port (default 0x402)", false,
              "debugcon_port"},
};

Result<void> add_serial(VmConfig& config, const DeviceOptions& options) {
  static constexpr std::pair<std::string_view, SerialOutput> kTypes[] = {
      {"stdout", SerialOutput::kStdout}, {"file", SerialOutput::kFile},        {"sink", SerialOutput::kSink},
      {"syslog", SerialOutput::kSyslog}, {"unix", SerialOutput::kUnix}, {"unix-stream", SerialOutput::kUnixStream},
  };
  static constexpr std::pair<std::string_view, SerialHardware> kHardware[] = {
      {"serial", SerialHardware::kUart},
      {"virtio-console", SerialHardware::kVirtioConsole},
      {"legacy-virtio-console", SerialHardware::kVirtioConsole},  // crosvm's alias
      {"debugcon", SerialHardware::kDebugcon},
  };
  SerialConfig serial;
  const std::string type = options.text("type").value_or("stdout");
  auto found_type = std::find_if(std::begin(kTypes), std::end(kTypes), [&](auto& known) { return known.first == type; });
  if (found_type == std::end(kTypes)) {
    return options.invalid(
        fmt::format("type must be stdout, file, sink, syslog, unix or unix-stream, not '{}'", type));
  }
  serial.output = found_type->second;
  if (auto number = options.text("num")) {
    auto parsed = options.number("num", 1, 4, 1);
    if (!parsed) return options.invalid(fmt::format("num must be 1 to 4, not '{}'", *number));
    serial.number = static_cast<uint32_t>(*parsed);
  }
  serial.path = options.text("path").value_or("");
  serial.name = options.text("name").value_or("");
  const std::string hardware = options.text("hardware").value_or("serial");
  auto found_hardware =
      std::find_if(std::begin(kHardware), std::end(kHardware), [&](auto& known) { return known.first == hardware; });
  if (found_hardware == std::end(kHardware)) {
    return options.invalid(fmt::format("hardware must be serial, virtio-console or debugcon, not '{}'", hardware));
  }
  serial.hardware = found_hardware->second;
  serial.console = CROSVM_TRY(options.flag("console", false));
  serial.earlycon = CROSVM_TRY(options.flag("earlycon", false));
  serial.read_stdin = CROSVM_TRY(options.flag("stdin", false));
  serial.out_timestamp = CROSVM_TRY(options.flag("out-timestamp", false));
  serial.input_unix_stream = CROSVM_TRY(options.flag("input-unix-stream", false));
  serial.input_path = options.text("input").value_or("");
  serial.debugcon_port = static_cast<uint16_t>(CROSVM_TRY(options.number("debugcon-port", 0, UINT16_MAX, 0x402)));
  if (options.text("debugcon-port") && serial.hardware != SerialHardware::kDebugcon) {
    return options.invalid("debugcon-port is for hardware=debugcon");
  }
  if (options.text("input") && serial.input_path.empty()) return options.invalid("input= needs a path");
  if (serial.read_stdin && !serial.input_path.empty()) return options.invalid("stdin and input= cannot be combined");
  const bool socket = serial.output == SerialOutput::kUnix || serial.output == SerialOutput::kUnixStream;
  if ((serial.output == SerialOutput::kFile || socket) && serial.path.empty()) {
    return options.invalid(fmt::format("type={} needs path=", type));
  }
  if (serial.output != SerialOutput::kFile && !socket && !serial.path.empty()) {
    return options.invalid("path= is for type=file, unix and unix-stream");
  }
  if (serial.input_unix_stream) {
    if (serial.output != SerialOutput::kUnixStream) return options.invalid("input-unix-stream needs type=unix-stream");
    if (serial.read_stdin || !serial.input_path.empty()) {
      return options.invalid("input-unix-stream cannot be combined with stdin or input=");
    }
  }
  if (serial.hardware == SerialHardware::kVirtioConsole && serial.earlycon) {
    return options.invalid("a virtio-console cannot be an earlycon");
  }
  if (serial.hardware == SerialHardware::kVirtioConsole && serial.out_timestamp) {
    return options.invalid("out-timestamp is for UARTs and debugcons (crosvm's virtio-console ignores it)");
  }
  if (serial.hardware == SerialHardware::kDebugcon) {
    // Bochs's port has no input, and no kernel console drives it.
    if (serial.console || serial.earlycon) return options.invalid("a debugcon cannot be the kernel's console");
    if (serial.read_stdin || !serial.input_path.empty() || serial.input_unix_stream) {
      return options.invalid("a debugcon has no input (stdin, input=, input-unix-stream)");
    }
  }
  config.set_serial(std::move(serial));
  return {};
}

constexpr std::array kVhostUserKeys = {
    DeviceKey{"type", "the device: block, fs, rng, net or console (a bare first item is the type too)"},
    DeviceKey{"socket", "the backend's listening Unix socket"},
    DeviceKey{"tag", "fs: the tag the guest mounts (mount -t virtiofs TAG DIR)"},
    DeviceKey{"max-queue-size", "the largest ring the guest may set up (a power of two, default 256)"},
};

Result<void> add_vhost_user(VmConfig& config, const DeviceOptions& options) {
  VhostUserConfig device;
  device.type = options.text("type").value_or("");
  device.socket = options.text("socket").value_or("");
  device.tag = options.text("tag").value_or("");
  if (auto size = options.text("max-queue-size")) {
    auto parsed = options.number("max-queue-size", 1, 32768, 256);
    if (!parsed || (*parsed & (*parsed - 1)) != 0) {
      return options.invalid(fmt::format("max-queue-size must be a power of two up to 32768, not '{}'", *size));
    }
    device.max_queue_size = static_cast<uint16_t>(*parsed);
  }
  if (vhost_user::find_frontend_kind(device.type) == nullptr) {
    return options.invalid(
        fmt::format("type must be one of {}, not '{}'", vhost_user::frontend_kind_names(), device.type));
  }
  if (device.socket.empty()) return options.invalid("needs socket=");
  if (device.type == "fs" && device.tag.empty()) return options.invalid("type=fs needs tag=");
  if (device.tag.size() > 36) return options.invalid("tag= is at most 36 bytes");
  if (device.type != "fs" && !device.tag.empty()) return options.invalid("tag= is for type=fs");
  config.vhost_user.push_back(std::move(device));
  return {};
}

constexpr std::array kMachineKinds = {
    DeviceKind{"block", "a virtio-blk disk over a raw or qcow2 image (crosvm's --block)", kBlockKeys, "path",
               add_block},
    DeviceKind{"serial", "a serial port or virtio console (crosvm's --serial)", kSerialKeys, "type", add_serial},
    DeviceKind{"vhost-user", "a virtio device served by another process (crosvm's --vhost-user)",
               kVhostUserKeys, "type", add_vhost_user},
};

}  // namespace

std::span<const DeviceKind> device_kinds() {
  // The machine's kinds, then one per registry kind: built once.
  static const std::vector<DeviceKind> kinds = [] {
    std::vector<DeviceKind> all(kMachineKinds.begin(), kMachineKinds.end());
    for (const VirtioKind* unit : virtio_kinds()) {
      all.push_back(DeviceKind{unit->name, unit->summary, unit->keys, unit->positional, nullptr, unit});
    }
    return all;
  }();
  return kinds;
}

const DeviceKind* find_device_kind(std::string_view name) {
  for (const DeviceKind& kind : device_kinds()) {
    if (kind.name == name) return &kind;
  }
  return nullptr;
}

std::string describe_device_kind(const DeviceKind& kind) {
  std::string text = fmt::format("{}: {}\n", kind.name, kind.summary);
  size_t width = 10;
  for (const DeviceKey& key : kind.keys) width = std::max(width, key.key.size());
  for (const DeviceKey& key : kind.keys) {
    text += fmt::format("  {:<{}} {}{}\n", key.key, width, key.help,
                        key.alias.empty() ? "" : fmt::format(" (also {})", key.alias));
  }
  if (kind.keys.empty()) text += "  (no keys: an empty list)\n";
  return text;
}

Result<void> add_device(VmConfig& config, std::string_view kind_name, std::string_view text) {
  const DeviceKind* kind = find_device_kind(kind_name);
  if (kind == nullptr) {
    std::string kinds;
    for (const DeviceKind& known : device_kinds()) kinds += (kinds.empty() ? "" : ", ") + std::string(known.name);
    return Error{ErrorCode::kInvalidArgument, fmt::format("unknown device kind '{}' (known: {})", kind_name, kinds)};
  }
  if (kind->unit != nullptr) {
    config.devices.push_back(CROSVM_TRY(parse_device_options(*kind->unit, text)));
    return {};
  }
  const DeviceOptions options = CROSVM_TRY(DeviceOptions::parse(kind->name, kind->keys, kind->positional, text));
  return kind->add(config, options);
}

}  // namespace crosvm
