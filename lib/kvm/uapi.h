// The variable-length KVM structs, laid out as the kernel's C ABI has them.
//
// Linux's UAPI headers (6.1, as in Debian 12) declare their flexible arrays
// with __DECLARE_FLEX_ARRAY, which in C++ inserts an empty struct of size 1:
// sizeof(kvm_cpuid2) becomes 12 instead of 8, the entries move, and the
// ioctl numbers (which encode the size) no longer match the kernel's. These
// headers and ioctl numbers replace them for this library.
#pragma once

#include <linux/kvm.h>
#include <sys/ioctl.h>

#include <cstdint>

namespace crosvm::kvm::uapi {

struct CpuidHeader {  // struct kvm_cpuid2 without its entries
  uint32_t nent;
  uint32_t padding;
};
struct MsrsHeader {  // struct kvm_msrs
  uint32_t nmsrs;
  uint32_t pad;
};
struct MsrListHeader {  // struct kvm_msr_list
  uint32_t nmsrs;
};
struct IrqRoutingHeader {  // struct kvm_irq_routing
  uint32_t nr;
  uint32_t flags;
};

static_assert(sizeof(CpuidHeader) == 8 && sizeof(MsrsHeader) == 8 && sizeof(MsrListHeader) == 4 &&
              sizeof(IrqRoutingHeader) == 8);

inline constexpr unsigned long kGetMsrIndexList = _IOWR(KVMIO, 0x02, MsrListHeader);
inline constexpr unsigned long kGetSupportedCpuid = _IOWR(KVMIO, 0x05, CpuidHeader);
inline constexpr unsigned long kSetGsiRouting = _IOW(KVMIO, 0x6a, IrqRoutingHeader);
inline constexpr unsigned long kGetMsrs = _IOWR(KVMIO, 0x88, MsrsHeader);
inline constexpr unsigned long kSetMsrs = _IOW(KVMIO, 0x89, MsrsHeader);
inline constexpr unsigned long kSetCpuid2 = _IOW(KVMIO, 0x90, CpuidHeader);

}  // namespace crosvm::kvm::uapi
