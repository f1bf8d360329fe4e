// A device process is its PID namespace's init, which the kernel spares
// the signals it has no handler for, its own SIGABRT included: abort()
// would end in a SIGSEGV, and a kill -ABRT from outside would do nothing.
// crosvm-device handles SIGABRT by exiting with this status instead. Its
// own header, with no includes: the helper is built without the C++
// runtime (lib/meson.build).
#pragma once

namespace crosvm::sandbox {

inline constexpr int kAbortedStatus = 128 + 6;  // 6: SIGABRT

}  // namespace crosvm::sandbox
