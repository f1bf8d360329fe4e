#include "vm/event_loop.h"

#include <algorithm>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <optional>

namespace crosvm {

struct EventLoop::State {
  boost::asio::io_context context{1};
  std::optional<boost::asio::executor_work_guard<boost::asio::io_context::executor_type>> work;
  std::vector<Thread> threads;
};

EventLoop::EventLoop() : state_(std::make_unique<State>()) {}

EventLoop::~EventLoop() { stop(); }

boost::asio::io_context& EventLoop::context() { return state_->context; }

void EventLoop::post(std::function<void()> task) {
  boost::asio::post(state_->context, std::move(task));
}

Result<void> EventLoop::start_threads(size_t count) {
  state_->work.emplace(state_->context.get_executor());
  for (size_t i = 0; i < count; ++i) {
    state_->threads.push_back(CROSVM_TRY(Thread::start("crosvm_loop", [this] { state_->context.run(); })));
  }
  return {};
}

void EventLoop::stop() {
  state_->work.reset();
  state_->context.stop();
  for (Thread& thread : state_->threads) thread.join();
  state_->threads.clear();
}

bool EventLoop::on_loop_thread() const {
  return state_->context.get_executor().running_in_this_thread();
}

}  // namespace crosvm
