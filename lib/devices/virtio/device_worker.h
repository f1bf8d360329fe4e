// Runs a virtio device's work on an executor of the device's own (one
// thread, started with the first activation): it waits on the queues' kick
// eventfds and calls the device's handler, so a device's handlers never run
// concurrently, never on a vCPU thread, and a device kept busy by its guest
// never holds up the VM's loop (the control socket, host input) or another
// device.
//
// Each activation is a session. Handlers run under the worker's lock and
// only while the session is live; stop() takes the lock, ends the session
// and closes the session's copies of the kick eventfds before it returns.
// So when stop() returns (from a vCPU thread resetting the device, say) no
// handler runs or will touch guest memory again, and nothing of the session
// stays open in the process, however many resets a driver makes.
//
// A handler serves a bounded amount of work per turn and says whether more
// is waiting: then the worker runs it again after whatever else is queued
// (the device's other queues, host input, a reset) instead of waiting for a
// kick. An exception that escapes a handler fails the device (the failure
// handler), never the process.
//
// A device that also reads from the host (a NIC's TAP) gives the session
// those fds too: the worker waits for them to be readable and calls the
// same handler, without reading them itself. A handler that cannot take
// what waits there (the guest posted no buffer) pauses that source, and
// nothing is waited on for it, so a full host queue costs no CPU, until
// the device resumes it (the guest's next kick).
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>

#include "base/event_fd.h"
#include "base/event_loop.h"
#include "base/log.h"
#include "base/result.h"

namespace crosvm::virtio {

class DeviceWorker {
 public:
  // What a handler's turn left: nothing until the next kick, or more work
  // that it yielded (it runs again soon, without a kick), or (a host fd
  // only) nothing is to be waited for until resume().
  enum class Turn { kIdle, kMore, kPaused };
  using KickHandler = std::function<Turn(size_t)>;
  // Called under the lock, on the worker's thread, with what an escaped
  // exception said. Must not throw.
  using FailureHandler = std::function<void(std::string_view)>;

  // `name` names the worker's thread.
  DeviceWorker(std::string name, const Logger& logger);
  ~DeviceWorker();
  DeviceWorker(const DeviceWorker&) = delete;
  DeviceWorker& operator=(const DeviceWorker&) = delete;

  // Starts a session: each kick of `kicks[i]` calls on_kick(i) (and once at
  // the start, for kicks that came before); host fd `host_fds[j]` being
  // readable calls on_kick(kicks.size() + j). The fds are duplicated; the
  // copies live exactly as long as the session.
  Result<void> start(std::span<const EventFd* const> kicks, KickHandler on_kick, FailureHandler on_failure,
                     std::span<const int> host_fds = {});
  // Waits on source `position` again after its handler returned kPaused
  // (nothing otherwise). From any thread, a handler included.
  void resume(size_t position);
  // Ends the session. Not from inside a handler.
  void stop();
  // Runs `task` on the worker, under the lock, if the session that is live
  // now is still live then (e.g. host input for a console). From any
  // thread, a handler included.
  void post(std::function<void()> task);

  // The lock handlers run under, for device state shared with other threads.
  std::mutex& lock() { return *mutex_; }

 private:
  struct Session;
  std::string name_;
  Logger logger_;
  EventLoop loop_;  // the device's own executor
  // Shared with the sessions: a handler still queued when the worker goes
  // away finds the session dead under a mutex that still exists.
  std::shared_ptr<std::mutex> mutex_ = std::make_shared<std::mutex>();
  // Which session is live; its own lock, so that post() works from inside
  // a handler (which holds *mutex_).
  std::mutex session_mutex_;
  std::shared_ptr<Session> session_;  // guarded by session_mutex_
};

}  // namespace crosvm::virtio
