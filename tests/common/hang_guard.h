// How long a test waits for something that must happen: a guard against a
// hang, never a check of speed. A slow or busy machine (sanitizers, the
// nested emulator, a loaded CI host) must not fail a test that waits.
#pragma once

#include <chrono>
#include <functional>
#include <thread>

namespace crosvm::testing {

inline constexpr std::chrono::seconds kHangGuard{120};

// Polls `condition` until it holds or the hang guard runs out.
inline bool eventually(const std::function<bool()>& condition) {
  const auto deadline = std::chrono::steady_clock::now() + kHangGuard;
  while (std::chrono::steady_clock::now() < deadline) {
    if (condition()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return false;
}

}  // namespace crosvm::testing
