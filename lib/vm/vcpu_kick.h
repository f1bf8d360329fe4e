// Getting a vCPU thread out of KVM_RUN: set kvm_run.immediate_exit, then send
// the thread a real-time signal whose handler does nothing. The signal is
// the library's one process-wide effect; it is documented in crosvm.h.
#pragma once

#include <pthread.h>

#include "base/result.h"

namespace crosvm {

// SIGRTMIN + kKickSignalOffset.
inline constexpr int kKickSignalOffset = 0;
int kick_signal();

// Installs the no-op handler once per process. Fails if another handler
// already owns the signal.
Result<void> install_kick_handler();
// Lets the calling thread receive the kick signal.
void unblock_kick_signal();
void kick_thread(pthread_t thread);

}  // namespace crosvm
