// The control socket's messages: one JSON value per packet, each way, in two
// dialects. crosvm's: serde's encoding of its VmRequest and VmResponse
// ("Exit", {"DiskCommand":{...}} -> "Ok", {"Err":95}, {"ErrString":"..."}),
// so crosvm's own clients drive us. libcrosvm's: {"request":"status"} ->
// {"ok":true,"status":{...}}, for what crosvm lacks (status) and for the
// clients written before the crosvm dialect (the C ABI's first form). A
// response is in the dialect of its request. Parsing is the one place a
// client's bytes are checked; see docs/control-socket.md.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace crosvm::control {

// The longest message either side accepts.
inline constexpr size_t kMaxMessageBytes = 64 * 1024;

enum class Dialect { kCrosvm, kLibcrosvm };

// kUnsupported: a request of crosvm's that this VM does not serve (a
// balloon, USB, snapshots...): answered with crosvm's own {"Err":95}.
enum class RequestKind { kStop, kSuspend, kResume, kStatus, kDiskResize, kPowerButton, kUnsupported };

struct Request {
  RequestKind kind = RequestKind::kStatus;
  Dialect dialect = Dialect::kLibcrosvm;
  uint32_t disk = 0;          // kDiskResize: the disk's index (0 is vda)
  uint64_t size = 0;          // kDiskResize: the new size in bytes
  std::optional<int64_t> id;  // libcrosvm's: echoed in the response when given
  std::string variant;        // crosvm's: the VmRequest variant ("Exit", "BalloonCommand")
};

// Requests in crosvm's dialect, as its `crosvm` command and its
// crosvm_control library write them.
Request crosvm_request(RequestKind kind);
Request crosvm_disk_resize(uint32_t disk, uint64_t size);

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
  Dialect dialect = Dialect::kLibcrosvm;
  bool ok = true;
  std::string error;    // when !ok: a crosvm_error name such as "CROSVM_ERROR_STATE"
  std::string message;  // when !ok: why, in words
  // crosvm's dialect, when !ok: the errno of {"Err":N}; 0 is {"ErrString":message}.
  int error_number = 0;
  std::optional<Status> status;  // the answer to "status"
  std::optional<int64_t> id;
  // crosvm's dialect: the VmResponse variant of a success other than "Ok"
  // (a client of ours reads one without failing, and gives its JSON back).
  std::string variant;

  static Response success(const Request& request);
  static Response failure(const Error& error, const Request& request);
  // Before the request could be read: in the dialect the message seemed to be.
  static Response failure(const Error& error, Dialect dialect);
  // The same in libcrosvm's dialect (its unit tests and older callers).
  static Response success(std::optional<int64_t> id = std::nullopt);
  static Response failure(const Error& error, std::optional<int64_t> id = std::nullopt);
};

std::string_view request_name(RequestKind kind);

// A message into a request; kProtocol for anything that is not exactly one
// known request with valid fields. `dialect`, when given, is set to the
// dialect the message is in (as far as it could be read) even on failure,
// so that the error can be answered in it.
Result<Request> parse_request(std::string_view message, Dialect* dialect = nullptr);
Result<Response> parse_response(std::string_view message);

// Compact JSON, on one line.
std::string serialize(const Request& request);
std::string serialize(const Response& response);

// "CROSVM_ERROR_STATE" <-> ErrorCode::kState.
std::string_view error_name(ErrorCode code);
ErrorCode error_code_from_name(std::string_view name);

}  // namespace crosvm::control
