#include "control/protocol.h"

#include <array>
#include <limits>
#include <nlohmann/json.hpp>
#include <utility>

namespace crosvm::control {
namespace {

using nlohmann::json;

constexpr std::array<std::pair<RequestKind, std::string_view>, 5> kRequestNames{{
    {RequestKind::kStop, "stop"},
    {RequestKind::kSuspend, "suspend"},
    {RequestKind::kResume, "resume"},
    {RequestKind::kStatus, "status"},
    {RequestKind::kDiskResize, "disk_resize"},
}};

constexpr std::array<std::pair<ErrorCode, std::string_view>, 13> kErrorNames{{
    {ErrorCode::kInvalidArgument, "CROSVM_ERROR_INVALID_ARGUMENT"},
    {ErrorCode::kKvmUnavailable, "CROSVM_ERROR_KVM_UNAVAILABLE"},
    {ErrorCode::kKvmCapability, "CROSVM_ERROR_KVM_CAPABILITY"},
    {ErrorCode::kKernel, "CROSVM_ERROR_KERNEL"},
    {ErrorCode::kInitrd, "CROSVM_ERROR_INITRD"},
    {ErrorCode::kMemory, "CROSVM_ERROR_MEMORY"},
    {ErrorCode::kVcpu, "CROSVM_ERROR_VCPU"},
    {ErrorCode::kIo, "CROSVM_ERROR_IO"},
    {ErrorCode::kState, "CROSVM_ERROR_STATE"},
    {ErrorCode::kTimeout, "CROSVM_ERROR_TIMEOUT"},
    {ErrorCode::kDevice, "CROSVM_ERROR_DEVICE"},
    {ErrorCode::kProtocol, "CROSVM_ERROR_PROTOCOL"},
    {ErrorCode::kInternal, "CROSVM_ERROR_INTERNAL"},
}};

Error protocol_error(std::string message) { return Error{ErrorCode::kProtocol, std::move(message)}; }

// Parses `line` as one JSON object; anything else is a protocol error.
Result<json> parse_object(std::string_view line) {
  if (line.size() > kMaxMessageBytes) {
    return protocol_error(fmt::format("the message is {} bytes; the limit is {}", line.size(),
                                      kMaxMessageBytes));
  }
  json value = json::parse(line.begin(), line.end(), nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) return protocol_error("the message is not valid JSON");
  if (!value.is_object()) return protocol_error("the message is not a JSON object");
  return value;
}

Result<void> check_fields(const json& object, std::initializer_list<std::string_view> allowed) {
  for (const auto& [key, value] : object.items()) {
    bool known = false;
    for (std::string_view name : allowed) known |= key == name;
    if (!known) return protocol_error(fmt::format("unknown field \"{}\"", key));
  }
  return {};
}

Result<std::optional<int64_t>> parse_id(const json& object) {
  auto found = object.find("id");
  if (found == object.end()) return std::optional<int64_t>{};
  // An unsigned number above INT64_MAX is an integer too, and would come
  // back as a negative one.
  if (!found->is_number_integer() ||
      (found->is_number_unsigned() && found->get<uint64_t>() > uint64_t{INT64_MAX})) {
    return protocol_error("\"id\" must be an integer from -2^63 to 2^63-1");
  }
  return std::optional<int64_t>{found->get<int64_t>()};
}

Result<uint64_t> parse_unsigned(const json& object, const char* name, uint64_t max) {
  auto found = object.find(name);
  if (found == object.end()) return protocol_error(fmt::format("\"{}\" is missing", name));
  if (!found->is_number_unsigned()) {
    return protocol_error(fmt::format("\"{}\" must be a non-negative integer", name));
  }
  const uint64_t value = found->get<uint64_t>();
  if (value > max) return protocol_error(fmt::format("\"{}\" is too large", name));
  return value;
}

Result<std::string> parse_string(const json& object, const char* name) {
  auto found = object.find(name);
  if (found == object.end() || !found->is_string()) {
    return protocol_error(fmt::format("\"{}\" must be a string", name));
  }
  return found->get<std::string>();
}

json status_to_json(const Status& status) {
  json disks = json::array();
  for (const DiskStatus& disk : status.disks) {
    disks.push_back({{"index", disk.index},
                     {"path", disk.path},
                     {"size", disk.size},
                     {"read_only", disk.read_only}});
  }
  return {{"state", status.state},
          {"vcpus", status.vcpus},
          {"memory_mib", status.memory_mib},
          {"disks", disks},
          {"devices", status.devices}};
}

Result<Status> status_from_json(const json& object) {
  if (!object.is_object()) return protocol_error("\"status\" must be an object");
  Status status;
  status.state = CROSVM_TRY(parse_string(object, "state"));
  status.vcpus = static_cast<uint32_t>(
      CROSVM_TRY(parse_unsigned(object, "vcpus", std::numeric_limits<uint32_t>::max())));
  status.memory_mib = CROSVM_TRY(parse_unsigned(object, "memory_mib", UINT64_MAX));
  auto disks = object.find("disks");
  if (disks != object.end()) {
    if (!disks->is_array()) return protocol_error("\"disks\" must be an array");
    for (const json& entry : *disks) {
      if (!entry.is_object()) return protocol_error("a disk must be an object");
      DiskStatus disk;
      disk.index = static_cast<uint32_t>(
          CROSVM_TRY(parse_unsigned(entry, "index", std::numeric_limits<uint32_t>::max())));
      disk.path = CROSVM_TRY(parse_string(entry, "path"));
      disk.size = CROSVM_TRY(parse_unsigned(entry, "size", UINT64_MAX));
      auto read_only = entry.find("read_only");
      if (read_only == entry.end() || !read_only->is_boolean()) {
        return protocol_error("\"read_only\" must be true or false");
      }
      disk.read_only = read_only->get<bool>();
      status.disks.push_back(std::move(disk));
    }
  }
  auto devices = object.find("devices");
  if (devices != object.end()) {
    if (!devices->is_array()) return protocol_error("\"devices\" must be an array");
    for (const json& entry : *devices) {
      if (!entry.is_string()) return protocol_error("a device must be a string");
      status.devices.push_back(entry.get<std::string>());
    }
  }
  return status;
}

}  // namespace

Response Response::success(std::optional<int64_t> id) {
  Response response;
  response.id = id;
  return response;
}

Response Response::failure(const Error& error, std::optional<int64_t> id) {
  Response response;
  response.ok = false;
  response.error = std::string(error_name(error.code));
  response.message = error.message;
  response.id = id;
  return response;
}

std::string_view request_name(RequestKind kind) {
  for (const auto& [known, name] : kRequestNames) {
    if (known == kind) return name;
  }
  return "unknown";
}

std::string_view error_name(ErrorCode code) {
  for (const auto& [known, name] : kErrorNames) {
    if (known == code) return name;
  }
  return "CROSVM_ERROR_INTERNAL";
}

ErrorCode error_code_from_name(std::string_view name) {
  for (const auto& [code, known] : kErrorNames) {
    if (known == name) return code;
  }
  return ErrorCode::kInternal;
}

Result<Request> parse_request(std::string_view line) {
  const json object = CROSVM_TRY(parse_object(line));
  Request request;
  request.id = CROSVM_TRY(parse_id(object));
  const std::string name = CROSVM_TRY(parse_string(object, "request"));
  bool known = false;
  for (const auto& [kind, known_name] : kRequestNames) {
    if (known_name == name) {
      request.kind = kind;
      known = true;
    }
  }
  if (!known) {
    return protocol_error(fmt::format(
        "unknown request \"{}\" (known: stop, suspend, resume, status, disk_resize)", name));
  }
  if (request.kind == RequestKind::kDiskResize) {
    CROSVM_TRY(check_fields(object, {"request", "id", "disk", "size"}));
    request.disk = static_cast<uint32_t>(
        CROSVM_TRY(parse_unsigned(object, "disk", std::numeric_limits<uint32_t>::max())));
    request.size = CROSVM_TRY(parse_unsigned(object, "size", UINT64_MAX));
  } else {
    CROSVM_TRY(check_fields(object, {"request", "id"}));
  }
  return request;
}

std::string serialize(const Request& request) {
  json object = {{"request", request_name(request.kind)}};
  if (request.kind == RequestKind::kDiskResize) {
    object["disk"] = request.disk;
    object["size"] = request.size;
  }
  if (request.id) object["id"] = *request.id;
  return object.dump();
}

std::string serialize(const Response& response) {
  json object = {{"ok", response.ok}};
  if (!response.ok) {
    object["error"] = response.error;
    object["message"] = response.message;
  }
  if (response.status) object["status"] = status_to_json(*response.status);
  if (response.id) object["id"] = *response.id;
  // Replace, not throw, on bytes that are not UTF-8 (a path can hold any).
  return object.dump(-1, ' ', false, json::error_handler_t::replace);
}

Result<Response> parse_response(std::string_view line) {
  const json object = CROSVM_TRY(parse_object(line));
  Response response;
  auto ok = object.find("ok");
  if (ok == object.end() || !ok->is_boolean()) return protocol_error("\"ok\" must be true or false");
  response.ok = ok->get<bool>();
  response.id = CROSVM_TRY(parse_id(object));
  if (!response.ok) {
    response.error = CROSVM_TRY(parse_string(object, "error"));
    response.message = CROSVM_TRY(parse_string(object, "message"));
  }
  auto status = object.find("status");
  if (status != object.end()) response.status = CROSVM_TRY(status_from_json(*status));
  return response;
}

}  // namespace crosvm::control
