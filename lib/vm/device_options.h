// Devices named as text: crosvm's "key=value,..." lists (`--block
// path=disk.img,ro=true`), parsed here, once, for every front end: the C
// ABI's crosvm_config_add_device(), crosvm-launch (which passes its
// --KIND lists through it) and Python. Every kind the library knows: the
// few that shape the machine itself (block, serial, vhost-user: they fill
// their own VmConfig lists) and every kind of the device registry
// (lib/devices/registry: rng, ...), which become VmConfig::devices and are
// built by their own factories.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "devices/key_values.h"
#include "devices/registry.h"
#include "devices/virtio/block.h"
#include "vm/vm_config.h"

namespace crosvm {

struct DeviceKind {
  std::string_view name;     // "block"
  std::string_view summary;  // one line: what the device is
  std::span<const DeviceKey> keys;
  // The key a bare first item that is no key stands for ("path" in
  // crosvm's "--block disk.img,ro"); empty for none.
  std::string_view positional;
  // Adds the device to `config` (options already checked against `keys`).
  // Null for a registry kind (`unit`), which is added as it is.
  Result<void> (*add)(VmConfig& config, const DeviceOptions& options);
  const VirtioKind* unit = nullptr;
};

// Every kind, in a fixed order: the machine's own, then the registry's.
std::span<const DeviceKind> device_kinds();
const DeviceKind* find_device_kind(std::string_view name);

// "KEY=VALUE,..." with each key's help: for a front end's usage text.
std::string describe_device_kind(const DeviceKind& kind);

// Parses `options` for `kind` and adds the device to `config`. Errors
// (kInvalidArgument) are one line naming the kind and the key.
Result<void> add_device(VmConfig& config, std::string_view kind, std::string_view options);

// What a disk's block device is told beyond its image.
virtio::BlockOptions block_device_options(const DiskConfig& disk);

}  // namespace crosvm
