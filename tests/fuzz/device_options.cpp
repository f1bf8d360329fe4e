// Device lists as a user, a script or an embedder writes them (crosvm's
// key=value syntax, for crosvm_config_add_device and crosvm-launch), for
// every kind, the registry's included: the parser never crashes, a list is
// either refused whole or adds exactly one device, and what it adds holds
// only what the list said.
#include <string_view>

#include "fuzz_common.h"
#include "vm/device_options.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const auto kinds = crosvm::device_kinds();
  const crosvm::DeviceKind& kind = kinds[data[0] % kinds.size()];
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);

  if (auto items = crosvm::split_key_values(text)) {
    for (const crosvm::KeyValue& item : *items) {
      FUZZ_CHECK(!item.key.empty());
      FUZZ_CHECK(text.find(item.key) != std::string_view::npos);  // nothing invented
      FUZZ_CHECK(!item.bare || item.value == "true");
    }
  }
  crosvm::VmConfig config;
  config.serials.push_back(crosvm::SerialConfig{});  // a port 1 a serial list may replace
  auto added = crosvm::add_device(config, kind.name, text);
  if (!added) {
    FUZZ_CHECK(added.error().code == crosvm::ErrorCode::kInvalidArgument);
    FUZZ_CHECK(added.error().message.rfind(std::string(kind.name) + ": ", 0) == 0);
    FUZZ_CHECK(config.disks.empty() && config.serials.size() == 1 && config.vhost_user.empty() &&
               config.devices.empty());
    return 0;
  }
  if (kind.name == "block") {
    FUZZ_CHECK(config.disks.size() == 1 && config.serials.size() == 1);
    FUZZ_CHECK(!config.disks[0].path.empty() && config.disks[0].id.size() <= 20);
    FUZZ_CHECK(text.find(config.disks[0].path) != std::string_view::npos);
  } else if (kind.name == "serial") {
    FUZZ_CHECK(config.disks.empty() && !config.serials.empty() && config.serials.size() <= 2);
    const crosvm::SerialConfig& port = config.serials.back();
    FUZZ_CHECK(port.number >= 1 && port.number <= 4);
    const bool has_path = port.output == crosvm::SerialOutput::kFile || port.output == crosvm::SerialOutput::kUnix ||
                          port.output == crosvm::SerialOutput::kUnixStream;
    FUZZ_CHECK(has_path == !port.path.empty());
    FUZZ_CHECK(!port.input_unix_stream || port.output == crosvm::SerialOutput::kUnixStream);
    FUZZ_CHECK(!(port.earlycon && port.hardware != crosvm::SerialHardware::kUart));
    FUZZ_CHECK(!(port.out_timestamp && port.hardware == crosvm::SerialHardware::kVirtioConsole));
    if (port.hardware == crosvm::SerialHardware::kDebugcon) {  // output only
      FUZZ_CHECK(!port.console && !port.read_stdin && port.input_path.empty() && !port.input_unix_stream);
    } else {
      FUZZ_CHECK(port.debugcon_port == 0x402);  // debugcon-port only with a debugcon
    }
  } else if (kind.name == "vhost-user") {
    FUZZ_CHECK(config.vhost_user.size() == 1 && config.disks.empty() && config.serials.size() == 1);
    const crosvm::VhostUserConfig& device = config.vhost_user[0];
    FUZZ_CHECK(!device.socket.empty() && text.find(device.socket) != std::string_view::npos);
    FUZZ_CHECK(device.max_queue_size != 0 && (device.max_queue_size & (device.max_queue_size - 1)) == 0);
    FUZZ_CHECK((device.type == "fs") == !device.tag.empty() && device.tag.size() <= 36);
  } else {
    // A registry kind: kept as its checked options, built by its factory.
    FUZZ_CHECK(kind.unit != nullptr && config.devices.size() == 1 && config.devices[0].kind() == kind.name);
    FUZZ_CHECK(config.disks.empty() && config.serials.size() == 1 && config.vhost_user.empty());
  }
  return 0;
}
