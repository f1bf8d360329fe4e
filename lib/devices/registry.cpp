#include "devices/registry.h"

#include <array>

#include "devices/virtio/net/net.h"
#include "devices/virtio/rng/rng.h"

namespace crosvm {
namespace {

// One line per kind.
constexpr std::array<const VirtioKind*, 2> kKinds = {
    &virtio::kRngKind,
    &virtio::kNetKind,
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

Result<std::shared_ptr<virtio::VirtioDevice>> create_device_here(const VirtioKind& kind, DeviceOptions& options,
                                                                 DeviceEnvironment environment) {
  if (kind.open != nullptr) environment.fds = CROSVM_TRY(kind.open(options, environment.logger));
  return kind.create(options, environment);
}

}  // namespace crosvm
