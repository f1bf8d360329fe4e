#include "devices/registry.h"

#include <array>

#include "devices/virtio/rng/rng.h"

namespace crosvm {
namespace {

// One line per kind.
constexpr std::array<const VirtioKind*, 1> kKinds = {
    &virtio::kRngKind,
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

}  // namespace crosvm
