#include "control/protocol.h"

#include <array>
#include <cerrno>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <utility>

namespace crosvm::control {
namespace {

using nlohmann::json;

constexpr std::array<std::pair<RequestKind, std::string_view>, 6> kRequestNames{{
    {RequestKind::kStop, "stop"},
    {RequestKind::kSuspend, "suspend"},
    {RequestKind::kResume, "resume"},
    {RequestKind::kStatus, "status"},
    {RequestKind::kDiskResize, "disk_resize"},
    {RequestKind::kPowerButton, "powerbtn"},
}};

// crosvm's VmRequest variants that carry no data and that we serve.
constexpr std::array<std::pair<std::string_view, RequestKind>, 6> kCrosvmUnitRequests{{
    {"Exit", RequestKind::kStop},
    {"Powerbtn", RequestKind::kPowerButton},
    {"SuspendVcpus", RequestKind::kSuspend},
    {"ResumeVcpus", RequestKind::kResume},
    // crosvm's --full forms also put its devices to sleep; ours do no work
    // while the vCPUs are held (host input waits), so both are the same.
    {"SuspendVm", RequestKind::kSuspend},
    {"ResumeVm", RequestKind::kResume},
}};

// Every other VmRequest variant crosvm has: read, and answered as crosvm
// answers one it has no device for ({"Err":95}), never dropped.
// (crosvm's VmRequest at f1e797a6 has 29 variants: these 22, the 6 above
// and DiskCommand.)
constexpr std::array<std::string_view, 22> kCrosvmUnsupported{
    "Sleepbtn",           "Rtc",         "Swap",       "Gpe",          "PciPme",
    "MakeRT",             "BalloonCommand", "UsbCommand", "GpuCommand", "BatCommand",
    "SndCommand",         "HotPlugVfioCommand", "HotPlugNetCommand", "Snapshot", "RegisterListener",
    "UnregisterListener", "Unregister",  "VcpuPidTid", "Throttle",     "GetVmDescriptor",
    "RegisterMemory",     "UnregisterMemory",
};

// crosvm's VmResponse variants a client of ours may be given.
constexpr std::array<std::string_view, 12> kCrosvmResponses{
    "Ok",          "Err",         "ErrString",          "RegisterMemory", "RegisterMemory2",
    "BalloonStats", "BalloonWS",  "PciHotPlugResponse", "UsbResponse",    "GpuResponse",
    "BatResponse", "SwapStatus",
};

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

// Parses `message` as one JSON value; anything else is a protocol error.
Result<json> parse_json(std::string_view message) {
  if (message.size() > kMaxMessageBytes) {
    return protocol_error(fmt::format("the message is {} bytes; the limit is {}", message.size(),
                                      kMaxMessageBytes));
  }
  json value = json::parse(message.begin(), message.end(), nullptr, /*allow_exceptions=*/false);
  if (value.is_discarded()) return protocol_error("the message is not valid JSON");
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

Response Response::success(const Request& request) {
  Response response = success(request.id);
  response.dialect = request.dialect;
  return response;
}

Response Response::failure(const Error& error, const Request& request) {
  Response response = failure(error, request.id);
  response.dialect = request.dialect;
  return response;
}

Response Response::failure(const Error& error, Dialect dialect) {
  Response response = failure(error, std::optional<int64_t>{});
  response.dialect = dialect;
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

namespace {

// crosvm's {"DiskCommand":{"disk_index":N,"command":{"Resize":{"new_size":N}}}}.
Result<void> parse_disk_command(const json& body, Request& request) {
  if (!body.is_object()) return protocol_error("DiskCommand must be an object");
  CROSVM_TRY(check_fields(body, {"disk_index", "command"}));
  request.disk = static_cast<uint32_t>(
      CROSVM_TRY(parse_unsigned(body, "disk_index", std::numeric_limits<uint32_t>::max())));
  auto command = body.find("command");
  if (command == body.end()) return protocol_error("\"command\" is missing");
  if (!command->is_object() || command->size() != 1 || !command->contains("Resize")) {
    return protocol_error("DiskCommand's \"command\" must be {\"Resize\":{\"new_size\":N}}");
  }
  const json& resize = (*command)["Resize"];
  if (!resize.is_object()) return protocol_error("Resize must be an object");
  CROSVM_TRY(check_fields(resize, {"new_size"}));
  request.size = CROSVM_TRY(parse_unsigned(resize, "new_size", UINT64_MAX));
  request.kind = RequestKind::kDiskResize;
  return {};
}

// A VmRequest in serde's external tagging: "Variant" or {"Variant":...}.
Result<Request> parse_crosvm_request(const json& value) {
  Request request;
  request.dialect = Dialect::kCrosvm;
  const json* body = nullptr;
  if (value.is_string()) {
    request.variant = value.get<std::string>();
  } else if (value.is_object() && value.size() == 1) {
    request.variant = value.begin().key();
    body = &value.begin().value();
  } else {
    return protocol_error("the message is not a request: a VmRequest (\"Exit\", {\"DiskCommand\":{...}}) "
                          "or {\"request\":NAME}");
  }
  for (const auto& [name, kind] : kCrosvmUnitRequests) {
    if (name != request.variant) continue;
    if (body != nullptr) return protocol_error(fmt::format("{} takes no data", name));
    request.kind = kind;
    return request;
  }
  if (request.variant == "DiskCommand") {
    if (body == nullptr) return protocol_error("DiskCommand needs {\"disk_index\":N,\"command\":...}");
    CROSVM_TRY(parse_disk_command(*body, request));
    return request;
  }
  for (std::string_view name : kCrosvmUnsupported) {
    if (name != request.variant) continue;
    request.kind = RequestKind::kUnsupported;
    return request;
  }
  return protocol_error(fmt::format("unknown request \"{}\"", request.variant.substr(0, 64)));
}

}  // namespace

Request crosvm_request(RequestKind kind) {
  Request request;
  request.kind = kind;
  request.dialect = Dialect::kCrosvm;
  for (const auto& [name, known] : kCrosvmUnitRequests) {
    if (known == kind) {
      request.variant = name;
      break;
    }
  }
  return request;
}

Request crosvm_disk_resize(uint32_t disk, uint64_t size) {
  Request request = crosvm_request(RequestKind::kDiskResize);
  request.variant = "DiskCommand";
  request.disk = disk;
  request.size = size;
  return request;
}

Result<Request> parse_request(std::string_view message, Dialect* dialect) {
  if (dialect != nullptr) *dialect = Dialect::kCrosvm;
  const json object = CROSVM_TRY(parse_json(message));
  if (!object.is_object() || !object.contains("request")) return parse_crosvm_request(object);
  if (dialect != nullptr) *dialect = Dialect::kLibcrosvm;
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
        "unknown request \"{}\" (known: stop, suspend, resume, status, disk_resize, powerbtn)", name));
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
  if (request.dialect == Dialect::kCrosvm) {
    if (request.kind == RequestKind::kDiskResize) {
      return json{{"DiskCommand",
                   {{"disk_index", request.disk}, {"command", {{"Resize", {{"new_size", request.size}}}}}}}}
          .dump();
    }
    return json(request.variant).dump(-1, ' ', false, json::error_handler_t::replace);
  }
  json object = {{"request", request_name(request.kind)}};
  if (request.kind == RequestKind::kDiskResize) {
    object["disk"] = request.disk;
    object["size"] = request.size;
  }
  if (request.id) object["id"] = *request.id;
  return object.dump();
}

std::string serialize(const Response& response) {
  // Replace, not throw, on bytes that are not UTF-8 (a path can hold any).
  constexpr auto kReplace = json::error_handler_t::replace;
  if (response.dialect == Dialect::kCrosvm) {
    if (response.ok) return json(response.variant.empty() ? "Ok" : response.variant).dump(-1, ' ', false, kReplace);
    if (response.error_number != 0) return json{{"Err", response.error_number}}.dump();
    return json{{"ErrString", response.message}}.dump(-1, ' ', false, kReplace);
  }
  json object = {{"ok", response.ok}};
  if (!response.ok) {
    object["error"] = response.error;
    object["message"] = response.message;
  }
  if (response.status) object["status"] = status_to_json(*response.status);
  if (response.id) object["id"] = *response.id;
  return object.dump(-1, ' ', false, kReplace);
}

namespace {

// What a crosvm errno means to a caller of ours.
ErrorCode code_of_errno(int number) {
  switch (number) {
    case EOPNOTSUPP: return ErrorCode::kProtocol;  // ENOTSUP: a request this VM does not serve
    case EINVAL:
    case ENODEV:
    case ERANGE: return ErrorCode::kInvalidArgument;
    case EBUSY:
    case ENOTCONN: return ErrorCode::kState;
    default: return ErrorCode::kIo;
  }
}

// A VmResponse: "Ok", {"Err":N}, {"ErrString":"..."}, or another variant
// (a success that carries data, kept in `variant`).
Result<Response> parse_crosvm_response(const json& value) {
  Response response;
  response.dialect = Dialect::kCrosvm;
  std::string variant;
  const json* body = nullptr;
  if (value.is_string()) {
    variant = value.get<std::string>();
  } else if (value.is_object() && value.size() == 1) {
    variant = value.begin().key();
    body = &value.begin().value();
  } else {
    return protocol_error("the answer is not a response");
  }
  bool known = false;
  for (std::string_view name : kCrosvmResponses) known |= name == variant;
  if (!known) return protocol_error(fmt::format("unknown response \"{}\"", variant.substr(0, 64)));
  if (variant == "Err") {
    if (body == nullptr || !body->is_number_integer() || body->get<int64_t>() <= 0 ||
        body->get<int64_t>() > 4095) {
      return protocol_error("Err must carry an errno");
    }
    response.ok = false;
    response.error_number = body->get<int>();
    const ErrorCode code = code_of_errno(response.error_number);
    response.error = std::string(error_name(code));
    response.message = fmt::format("{} (os error {})", std::strerror(response.error_number), response.error_number);
  } else if (variant == "ErrString") {
    if (body == nullptr || !body->is_string()) return protocol_error("ErrString must carry a string");
    response.ok = false;
    response.error = std::string(error_name(ErrorCode::kState));
    response.message = body->get<std::string>();
  } else if (variant != "Ok") {
    response.variant = variant;
  } else if (body != nullptr) {
    return protocol_error("Ok carries no data");
  }
  return response;
}

}  // namespace

Result<Response> parse_response(std::string_view message) {
  const json value = CROSVM_TRY(parse_json(message));
  if (!value.is_object() || !value.contains("ok")) return parse_crosvm_response(value);
  const json& object = value;
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
