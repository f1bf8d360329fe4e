// The device registry: every virtio device kind that is built from its
// key=value options alone, with its name, its keys, its factory and its
// status line. A front end (the C ABI's crosvm_config_add_device(),
// crosvm-launch's --KIND LIST, Python's devices=) names a kind and the
// library does the rest: adding a kind is a folder under lib/devices/
// (the device and its VirtioKind) and one line in registry.cpp.
//
// Kinds that shape the machine itself stay in lib/vm/device_options
// (block: the root disk and the kernel's command line; serial: UARTs and
// the console; vhost-user: another process's device).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "base/log.h"
#include "base/result.h"
#include "devices/key_values.h"
#include "devices/virtio/virtio_device.h"

namespace crosvm {

// What a factory is given besides its options.
struct DeviceEnvironment {
  Logger logger;
  uint32_t index = 0;  // among this VM's devices of the kind: 0, 1, ...
};

struct VirtioKind {
  std::string_view name;     // "rng"
  std::string_view summary;  // one line: what the device is
  std::span<const DeviceKey> keys;
  std::string_view positional;  // the key a bare first item stands for, or ""
  // Checks the values (the keys were checked): at configuration time, so
  // that a mistake is reported before any VM exists.
  Result<void> (*check)(const DeviceOptions& options);
  Result<std::shared_ptr<virtio::VirtioDevice>> (*create)(const DeviceOptions& options,
                                                          const DeviceEnvironment& environment);
  // Its entry in the VM's status: "rng (virtio-rng)".
  std::string (*describe)(const DeviceOptions& options, uint32_t index);
};

std::span<const VirtioKind* const> virtio_kinds();
const VirtioKind* find_virtio_kind(std::string_view name);

// Parses and checks `text` for `kind`.
Result<DeviceOptions> parse_device_options(const VirtioKind& kind, std::string_view text);

}  // namespace crosvm
