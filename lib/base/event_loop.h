// An executor: a Boost.Asio io_context run by threads of the library's own.
// The VM has one (host input, host output, timers, the control socket) and
// every device has one of its own, so that a device busy with its guest's
// requests never holds up the VM's loop or another device. Asio stays
// inside the few translation units that do asynchronous I/O (they include
// <boost/asio/...> themselves).
//
// No exception leaves a loop thread: one that escapes a handler is given
// to the loop's failure handler (which fails the device, or stops the VM
// with the reason), and the loop runs on.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "base/result.h"
#include "base/thread.h"

namespace boost::asio {
class io_context;
}

namespace crosvm {

class EventLoop {
 public:
  // Called on the loop's thread with what() of an exception that escaped a
  // handler. Must not throw.
  using FailureHandler = std::function<void(std::string_view)>;

  // `name` names the loop's threads (at most 15 characters are shown).
  explicit EventLoop(std::string name = "crosvm_loop");
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  boost::asio::io_context& context();
  void post(std::function<void()> task);

  // Before start_threads(): what happens to an escaped exception. Without
  // one, it is written to stderr.
  void set_failure_handler(FailureHandler handler);
  // Runs the loop on `count` library threads until stop().
  Result<void> start_threads(size_t count);
  // Runs the loop on the calling thread (alone, or beside the library's
  // threads) until `done` is true after a handler, or stop(); `done` is
  // checked on this thread before and after each handler. For a caller
  // that would otherwise only wait (crosvm_vm_run): one thread fewer.
  void run_here_until(const std::function<bool()>& done);
  bool running() const;
  // Runs `task` on the loop and returns when it has run. Runs it right here
  // when called on the loop's own thread or when no thread runs the loop.
  // Not concurrently with stop() (the task could be dropped).
  void run_sync(const std::function<void()>& task);
  // Stops the loop (handlers still queued are dropped) and joins its
  // threads. Idempotent; must not be called from a loop thread.
  void stop();
  // True on one of the loop's own threads.
  bool on_loop_thread() const;

 private:
  struct State;
  void run_contained();
  void report_current_exception();  // inside a catch block
  void report(std::string_view what);
  bool running_locked() const;
  std::unique_ptr<State> state_;
};

}  // namespace crosvm
