#include "arch/x86_64/cpuid.h"

#include <bit>

namespace crosvm::x86_64 {
namespace {

constexpr uint32_t kLeafFeatures = 0x1;
constexpr uint32_t kLeafCacheParameters = 0x4;
constexpr uint32_t kLeafTopology = 0xb;
constexpr uint32_t kLeafTopologyV2 = 0x1f;
constexpr uint32_t kLeafAddressSizes = 0x80000008;
constexpr uint32_t kLeafAmdTopology = 0x8000001e;

constexpr uint32_t kFeatureEdxHtt = 1u << 28;
constexpr uint32_t kFeatureEcxTscDeadline = 1u << 24;
constexpr uint32_t kFeatureEcxHypervisor = 1u << 31;

constexpr uint32_t kTopologyLevelSmt = 1;
constexpr uint32_t kTopologyLevelCore = 2;

uint32_t bits_for(uint32_t count) {
  return count <= 1 ? 0 : static_cast<uint32_t>(std::bit_width(count - 1));
}

void set_topology_entry(kvm_cpuid_entry2& entry, uint32_t vcpu_id, uint32_t vcpu_count) {
  entry.edx = vcpu_id;  // x2APIC ID
  switch (entry.index) {
    case 0:  // threads within a core: one
      entry.eax = 0;
      entry.ebx = 1;
      entry.ecx = (kTopologyLevelSmt << 8) | entry.index;
      break;
    case 1:  // cores within the package
      entry.eax = bits_for(vcpu_count);
      entry.ebx = vcpu_count;
      entry.ecx = (kTopologyLevelCore << 8) | entry.index;
      break;
    default:  // no further levels
      entry.eax = 0;
      entry.ebx = 0;
      entry.ecx = entry.index;
      break;
  }
}

}  // namespace

std::vector<kvm_cpuid_entry2> cpuid_for_vcpu(std::span<const kvm_cpuid_entry2> supported,
                                             uint32_t vcpu_id, const CpuidOptions& options) {
  const uint32_t vcpu_count = options.vcpu_count;
  std::vector<kvm_cpuid_entry2> entries(supported.begin(), supported.end());
  for (kvm_cpuid_entry2& entry : entries) {
    switch (entry.function) {
      case kLeafFeatures:
        entry.ebx = (entry.ebx & 0x0000ffff) | (vcpu_id << 24) | ((vcpu_count & 0xff) << 16);
        entry.ecx |= kFeatureEcxHypervisor;
        if (options.tsc_deadline_timer) {
          entry.ecx |= kFeatureEcxTscDeadline;
        } else {
          entry.ecx &= ~kFeatureEcxTscDeadline;
        }
        if (vcpu_count > 1) {
          entry.edx |= kFeatureEdxHtt;
        } else {
          entry.edx &= ~kFeatureEdxHtt;
        }
        break;
      case kLeafCacheParameters: {
        const uint32_t level = (entry.eax >> 5) & 0x7;
        const uint32_t sharing = level >= 3 ? vcpu_count - 1 : 0;
        const uint32_t cores = (vcpu_count > 64 ? 64 : vcpu_count) - 1;
        entry.eax = (entry.eax & 0x3fff) | ((sharing & 0xfff) << 14) | (cores << 26);
        break;
      }
      case kLeafTopology:
      case kLeafTopologyV2:
        set_topology_entry(entry, vcpu_id, vcpu_count);
        break;
      case kLeafAddressSizes:
        entry.ecx = (entry.ecx & ~0xf0ffu) | (bits_for(vcpu_count) << 12) | ((vcpu_count - 1) & 0xff);
        break;
      case kLeafAmdTopology:
        entry.eax = vcpu_id;
        entry.ebx = vcpu_id & 0xff;  // core ID; one thread per core
        entry.ecx = 0;               // node 0
        break;
      default:
        break;
    }
  }
  return entries;
}

}  // namespace crosvm::x86_64
