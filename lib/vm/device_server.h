// crosvm's `crosvm device`: one of our virtio devices served to a
// vhost-user frontend (our VMM or QEMU) from a process of its own. The
// device is named as for a VM ("block", "path=disk.img,ro=true") and built
// by the same code the VM uses.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/log.h"
#include "base/result.h"
#include "base/unique_fd.h"
#include "devices/virtio/virtio_device.h"
#include "sandbox/companion.h"

namespace crosvm {

// The kinds a backend can serve, for usage text: "block, rng".
std::string served_device_kinds();

// A device to serve, and the host programs it relies on (passt), which
// live as long as it.
struct ServedDevice {
  std::vector<std::unique_ptr<HostService>> companions;
  std::shared_ptr<virtio::VirtioDevice> device;
};

// Builds the device `kind` with `options` (the registry's key=value list).
Result<ServedDevice> create_served_device(std::string_view kind, std::string_view options, const Logger& logger);

// Listens on a Unix socket at `path` (a stale socket there is replaced; a
// live one or another file is an error), serves the first frontend that
// connects until it disconnects, and removes the socket.
Result<void> serve_device_at(std::string_view kind, std::string_view options, const std::string& path,
                             const Logger& logger);

// The same on a connection already made (a socketpair end from a VMM that
// spawned us).
Result<void> serve_device_on(std::string_view kind, std::string_view options, UniqueFd connection,
                             const Logger& logger);

}  // namespace crosvm
