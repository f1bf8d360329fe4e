#include "sandbox/stream_pipes.h"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <cerrno>
#include <mutex>
#include <vector>

namespace crosvm::sandbox {
namespace {

Result<void> make_nonblocking(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
    return make_errno_error(ErrorCode::kIo, errno, "console pipe");
  }
  return {};
}

}  // namespace

struct OutputPump::State : std::enable_shared_from_this<OutputPump::State> {
  State(boost::asio::io_context& context, std::shared_ptr<OutputStream> target)
      : pipe(context), output(std::move(target)) {}

  void read_more() {
    if (stopped) return;
    pipe.async_wait(boost::asio::posix::descriptor_base::wait_read,
                    [self = shared_from_this()](const boost::system::error_code& error) {
                      if (error || self->stopped) return;
                      self->read_and_deliver();
                    });
  }

  void read_and_deliver() {
    const ssize_t got = ::read(pipe.native_handle(), buffer.data(), buffer.size());
    if (got < 0 && (errno == EAGAIN || errno == EINTR)) return read_more();
    if (got <= 0) return;  // the device process closed it (or is gone): output ends
    pending.assign(buffer.begin(), buffer.begin() + got);
    offset = 0;
    deliver();
  }

  // Hands the pending bytes on; reads more once all are taken.
  void deliver() {
    if (stopped) return;
    offset += output->write_some(std::span(pending).subspan(offset));
    if (offset == pending.size()) return read_more();
    output->when_writable([weak = weak_from_this()] {
      if (auto self = weak.lock()) {
        boost::asio::post(self->pipe.get_executor(), [self] { self->deliver(); });
      }
    });
  }

  boost::asio::posix::stream_descriptor pipe;
  std::shared_ptr<OutputStream> output;
  std::array<uint8_t, 4096> buffer{};
  std::vector<uint8_t> pending;
  size_t offset = 0;
  bool stopped = false;  // on the loop's thread
};

Result<std::unique_ptr<OutputPump>> OutputPump::create(EventLoop& loop, UniqueFd pipe,
                                                       std::shared_ptr<OutputStream> output) {
  CROSVM_TRY(make_nonblocking(pipe.get()));
  std::unique_ptr<OutputPump> pump(new OutputPump());
  pump->state_ = std::make_shared<State>(loop.context(), std::move(output));
  boost::system::error_code error;
  pump->state_->pipe.assign(pipe.release(), error);
  if (error) return make_error(ErrorCode::kIo, "console pipe: {}", error.message());
  pump->state_->read_more();
  return pump;
}

OutputPump::~OutputPump() { state_->stopped = true; }

void OutputPump::drain_and_stop() {
  State& state = *state_;
  if (state.stopped) return;
  state.stopped = true;
  state.output->when_writable({});
  if (state.offset < state.pending.size()) {
    state.output->write_waiting(std::span(state.pending).subspan(state.offset));
  }
  state.pending.clear();
  for (int i = 0; i < 64; ++i) {  // what is in the pipe now: at most its 64 KiB
    const ssize_t got = ::read(state.pipe.native_handle(), state.buffer.data(), state.buffer.size());
    if (got <= 0) break;
    state.output->write_waiting(std::span(state.buffer).first(static_cast<size_t>(got)));
  }
  boost::system::error_code ignored;
  state.pipe.cancel(ignored);
}

struct PipeInput::State : std::enable_shared_from_this<PipeInput::State> {
  explicit State(boost::asio::io_context& context) : pipe(context) {}
  boost::asio::posix::stream_descriptor pipe;
  std::mutex mutex;
  std::function<void()> listener;  // under mutex
  bool waiting = false;            // under mutex: a wait for room is armed
  bool stopped = false;            // under mutex
};

Result<std::shared_ptr<PipeInput>> PipeInput::create(EventLoop& loop, UniqueFd pipe) {
  CROSVM_TRY(make_nonblocking(pipe.get()));
  std::shared_ptr<PipeInput> input(new PipeInput());
  input->state_ = std::make_shared<State>(loop.context());
  boost::system::error_code error;
  input->state_->pipe.assign(pipe.release(), error);
  if (error) return make_error(ErrorCode::kIo, "console pipe: {}", error.message());
  return input;
}

PipeInput::~PipeInput() { stop(); }

void PipeInput::stop() {
  std::lock_guard lock(state_->mutex);
  state_->stopped = true;
  state_->listener = {};
}

size_t PipeInput::queue_input(std::span<const uint8_t> bytes) {
  if (bytes.empty()) return 0;
  ssize_t written;
  do {
    written = ::write(state_->pipe.native_handle(), bytes.data(), bytes.size());
  } while (written < 0 && errno == EINTR);
  if (written >= 0 && static_cast<size_t>(written) == bytes.size()) return bytes.size();
  if (written < 0 && errno != EAGAIN) return bytes.size();  // the device is gone: input goes nowhere
  // Full: say when there is room again.
  std::lock_guard lock(state_->mutex);
  if (!state_->waiting && !state_->stopped) {
    state_->waiting = true;
    boost::asio::post(state_->pipe.get_executor(), [self = state_] {
      self->pipe.async_wait(boost::asio::posix::descriptor_base::wait_write,
                            [self](const boost::system::error_code& error) {
                              std::function<void()> listener;
                              {
                                std::lock_guard lock(self->mutex);
                                self->waiting = false;
                                if (error || self->stopped) return;
                                listener = self->listener;
                              }
                              if (listener) listener();
                            });
    });
  }
  return written > 0 ? static_cast<size_t>(written) : 0;
}

void PipeInput::set_input_space_listener(std::function<void()> listener) {
  std::lock_guard lock(state_->mutex);
  state_->listener = std::move(listener);
}

}  // namespace crosvm::sandbox
