#include "base/thread.h"

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

Result<Thread> Thread::start(const std::string& name, std::function<void()> body) {
  pthread_attr_t attributes;
  if (int error = ::pthread_attr_init(&attributes); error != 0) {
    return make_errno_error(ErrorCode::kInternal, error, "cannot start thread {}", name);
  }
  ::pthread_attr_setstacksize(&attributes, kStackSize);
  auto owned = std::make_unique<std::function<void()>>(std::move(body));
  Thread thread;
  const int error = ::pthread_create(&thread.handle_, &attributes, run_body, owned.get());
  ::pthread_attr_destroy(&attributes);
  if (error != 0) return make_errno_error(ErrorCode::kInternal, error, "cannot start thread {}", name);
  owned.release();  // the thread owns it now
  thread.started_ = true;
  ::pthread_setname_np(thread.handle_, name.substr(0, 15).c_str());
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
