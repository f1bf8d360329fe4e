#include "devices/virtio/device_worker.h"

#include <fcntl.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <exception>
#include <vector>

#include "base/unique_fd.h"

namespace crosvm::virtio {

struct DeviceWorker::Session : std::enable_shared_from_this<DeviceWorker::Session> {
  Session(boost::asio::io_context& io, std::shared_ptr<std::mutex> lock, KickHandler kick_handler,
          FailureHandler failure_handler)
      : context(io),
        mutex(std::move(lock)),
        on_kick(std::move(kick_handler)),
        on_failure(std::move(failure_handler)) {}

  // Runs `body` (the caller holds the lock); an exception it throws fails
  // the device instead of leaving the worker's thread.
  template <typename Body>
  auto contained(Body&& body) -> decltype(body()) {
    std::string what;
    try {
      return body();
    } catch (const std::exception& error) {
      what = error.what();
    } catch (...) {
      what = "an exception of unknown type";
    }
    try {
      on_failure(what);
    } catch (...) {
    }
    return decltype(body())();
  }

  // On the worker: a kick arrived (or the session starts, or a turn that
  // yielded goes on) for queue `index`.
  void handle(size_t index) {
    Turn turn = Turn::kIdle;
    {
      std::lock_guard guard(*mutex);
      if (!live) return;
      if (index < kick_count) {
        uint64_t count;
        while (::read(descriptors[index]->native_handle(), &count, sizeof(count)) > 0) {
        }
      }
      turn = contained([&] { return on_kick(index); });
      if (turn == Turn::kPaused) {
        paused[index] = true;
        return;
      }
    }
    if (turn == Turn::kMore) {
      boost::asio::post(context, [self = shared_from_this(), index] { self->handle(index); });
    } else {
      wait(index);
    }
  }

  // Under the lock.
  void resume(size_t index) {
    if (index >= paused.size() || !paused[index]) return;
    paused[index] = false;
    boost::asio::post(context, [self = shared_from_this(), index] { self->handle(index); });
  }

  void wait(size_t index) {
    descriptors[index]->async_wait(
        boost::asio::posix::stream_descriptor::wait_read,
        [self = shared_from_this(), index](const boost::system::error_code& error) {
          if (!error) self->handle(index);
        });
  }

  boost::asio::io_context& context;
  std::shared_ptr<std::mutex> mutex;  // the worker's
  KickHandler on_kick;
  FailureHandler on_failure;
  bool live = true;  // guarded by `mutex`
  size_t kick_count = 0;
  std::vector<bool> paused;  // per source; guarded by `mutex`
  // On the worker's thread only (or under run_sync()).
  std::vector<std::unique_ptr<boost::asio::posix::stream_descriptor>> descriptors;
};

DeviceWorker::DeviceWorker(std::string name, const Logger& logger)
    : name_(std::move(name)), logger_(logger), loop_(name_) {
  loop_.set_failure_handler([this](std::string_view what) {
    logger_.error("{}: {}", name_, what);  // a handler outside any session
  });
}

DeviceWorker::~DeviceWorker() {
  stop();
  loop_.stop();
}

Result<void> DeviceWorker::start(std::span<const EventFd* const> kicks, KickHandler on_kick,
                                 FailureHandler on_failure, std::span<const int> host_fds) {
  std::vector<UniqueFd> copies;
  for (const EventFd* kick : kicks) {
    UniqueFd copy(::fcntl(kick->fd(), F_DUPFD_CLOEXEC, 0));
    if (!copy) return make_errno_error(ErrorCode::kIo, errno, "{}: cannot duplicate a queue eventfd", name_);
    // A handler drains its eventfd without waiting; a kick fd from another
    // process (vhost-user) may have come blocking. The flag belongs to the
    // open file, which only ever holds an eventfd's counter.
    const int flags = ::fcntl(copy.get(), F_GETFL);
    if (flags < 0 || ::fcntl(copy.get(), F_SETFL, flags | O_NONBLOCK) != 0) {
      return make_errno_error(ErrorCode::kIo, errno, "{}: cannot make a queue eventfd non-blocking", name_);
    }
    copies.push_back(std::move(copy));
  }
  // A host fd is the device's to read (and to have made non-blocking).
  for (const int fd : host_fds) {
    UniqueFd copy(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
    if (!copy) return make_errno_error(ErrorCode::kIo, errno, "{}: cannot duplicate a host fd", name_);
    copies.push_back(std::move(copy));
  }
  if (!loop_.running()) CROSVM_TRY(loop_.start_threads(1));

  auto session = std::make_shared<Session>(loop_.context(), mutex_, std::move(on_kick), std::move(on_failure));
  session->kick_count = kicks.size();
  session->paused.assign(copies.size(), false);
  {
    std::lock_guard guard(*mutex_);
    std::lock_guard current(session_mutex_);
    if (session_) session_->live = false;
    session_ = session;
  }
  Result<void> armed;
  loop_.run_sync([&] {
    for (UniqueFd& copy : copies) {
      boost::system::error_code error;
      auto descriptor = std::make_unique<boost::asio::posix::stream_descriptor>(loop_.context());
      descriptor->assign(copy.get(), error);
      if (error) {
        armed = make_error(ErrorCode::kIo, "{}: cannot wait on a queue or host fd: {}", name_, error.message());
        return;
      }
      copy.release();
      session->descriptors.push_back(std::move(descriptor));
    }
    // Kicks that came before the session, after what is queued now.
    for (size_t i = 0; i < session->descriptors.size(); ++i) {
      boost::asio::post(loop_.context(), [session, i] { session->handle(i); });
    }
  });
  if (!armed) {
    stop();
    return armed;
  }
  return {};
}

void DeviceWorker::stop() {
  std::shared_ptr<Session> ended;
  {
    std::lock_guard guard(*mutex_);  // waits for a handler that runs now
    std::lock_guard current(session_mutex_);
    if (!session_) return;
    session_->live = false;
    ended = std::move(session_);
  }
  // Closing the descriptors cancels their waits; it happens on the worker,
  // where the waits live, and before this returns.
  loop_.run_sync([&ended] { ended->descriptors.clear(); });
}

void DeviceWorker::resume(size_t position) {
  std::shared_ptr<Session> session;
  {
    std::lock_guard current(session_mutex_);
    session = session_;
  }
  if (!session) return;
  // From a handler the lock is held already; from elsewhere it is taken
  // on the worker.
  loop_.post([session, position] {
    std::lock_guard guard(*session->mutex);
    if (session->live) session->resume(position);
  });
}

void DeviceWorker::post(std::function<void()> task) {
  std::shared_ptr<Session> session;
  {
    std::lock_guard current(session_mutex_);
    session = session_;
  }
  if (!session) return;
  loop_.post([session, task = std::move(task)] {
    std::lock_guard guard(*session->mutex);
    if (session->live) session->contained(task);
  });
}

}  // namespace crosvm::virtio
