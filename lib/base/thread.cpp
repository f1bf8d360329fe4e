#include "base/thread.h"

#include <signal.h>

#include <exception>
#include <memory>
#include <utility>

namespace crosvm {
namespace {

void* run_body(void* argument) {
  std::unique_ptr<std::function<void()>> body(static_cast<std::function<void()>*>(argument));
  (*body)();
  return nullptr;
}

}  // namespace

Thread::~Thread() { join(); }

Thread::Thread(Thread&& other) noexcept
    : handle_(other.handle_), started_(std::exchange(other.started_, false)) {}

Thread& Thread::operator=(Thread&& other) noexcept {
  if (this != &other) {
    join();
    handle_ = other.handle_;
    started_ = std::exchange(other.started_, false);
  }
  return *this;
}

Result<Thread> Thread::start(const std::string& name, std::function<void()> body,
                             ExceptionHandler on_exception) {
  pthread_attr_t attributes;
  if (int error = ::pthread_attr_init(&attributes); error != 0) {
    return make_errno_error(ErrorCode::kInternal, error, "cannot start thread {}", name);
  }
  ::pthread_attr_setstacksize(&attributes, kStackSize);
  // The thread names itself: for the calling thread glibc sets the name with
  // one prctl(), for another it opens and writes /proc/self/task/TID/comm.
  auto owned = std::make_unique<std::function<void()>>(
      [name = name.substr(0, 15), body = std::move(body), on_exception = std::move(on_exception)] {
        ::pthread_setname_np(::pthread_self(), name.c_str());
        // A write to a pipe whose reader left fails with EPIPE here; the
        // signal stays blocked and pending on this thread, never delivered.
        sigset_t pipe;
        sigemptyset(&pipe);
        sigaddset(&pipe, SIGPIPE);
        ::pthread_sigmask(SIG_BLOCK, &pipe, nullptr);
        std::string what;
        try {
          body();
          return;
        } catch (const std::exception& error) {
          what = error.what();
        } catch (...) {
          what = "an exception of unknown type";
        }
        try {
          if (on_exception) on_exception(what);
        } catch (...) {
        }
      });
  Thread thread;
  const int error = ::pthread_create(&thread.handle_, &attributes, run_body, owned.get());
  ::pthread_attr_destroy(&attributes);
  if (error != 0) return make_errno_error(ErrorCode::kInternal, error, "cannot start thread {}", name);
  owned.release();  // the thread owns it now
  thread.started_ = true;
  return thread;
}

void Thread::join() {
  if (!started_) return;
  ::pthread_join(handle_, nullptr);
  // Only now: until the thread has ended, is_current() must still know it
  // (std::thread forgets its id at the same point).
  started_ = false;
}

}  // namespace crosvm
