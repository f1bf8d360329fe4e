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
  // Not an object with "request": read as one of crosvm's requests.
  CHECK(protocol_error_of("[\"stop\"]").find("the message is not a request") == 0);
  CHECK(protocol_error_of("\"stop\"") == "unknown request \"stop\"");
  CHECK(protocol_error_of("{}").find("the message is not a request") == 0);
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
  CHECK(protocol_error_of(deep).find("the message is not a request") == 0);
}

TEST_CASE("malformed responses are refused", "[control]") {
  CHECK_FALSE(parse_response("{}").ok());
  CHECK_FALSE(parse_response("{\"ok\":\"yes\"}").ok());
  CHECK_FALSE(parse_response("{\"ok\":false}").ok());
  CHECK_FALSE(parse_response("{\"ok\":true,\"status\":{\"state\":1}}").ok());
  CHECK_FALSE(parse_response("{\"ok\":true,\"status\":{\"state\":\"x\",\"vcpus\":1,\"memory_mib\":1,"
                             "\"disks\":[{\"index\":0}]}}").ok());
}

TEST_CASE("crosvm's requests are read as serde writes its VmRequest", "[control]") {
  const std::pair<const char*, RequestKind> units[] = {
      {R"("Exit")", RequestKind::kStop},           {R"("Powerbtn")", RequestKind::kPowerButton},
      {R"("SuspendVcpus")", RequestKind::kSuspend}, {R"("ResumeVcpus")", RequestKind::kResume},
      {R"("SuspendVm")", RequestKind::kSuspend},    {R"("ResumeVm")", RequestKind::kResume},
      {R"("Sleepbtn")", RequestKind::kUnsupported}, {R"({"BalloonCommand":"Stats"})", RequestKind::kUnsupported},
  };
  for (const auto& [text, kind] : units) {
    CAPTURE(text);
    Dialect dialect = Dialect::kLibcrosvm;
    auto request = parse_request(text, &dialect);
    REQUIRE(request.ok());
    CHECK(request->kind == kind);
    CHECK(request->dialect == Dialect::kCrosvm);
    CHECK(dialect == Dialect::kCrosvm);
  }
  auto resize = parse_request(R"({"DiskCommand":{"disk_index":2,"command":{"Resize":{"new_size":10737418240}}}})");
  REQUIRE(resize.ok());
  CHECK(resize->kind == RequestKind::kDiskResize);
  CHECK(resize->disk == 2);
  CHECK(resize->size == 10737418240ull);
  // What our own clients send is byte for byte what crosvm's send.
  CHECK(serialize(crosvm_request(RequestKind::kStop)) == R"("Exit")");
  CHECK(serialize(crosvm_request(RequestKind::kPowerButton)) == R"("Powerbtn")");
  CHECK(serialize(crosvm_disk_resize(2, 10737418240ull)) ==
        R"({"DiskCommand":{"command":{"Resize":{"new_size":10737418240}},"disk_index":2}})");
  CHECK(parse_request(serialize(crosvm_disk_resize(2, 512)))->size == 512);
}

TEST_CASE("malformed requests of crosvm's kind are refused with a reason", "[control]") {
  Dialect dialect = Dialect::kLibcrosvm;
  CHECK_FALSE(parse_request(R"("Exit2")", &dialect).ok());
  CHECK_FALSE(parse_request(R"("IoEventCommand")").ok());  // not one of crosvm's
  CHECK(dialect == Dialect::kCrosvm);
  CHECK(protocol_error_of(R"({"Exit":null})") == "Exit takes no data");
  CHECK(protocol_error_of(R"("DiskCommand")").find("DiskCommand needs") == 0);
  CHECK(protocol_error_of(R"({"DiskCommand":{"disk_index":0}})") == "\"command\" is missing");
  CHECK(protocol_error_of(R"({"DiskCommand":{"disk_index":-1,"command":{"Resize":{"new_size":1}}}})") ==
        "\"disk_index\" must be a non-negative integer");
  CHECK(protocol_error_of(R"({"DiskCommand":{"disk_index":0,"command":{"Resize":{"new_size":1,"x":2}}}})") ==
        "unknown field \"x\"");
  CHECK(protocol_error_of(R"({"DiskCommand":{"disk_index":0,"command":"Resize"}})").find("must be {") !=
        std::string::npos);
  CHECK(protocol_error_of(R"({"Exit":1,"Powerbtn":2})").find("the message is not a request") == 0);
  CHECK(protocol_error_of("7").find("the message is not a request") == 0);
  // A name over 64 bytes is cut in the message.
  CHECK(protocol_error_of("\"" + std::string(1000, 'A') + "\"").size() < 100);
}

TEST_CASE("crosvm's responses are written and read as serde writes its VmResponse", "[control]") {
  Request crosvm = crosvm_request(RequestKind::kSuspend);
  CHECK(serialize(Response::success(crosvm)) == R"("Ok")");
  Response unsupported = Response::failure(make_error(ErrorCode::kProtocol, "no"), crosvm);
  unsupported.error_number = 95;
  CHECK(serialize(unsupported) == R"({"Err":95})");
  CHECK(serialize(Response::failure(make_error(ErrorCode::kState, "not running"), crosvm)) ==
        R"({"ErrString":"not running"})");

  auto ok = parse_response(R"("Ok")");
  REQUIRE(ok.ok());
  CHECK(ok->ok);
  auto err = parse_response(R"({"Err":95})");
  REQUIRE(err.ok());
  CHECK_FALSE(err->ok);
  CHECK(err->error == "CROSVM_ERROR_PROTOCOL");
  CHECK(err->message == "Operation not supported (os error 95)");
  CHECK(parse_response(R"({"Err":19})")->error == "CROSVM_ERROR_INVALID_ARGUMENT");
  auto text = parse_response(R"({"ErrString":"Adjust overriden"})");
  REQUIRE(text.ok());
  CHECK(text->message == "Adjust overriden");
  // A success with data (crosvm's, from a crosvm VMM) is a success.
  auto stats = parse_response(R"({"BalloonStats":{"stats":{"swap_in":null},"balloon_actual":0}})");
  REQUIRE(stats.ok());
  CHECK(stats->ok);
  CHECK(stats->variant == "BalloonStats");
  CHECK_FALSE(parse_response(R"({"Err":"x"})").ok());
  CHECK_FALSE(parse_response(R"({"Err":-1})").ok());
  CHECK_FALSE(parse_response(R"("Fine")").ok());
  CHECK_FALSE(parse_response(R"({"Ok":1})").ok());
}
