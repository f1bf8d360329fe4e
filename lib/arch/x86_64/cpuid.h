// The CPUID a vCPU reports: what KVM supports, with the topology (APIC IDs,
// core counts) and the hypervisor bit made true for this VM.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <span>
#include <vector>

namespace crosvm::x86_64 {

// What is the same for every vCPU of a VM.
struct CpuidOptions {
  uint32_t vcpu_count = 1;
  // KVM emulates the LAPIC's TSC-deadline mode when it has
  // KVM_CAP_TSC_DEADLINE_TIMER, yet KVM_GET_SUPPORTED_CPUID leaves the bit
  // clear. Without it Linux calibrates the LAPIC timer against the PIT, which
  // fails where exits are slow (nested KVM), and the guest loses its timer.
  bool tsc_deadline_timer = false;
};

// Each vCPU is one core of a single package, one thread per core; the APIC
// ID equals the vCPU index.
std::vector<kvm_cpuid_entry2> cpuid_for_vcpu(std::span<const kvm_cpuid_entry2> supported,
                                             uint32_t vcpu_id, const CpuidOptions& options);

}  // namespace crosvm::x86_64
