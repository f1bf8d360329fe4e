#include "devices/virtio/device_worker.h"

#include <fcntl.h>
#include <unistd.h>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/strand.hpp>
#include <vector>

namespace crosvm::virtio {

struct DeviceWorker::Session : std::enable_shared_from_this<DeviceWorker::Session> {
  using Strand = boost::asio::strand<boost::asio::io_context::executor_type>;

  Session(boost::asio::io_context& context, std::shared_ptr<std::mutex> lock,
          std::function<void(size_t)> handler)
      : strand(boost::asio::make_strand(context)), mutex(std::move(lock)), on_kick(std::move(handler)) {}

  // On the strand: a kick arrived (or the session starts) for queue `index`.
  void handle(size_t index) {
    {
      std::lock_guard guard(*mutex);
      if (!live) return;
      uint64_t count;
      while (::read(descriptors[index]->native_handle(), &count, sizeof(count)) > 0) {
      }
      on_kick(index);
    }
    wait(index);
  }

  void wait(size_t index) {
    descriptors[index]->async_wait(
        boost::asio::posix::stream_descriptor::wait_read,
        boost::asio::bind_executor(strand, [self = shared_from_this(), index](const boost::system::error_code& error) {
          if (!error) self->handle(index);
        }));
  }

  Strand strand;
  std::shared_ptr<std::mutex> mutex;  // the worker's
  std::function<void(size_t)> on_kick;
  bool live = true;   // guarded by `mutex`
  std::vector<std::unique_ptr<boost::asio::posix::stream_descriptor>> descriptors;  // strand only
};

DeviceWorker::DeviceWorker(boost::asio::io_context& context, std::string name, const Logger& logger)
    : context_(context), name_(std::move(name)), logger_(logger) {}

DeviceWorker::~DeviceWorker() { stop(); }

Result<void> DeviceWorker::start(std::span<const EventFd* const> kicks,
                                 std::function<void(size_t)> on_kick) {
  std::vector<int> copies;
  for (const EventFd* kick : kicks) {
    const int copy = ::fcntl(kick->fd(), F_DUPFD_CLOEXEC, 0);
    if (copy < 0) {
      const int error = errno;
      for (int fd : copies) ::close(fd);
      return make_errno_error(ErrorCode::kIo, error, "{}: cannot duplicate a queue eventfd", name_);
    }
    copies.push_back(copy);
  }

  std::lock_guard guard(*mutex_);
  if (session_) session_->live = false;
  auto session = std::make_shared<Session>(context_, mutex_, std::move(on_kick));
  session_ = session;
  boost::asio::post(session->strand, [session, copies = std::move(copies)] {
    for (int fd : copies) {
      session->descriptors.push_back(
          std::make_unique<boost::asio::posix::stream_descriptor>(session->strand, fd));
    }
    for (size_t i = 0; i < session->descriptors.size(); ++i) session->handle(i);
  });
  return {};
}

void DeviceWorker::stop() {
  std::shared_ptr<Session> ended;
  {
    std::lock_guard guard(*mutex_);
    if (!session_) return;
    session_->live = false;
    ended = std::move(session_);
  }
  // Closing the descriptors cancels the waits; it happens on the strand,
  // where the waits live. If the executor has stopped, it never runs and the
  // executor's destruction frees everything.
  boost::asio::post(ended->strand, [ended] { ended->descriptors.clear(); });
}

void DeviceWorker::post(std::function<void()> task) {
  std::shared_ptr<Session> session;
  {
    std::lock_guard guard(*mutex_);
    session = session_;
  }
  if (!session) return;
  boost::asio::post(session->strand, [session, task = std::move(task)] {
    std::lock_guard guard(*session->mutex);
    if (session->live) task();
  });
}

}  // namespace crosvm::virtio
