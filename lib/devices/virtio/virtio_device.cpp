#include "devices/virtio/virtio_device.h"

#include <algorithm>
#include <cstring>

namespace crosvm::virtio {

void read_config_bytes(std::span<const uint8_t> config, uint64_t offset, std::span<uint8_t> out) {
  std::fill(out.begin(), out.end(), 0);
  if (offset >= config.size()) return;
  const size_t count = std::min<uint64_t>(out.size(), config.size() - offset);
  std::memcpy(out.data(), config.data() + offset, count);
}

}  // namespace crosvm::virtio
