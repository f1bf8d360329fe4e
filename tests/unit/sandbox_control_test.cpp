// The VMM's control channel to a device process (device_control.h): a
// request and its answer, the device's error carried back whole, and a
// device that answers garbage, half a reply, nothing, or closes: each an
// error for the VMM, never a wait without end.
#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <thread>

#include "base/unique_fd.h"
#include "sandbox/device_control.h"

using crosvm::ErrorCode;
using crosvm::Result;
using crosvm::UniqueFd;
using crosvm::sandbox::ControlRequest;

namespace {

struct Pair {
  Pair() {
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
    vmm.reset(fds[0]);
    device.reset(fds[1]);
  }
  UniqueFd vmm, device;
};

}  // namespace

TEST_CASE("a control request is answered, and the device's error comes back whole", "[sandbox]") {
  Pair pair;
  uint64_t resized_to = 0;
  std::thread device([&] {
    auto served = crosvm::sandbox::serve_control_requests(pair.device.get(), [&](ControlRequest request,
                                                                                 uint64_t value) -> Result<void> {
      CHECK(request == ControlRequest::kResize);
      if (value % 512 != 0) return crosvm::make_error(ErrorCode::kInvalidArgument, "{} is not whole sectors", value);
      resized_to = value;
      return {};
    });
    CHECK(served);  // the VMM closed: the end, not an error
  });
  CHECK(crosvm::sandbox::send_control_request(pair.vmm.get(), ControlRequest::kResize, 8192, 5000));
  auto refused = crosvm::sandbox::send_control_request(pair.vmm.get(), ControlRequest::kResize, 8193, 5000);
  REQUIRE(!refused);
  CHECK(refused.error().code == ErrorCode::kInvalidArgument);
  CHECK(refused.error().message == "8193 is not whole sectors");
  auto unknown = crosvm::sandbox::send_control_request(pair.vmm.get(), static_cast<ControlRequest>(77), 0, 5000);
  REQUIRE(!unknown);
  CHECK(unknown.error().message.find("unknown control request 77") != std::string::npos);
  pair.vmm.reset();
  device.join();
  CHECK(resized_to == 8192);
}

TEST_CASE("a device that answers garbage, half a reply, nothing or closes is an error", "[sandbox][hostile]") {
  struct Reply {
    int32_t code;
    uint32_t length;
    char message[240];
  };
  SECTION("a code that is no error code") {
    Pair pair;
    Reply reply{12345, 0, {}};
    REQUIRE(::write(pair.device.get(), &reply, sizeof(reply)) == sizeof(reply));
    auto answered = crosvm::sandbox::send_control_request(pair.vmm.get(), ControlRequest::kResize, 0, 5000);
    REQUIRE(!answered);
    CHECK(answered.error().code == ErrorCode::kProtocol);
  }
  SECTION("a message longer than the reply") {
    Pair pair;
    Reply reply{static_cast<int32_t>(ErrorCode::kIo), 100000, {}};
    REQUIRE(::write(pair.device.get(), &reply, sizeof(reply)) == sizeof(reply));
    auto answered = crosvm::sandbox::send_control_request(pair.vmm.get(), ControlRequest::kResize, 0, 5000);
    REQUIRE(!answered);
    CHECK(answered.error().code == ErrorCode::kProtocol);
  }
  SECTION("half a reply, then the device stops writing") {
    Pair pair;
    Reply reply{};
    REQUIRE(::write(pair.device.get(), &reply, 10) == 10);
    ::shutdown(pair.device.get(), SHUT_WR);
    auto answered = crosvm::sandbox::send_control_request(pair.vmm.get(), ControlRequest::kResize, 0, 5000);
    REQUIRE(!answered);
    CHECK(answered.error().code == ErrorCode::kProtocol);
  }
  SECTION("no answer within the timeout") {
    Pair pair;
    auto answered = crosvm::sandbox::send_control_request(pair.vmm.get(), ControlRequest::kResize, 0, 50);
    REQUIRE(!answered);
    CHECK(answered.error().code == ErrorCode::kTimeout);
  }
  SECTION("an answer a byte at a time: the timeout is the whole reply's, not each byte's") {
    Pair pair;
    // A whole success reply, a byte every 30 ms: each byte comes within
    // 200 ms, the reply would take 7 s.
    std::thread trickle([fd = pair.device.get()] {
      for (size_t i = 0; i < sizeof(Reply); ++i) {
        const char byte = 0;
        if (::send(fd, &byte, 1, MSG_NOSIGNAL) != 1) return;  // the VMM's end closed
        std::this_thread::sleep_for(std::chrono::milliseconds(30));
      }
    });
    auto answered = crosvm::sandbox::send_control_request(pair.vmm.get(), ControlRequest::kResize, 0, 200);
    pair.vmm.reset();
    trickle.join();
    REQUIRE(!answered);
    CHECK(answered.error().code == ErrorCode::kTimeout);
  }
  SECTION("the device closed its end") {
    Pair pair;
    pair.device.reset();
    auto answered = crosvm::sandbox::send_control_request(pair.vmm.get(), ControlRequest::kResize, 0, 5000);
    REQUIRE(!answered);
  }
  SECTION("the device's side: a request cut short is an error, garbage gets an error reply") {
    Pair pair;
    const uint32_t garbage[4] = {1, 7, 0, 0};  // a reserved field that is not 0
    REQUIRE(::write(pair.vmm.get(), garbage, sizeof(garbage)) == sizeof(garbage));
    REQUIRE(::write(pair.vmm.get(), garbage, 6) == 6);
    ::shutdown(pair.vmm.get(), SHUT_WR);
    bool called = false;
    auto served = crosvm::sandbox::serve_control_requests(pair.device.get(), [&](ControlRequest, uint64_t) {
      called = true;
      return Result<void>{};
    });
    CHECK_FALSE(called);
    REQUIRE(!served);
    CHECK(served.error().code == ErrorCode::kProtocol);
    Reply reply{};
    REQUIRE(::read(pair.vmm.get(), &reply, sizeof(reply)) == sizeof(reply));
    CHECK(reply.code == static_cast<int32_t>(ErrorCode::kInvalidArgument));
  }
}
