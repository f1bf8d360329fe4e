// The KVM ioctl layer and nothing else: RAII owners of the system, VM and
// vCPU file descriptors, each ioctl a method that returns a Result.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "base/memory_mapping.h"
#include "base/result.h"
#include "base/unique_fd.h"

namespace crosvm::kvm {

class VmFd;
class VcpuFd;

// The system fd (/dev/kvm).
class Kvm {
 public:
  static constexpr const char* kDefaultPath = "/dev/kvm";

  // Opens the device and checks the API version. A missing device, a
  // permission problem and an old kernel each get their own message.
  static Result<Kvm> open(const std::string& path = kDefaultPath);

  int check_extension(long capability) const;
  // Fails with a message naming `what` when the capability is absent.
  Result<void> require_extension(long capability, const char* what) const;

  uint32_t max_vcpus() const;
  Result<size_t> vcpu_mmap_size() const;
  Result<std::vector<kvm_cpuid_entry2>> supported_cpuid() const;
  Result<std::vector<uint32_t>> msr_index_list() const;
  Result<VmFd> create_vm() const;

  int fd() const { return fd_.get(); }

 private:
  explicit Kvm(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

class VmFd {
 public:
  Result<void> set_user_memory_region(uint32_t slot, uint64_t guest_address, uint64_t size,
                                      void* host_address) const;
  Result<void> set_tss_address(uint64_t address) const;
  Result<void> set_identity_map_address(uint64_t address) const;
  Result<void> create_irqchip() const;
  Result<void> create_pit2() const;
  Result<void> set_irq_line(uint32_t irq, bool level) const;
  Result<void> register_irqfd(int event_fd, uint32_t gsi) const;
  Result<void> unregister_irqfd(int event_fd, uint32_t gsi) const;
  // Matches a guest write of any value to [address, address+length).
  Result<void> register_ioeventfd(int event_fd, uint64_t address, uint32_t length,
                                  bool is_pio) const;
  Result<void> unregister_ioeventfd(int event_fd, uint64_t address, uint32_t length,
                                    bool is_pio) const;
  Result<void> set_gsi_routing(std::span<const kvm_irq_routing_entry> entries) const;
  Result<VcpuFd> create_vcpu(uint32_t id, size_t mmap_size) const;

  int fd() const { return fd_.get(); }

 private:
  friend class Kvm;
  explicit VmFd(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

class VcpuFd {
 public:
  // One KVM_RUN. EINTR/EAGAIN come back as an error with code kState so the
  // caller can tell a kick from a failure.
  enum class RunStatus { kExited, kInterrupted };
  Result<RunStatus> run() const;

  kvm_run* run_data() const { return reinterpret_cast<kvm_run*>(run_mapping_.data()); }
  uint32_t id() const { return id_; }

  Result<kvm_regs> get_regs() const;
  Result<void> set_regs(const kvm_regs& regs) const;
  Result<kvm_sregs> get_sregs() const;
  Result<void> set_sregs(const kvm_sregs& sregs) const;
  Result<void> set_fpu(const kvm_fpu& fpu) const;
  Result<void> set_cpuid(std::span<const kvm_cpuid_entry2> entries) const;
  Result<void> set_msrs(std::span<const kvm_msr_entry> entries) const;
  Result<void> get_msrs(std::span<kvm_msr_entry> entries) const;
  Result<kvm_lapic_state> get_lapic() const;
  Result<void> set_lapic(const kvm_lapic_state& state) const;
  Result<void> set_mp_state(uint32_t state) const;

 private:
  friend class VmFd;
  VcpuFd(UniqueFd fd, MemoryMapping run_mapping, uint32_t id)
      : fd_(std::move(fd)), run_mapping_(std::move(run_mapping)), id_(id) {}
  UniqueFd fd_;
  MemoryMapping run_mapping_;
  uint32_t id_;
};

}  // namespace crosvm::kvm
