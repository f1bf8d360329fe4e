// What a device relies on in the VMM for as long as the VM lives, and
// which ends when it is destroyed: a program beside the VM (passt, a
// sandbox::Companion), or a thread that opens host sockets for a jailed
// device (the userspace vsock's broker). The VM keeps them between its
// device processes and its devices, so they outlive the devices.
#pragma once

namespace crosvm {

class HostService {
 public:
  virtual ~HostService() = default;
};

}  // namespace crosvm
