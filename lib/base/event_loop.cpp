#include "base/event_loop.h"

#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <exception>
#include <future>
#include <mutex>
#include <optional>
#include <vector>

#include "base/file_io.h"

namespace crosvm {

struct EventLoop::State {
  explicit State(std::string thread_name) : name(std::move(thread_name)) {}
  std::string name;
  boost::asio::io_context context{1};
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work;
  FailureHandler on_failure;
  // `threads` and `callers` against running() from other threads; held
  // by run_sync() from its check to its post.
  mutable std::mutex threads_mutex;
  std::vector<Thread> threads;
  size_t callers = 0;  // threads inside run_here_until()
};

EventLoop::EventLoop(std::string name) : state_(std::make_unique<State>(std::move(name))) {}

EventLoop::~EventLoop() { stop(); }

boost::asio::io_context& EventLoop::context() { return state_->context; }

void EventLoop::post(std::function<void()> task) {
  boost::asio::post(state_->context, std::move(task));
}

void EventLoop::set_failure_handler(FailureHandler handler) { state_->on_failure = std::move(handler); }

// Asio lets an exception from a handler out of run(); run() may then be
// called again, and the rest of the queue is served.
void EventLoop::run_contained() {
  for (;;) {
    try {
      state_->context.run();
      return;
    } catch (...) {
      report_current_exception();
    }
  }
}

void EventLoop::report_current_exception() {
  std::string what;
  try {
    throw;
  } catch (const std::exception& error) {
    what = error.what();
  } catch (...) {
    what = "an exception of unknown type";
  }
  try {
    report(what);
  } catch (...) {
    // The handler must not throw; if it does anyway, the loop still runs.
  }
}

void EventLoop::report(std::string_view what) {
  if (state_->on_failure) {
    state_->on_failure(what);
    return;
  }
  const std::string line = fmt::format("crosvm: error: {}: {}\n", state_->name, what);
  (void)write_all(STDERR_FILENO, std::span(reinterpret_cast<const uint8_t*>(line.data()), line.size()));
}

Result<void> EventLoop::start_threads(size_t count) {
  state_->work.emplace(state_->context.get_executor());
  std::lock_guard lock(state_->threads_mutex);
  for (size_t i = 0; i < count; ++i) {
    state_->threads.push_back(CROSVM_TRY(Thread::start(
        state_->name, [this] { run_contained(); }, [this](std::string_view what) { report(what); })));
  }
  return {};
}

void EventLoop::run_here_until(const std::function<bool()>& done) {
  if (!state_->work) state_->work.emplace(state_->context.get_executor());
  {
    std::lock_guard lock(state_->threads_mutex);
    ++state_->callers;
  }
  // run_one() returns after each handler; the one that makes `done` true
  // is the last this thread waits for.
  while (!done() && !state_->context.stopped()) {
    try {
      state_->context.run_one();
    } catch (...) {
      report_current_exception();
    }
  }
  {
    std::lock_guard lock(state_->threads_mutex);
    --state_->callers;
  }
  // What run_sync() posted while it saw this thread serve the loop: from
  // here on it runs its tasks itself.
  for (;;) {
    try {
      state_->context.poll();
      break;
    } catch (...) {
      report_current_exception();
    }
  }
}

bool EventLoop::running_locked() const {
  return (!state_->threads.empty() || state_->callers > 0) && !state_->context.stopped();
}

bool EventLoop::running() const {
  std::lock_guard lock(state_->threads_mutex);
  return running_locked();
}

void EventLoop::run_sync(const std::function<void()>& task) {
  std::promise<void> done;
  {
    std::unique_lock lock(state_->threads_mutex);
    if (on_loop_thread() || !running_locked()) {
      lock.unlock();
      task();
      return;
    }
    boost::asio::post(state_->context, [&task, &done] {
      struct Signal {  // the caller is released even if `task` throws
        std::promise<void>& done;
        ~Signal() { done.set_value(); }
      } signal{done};
      task();
    });
  }
  done.get_future().wait();
}

void EventLoop::stop() {
  state_->work.reset();
  state_->context.stop();
  std::vector<Thread> threads;
  {
    std::lock_guard lock(state_->threads_mutex);
    threads.swap(state_->threads);
  }
  for (Thread& thread : threads) thread.join();
}

bool EventLoop::on_loop_thread() const {
  return state_->context.get_executor().running_in_this_thread();
}

}  // namespace crosvm
