#include "devices/virtio/vsock/vsock.h"

#include <fmt/format.h>

#include "base/unix_socket.h"
#include "devices/virtio/vsock/host_side.h"
#include "devices/virtio/vsock/user_vsock.h"

namespace crosvm::virtio {

Vsock::Vsock(std::string name, uint64_t cid, std::unique_ptr<VhostVsock> vhost, const Logger& logger)
    : QueueDevice(std::move(name), logger), cid_(cid) {
  kernel_.add(std::move(vhost), {kReceiveQueue, kTransmitQueue});
}

uint64_t Vsock::device_features() const { return kernel_.front().features() & kVsockFeatureSeqpacket; }

uint64_t Vsock::ring_features() const { return QueueDevice::ring_features() & kernel_.front().features(); }

std::vector<QueuePosition> Vsock::positions_at_reset() const {
  return kernel_.with_kernel_positions(QueueDevice::positions_at_reset());
}

void Vsock::read_config(uint64_t offset, std::span<uint8_t> data) {
  const uint64_t config = cid_;  // le64 guest_cid
  read_config_bytes(std::span(reinterpret_cast<const uint8_t*>(&config), sizeof(config)), offset, data);
}

Result<void> Vsock::on_activate(const Activation& activation) {
  return kernel_.start(activation, activation.features & kernel_.front().features(), logger(), name());
}

QueueDevice::Turn Vsock::on_kick(ActiveQueue&) {
  // The event queue's buffers wait for an event that never comes.
  return Turn::kIdle;
}

void Vsock::on_reset() { kernel_.stop(); }

QueueDevice::Turn Vsock::on_host_ready(size_t index) {
  const KernelQueues::Event event = kernel_.take_event(index);
  if (event.kind == KernelQueues::Event::Kind::kUsed) {
    interrupt().signal_used(event.queue);  // a masked vector: the transport records it
  } else if (event.kind == KernelQueues::Event::Kind::kBroken) {
    fail(fmt::format("the kernel's vhost-vsock gave up on queue {}: a malformed ring or packet", event.queue));
    return Turn::kPaused;
  }
  return Turn::kIdle;
}

namespace {

constexpr const char* kDefaultDevice = "/dev/vhost-vsock";
constexpr uint64_t kLargestCid = 0xfffffffeull;

constexpr uint64_t kUserspaceDefaultCid = 3;

constexpr DeviceKey kVsockKeys[] = {
    {"cid", "the guest's context id, 3 or above, unique on the host (a bare number means the same); "
            "with socket=, 3 unless given"},
    {"device", "the kernel's vhost-vsock device (default /dev/vhost-vsock)"},
    {"socket", "a userspace vsock instead of the kernel's, needing no root: host programs connect to this Unix "
               "socket and write \"CONNECT <port>\\n\"; the guest's connections to host port P reach PATH_P"},
};

Result<uint64_t> cid_of(const DeviceOptions& options) {
  if (!options.text("cid") && options.text("socket")) return kUserspaceDefaultCid;
  if (!options.text("cid")) return options.invalid("needs cid=N (the guest's context id, 3 or above)");
  const uint64_t cid = CROSVM_TRY(options.number("cid", 0, UINT64_MAX, 0));
  if (reserved_vsock_cid(cid)) {
    return options.invalid(fmt::format("CID {} is reserved (0, 1, 2 and 4294967295 are not a guest's, and a CID "
                                       "has 32 bits): pick 3 to {}",
                                       cid, kLargestCid));
  }
  return cid;
}

}  // namespace

Result<uint64_t> vsock_guest_cid(const DeviceOptions& options) { return cid_of(options); }

const VirtioKind kVsockKind{
    .name = "vsock",
    .summary = "a virtio-vsock: sockets between the guest's CID and the host's (2), on the kernel's vhost-vsock "
               "or, with socket=, in userspace without root",
    .keys = kVsockKeys,
    .positional = "cid",
    .check = [](const DeviceOptions& options) -> Result<void> {
      CROSVM_TRY(cid_of(options));
      if (auto socket = options.text("socket")) {
        if (options.text("device")) {
          return options.invalid("takes device= (the kernel's) or socket= (userspace), not both");
        }
        if (auto address = unix_socket_address(vsock::port_path(*socket, UINT32_MAX), "vsock socket"); !address) {
          return options.invalid(fmt::format("socket= {}: too long for a Unix socket with a port's \"_4294967295\" "
                                             "after it",
                                             *socket));
        }
      }
      return {};
    },
    .open = [](DeviceOptions& options, const Logger& logger) -> Result<OpenedResources> {
      OpenedResources opened;
      if (auto socket = options.text("socket")) {
        if (!options.text("cid")) options.set("cid", std::to_string(kUserspaceDefaultCid));
        auto side = vsock::HostSide::open(*socket, logger);
        if (!side) return make_error(side.error().code, "vsock: {}", side.error().message);
        opened.fds.push_back({"vsock-listen", (*side)->take_listener()});
        opened.fds.push_back({"vsock-broker", (*side)->take_broker()});
        opened.companions.push_back(std::move(*side));
        return opened;
      }
      opened.fds.push_back({"vhost-vsock", CROSVM_TRY(VhostVsock::open_device(
                                               options.text("device").value_or(kDefaultDevice),
                                               CROSVM_TRY(cid_of(options))))});
      return opened;
    },
    .create = [](const DeviceOptions& options, DeviceEnvironment& environment)
        -> Result<std::shared_ptr<VirtioDevice>> {
      const uint64_t cid = CROSVM_TRY(cid_of(options));
      if (UniqueFd listener = environment.take_fd("vsock-listen")) {
        UniqueFd broker = environment.take_fd("vsock-broker");
        if (!broker) return options.invalid("no broker was opened for the userspace vsock");
        auto device = CROSVM_TRY(UserVsock::create(fmt::format("virtio-vsock {} (cid {}, userspace)", environment.index,
                                                               cid),
                                                   cid, std::move(listener), std::move(broker), environment.logger));
        return std::shared_ptr<VirtioDevice>(std::move(device));
      }
      UniqueFd device = environment.take_fd("vhost-vsock");
      if (!device) return options.invalid("no vhost-vsock device was opened for the device");
      auto vhost = CROSVM_TRY(VhostVsock::create(std::move(device), "vhost-vsock"));
      return std::shared_ptr<VirtioDevice>(std::make_shared<Vsock>(fmt::format("virtio-vsock {} (cid {})",
                                                                               environment.index, cid),
                                                                   cid, std::move(vhost), environment.logger));
    },
    .describe = [](const DeviceOptions& options, uint32_t index) -> std::string {
      const std::string name = index == 0 ? "vsock" : fmt::format("vsock{}", index);
      if (auto socket = options.text("socket")) {
        return fmt::format("{} (virtio-vsock, cid {}, userspace on {})", name, options.text("cid").value_or("3"),
                           *socket);
      }
      return fmt::format("{} (virtio-vsock, cid {}, vhost-vsock)", name, options.text("cid").value_or("?"));
    },
};

}  // namespace crosvm::virtio
