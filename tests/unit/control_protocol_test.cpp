// The control socket's messages: every request and response round-trips,
// and each kind of malformed message is refused with a protocol error.
#include <catch2/catch.hpp>

#include "control/protocol.h"

using namespace crosvm;
using namespace crosvm::control;

namespace {

Request round_trip(const Request& request) {
  auto parsed = parse_request(serialize(request));
  REQUIRE(parsed.ok());
  return *parsed;
}

std::string protocol_error_of(std::string_view line) {
  auto parsed = parse_request(line);
  REQUIRE_FALSE(parsed.ok());
  CHECK(parsed.error().code == ErrorCode::kProtocol);
  return parsed.error().message;
}

}  // namespace

TEST_CASE("every request round-trips through its JSON line", "[control]") {
  for (RequestKind kind : {RequestKind::kStop, RequestKind::kSuspend, RequestKind::kResume,
                           RequestKind::kStatus}) {
    Request request;
    request.kind = kind;
    const Request back = round_trip(request);
    CHECK(back.kind == kind);
    CHECK_FALSE(back.id.has_value());
  }
  Request resize;
  resize.kind = RequestKind::kDiskResize;
  resize.disk = 3;
  resize.size = 0xffff'ffff'ffff'fe00ull;
  resize.id = -7;
  const Request back = round_trip(resize);
  CHECK(back.kind == RequestKind::kDiskResize);
  CHECK(back.disk == 3);
  CHECK(back.size == resize.size);
  CHECK(back.id == -7);
  CHECK(serialize(resize).find('\n') == std::string::npos);
}

TEST_CASE("requests are read as crosvm-launch and other clients write them", "[control]") {
  auto stop = parse_request(R"({"request":"stop"})");
  REQUIRE(stop.ok());
  CHECK(stop->kind == RequestKind::kStop);
  auto resize = parse_request(R"( { "size" : 1048576, "request" : "disk_resize", "disk" : 1, "id": 9 } )");
  REQUIRE(resize.ok());
  CHECK(resize->kind == RequestKind::kDiskResize);
  CHECK(resize->disk == 1);
  CHECK(resize->size == 1048576);
  CHECK(resize->id == 9);
}

TEST_CASE("responses round-trip: ok, errors and a status", "[control]") {
  auto ok = parse_response(serialize(Response::success(4)));
  REQUIRE(ok.ok());
  CHECK(ok->ok);
  CHECK(ok->id == 4);
  CHECK_FALSE(ok->status.has_value());

  auto failed = parse_response(serialize(Response::failure(make_error(ErrorCode::kState, "not running"))));
  REQUIRE(failed.ok());
  CHECK_FALSE(failed->ok);
  CHECK(failed->error == "CROSVM_ERROR_STATE");
  CHECK(failed->message == "not running");
  CHECK(error_code_from_name(failed->error) == ErrorCode::kState);

  Response with_status = Response::success();
  with_status.status = Status{"paused", 2, 512, {{0, "/images/root.img", 1 << 20, true}, {1, "/x", 4096, false}},
                              {"serial1 (8250 UART, ttyS0)", "rng (virtio-rng)"}};
  auto status = parse_response(serialize(with_status));
  REQUIRE(status.ok());
  REQUIRE(status->status.has_value());
  CHECK(status->status->state == "paused");
  CHECK(status->status->vcpus == 2);
  CHECK(status->status->memory_mib == 512);
  REQUIRE(status->status->disks.size() == 2);
  CHECK(status->status->disks[0].path == "/images/root.img");
  CHECK(status->status->disks[0].size == 1 << 20);
  CHECK(status->status->disks[0].read_only);
  CHECK_FALSE(status->status->disks[1].read_only);
  CHECK(status->status->devices == with_status.status->devices);
}

