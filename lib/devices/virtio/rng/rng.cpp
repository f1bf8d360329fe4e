#include "devices/virtio/rng/rng.h"

#include <sys/random.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "devices/virtio/chain_io.h"

namespace crosvm::virtio {

QueueDevice::Turn Rng::on_kick(ActiveQueue& queue) {
  return serve_available(queue, [this](const DescriptorChain& chain) -> uint32_t {
    ChainWriter writer(memory(), chain.writable);
    const uint64_t wanted = std::min<uint64_t>(writer.remaining(), kMaxBytesPerRequest);
    auto buffers = writer.take(wanted);
    if (!buffers) return 0;
    uint32_t filled = 0;
    for (const iovec& buffer : *buffers) {
      size_t done = 0;
      while (done < buffer.iov_len) {
        const ssize_t got = ::getrandom(static_cast<uint8_t*>(buffer.iov_base) + done, buffer.iov_len - done, 0);
        if (got < 0) {
          if (errno == EINTR) continue;
          logger().warn("{}: getrandom: {}", name(), std::strerror(errno));
          return filled;
        }
        done += static_cast<size_t>(got);
        filled += static_cast<uint32_t>(got);
      }
    }
    return filled;
  });
}

const VirtioKind kRngKind{
    .name = "rng",
    .summary = "a virtio-rng fed by the host's getrandom() (one is there unless turned off)",
    .keys = {},
    .positional = "",
    .check = [](const DeviceOptions&) -> Result<void> { return {}; },
    .open = nullptr,
    .create = [](const DeviceOptions&, DeviceEnvironment& environment)
        -> Result<std::shared_ptr<VirtioDevice>> {
      return std::shared_ptr<VirtioDevice>(std::make_shared<Rng>(environment.logger));
    },
    .describe = [](const DeviceOptions&, uint32_t index) -> std::string {
      return index == 0 ? "rng (virtio-rng)" : fmt::format("rng{} (virtio-rng)", index);
    },
};

}  // namespace crosvm::virtio
