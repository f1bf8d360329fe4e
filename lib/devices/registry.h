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
#include <vector>

#include "base/log.h"
#include "base/result.h"
#include "base/unique_fd.h"
#include "devices/key_values.h"
#include "devices/virtio/virtio_device.h"
#include "sandbox/companion.h"

namespace crosvm {

// A host resource a device is built from (a TAP), by the name its kind
// gives it ("tap").
struct NamedFd {
  std::string name;
  UniqueFd fd;
};

// What a kind's open() made in the VMM: the fds the device is built from,
// and what it relies on in the VMM (passt; the userspace vsock's broker),
// which lives as long as the VM.
struct OpenedResources {
  std::vector<NamedFd> fds;
  std::vector<std::unique_ptr<HostService>> companions;
};

// What a factory is given besides its options.
struct DeviceEnvironment {
  Logger logger;
  uint32_t index = 0;  // among this VM's devices of the kind: 0, 1, ...
  // What the kind's open() opened: in this process, or passed to the
  // device process that builds the device.
  std::vector<NamedFd> fds;

  // The fd named `name`, taken; invalid when there is none.
  UniqueFd take_fd(std::string_view name);
};

struct VirtioKind {
  std::string_view name;     // "rng"
  std::string_view summary;  // one line: what the device is
  std::span<const DeviceKey> keys;
  std::string_view positional;  // the key a bare first item stands for, or ""
  // Checks the values (the keys were checked): at configuration time, so
  // that a mistake is reported before any VM exists.
  Result<void> (*check)(const DeviceOptions& options);
  // Opens what the device needs from the host (a TAP, passt's socket), in
  // the VMM: the device itself may run in a jail that can open nothing and
  // start nothing. May complete `options` with what it decided (a generated
  // MAC) so that a device process is told the same. nullptr: the kind
  // needs nothing.
  Result<OpenedResources> (*open)(DeviceOptions& options, const Logger& logger);
  Result<std::shared_ptr<virtio::VirtioDevice>> (*create)(const DeviceOptions& options,
                                                          DeviceEnvironment& environment);
  // Its entry in the VM's status: "rng (virtio-rng)".
  std::string (*describe)(const DeviceOptions& options, uint32_t index);
};

std::span<const VirtioKind* const> virtio_kinds();
const VirtioKind* find_virtio_kind(std::string_view name);

// Parses and checks `text` for `kind`.
Result<DeviceOptions> parse_device_options(const VirtioKind& kind, std::string_view text);

// open() then create(), in this process: `options` is completed as open()
// completes it, and the programs it started join `companions`, which the
// caller keeps as long as the device.
Result<std::shared_ptr<virtio::VirtioDevice>> create_device_here(
    const VirtioKind& kind, DeviceOptions& options, DeviceEnvironment environment,
    std::vector<std::unique_ptr<HostService>>& companions);

}  // namespace crosvm
