#include "vm/fd_watch.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>

#include "base/unique_fd.h"

namespace crosvm {
namespace {

constexpr uint32_t kBothEvents = FdWatches::kReadable | FdWatches::kWritable;

// What of `wanted` the descriptor has now: epoll said "something", poll()
// says which, so that one wait that fired for reading does not report
// writing too, and an error or hang-up reaches the callback as readiness
// (its own read or write then sees it).
uint32_t ready_now(int fd, uint32_t wanted) {
  pollfd entry{fd, 0, 0};
  if ((wanted & FdWatches::kReadable) != 0) entry.events |= POLLIN;
  if ((wanted & FdWatches::kWritable) != 0) entry.events |= POLLOUT;
  if (::poll(&entry, 1, 0) <= 0) return 0;
  uint32_t ready = 0;
  if ((wanted & FdWatches::kReadable) != 0 && (entry.revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
    ready |= FdWatches::kReadable;
  }
  if ((wanted & FdWatches::kWritable) != 0 && (entry.revents & (POLLOUT | POLLHUP | POLLERR)) != 0) {
    ready |= FdWatches::kWritable;
  }
  return ready;
}

}  // namespace

// Touched on the loop's thread only once add() has posted its first wait.
struct FdWatches::Watch : std::enable_shared_from_this<FdWatches::Watch> {
  Watch(boost::asio::io_context& context, Callback callback, FdWatches& owner)
      : stream(context), callback(std::move(callback)), owner(owner) {}

  void wait_for(uint32_t events) {
    if (stopped) return;
    wanted = events;
    const uint64_t round = ++rounds;
    auto on_ready = [self = shared_from_this(), round](const boost::system::error_code& error) {
      self->fired(round, error);
    };
    using Descriptor = boost::asio::posix::descriptor_base;
    if ((events & kReadable) != 0) stream.async_wait(Descriptor::wait_read, on_ready);
    if ((events & kWritable) != 0) stream.async_wait(Descriptor::wait_write, on_ready);
  }

  void fired(uint64_t round, const boost::system::error_code& error) {
    // The other wait of a round that already fired, cancelled: nothing new.
    if (stopped || round != rounds) return;
    ++rounds;
    boost::system::error_code ignored;
    stream.cancel(ignored);
    // A failed wait is reported as readiness: the callback's own read or
    // write says what is wrong, as after poll().
    const uint32_t ready = error ? wanted : ready_now(stream.native_handle(), wanted);
    if (ready == 0) {  // spurious: nothing the callback asked for
      wait_for(wanted);
      return;
    }
    uint32_t next = 0;
    try {
      next = callback(stream.native_handle(), ready) & kBothEvents;
    } catch (...) {
      end();
      throw;  // to the loop's failure handler
    }
    if (stopped) return;
    if (next == 0) {
      end();
    } else {
      wait_for(next);
    }
  }

  void stop() {
    stopped = true;
    boost::system::error_code ignored;
    stream.cancel(ignored);
    stream.close(ignored);
  }

  void end() {
    stop();
    owner.remove(this);
  }

  boost::asio::posix::stream_descriptor stream;  // on our duplicate
  Callback callback;
  FdWatches& owner;
  uint32_t wanted = 0;
  uint64_t rounds = 0;
  bool stopped = false;
};

FdWatches::~FdWatches() { shutdown(); }

Result<void> FdWatches::add(int fd, uint32_t events, Callback callback) {
  if (events == 0 || (events & ~kBothEvents) != 0) {
    return make_error(ErrorCode::kInvalidArgument,
                      "watch events {:#x}: expected CROSVM_WATCH_READABLE, CROSVM_WATCH_WRITABLE or both",
                      events);
  }
  if (!callback) return make_error(ErrorCode::kInvalidArgument, "a watch needs a callback");
  struct stat status {};
  if (fd < 0 || ::fstat(fd, &status) != 0) {
    return make_errno_error(ErrorCode::kInvalidArgument, fd < 0 ? EBADF : errno, "cannot watch fd {}", fd);
  }
  if (S_ISREG(status.st_mode) || S_ISDIR(status.st_mode)) {
    return make_error(ErrorCode::kInvalidArgument,
                      "cannot watch fd {}: a file is always ready, there is nothing to wait for", fd);
  }
  UniqueFd copy(::fcntl(fd, F_DUPFD_CLOEXEC, 3));
  if (!copy) return make_errno_error(ErrorCode::kIo, errno, "cannot duplicate fd {} to watch it", fd);

  auto watch = std::make_shared<Watch>(loop_.context(), std::move(callback), *this);
  {
    std::lock_guard lock(mutex_);
    if (shut_down_) return make_error(ErrorCode::kState, "the VM has stopped: nothing is watched any more");
    if (watches_.size() >= kMaxWatches) {
      return make_error(ErrorCode::kInvalidArgument, "at most {} descriptors are watched at once", kMaxWatches);
    }
    boost::system::error_code error;
    watch->stream.assign(copy.get(), error);
    if (error) return make_error(ErrorCode::kIo, "cannot watch fd {}: {}", fd, error.message());
    copy.release();  // the stream's now
    watches_.push_back(watch);
  }
  boost::asio::post(loop_.context(), [watch, events] { watch->wait_for(events); });
  return {};
}

void FdWatches::remove(const Watch* watch) {
  std::lock_guard lock(mutex_);
  std::erase_if(watches_, [watch](const std::shared_ptr<Watch>& each) { return each.get() == watch; });
}

void FdWatches::shutdown() {
  std::vector<std::shared_ptr<Watch>> ending;
  {
    std::lock_guard lock(mutex_);
    shut_down_ = true;
    ending.swap(watches_);
  }
  for (auto& watch : ending) watch->stop();
}

size_t FdWatches::size() const {
  std::lock_guard lock(mutex_);
  return watches_.size();
}

}  // namespace crosvm
