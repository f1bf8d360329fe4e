#include "devices/virtio/net/stream.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

#include "devices/virtio/net/net.h"

namespace crosvm::virtio {
namespace {

// `pieces` without their first `bytes` bytes.
std::span<iovec> skip_bytes(std::span<iovec> pieces, size_t bytes) {
  while (!pieces.empty() && bytes >= pieces.front().iov_len) {
    bytes -= pieces.front().iov_len;
    pieces = pieces.subspan(1);
  }
  if (!pieces.empty()) {
    pieces.front().iov_base = static_cast<uint8_t*>(pieces.front().iov_base) + bytes;
    pieces.front().iov_len -= bytes;
  }
  return pieces;
}

}  // namespace

FrameStream::FrameStream(UniqueFd socket, std::string description)
    : socket_(std::move(socket)), description_(std::move(description)), frame_(kMaxFrameBytes) {}

Result<std::unique_ptr<FrameStream>> FrameStream::create(UniqueFd socket, std::string description) {
  int type = 0;
  socklen_t size = sizeof(type);
  if (::getsockopt(socket.get(), SOL_SOCKET, SO_TYPE, &type, &size) != 0 || type != SOCK_STREAM) {
    return make_error(ErrorCode::kDevice, "{}: not a stream socket", description);
  }
  const int flags = ::fcntl(socket.get(), F_GETFL);
  if (flags < 0 || ::fcntl(socket.get(), F_SETFL, flags | O_NONBLOCK) != 0) {
    return make_errno_error(ErrorCode::kDevice, errno, "{}: cannot make it non-blocking", description);
  }
  return std::unique_ptr<FrameStream>(new FrameStream(std::move(socket), std::move(description)));
}

Result<size_t> FrameStream::read_some(uint8_t* into, size_t length) {
  while (true) {
    const ssize_t got = ::recv(socket_.get(), into, length, MSG_DONTWAIT);
    if (got > 0) return static_cast<size_t>(got);
    if (got == 0) return make_error(ErrorCode::kIo, "{}: the peer closed the connection", description_);
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return 0;
    return make_errno_error(ErrorCode::kIo, errno, "{}: read", description_);
  }
}

Result<size_t> FrameStream::receive(std::span<uint8_t> buffer) {
  while (true) {
    // Only what the current frame still lacks is read: a whole frame never
    // waits here while its socket looks empty.
    if (prefix_got_ < sizeof(prefix_)) {
      const size_t got = CROSVM_TRY(read_some(prefix_ + prefix_got_, sizeof(prefix_) - prefix_got_));
      if (got == 0) return 0;
      prefix_got_ += got;
      if (prefix_got_ < sizeof(prefix_)) continue;
      frame_length_ = (size_t{prefix_[0]} << 24) | (size_t{prefix_[1]} << 16) | (size_t{prefix_[2]} << 8) | prefix_[3];
      frame_got_ = 0;
      if (frame_length_ > kMaxFrameBytes) {
        return make_error(ErrorCode::kProtocol, "{}: a {}-byte frame (at most {}): the stream is out of step",
                          description_, frame_length_, kMaxFrameBytes);
      }
    }
    if (frame_got_ < frame_length_) {
      const size_t got = CROSVM_TRY(read_some(frame_.data() + frame_got_, frame_length_ - frame_got_));
      if (got == 0) return 0;
      frame_got_ += got;
      if (frame_got_ < frame_length_) continue;
    }
    prefix_got_ = 0;
    // An empty frame or one the caller has no room for is dropped.
    if (frame_length_ > 0 && frame_length_ <= buffer.size()) {
      std::memcpy(buffer.data(), frame_.data(), frame_length_);
      return frame_length_;
    }
  }
}

Result<NetBackend::Sent> FrameStream::send(std::span<const iovec> frame) {
  size_t length = 0;
  for (const iovec& piece : frame) length += piece.iov_len;
  if (length > kMaxFrameBytes) return Sent::kRefused;
  const uint8_t prefix[4] = {static_cast<uint8_t>(length >> 24), static_cast<uint8_t>(length >> 16),
                             static_cast<uint8_t>(length >> 8), static_cast<uint8_t>(length)};
  send_iovecs_.clear();
  send_iovecs_.push_back({const_cast<uint8_t*>(prefix), sizeof(prefix)});
  send_iovecs_.insert(send_iovecs_.end(), frame.begin(), frame.end());
  msghdr message{};
  message.msg_iov = send_iovecs_.data();
  message.msg_iovlen = send_iovecs_.size();
  ssize_t sent;
  do {
    sent = ::sendmsg(socket_.get(), &message, MSG_DONTWAIT | MSG_NOSIGNAL);
  } while (sent < 0 && errno == EINTR);
  if (sent < 0) {
    if (errno == EAGAIN || errno == ENOBUFS) return Sent::kNoRoom;
    return make_errno_error(ErrorCode::kIo, errno, "{}: write", description_);
  }
  if (static_cast<size_t>(sent) == length + sizeof(prefix)) return Sent::kSent;
  // Part of the frame went: the rest must follow before anything else.
  CROSVM_TRY(finish_send(skip_bytes(send_iovecs_, static_cast<size_t>(sent))));
  return Sent::kSent;
}

Result<void> FrameStream::finish_send(std::span<iovec> rest) {
  const auto deadline = std::chrono::steady_clock::now() + kSendTimeout;
  while (!rest.empty()) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      return make_error(ErrorCode::kTimeout, "{}: the peer took no more of a frame for {} ms", description_,
                        kSendTimeout.count());
    }
    pollfd entry{socket_.get(), POLLOUT, 0};
    const int ready = ::poll(&entry, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno != EINTR) return make_errno_error(ErrorCode::kIo, errno, "{}: poll", description_);
    if (ready <= 0) continue;
    msghdr message{};
    message.msg_iov = rest.data();
    message.msg_iovlen = rest.size();
    const ssize_t sent = ::sendmsg(socket_.get(), &message, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (sent < 0) {
      if (errno == EINTR || errno == EAGAIN || errno == ENOBUFS) continue;
      return make_errno_error(ErrorCode::kIo, errno, "{}: write", description_);
    }
    rest = skip_bytes(rest, static_cast<size_t>(sent));
  }
  return {};
}

}  // namespace crosvm::virtio
