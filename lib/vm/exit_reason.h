// Why a VM stopped. The values match the C ABI's crosvm_exit_reason.
#pragma once

#include <string_view>

namespace crosvm {

enum class ExitReason {
  kNone = 0,      // still running, or never started
  kPowerOff = 1,  // the guest powered off
  kReset = 2,     // the guest reset (reboot)
  kCrash = 3,     // triple fault or a vCPU state KVM cannot run
  kPanic = 4,     // the guest kernel reported a panic
  kStopped = 5,   // the host asked it to stop
  kError = 6,     // the VMM itself failed
};

constexpr std::string_view exit_reason_name(ExitReason reason) {
  switch (reason) {
    case ExitReason::kNone: return "running";
    case ExitReason::kPowerOff: return "powered off";
    case ExitReason::kReset: return "reset";
    case ExitReason::kCrash: return "crashed";
    case ExitReason::kPanic: return "panicked";
    case ExitReason::kStopped: return "stopped";
    case ExitReason::kError: return "failed";
  }
  return "unknown";
}

}  // namespace crosvm
