// A thread of the library's own (a vCPU, the event loop), with a name the
// host's tools show and a stack of kStackSize. The stack is kept below
// 2 MiB on purpose: on hosts whose transparent huge pages are "always", a
// default 8 MiB stack that happens to be 2 MiB-aligned is backed by a 2 MiB
// page at its first touch, which cost 2 MiB of RSS per thread (seen next to
// guest RAM, whose mapping is 2 MiB-aligned). Callbacks an embedder runs on
// these threads have this stack.
//
// SIGPIPE is blocked on these threads: a write to a pipe whose reader left
// fails with EPIPE and the signal is never delivered. No exception leaves
// one of these threads: what escapes the body goes to
// the thread's exception handler (which ends the VM or fails the device,
// with the reason), never to std::terminate and the embedder's process.
#pragma once

#include <pthread.h>

#include <functional>
#include <string>
#include <string_view>

#include "base/result.h"

namespace crosvm {

class Thread {
 public:
#if defined(__SANITIZE_ADDRESS__)
  static constexpr size_t kStackSize = 8 << 20;  // AddressSanitizer's redzones need room
#else
  static constexpr size_t kStackSize = 1 << 20;
#endif

  Thread() = default;
  ~Thread();  // joins a thread that is still joinable
  Thread(Thread&& other) noexcept;
  Thread& operator=(Thread&& other) noexcept;
  Thread(const Thread&) = delete;
  Thread& operator=(const Thread&) = delete;

  // Called on the thread, after `body` threw, with what() of the exception.
  // An exception from the handler itself is dropped.
  using ExceptionHandler = std::function<void(std::string_view)>;

  // Starts `body` on a new thread named `name` (at most 15 characters shown).
  static Result<Thread> start(const std::string& name, std::function<void()> body,
                              ExceptionHandler on_exception);

  bool joinable() const { return started_; }
  void join();
  // True when called on this thread.
  bool is_current() const { return started_ && ::pthread_equal(handle_, ::pthread_self()) != 0; }
  // For signalling the thread (pthread_kill); valid while joinable().
  pthread_t native_handle() const { return handle_; }

 private:
  pthread_t handle_{};
  bool started_ = false;
};

}  // namespace crosvm
