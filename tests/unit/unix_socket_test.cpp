// Client sockets of the library's (a serial port's type=unix and
// unix-stream): connected, waited for within bounds, refused clearly.
#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

#include "base/unix_socket.h"
#include "temp_dir.h"

using namespace crosvm;

namespace {

UniqueFd bound(const std::string& path, int type) {
  const sockaddr_un address = unix_socket_address(path, "test socket").value();
  UniqueFd socket(::socket(AF_UNIX, type | SOCK_CLOEXEC, 0));
  REQUIRE(::bind(socket.get(), reinterpret_cast<const sockaddr*>(&address), sizeof(address)) == 0);
  return socket;
}

}  // namespace

TEST_CASE("a client socket connects to a datagram socket that appears while it waits", "[unix-socket]") {
  TempDir directory("crosvm-unix-socket");
  const std::string path = directory.file("log.sock");
  UniqueFd server;
  std::thread late([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    server = bound(path, SOCK_DGRAM);
  });
  auto client = connect_unix_socket(path, SOCK_DGRAM, "serial 1 output", std::chrono::milliseconds(10000));
  late.join();
  REQUIRE(client.ok());
  REQUIRE(::send(client->get(), "line", 4, 0) == 4);
  char received[8] = {};
  CHECK(::recv(server.get(), received, sizeof(received), 0) == 4);
}

TEST_CASE("a client socket that finds nothing says what and where, after its patience", "[unix-socket][hostile]") {
  TempDir directory("crosvm-unix-socket");
  const std::string path = directory.file("nobody.sock");
  const auto start = std::chrono::steady_clock::now();
  auto client = connect_unix_socket(path, SOCK_DGRAM, "serial 1 output", std::chrono::milliseconds(50));
  CHECK(std::chrono::steady_clock::now() - start >= std::chrono::milliseconds(50));
  REQUIRE_FALSE(client.ok());
  CHECK(client.error().message.find("serial 1 output: cannot connect to " + path) != std::string::npos);
  CHECK(client.error().message.find("waited 50 ms") != std::string::npos);

  // Without patience, at once; a stream client of a datagram socket is refused as such.
  UniqueFd datagrams = bound(path, SOCK_DGRAM);
  auto wrong = connect_unix_socket(path, SOCK_STREAM, "serial 1 output", {});
  REQUIRE_FALSE(wrong.ok());
  CHECK(wrong.error().message.find("cannot connect to") != std::string::npos);
  CHECK(wrong.error().message.find("waited") == std::string::npos);

  const std::string too_long(200, 'x');
  CHECK(connect_unix_socket(too_long, SOCK_DGRAM, "serial 1 output", {}).error().message.find("1 to 107 bytes") !=
        std::string::npos);
}
