// The VM's executor: a Boost.Asio io_context on which everything that is not
// a vCPU runs (host input, device queues, timers, the control socket). The
// library runs it on its own threads; Asio stays inside the few translation
// units that do asynchronous I/O (they include <boost/asio.hpp> themselves).
#pragma once

#include <functional>
#include <memory>
#include <vector>

#include "base/result.h"
#include "base/thread.h"

namespace boost::asio {
class io_context;
}

namespace crosvm {

class EventLoop {
 public:
  EventLoop();
  ~EventLoop();
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;

  boost::asio::io_context& context();
  void post(std::function<void()> task);

  // Runs the loop on `count` library threads until stop().
  Result<void> start_threads(size_t count);
  // Stops the loop (handlers still queued are dropped) and joins its
  // threads. Idempotent; must not be called from a loop thread.
  void stop();
  // True on one of the loop's own threads.
  bool on_loop_thread() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace crosvm
