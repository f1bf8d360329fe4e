#include "kvm/kvm.h"

#include "kvm/uapi.h"

#include <fcntl.h>
#include <sys/ioctl.h>

#include <cstdlib>
#include <cstring>

namespace crosvm::kvm {
namespace {

// ioctl(2) retried on EINTR, for calls that are not KVM_RUN.
int checked_ioctl(int fd, unsigned long request, const void* argument) {
  int ret;
  do {
    ret = ::ioctl(fd, request, argument);
  } while (ret < 0 && errno == EINTR);
  return ret;
}

Error ioctl_error(const char* name) {
  return make_errno_error(ErrorCode::kKvmCapability, errno, "KVM ioctl {} failed", name);
}

#define CROSVM_KVM_IOCTL(fd, request, argument)                       \
  do {                                                                \
    if (checked_ioctl((fd), (request), (argument)) < 0) {             \
      return ioctl_error(#request);                                   \
    }                                                                 \
  } while (0)

// Variable-length KVM structs are a header followed by an array (see
// uapi.h): allocate them as one zeroed, 8-byte-aligned block.
template <typename Header, typename Entry>
struct FlexibleArray {
  static_assert(sizeof(Header) % alignof(Entry) == 0);
  explicit FlexibleArray(size_t count)
      : storage(new uint64_t[(sizeof(Header) + count * sizeof(Entry) + 7) / 8]()) {}
  Header* header() { return reinterpret_cast<Header*>(storage.get()); }
  Entry* entries() { return reinterpret_cast<Entry*>(reinterpret_cast<uint8_t*>(storage.get()) + sizeof(Header)); }
  std::unique_ptr<uint64_t[]> storage;
};

}  // namespace

Result<Kvm> Kvm::open(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd) {
    int saved = errno;
    if (saved == ENOENT) {
      return make_error(ErrorCode::kKvmUnavailable,
                        "{} does not exist: KVM is not available on this host "
                        "(is the kvm module loaded, or virtualisation enabled?)",
                        path);
    }
    if (saved == EACCES || saved == EPERM) {
      return make_error(ErrorCode::kKvmUnavailable,
                        "no permission to open {}: add the user to the 'kvm' group", path);
    }
    return make_errno_error(ErrorCode::kKvmUnavailable, saved, "cannot open {}", path);
  }
  int version = ::ioctl(fd.get(), KVM_GET_API_VERSION, 0);
  if (version != KVM_API_VERSION) {
    return make_error(ErrorCode::kKvmCapability, "{} speaks KVM API version {}, need {}", path,
                      version, KVM_API_VERSION);
  }
  return Kvm(std::move(fd));
}

int Kvm::check_extension(long capability) const {
  int ret = ::ioctl(fd_.get(), KVM_CHECK_EXTENSION, capability);
  return ret < 0 ? 0 : ret;
}

Result<void> Kvm::require_extension(long capability, const char* what) const {
  if (check_extension(capability) <= 0) {
    return make_error(ErrorCode::kKvmCapability, "this host's KVM lacks {} (capability {})", what,
                      capability);
  }
  return {};
}

uint32_t Kvm::max_vcpus() const {
  int max = check_extension(KVM_CAP_MAX_VCPUS);
  if (max <= 0) max = check_extension(KVM_CAP_NR_VCPUS);
  return max <= 0 ? 4 : static_cast<uint32_t>(max);  // 4: the API's documented floor
}

Result<size_t> Kvm::vcpu_mmap_size() const {
  int size = ::ioctl(fd_.get(), KVM_GET_VCPU_MMAP_SIZE, 0);
  if (size <= 0) return ioctl_error("KVM_GET_VCPU_MMAP_SIZE");
  return static_cast<size_t>(size);
}

Result<std::vector<kvm_cpuid_entry2>> Kvm::supported_cpuid() const {
  for (size_t count = 128; count <= 4096; count *= 2) {
    FlexibleArray<uapi::CpuidHeader, kvm_cpuid_entry2> cpuid(count);
    cpuid.header()->nent = static_cast<uint32_t>(count);
    if (checked_ioctl(fd_.get(), uapi::kGetSupportedCpuid, cpuid.header()) == 0) {
      return std::vector<kvm_cpuid_entry2>(cpuid.entries(),
                                           cpuid.entries() + cpuid.header()->nent);
    }
    if (errno != E2BIG) return ioctl_error("KVM_GET_SUPPORTED_CPUID");
  }
  return make_error(ErrorCode::kKvmCapability, "KVM_GET_SUPPORTED_CPUID reports too many leaves");
}

Result<std::vector<uint32_t>> Kvm::msr_index_list() const {
  uapi::MsrListHeader probe{};
  if (::ioctl(fd_.get(), uapi::kGetMsrIndexList, &probe) < 0 && errno != E2BIG) {
    return ioctl_error("KVM_GET_MSR_INDEX_LIST");
  }
  FlexibleArray<uapi::MsrListHeader, uint32_t> list(probe.nmsrs);
  list.header()->nmsrs = probe.nmsrs;
  CROSVM_KVM_IOCTL(fd_.get(), uapi::kGetMsrIndexList, list.header());
  return std::vector<uint32_t>(list.entries(), list.entries() + list.header()->nmsrs);
}

Result<VmFd> Kvm::create_vm() const {
  int fd;
  do {
    fd = ::ioctl(fd_.get(), KVM_CREATE_VM, 0);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return make_errno_error(ErrorCode::kKvmUnavailable, errno, "KVM_CREATE_VM");
  return VmFd(UniqueFd(fd));
}

Result<void> VmFd::set_user_memory_region(uint32_t slot, uint64_t guest_address, uint64_t size,
                                          void* host_address) const {
  kvm_userspace_memory_region region{};
  region.slot = slot;
  region.guest_phys_addr = guest_address;
  region.memory_size = size;
  region.userspace_addr = reinterpret_cast<uint64_t>(host_address);
  if (checked_ioctl(fd_.get(), KVM_SET_USER_MEMORY_REGION, &region) < 0) {
    return make_errno_error(ErrorCode::kMemory, errno,
                            "KVM cannot map guest memory slot {} ({:#x} bytes at {:#x})", slot,
                            size, guest_address);
  }
  return {};
}

Result<void> VmFd::set_tss_address(uint64_t address) const {
  if (checked_ioctl(fd_.get(), KVM_SET_TSS_ADDR, reinterpret_cast<void*>(address)) < 0) {
    return ioctl_error("KVM_SET_TSS_ADDR");
  }
  return {};
}

Result<void> VmFd::set_identity_map_address(uint64_t address) const {
  CROSVM_KVM_IOCTL(fd_.get(), KVM_SET_IDENTITY_MAP_ADDR, &address);
  return {};
}

Result<void> VmFd::create_irqchip() const {
  CROSVM_KVM_IOCTL(fd_.get(), KVM_CREATE_IRQCHIP, nullptr);
  return {};
}

Result<void> VmFd::create_pit2() const {
  kvm_pit_config config{};
  config.flags = KVM_PIT_SPEAKER_DUMMY;  // the kernel answers port 0x61 too
  CROSVM_KVM_IOCTL(fd_.get(), KVM_CREATE_PIT2, &config);
  return {};
}

Result<void> VmFd::set_irq_line(uint32_t irq, bool level) const {
  kvm_irq_level line{};
  line.irq = irq;
  line.level = level ? 1 : 0;
  CROSVM_KVM_IOCTL(fd_.get(), KVM_IRQ_LINE, &line);
  return {};
}

Result<void> VmFd::register_irqfd(int event_fd, uint32_t gsi) const {
  kvm_irqfd irqfd{};
  irqfd.fd = static_cast<uint32_t>(event_fd);
  irqfd.gsi = gsi;
  CROSVM_KVM_IOCTL(fd_.get(), KVM_IRQFD, &irqfd);
  return {};
}

Result<void> VmFd::unregister_irqfd(int event_fd, uint32_t gsi) const {
  kvm_irqfd irqfd{};
  irqfd.fd = static_cast<uint32_t>(event_fd);
  irqfd.gsi = gsi;
  irqfd.flags = KVM_IRQFD_FLAG_DEASSIGN;
  CROSVM_KVM_IOCTL(fd_.get(), KVM_IRQFD, &irqfd);
  return {};
}

Result<void> VmFd::register_ioeventfd(int event_fd, uint64_t address, uint32_t length,
                                      bool is_pio) const {
  kvm_ioeventfd ioeventfd{};
  ioeventfd.fd = event_fd;
  ioeventfd.addr = address;
  ioeventfd.len = length;
  ioeventfd.flags = is_pio ? KVM_IOEVENTFD_FLAG_PIO : 0;
  CROSVM_KVM_IOCTL(fd_.get(), KVM_IOEVENTFD, &ioeventfd);
  return {};
}

Result<void> VmFd::unregister_ioeventfd(int event_fd, uint64_t address, uint32_t length,
                                        bool is_pio) const {
  kvm_ioeventfd ioeventfd{};
  ioeventfd.fd = event_fd;
  ioeventfd.addr = address;
  ioeventfd.len = length;
  ioeventfd.flags = KVM_IOEVENTFD_FLAG_DEASSIGN | (is_pio ? KVM_IOEVENTFD_FLAG_PIO : 0);
  CROSVM_KVM_IOCTL(fd_.get(), KVM_IOEVENTFD, &ioeventfd);
  return {};
}

Result<void> VmFd::set_gsi_routing(std::span<const kvm_irq_routing_entry> entries) const {
  FlexibleArray<uapi::IrqRoutingHeader, kvm_irq_routing_entry> routing(entries.size());
  routing.header()->nr = static_cast<uint32_t>(entries.size());
  std::memcpy(routing.entries(), entries.data(), entries.size_bytes());
  CROSVM_KVM_IOCTL(fd_.get(), uapi::kSetGsiRouting, routing.header());
  return {};
}

Result<VcpuFd> VmFd::create_vcpu(uint32_t id, size_t mmap_size) const {
  int fd;
  do {
    fd = ::ioctl(fd_.get(), KVM_CREATE_VCPU, static_cast<unsigned long>(id));
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return make_errno_error(ErrorCode::kVcpu, errno, "cannot create vCPU {}", id);
  UniqueFd vcpu_fd(fd);
  auto mapping = MemoryMapping::map_shared(vcpu_fd.get(), mmap_size);
  if (!mapping) {
    return make_error(ErrorCode::kVcpu, "cannot map vCPU {} run area: {}", id,
                      mapping.error().message);
  }
  return VcpuFd(std::move(vcpu_fd), std::move(mapping).value(), id);
}

Result<VcpuFd::RunStatus> VcpuFd::run() const {
  if (::ioctl(fd_.get(), KVM_RUN, 0) == 0) return RunStatus::kExited;
  if (errno == EINTR || errno == EAGAIN) return RunStatus::kInterrupted;
  return make_errno_error(ErrorCode::kVcpu, errno, "KVM_RUN on vCPU {}", id_);
}

Result<kvm_regs> VcpuFd::get_regs() const {
  kvm_regs regs{};
  CROSVM_KVM_IOCTL(fd_.get(), KVM_GET_REGS, &regs);
  return regs;
}

Result<void> VcpuFd::set_regs(const kvm_regs& regs) const {
  CROSVM_KVM_IOCTL(fd_.get(), KVM_SET_REGS, &regs);
  return {};
}

Result<kvm_sregs> VcpuFd::get_sregs() const {
  kvm_sregs sregs{};
  CROSVM_KVM_IOCTL(fd_.get(), KVM_GET_SREGS, &sregs);
  return sregs;
}

Result<void> VcpuFd::set_sregs(const kvm_sregs& sregs) const {
  CROSVM_KVM_IOCTL(fd_.get(), KVM_SET_SREGS, &sregs);
  return {};
}

Result<void> VcpuFd::set_fpu(const kvm_fpu& fpu) const {
  CROSVM_KVM_IOCTL(fd_.get(), KVM_SET_FPU, &fpu);
  return {};
}

Result<void> VcpuFd::set_cpuid(std::span<const kvm_cpuid_entry2> entries) const {
  FlexibleArray<uapi::CpuidHeader, kvm_cpuid_entry2> cpuid(entries.size());
  cpuid.header()->nent = static_cast<uint32_t>(entries.size());
  std::memcpy(cpuid.entries(), entries.data(), entries.size_bytes());
  CROSVM_KVM_IOCTL(fd_.get(), uapi::kSetCpuid2, cpuid.header());
  return {};
}

Result<void> VcpuFd::set_msrs(std::span<const kvm_msr_entry> entries) const {
  FlexibleArray<uapi::MsrsHeader, kvm_msr_entry> msrs(entries.size());
  msrs.header()->nmsrs = static_cast<uint32_t>(entries.size());
  std::memcpy(msrs.entries(), entries.data(), entries.size_bytes());
  int written = checked_ioctl(fd_.get(), uapi::kSetMsrs, msrs.header());
  if (written < 0) return ioctl_error("KVM_SET_MSRS");
  if (static_cast<size_t>(written) != entries.size()) {
    return make_error(ErrorCode::kKvmCapability, "KVM refused MSR {:#x}",
                      entries[static_cast<size_t>(written)].index);
  }
  return {};
}

Result<void> VcpuFd::get_msrs(std::span<kvm_msr_entry> entries) const {
  FlexibleArray<uapi::MsrsHeader, kvm_msr_entry> msrs(entries.size());
  msrs.header()->nmsrs = static_cast<uint32_t>(entries.size());
  std::memcpy(msrs.entries(), entries.data(), entries.size_bytes());
  int read = checked_ioctl(fd_.get(), uapi::kGetMsrs, msrs.header());
  if (read < 0) return ioctl_error("KVM_GET_MSRS");
  std::memcpy(entries.data(), msrs.entries(), entries.size_bytes());
  return {};
}

Result<kvm_lapic_state> VcpuFd::get_lapic() const {
  kvm_lapic_state state{};
  CROSVM_KVM_IOCTL(fd_.get(), KVM_GET_LAPIC, &state);
  return state;
}

Result<void> VcpuFd::set_lapic(const kvm_lapic_state& state) const {
  CROSVM_KVM_IOCTL(fd_.get(), KVM_SET_LAPIC, &state);
  return {};
}

Result<void> VcpuFd::set_mp_state(uint32_t state) const {
  kvm_mp_state mp_state{};
  mp_state.mp_state = state;
  CROSVM_KVM_IOCTL(fd_.get(), KVM_SET_MP_STATE, &mp_state);
  return {};
}

}  // namespace crosvm::kvm
