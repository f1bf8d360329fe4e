// The vhost-user protocol (QEMU's docs/interop/vhost-user.rst): the messages
// a frontend (the VMM that owns the PCI transport) and a backend (the
// process that serves the queues) exchange over a Unix socket, with the fds
// that travel beside them.
//
// This is the one place that turns bytes from the other side into values:
// every message is read whole and checked before anyone acts on it. The
// header's size is bounded (kMaxBody), each request's body must have
// exactly the size its layout has (or, for the memory table and the device
// configuration, the size its own count says), and each request carries
// exactly the fds it should. Anything else is a protocol error, which ends
// the connection; never a crash, never memory spent on a peer's say-so.
#pragma once

#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"

namespace crosvm::vhost_user {

// Frontend requests (the ones this library sends or serves).
enum class Request : uint32_t {
  kGetFeatures = 1,
  kSetFeatures = 2,
  kSetOwner = 3,
  kResetOwner = 4,
  kSetMemTable = 5,
  kSetLogBase = 6,
  kSetLogFd = 7,
  kSetVringNum = 8,
  kSetVringAddr = 9,
  kSetVringBase = 10,
  kGetVringBase = 11,
  kSetVringKick = 12,
  kSetVringCall = 13,
  kSetVringErr = 14,
  kGetProtocolFeatures = 15,
  kSetProtocolFeatures = 16,
  kGetQueueNum = 17,
  kSetVringEnable = 18,
  kSetBackendReqFd = 21,
  kGetConfig = 24,
  kSetConfig = 25,
  kResetDevice = 34,
  kGetMaxMemSlots = 36,
  kSetStatus = 39,
  kGetStatus = 40,
};

// Backend requests, on the backend channel.
enum class BackendRequest : uint32_t {
  kConfigChange = 2,
};

// The name of a request for log lines ("SET_VRING_ADDR"), or its number.
std::string request_name(uint32_t request);

// Feature bits.
inline constexpr uint64_t kFeatureProtocolFeatures = 1ull << 30;  // VHOST_USER_F_PROTOCOL_FEATURES

inline constexpr uint64_t kProtocolMultiQueue = 1ull << 0;
inline constexpr uint64_t kProtocolReplyAck = 1ull << 3;
inline constexpr uint64_t kProtocolBackendRequests = 1ull << 5;
inline constexpr uint64_t kProtocolConfig = 1ull << 9;
inline constexpr uint64_t kProtocolResetDevice = 1ull << 13;

// Header flags.
inline constexpr uint32_t kVersion = 0x1;
inline constexpr uint32_t kVersionMask = 0x3;
inline constexpr uint32_t kFlagReply = 1u << 2;
inline constexpr uint32_t kFlagNeedReply = 1u << 3;

inline constexpr size_t kHeaderSize = 12;
// The largest body any supported message has (the memory table: 8 + 8
// regions of 32 bytes; the configuration: 12 + 256).
inline constexpr uint32_t kMaxBody = 8 + 8 * 32 + 256;
inline constexpr size_t kMaxRegions = 8;       // VHOST_MEMORY_BASELINE_NREGIONS
inline constexpr size_t kMaxFds = kMaxRegions;  // what one message may carry
inline constexpr uint32_t kMaxConfigSize = 256;
// The ring index field of SET_VRING_KICK/CALL/ERR, and its "no fd" bit.
inline constexpr uint64_t kVringIndexMask = 0xff;
inline constexpr uint64_t kVringNoFd = 1ull << 8;

struct Header {
  uint32_t request = 0;
  uint32_t flags = kVersion;
  uint32_t size = 0;
};

// Bodies, as laid out on the wire (little-endian, natural alignment).
struct VringState {
  uint32_t index;
  uint32_t num;
};
struct VringAddress {
  uint32_t index;
  uint32_t flags;
  uint64_t descriptor;  // the frontend's user addresses
  uint64_t used;
  uint64_t available;
  uint64_t log;
};
struct MemoryRegion {
  uint64_t guest_address;
  uint64_t size;
  uint64_t user_address;
  uint64_t mmap_offset;
};
struct ConfigHeader {
  uint32_t offset;
  uint32_t size;
  uint32_t flags;
};

struct Message {
  Header header;
  std::vector<uint8_t> body;
  std::vector<UniqueFd> fds;

  static Message make(uint32_t request, uint32_t flags, std::span<const uint8_t> body);
  template <typename T>
  static Message of(uint32_t request, const T& value, uint32_t flags = kVersion) {
    return make(request, flags, std::span(reinterpret_cast<const uint8_t*>(&value), sizeof(T)));
  }
  bool is_reply() const { return (header.flags & kFlagReply) != 0; }
  bool needs_reply() const { return (header.flags & kFlagNeedReply) != 0; }
};

// A check that the body is one T exactly, for the request's name in the
// error. The other side broke the protocol when it fails.
template <typename T>
Result<T> body_as(const Message& message) {
  if (message.body.size() != sizeof(T)) {
    return make_error(ErrorCode::kProtocol, "{}: a body of {} bytes where {} belong",
                      request_name(message.header.request), message.body.size(), sizeof(T));
  }
  T value;
  std::memcpy(&value, message.body.data(), sizeof(T));
  return value;
}

// SET_MEM_TABLE's body: a count, padding, then that many regions.
Result<std::vector<MemoryRegion>> parse_memory_table(const Message& message);
std::vector<uint8_t> encode_memory_table(std::span<const MemoryRegion> regions);

// GET_CONFIG / SET_CONFIG: the header and `size` bytes of configuration.
struct ConfigBody {
  ConfigHeader header;
  std::vector<uint8_t> data;
};
Result<ConfigBody> parse_config(const Message& message);
std::vector<uint8_t> encode_config(uint32_t offset, std::span<const uint8_t> data, uint32_t flags = 0);

// Checks a message read from a frontend: known request, version, body size
// and fd count as the request wants. The body's content is the caller's.
Result<void> check_frontend_message(const Message& message);

// One end of a vhost-user socket. Blocking, one message at a time; a
// timeout bounds how long a reply may take (a peer that stops answering
// is a broken peer, not a hung caller).
class Connection {
 public:
  explicit Connection(UniqueFd socket) : socket_(std::move(socket)) {}

  // A connected pair (frontend end, backend end), for tests and for
  // spawning a backend process.
  static Result<std::pair<Connection, Connection>> pair();
  static Result<Connection> connect(const std::string& path);

  // Sends the whole message, waiting at most kSendTimeoutMs in all for the
  // other side to make room (kTimeout then): a peer that stops reading
  // cannot hold the sender, a vCPU or a device's watcher, for ever.
  // Messages are small, so an honest peer never leaves that much unread.
  static constexpr int kSendTimeoutMs = 5000;
  Result<void> send(const Message& message, std::span<const int> fds = {}) const;
  // The next message, whole, within `timeout_ms` in all (< 0: for ever; a
  // peer that sends a byte at a time gets no longer). End of file before a
  // header is kIo with "closed"; a bad header, an oversized body, too many
  // fds or a short message is kProtocol.
  Result<Message> receive(int timeout_ms = -1) const;

  int fd() const { return socket_.get(); }
  bool valid() const { return socket_.valid(); }

 private:
  UniqueFd socket_;
};

}  // namespace crosvm::vhost_user
