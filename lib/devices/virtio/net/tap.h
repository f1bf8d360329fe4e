// TAP interfaces: opening one by name, making and configuring a new one
// (the VMM, with CAP_NET_ADMIN), taking one an embedder opened, and the TAP
// as a NIC's backend (in whichever process the device runs; it only
// reads, writes and sets offloads on the fd it was given).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/unique_fd.h"
#include "devices/virtio/net/net_backend.h"

namespace crosvm::virtio {

// What the VMM learnt opening a TAP: one fd per queue (a multi-queue TAP
// when there are several).
struct OpenedTap {
  std::vector<UniqueFd> queues;
  std::string name;  // "vmtap0"
  uint16_t mtu = 1500;
};

// An existing TAP (a persistent one the user may open, or a new one when
// the process has CAP_NET_ADMIN), with a virtio_net_hdr and `queues` queues.
Result<OpenedTap> open_tap(const std::string& name, unsigned queues = 1);
// A new TAP, its host side given `host_ip`/`netmask` and brought up: needs
// CAP_NET_ADMIN, and says so in one line when it is missing.
Result<OpenedTap> create_tap(const std::string& host_ip, const std::string& netmask, unsigned queues = 1);
// A TAP fd an embedder opened (crosvm's tap-fd=N): checked to be a TAP, and
// duplicated (the embedder keeps its own).
Result<OpenedTap> adopt_tap_fd(int fd);

class Tap final : public NetBackend {
 public:
  // The size of the header in front of every frame when the TAP has one.
  static constexpr int kHeaderSize = 12;

  // Takes a TAP fd: sets the header size and finds the offloads it takes.
  static Result<std::unique_ptr<Tap>> create(UniqueFd fd, std::string description);

  std::string describe() const override { return description_; }
  int wait_fd() const override { return fd_.get(); }
  int tap_fd() const override { return fd_.get(); }
  bool carries_header() const override { return header_; }
  unsigned supported_offloads() const override { return offloads_; }
  Result<void> set_offloads(unsigned offloads) override;
  // Attaches or detaches this queue of a multi-queue TAP (TUNSETQUEUE).
  Result<void> set_enabled(bool enabled) override;
  Result<size_t> receive(std::span<uint8_t> buffer) override;
  Result<Sent> send(std::span<const iovec> frame) override;

 private:
  Tap(UniqueFd fd, std::string description, bool header, bool multi_queue, unsigned offloads)
      : fd_(std::move(fd)),
        description_(std::move(description)),
        header_(header),
        multi_queue_(multi_queue),
        offloads_(offloads) {}
  UniqueFd fd_;
  std::string description_;
  bool header_;
  bool multi_queue_;
  bool attached_ = true;
  unsigned offloads_;
};

}  // namespace crosvm::virtio
