// Runs a virtio device's work on the VM's executor (a Boost.Asio io_context):
// it waits on the queues' kick eventfds and calls the device's handler on a
// strand, so a device's handlers never run concurrently, and never on a vCPU
// thread.
//
// Each activation is a session. Handlers run under the worker's lock and
// only while the session is live; stop() takes the lock and ends the
// session, so when it returns (from a vCPU thread resetting the device, say)
// no handler is running and none will touch guest memory again, without
// waiting for the executor.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>

#include "base/event_fd.h"
#include "base/log.h"
#include "base/result.h"

namespace boost::asio {
class io_context;
}

namespace crosvm::virtio {

class DeviceWorker {
 public:
  DeviceWorker(boost::asio::io_context& context, std::string name, const Logger& logger);
  ~DeviceWorker();
  DeviceWorker(const DeviceWorker&) = delete;
  DeviceWorker& operator=(const DeviceWorker&) = delete;

  // Starts a session: each kick of `kicks[i]` calls on_kick(i) (and once at
  // the start, for kicks that came before). The eventfds are duplicated.
  Result<void> start(std::span<const EventFd* const> kicks, std::function<void(size_t)> on_kick);
  // Ends the session. Not from inside a handler.
  void stop();
  // Runs `task` on the strand, under the lock, if the session that is live
  // now is still live then (e.g. host input for a console).
  void post(std::function<void()> task);

  // The lock handlers run under, for device state shared with other threads.
  std::mutex& lock() { return *mutex_; }

 private:
  struct Session;
  boost::asio::io_context& context_;
  std::string name_;
  Logger logger_;
  // Shared with the sessions: a handler still queued when the worker goes
  // away finds the session dead under a mutex that still exists.
  std::shared_ptr<std::mutex> mutex_ = std::make_shared<std::mutex>();
  std::shared_ptr<Session> session_;  // guarded by *mutex_
};

}  // namespace crosvm::virtio
