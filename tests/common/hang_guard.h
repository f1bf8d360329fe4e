// How long a test waits for something that must happen: a guard against a
// hang, never a check of speed. A slow or busy machine (sanitizers, the
// nested emulator, a loaded CI host) must not fail a test that waits.
#pragma once

#include <chrono>

namespace crosvm::testing {

inline constexpr std::chrono::seconds kHangGuard{120};

}  // namespace crosvm::testing
