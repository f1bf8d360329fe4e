// A tiny guest drives the userspace vsock with the packets a hostile guest
// would send: each costs its own connection a RST and nothing else, a
// connection past its credit is reset with the host's stream closed after
// at most the credit, and a good connection carries bytes both ways to a
// host program on PATH_1234. In the VMM and jailed; no root needed.
#include <catch2/catch.hpp>

#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <string>
#include <thread>

#include "guest_vm.h"

using guest_tests::GuestVm;
using namespace std::chrono_literals;

namespace {

// Reads what `fd` gives until its end (or `limit` bytes, or two minutes
// of silence: the hang guard).
std::string read_to_end(int fd, size_t limit = 1 << 20) {
  std::string bytes;
  char buffer[65536];
  while (bytes.size() < limit) {
    pollfd ready{fd, POLLIN, 0};
    if (::poll(&ready, 1, 120000) != 1) break;
    const ssize_t got = ::recv(fd, buffer, sizeof(buffer), 0);
    if (got <= 0) break;
    bytes.append(buffer, static_cast<size_t>(got));
  }
  return bytes;
}

}  // namespace

TEST_CASE("a guest's hostile vsock packets reset only their own connection, jailed or not",
          "[guest][vsock][sandbox]") {
  const bool jailed = GENERATE(false, true);
  INFO((jailed ? "jailed" : "in the VMM"));
  char pattern[] = "/tmp/guest-vsock-XXXXXX";
  REQUIRE(::mkdtemp(pattern) != nullptr);
  const std::string directory = pattern;
  const std::string path = directory + "/vm.vsock";

  // The host program the guest's connections reach: port 1234.
  const int listener = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  (path + "_1234").copy(address.sun_path, sizeof(address.sun_path) - 1);
  REQUIRE(::bind(listener, reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0);
  REQUIRE(::listen(listener, 4) == 0);
  size_t flooded = 0;
  std::string greeting;
  std::string after_greeting = "(none)";
  std::thread host([&] {
    // The connection that goes past its credit: reset, so its end comes.
    const int first = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (first < 0) return;
    flooded = read_to_end(first, 4 << 20).size();
    ::close(first);
    // The good one.
    const int second = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
    if (second < 0) return;
    greeting = read_to_end(second, 8);
    (void)::send(second, "host-ok", 7, MSG_NOSIGNAL);
    after_greeting = read_to_end(second);
    ::close(second);
  });

  GuestVm vm("virtio_vsock", 64, 1, [&](crosvm_config* config) {
    if (jailed) {
      crosvm_sandbox_options sandbox = CROSVM_SANDBOX_OPTIONS_INIT;
      sandbox.flags = CROSVM_SANDBOX_ENABLED;
      REQUIRE(crosvm_config_set_sandbox(config, &sandbox) == CROSVM_OK);
    }
    REQUIRE(crosvm_config_add_device(config, "vsock", ("cid=5,socket=" + path).c_str()) == CROSVM_OK);
  });
  CHECK(std::string(crosvm_vm_vsock_socket_path(vm.handle())) == path);
  vm.start();
  const bool done = vm.wait_for_output("done\n");
  CHECK(vm.wait_for_exit() == CROSVM_EXIT_POWEROFF);
  ::shutdown(listener, SHUT_RDWR);  // a host thread still waiting in accept returns
  host.join();
  ::close(listener);
  CHECK(done);
  CHECK(vm.output() ==
        "cid 5\n"
        "reset 101\n"
        "reset 102\n"
        "reset 103\n"
        "reset 104\n"
        "reset 105\n"
        "reset 107\n"
        "reset 109\n"
        "response 200\n"
        "reset 200\n"
        "response 300\n"
        "data 300 host-ok\n"
        "reset 300\n"
        "done\n");
  // The flood reached the host program only up to its credit.
  CHECK(flooded <= 256 * 1024);
  CHECK(greeting == "guest-ok");
  CHECK(after_greeting.empty());  // the guest's close is the stream's end
  CHECK(vm.log().find("bad request from the guest") != std::string::npos);
  CHECK(vm.log().find("needs a reset") == std::string::npos);
  std::filesystem::remove_all(directory);
}

TEST_CASE("a userspace vsock's CID is 3 unless given, and the VM names its socket", "[guest][vsock]") {
  char pattern[] = "/tmp/guest-vsock-XXXXXX";
  REQUIRE(::mkdtemp(pattern) != nullptr);
  const std::string path = std::string(pattern) + "/vm.vsock";
  {
    GuestVm vm("hello", 64, 1, [&](crosvm_config* config) {
      REQUIRE(crosvm_config_add_device(config, "vsock", ("socket=" + path).c_str()) == CROSVM_OK);
    });
    CHECK(crosvm_vm_vsock_cid(vm.handle()) == 3);
    CHECK(std::string(crosvm_vm_vsock_socket_path(vm.handle())) == path);
    CHECK(std::filesystem::exists(path));  // made when the VM was built
  }
  CHECK_FALSE(std::filesystem::exists(path));  // and removed with it
  std::filesystem::remove_all(pattern);
}
