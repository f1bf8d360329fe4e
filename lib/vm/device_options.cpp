#include "vm/device_options.h"

#include <array>
#include <charconv>
#include <optional>
#include <utility>

#include "devices/vhost_user/frontend.h"
#include "devices/virtio/block.h"

namespace crosvm {
namespace {

Error invalid(std::string message) { return Error{ErrorCode::kInvalidArgument, std::move(message)}; }

std::optional<bool> parse_bool(std::string_view text) {
  if (text == "true" || text == "yes" || text == "on" || text == "1") return true;
  if (text == "false" || text == "no" || text == "off" || text == "0") return false;
  return std::nullopt;
}

Result<bool> bool_value(std::string_view kind, const KeyValue& item) {
  auto flag = parse_bool(item.value);
  if (!flag) return invalid(fmt::format("{}: {} must be true or false, not '{}'", kind, item.key, item.value));
  return *flag;
}

constexpr std::array kBlockKeys = {
    DeviceKey{"path", "the raw image (a bare first item is the path too)"},
    DeviceKey{"ro", "true: the guest cannot write it (default false)", true},
    DeviceKey{"root", "true: root=/dev/vda on the command line, and the guest sees it first", true},
    DeviceKey{"id", "the serial the guest reads (at most 20 bytes)"},
};

Result<void> add_block(VmConfig& config, const std::vector<KeyValue>& items) {
  DiskConfig disk;
  for (const KeyValue& item : items) {
    if (item.key == "path") {
      disk.path = item.value;
    } else if (item.key == "ro" || item.key == "root") {
      auto flag = bool_value("block", item);
      if (!flag) return flag.take_error();
      (item.key == "ro" ? disk.read_only : disk.root) = *flag;
    } else if (item.key == "id") {
      if (item.value.size() > virtio::kBlockIdLength) {
        return invalid(fmt::format("block: id is at most {} bytes", virtio::kBlockIdLength));
      }
      disk.id = item.value;
    }
  }
  if (disk.path.empty()) return invalid("block: needs path=");
  config.disks.push_back(std::move(disk));
  return {};
}

constexpr std::array kSerialKeys = {
    DeviceKey{"type", "stdout (default), file or sink"},
    DeviceKey{"num", "1 to 4 (default 1): ttyS0-3, or hvc0-3 for a virtio console"},
    DeviceKey{"path", "the file for type=file (appended to, created if missing)"},
    DeviceKey{"hardware", "serial (an 8250 UART, the default) or virtio-console"},
    DeviceKey{"console", "true: the kernel's console (console=ttySN or hvcN)", true},
    DeviceKey{"earlycon", "true: earlycon=uart8250,io,PORT (UARTs only)", true},
    DeviceKey{"stdin", "true: the process's stdin is this port's input", true},
};

Result<void> add_serial(VmConfig& config, const std::vector<KeyValue>& items) {
  SerialConfig serial;
  for (const KeyValue& item : items) {
    if (item.key == "type") {
      if (item.value == "stdout") {
        serial.output = SerialOutput::kStdout;
      } else if (item.value == "file") {
        serial.output = SerialOutput::kFile;
      } else if (item.value == "sink") {
        serial.output = SerialOutput::kSink;
      } else {
        return invalid(fmt::format("serial: type must be stdout, file or sink, not '{}'", item.value));
      }
    } else if (item.key == "num") {
      uint32_t number = 0;
      const char* end = item.value.data() + item.value.size();
      auto [stop, error] = std::from_chars(item.value.data(), end, number);
      if (item.value.empty() || error != std::errc() || stop != end || number < 1 || number > 4) {
        return invalid(fmt::format("serial: num must be 1 to 4, not '{}'", item.value));
      }
      serial.number = number;
    } else if (item.key == "path") {
      serial.path = item.value;
    } else if (item.key == "hardware") {
      if (item.value == "serial") {
        serial.hardware = SerialHardware::kUart;
      } else if (item.value == "virtio-console") {
        serial.hardware = SerialHardware::kVirtioConsole;
      } else {
        return invalid(fmt::format("serial: hardware must be serial or virtio-console, not '{}'", item.value));
      }
    } else {  // console, earlycon, stdin
      auto flag = bool_value("serial", item);
      if (!flag) return flag.take_error();
      (item.key == "console" ? serial.console : item.key == "earlycon" ? serial.earlycon : serial.read_stdin) =
          *flag;
    }
  }
  if (serial.output == SerialOutput::kFile && serial.path.empty()) return invalid("serial: type=file needs path=");
  if (serial.output != SerialOutput::kFile && !serial.path.empty()) {
    return invalid("serial: path= is for type=file");
  }
  if (serial.hardware == SerialHardware::kVirtioConsole && serial.earlycon) {
    return invalid("serial: a virtio-console cannot be an earlycon");
  }
  config.set_serial(std::move(serial));
  return {};
}

constexpr std::array kVhostUserKeys = {
    DeviceKey{"type", "the device: block, fs or rng (a bare first item is the type too)"},
    DeviceKey{"socket", "the backend's listening Unix socket"},
    DeviceKey{"tag", "fs: the tag the guest mounts (mount -t virtiofs TAG DIR)"},
    DeviceKey{"max-queue-size", "the largest ring the guest may set up (a power of two, default 256)"},
};

Result<void> add_vhost_user(VmConfig& config, const std::vector<KeyValue>& items) {
  VhostUserConfig device;
  for (const KeyValue& item : items) {
    if (item.key == "type") {
      device.type = item.value;
    } else if (item.key == "socket") {
      device.socket = item.value;
    } else if (item.key == "tag") {
      device.tag = item.value;
    } else if (item.key == "max-queue-size") {
      uint32_t size = 0;
      const char* end = item.value.data() + item.value.size();
      auto [stop, error] = std::from_chars(item.value.data(), end, size);
      if (item.value.empty() || error != std::errc() || stop != end || size == 0 || size > 32768 ||
          (size & (size - 1)) != 0) {
        return invalid(fmt::format("vhost-user: max-queue-size must be a power of two up to 32768, not '{}'",
                                   item.value));
      }
      device.max_queue_size = static_cast<uint16_t>(size);
    }
  }
  if (vhost_user::find_frontend_kind(device.type) == nullptr) {
    return invalid(fmt::format("vhost-user: type must be one of {}, not '{}'", vhost_user::frontend_kind_names(),
                               device.type));
  }
  if (device.socket.empty()) return invalid("vhost-user: needs socket=");
  if (device.type == "fs" && device.tag.empty()) return invalid("vhost-user: type=fs needs tag=");
  if (device.tag.size() > 36) return invalid("vhost-user: tag= is at most 36 bytes");
  if (device.type != "fs" && !device.tag.empty()) return invalid("vhost-user: tag= is for type=fs");
  config.vhost_user.push_back(std::move(device));
  return {};
}

constexpr std::array kKinds = {
    DeviceKind{"block", "a virtio-blk disk over a raw image (crosvm's --block)", kBlockKeys, "path", add_block},
    DeviceKind{"serial", "a serial port or virtio console (crosvm's --serial)", kSerialKeys, "", add_serial},
    DeviceKind{"vhost-user", "a virtio device served by another process (crosvm's --vhost-user)",
               kVhostUserKeys, "type", add_vhost_user},
};

const DeviceKey* find_key(const DeviceKind& kind, std::string_view key) {
  for (const DeviceKey& known : kind.keys) {
    if (known.key == key) return &known;
  }
  return nullptr;
}

std::string key_list(const DeviceKind& kind) {
  std::string list;
  for (const DeviceKey& known : kind.keys) list += (list.empty() ? "" : ", ") + std::string(known.key);
  return list;
}

}  // namespace

Result<std::vector<KeyValue>> split_key_values(std::string_view text) {
  std::vector<KeyValue> items;
  size_t at = 0;
  while (at < text.size()) {
    KeyValue item;
    const size_t key_end = text.find_first_of("=,", at);
    item.key = std::string(text.substr(at, key_end == std::string_view::npos ? text.npos : key_end - at));
    at = key_end == std::string_view::npos ? text.size() : key_end;
    if (at < text.size() && text[at] == '=') {
      ++at;
      if (at < text.size() && text[at] == '"') {
        const size_t close = text.find('"', at + 1);
        if (close == std::string_view::npos) return invalid(fmt::format("'{}': a quote is not closed", item.key));
        item.value = std::string(text.substr(at + 1, close - at - 1));
        at = close + 1;
        if (at < text.size() && text[at] != ',') {
          return invalid(fmt::format("'{}': text after the closing quote", item.key));
        }
      } else {
        const size_t comma = text.find(',', at);
        item.value = std::string(text.substr(at, comma == std::string_view::npos ? text.npos : comma - at));
        at = comma == std::string_view::npos ? text.size() : comma;
      }
    } else {
      item.value = "true";
      item.bare = true;
    }
    if (item.key.empty()) {
      if (!item.bare) return invalid("an item without a key (\"=...\")");
    } else {
      items.push_back(std::move(item));
    }
    if (at < text.size()) ++at;  // the comma
  }
  return items;
}

std::span<const DeviceKind> device_kinds() { return kKinds; }

const DeviceKind* find_device_kind(std::string_view name) {
  for (const DeviceKind& kind : kKinds) {
    if (kind.name == name) return &kind;
  }
  return nullptr;
}

std::string describe_device_kind(const DeviceKind& kind) {
  std::string text = fmt::format("{}: {}\n", kind.name, kind.summary);
  for (const DeviceKey& key : kind.keys) text += fmt::format("  {:<10} {}\n", key.key, key.help);
  return text;
}

Result<void> add_device(VmConfig& config, std::string_view kind_name, std::string_view options) {
  const DeviceKind* kind = find_device_kind(kind_name);
  if (kind == nullptr) {
    std::string kinds;
    for (const DeviceKind& known : kKinds) kinds += (kinds.empty() ? "" : ", ") + std::string(known.name);
    return invalid(fmt::format("unknown device kind '{}' (known: {})", kind_name, kinds));
  }
  auto items = split_key_values(options);
  if (!items) return invalid(fmt::format("{}: {}", kind->name, items.error().message));
  for (size_t i = 0; i < items->size(); ++i) {
    KeyValue& item = (*items)[i];
    // crosvm's "--block disk.img,ro": a bare first item that is no key
    // stands for the kind's positional key.
    if (i == 0 && item.bare && find_key(*kind, item.key) == nullptr && !kind->positional.empty()) {
      item.value = std::exchange(item.key, std::string(kind->positional));
      item.bare = false;
    }
    const DeviceKey* key = find_key(*kind, item.key);
    if (key == nullptr) {
      return invalid(fmt::format("{}: unknown key '{}' (known: {})", kind->name, item.key, key_list(*kind)));
    }
    if (item.bare && !key->flag) {
      return invalid(fmt::format("{}: {} needs a value ({}=...)", kind->name, item.key, item.key));
    }
    for (size_t j = 0; j < i; ++j) {
      if ((*items)[j].key == item.key) return invalid(fmt::format("{}: {} is given twice", kind->name, item.key));
    }
  }
  return kind->add(config, *items);
}

}  // namespace crosvm
