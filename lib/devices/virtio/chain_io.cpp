#include "devices/virtio/chain_io.h"

#include <algorithm>
#include <cstring>

namespace crosvm::virtio {

ChainCursor::ChainCursor(const GuestMemory& memory, std::span<const GuestBuffer> buffers)
    : memory_(memory), buffers_(buffers) {
  for (const GuestBuffer& buffer : buffers) remaining_ += buffer.length;
}

Result<std::vector<iovec>> ChainCursor::take(uint64_t length) {
  if (length > remaining_) {
    return make_error(ErrorCode::kDevice, "the request needs {} more bytes, the chain has {}", length,
                      remaining_);
  }
  std::vector<iovec> pieces;
  uint64_t left = length;
  while (left > 0) {
    const GuestBuffer& buffer = buffers_[buffer_index_];
    const uint64_t step = std::min<uint64_t>(left, buffer.length - buffer_offset_);
    std::span<uint8_t> host = CROSVM_TRY(memory_.slice(buffer.address + buffer_offset_, step));
    pieces.push_back(iovec{host.data(), host.size()});
    buffer_offset_ += step;
    left -= step;
    if (buffer_offset_ == buffer.length) {
      ++buffer_index_;
      buffer_offset_ = 0;
    }
  }
  remaining_ -= length;
  consumed_ += length;
  return pieces;
}

Result<std::span<uint8_t>> ChainCursor::peek(uint64_t max) {
  if (remaining_ == 0 || max == 0) return std::span<uint8_t>();
  const GuestBuffer& buffer = buffers_[buffer_index_];
  const uint64_t step = std::min({max, remaining_, buffer.length - buffer_offset_});
  return memory_.slice(buffer.address + buffer_offset_, step);
}

Result<void> ChainCursor::skip(uint64_t length) {
  if (length > remaining_) {
    return make_error(ErrorCode::kDevice, "cannot skip {} bytes, the chain has {}", length, remaining_);
  }
  remaining_ -= length;
  consumed_ += length;
  while (length > 0) {
    const GuestBuffer& buffer = buffers_[buffer_index_];
    const uint64_t step = std::min<uint64_t>(length, buffer.length - buffer_offset_);
    buffer_offset_ += step;
    length -= step;
    if (buffer_offset_ == buffer.length) {
      ++buffer_index_;
      buffer_offset_ = 0;
    }
  }
  return {};
}

Result<void> ChainCursor::exclude_tail(uint64_t length) {
  if (length > remaining_) {
    return make_error(ErrorCode::kDevice, "the chain has {} bytes, fewer than {}", remaining_, length);
  }
  remaining_ -= length;
  return {};
}

Result<void> ChainReader::read(std::span<uint8_t> out) {
  const std::vector<iovec> pieces = CROSVM_TRY(take(out.size()));
  size_t offset = 0;
  for (const iovec& piece : pieces) {
    std::memcpy(out.data() + offset, piece.iov_base, piece.iov_len);
    offset += piece.iov_len;
  }
  return {};
}

Result<void> ChainWriter::write(std::span<const uint8_t> data) {
  const std::vector<iovec> pieces = CROSVM_TRY(take(data.size()));
  size_t offset = 0;
  for (const iovec& piece : pieces) {
    std::memcpy(piece.iov_base, data.data() + offset, piece.iov_len);
    offset += piece.iov_len;
  }
  return {};
}

}  // namespace crosvm::virtio