TEST_CASE("a path that is not UTF-8 does not break a status response", "[control]") {
  Response response = Response::success();
  response.status = Status{"running", 1, 256, {{0, std::string("/tmp/\xff\xfe.img"), 512, false}}, {}};
  const std::string line = serialize(response);
  CHECK(parse_response(line).ok());
}

TEST_CASE("malformed requests are refused with a reason", "[control]") {
  CHECK(protocol_error_of("") == "the message is not valid JSON");
  CHECK(protocol_error_of("{\"request\":\"stop\"") == "the message is not valid JSON");
  CHECK(protocol_error_of("stop") == "the message is not valid JSON");
  CHECK(protocol_error_of("[\"stop\"]") == "the message is not a JSON object");
  CHECK(protocol_error_of("\"stop\"") == "the message is not a JSON object");
  CHECK(protocol_error_of("{}") == "\"request\" must be a string");
  CHECK(protocol_error_of("{\"request\":7}") == "\"request\" must be a string");
  CHECK(protocol_error_of("{\"request\":\"reboot\"}").find("unknown request \"reboot\"") == 0);
  CHECK(protocol_error_of("{\"request\":\"stop\",\"force\":true}") == "unknown field \"force\"");
  CHECK(protocol_error_of("{\"request\":\"stop\",\"id\":\"x\"}") == "\"id\" must be an integer from -2^63 to 2^63-1");
  // Above INT64_MAX it would have come back as a negative id.
  CHECK(protocol_error_of("{\"request\":\"stop\",\"id\":9223372036854775808}") ==
        "\"id\" must be an integer from -2^63 to 2^63-1");
  CHECK(parse_request("{\"request\":\"stop\",\"id\":9223372036854775807}")->id == INT64_MAX);
  CHECK(parse_request("{\"request\":\"stop\",\"id\":-9223372036854775808}")->id == INT64_MIN);
  CHECK(protocol_error_of("{\"request\":\"disk_resize\",\"size\":512}") == "\"disk\" is missing");
  CHECK(protocol_error_of("{\"request\":\"disk_resize\",\"disk\":0}") == "\"size\" is missing");
  CHECK(protocol_error_of("{\"request\":\"disk_resize\",\"disk\":0,\"size\":-512}") ==
        "\"size\" must be a non-negative integer");
  CHECK(protocol_error_of("{\"request\":\"disk_resize\",\"disk\":0,\"size\":1.5}") ==
        "\"size\" must be a non-negative integer");
  CHECK(protocol_error_of("{\"request\":\"disk_resize\",\"disk\":4294967296,\"size\":512}") ==
        "\"disk\" is too large");
  CHECK(protocol_error_of("{\"request\":\"disk_resize\",\"disk\":0,\"size\":99999999999999999999999}") ==
        "\"size\" must be a non-negative integer");
}

TEST_CASE("a message over the size limit is refused before parsing", "[control]") {
  const std::string huge = "{\"request\":\"stop\",\"pad\":\"" + std::string(kMaxMessageBytes, 'x') + "\"}";
  CHECK(protocol_error_of(huge).find("the limit is") != std::string::npos);
}

TEST_CASE("deeply nested JSON is an error, not a crash", "[control]") {
  const std::string deep = std::string(10000, '[') + std::string(10000, ']');
  CHECK(protocol_error_of(deep) == "the message is not a JSON object");
}

TEST_CASE("malformed responses are refused", "[control]") {
  CHECK_FALSE(parse_response("{}").ok());
  CHECK_FALSE(parse_response("{\"ok\":\"yes\"}").ok());
  CHECK_FALSE(parse_response("{\"ok\":false}").ok());
  CHECK_FALSE(parse_response("{\"ok\":true,\"status\":{\"state\":1}}").ok());
  CHECK_FALSE(parse_response("{\"ok\":true,\"status\":{\"state\":\"x\",\"vcpus\":1,\"memory_mib\":1,"
                             "\"disks\":[{\"index\":0}]}}").ok());
}
