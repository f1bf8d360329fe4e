// The control socket's messages: one JSON object per line, each way. They
// mirror crosvm's VmRequest/VmResponse (Exit -> "stop", Suspend, Resume,
// DiskCommand Resize -> "disk_resize") plus "status". Parsing is the one
// place a client's bytes are checked; see docs/control-socket.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace crosvm::control {

// The longest line either side accepts, newline excluded.
inline constexpr size_t kMaxMessageBytes = 64 * 1024;

enum class RequestKind { kStop, kSuspend, kResume, kStatus, kDiskResize };

struct Request {
  RequestKind kind = RequestKind::kStatus;
  uint32_t disk = 0;          // kDiskResize: the disk's index (0 is vda)
  uint64_t size = 0;          // kDiskResize: the new size in bytes
  std::optional<int64_t> id;  // echoed in the response when given
};

struct DiskStatus {
  uint32_t index = 0;
  std::string path;
  uint64_t size = 0;
  bool read_only = false;
};

struct Status {
  std::string state;  // "created", "running", "paused", "stopping", "stopped"
  uint32_t vcpus = 0;
  uint64_t memory_mib = 0;
  std::vector<DiskStatus> disks;
  std::vector<std::string> devices;  // e.g. "serial1 (8250 UART, ttyS0)", "virtio-rng"
};

struct Response {
  bool ok = true;
  std::string error;    // when !ok: a crosvm_error name such as "CROSVM_ERROR_STATE"
  std::string message;  // when !ok: why, in words
  std::optional<Status> status;  // the answer to "status"
  std::optional<int64_t> id;

  static Response success(std::optional<int64_t> id = std::nullopt);
  static Response failure(const Error& error, std::optional<int64_t> id = std::nullopt);
};

std::string_view request_name(RequestKind kind);

// A line (without its newline) into a request; kProtocol for anything that
// is not exactly one known request with valid fields.
Result<Request> parse_request(std::string_view line);
Result<Response> parse_response(std::string_view line);

// One line of compact JSON, without the newline.
std::string serialize(const Request& request);
std::string serialize(const Response& response);

// "CROSVM_ERROR_STATE" <-> ErrorCode::kState.
std::string_view error_name(ErrorCode code);
ErrorCode error_code_from_name(std::string_view name);

}  // namespace crosvm::control
