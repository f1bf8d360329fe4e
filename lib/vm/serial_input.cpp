#include "vm/serial_input.h"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <vector>

namespace crosvm {

struct SerialInput::State : std::enable_shared_from_this<SerialInput::State> {
  State(boost::asio::io_context& context, std::shared_ptr<HostInput> target)
      : stream(context), device(std::move(target)) {}

  void read_more() {
    if (stopped) return;
    stream.async_read_some(boost::asio::buffer(buffer), [self = shared_from_this()](
                                                            const boost::system::error_code& error,
                                                            size_t length) {
      if (error || length == 0 || self->stopped) return;  // EOF or cancelled: input ends
      self->pending.assign(self->buffer.begin(), self->buffer.begin() + static_cast<ptrdiff_t>(length));
      self->deliver();
    });
  }

  // Hands pending bytes to the device; reads more only once all are taken.
  void deliver() {
    if (stopped) return;
    size_t accepted = device->queue_input(pending);
    pending.erase(pending.begin(), pending.begin() + static_cast<ptrdiff_t>(accepted));
    if (pending.empty()) read_more();
    // Otherwise the device's space listener calls deliver() again.
  }

  boost::asio::posix::stream_descriptor stream;
  std::shared_ptr<HostInput> device;
  std::array<uint8_t, 512> buffer{};
  std::vector<uint8_t> pending;
  int original_flags = -1;
  int original_fd = -1;
  bool stopped = false;
};

SerialInput::~SerialInput() { shutdown(); }

Result<std::unique_ptr<SerialInput>> SerialInput::create(EventLoop& loop, int fd,
                                                          std::shared_ptr<HostInput> device) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0) return make_errno_error(ErrorCode::kIo, errno, "input fd {}", fd);
  const int copy = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) return make_errno_error(ErrorCode::kIo, errno, "cannot duplicate fd {}", fd);

  auto state = std::make_shared<State>(loop.context(), std::move(device));
  boost::system::error_code error;
  state->stream.assign(copy, error);
  if (error) {
    ::close(copy);
    return make_error(ErrorCode::kIo, "cannot read input from fd {}: {}", fd, error.message());
  }
  state->original_flags = flags;
  state->original_fd = fd;
  auto input = std::unique_ptr<SerialInput>(new SerialInput());
  // The device calls back from another thread: only post to the loop from there.
  std::weak_ptr<State> weak = state;
  boost::asio::io_context& context = loop.context();
  state->device->set_input_space_listener([weak, &context] {
    if (auto alive = weak.lock()) {
      boost::asio::post(context, [alive] { alive->deliver(); });
    }
  });
  input->shared_ = std::move(state);
  return input;
}

void SerialInput::start() {
  if (shared_) shared_->read_more();
}

void SerialInput::shutdown() {
  if (!shared_ || shared_->stopped) return;
  shared_->stopped = true;
  shared_->device->set_input_space_listener({});
  boost::system::error_code ignored;
  shared_->stream.cancel(ignored);
  shared_->stream.close(ignored);
  // Asio made the shared file description non-blocking; give it back as it was.
  if ((shared_->original_flags & O_NONBLOCK) == 0) {
    ::fcntl(shared_->original_fd, F_SETFL, shared_->original_flags);
  }
}

}  // namespace crosvm
