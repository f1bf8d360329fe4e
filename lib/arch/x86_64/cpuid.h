// The CPUID a vCPU reports: what KVM supports, with the topology (APIC IDs,
// core counts) and the hypervisor bit made true for this VM.
#pragma once

#include <linux/kvm.h>

#include <cstdint>
#include <span>
#include <vector>

namespace crosvm::x86_64 {

// Each vCPU is one core of a single package, one thread per core; the APIC
// ID equals the vCPU index.
std::vector<kvm_cpuid_entry2> cpuid_for_vcpu(std::span<const kvm_cpuid_entry2> supported,
                                             uint32_t vcpu_id, uint32_t vcpu_count);

}  // namespace crosvm::x86_64
