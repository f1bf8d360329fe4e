#include "devices/registry.h"

#include <array>

#include "devices/virtio/net/net.h"
#include "devices/virtio/rng/rng.h"
#include "devices/virtio/vsock/vsock.h"

namespace crosvm {
namespace {

// One line per kind.
constexpr std::array<const VirtioKind*, 3> kKinds = {
    &virtio::kRngKind,
    &virtio::kNetKind,
    &virtio::kVsockKind,
};

}  // namespace

std::span<const VirtioKind* const> virtio_kinds() { return kKinds; }

const VirtioKind* find_virtio_kind(std::string_view name) {
  for (const VirtioKind* kind : kKinds) {
    if (kind->name == name) return kind;
  }
  return nullptr;
}

Result<DeviceOptions> parse_device_options(const VirtioKind& kind, std::string_view text) {
  DeviceOptions options = CROSVM_TRY(DeviceOptions::parse(kind.name, kind.keys, kind.positional, text));
  CROSVM_TRY(kind.check(options));
  return options;
}

UniqueFd DeviceEnvironment::take_fd(std::string_view name) {
  for (NamedFd& named : fds) {
    if (named.name == name && named.fd) return std::move(named.fd);
  }
  return {};
}

Result<std::shared_ptr<virtio::VirtioDevice>> create_device_here(
    const VirtioKind& kind, DeviceOptions& options, DeviceEnvironment environment,
    std::vector<std::unique_ptr<HostService>>& companions) {
  if (kind.open != nullptr) {
    OpenedResources opened = CROSVM_TRY(kind.open(options, environment.logger));
    environment.fds = std::move(opened.fds);
    for (auto& companion : opened.companions) companions.push_back(std::move(companion));
  }
  return kind.create(options, environment);
}

}  // namespace crosvm
