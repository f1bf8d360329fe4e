// The control socket server against a fake VM: requests reach the VM and
// get answers; bad input gets an error or a dropped connection while the
// other clients are served; the socket file is made and removed safely.
#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <cstring>
#include <fstream>
#include <future>
#include <thread>
#include <vector>

#include "base/thread.h"
#include "base/unique_fd.h"
#include "control/client.h"
#include "control/server.h"
#include "temp_dir.h"
#include "hang_guard.h"

using namespace crosvm;
using crosvm::testing::eventually;
using namespace crosvm::control;
using namespace std::chrono_literals;

namespace {

class FakeVm final : public ControlTarget {
 public:
  void stop() override { stops++; }
  void suspend(std::function<void(Result<void>)> done) override {
    suspends++;
    if (refuse) return done(make_error(ErrorCode::kState, "cannot suspend a VM that is not running"));
    // Answered later from another thread, as the last vCPU to park does.
    std::thread([done = std::move(done)] { done({}); }).detach();
  }
  Result<void> resume() override {
    resumes++;
    return {};
  }
  Status status() const override { return Status{"running", 2, 128, {{0, "/a.img", 4096, false}}, {"rng"}}; }
  Result<void> resize_disk(uint32_t index, uint64_t size) override {
    if (index != 0) return make_error(ErrorCode::kInvalidArgument, "there is no disk {}", index);
    resized_to = size;
    return {};
  }

  std::atomic<int> stops{0}, suspends{0}, resumes{0};
  std::atomic<uint64_t> resized_to{0};
  bool refuse = false;
};

// An io_context on a thread of the library's own kind (its stack size
// included), as the VM's event loop.
class Loop {
 public:
  Loop() : work_(context_.get_executor()) {
    auto thread = Thread::start("control-test", [this] { context_.run(); }, {});
    REQUIRE(thread.ok());
    thread_ = std::move(thread).value();
  }
  ~Loop() {
    work_.reset();
    context_.stop();
    thread_.join();
  }
  boost::asio::io_context& context() { return context_; }
  // Runs `task` on the loop and waits for it.
  void run(std::function<void()> task) {
    std::promise<void> done;
    boost::asio::post(context_, [&] {
      task();
      done.set_value();
    });
    done.get_future().wait();
  }

 private:
  boost::asio::io_context context_{1};
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_;
  Thread thread_;
};

struct Fixture {
  explicit Fixture(ServerLimits limits = {}) : directory("control-test") {
    auto bound = ControlServer::bind(loop.context(), directory.file("vm.sock"), vm, Logger(), limits);
    REQUIRE(bound.ok());
    server = std::move(bound).value();
    server->start();
  }
  ~Fixture() {
    loop.run([this] { server->shutdown(); });
  }

  Response send(const std::string& line) {
    auto answer = send_request_line(server->path(), line, crosvm::testing::kHangGuard);
    REQUIRE(answer.ok());
    auto response = parse_response(*answer);
    REQUIRE(response.ok());
    return *response;
  }

  Loop loop;
  TempDir directory;
  FakeVm vm;
  std::unique_ptr<ControlServer> server;
};

// A raw client, for what a well-behaved one would never send.
class RawClient {
 public:
  explicit RawClient(const std::string& path) : fd_(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0)) {
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    path.copy(address.sun_path, sizeof(address.sun_path) - 1);
    REQUIRE(::connect(fd_.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0);
    timeval limit{10, 0};  // a hang guard
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit));
  }
  void send(const std::string& bytes) {
    size_t sent = 0;
    while (sent < bytes.size()) {
      const ssize_t n = ::send(fd_.get(), bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return;  // the server may drop us mid-way: what is read next tells
      sent += static_cast<size_t>(n);
    }
  }
  // Sends `line` again and again, in large writes, without blocking until
  // the socket takes no more; returns how many whole lines went.
  size_t send_until_full(const std::string& line) {
    std::string block;
    for (int i = 0; i < 1024; ++i) block += line;
    size_t total = 0;
    for (;;) {
      const size_t offset = total % block.size();
      const ssize_t n = ::send(fd_.get(), block.data() + offset, block.size() - offset, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n <= 0) return total / line.size();
      total += static_cast<size_t>(n);
    }
  }
  // One line, or "" at end of file.
  std::string read_line() {
    for (;;) {
      const size_t newline = received_.find('\n');
      if (newline != std::string::npos) {
        std::string line = received_.substr(0, newline);
        received_.erase(0, newline + 1);
        return line;
      }
      char buffer[4096];
      const ssize_t n = ::recv(fd_.get(), buffer, sizeof(buffer), 0);
      if (n <= 0) return "";
      received_.append(buffer, static_cast<size_t>(n));
    }
  }
  Response read_response() {
    auto response = parse_response(read_line());
    REQUIRE(response.ok());
    return *response;
  }
  bool closed_by_server() { return read_line().empty(); }

 private:
  UniqueFd fd_;
  std::string received_;
};

}  // namespace

TEST_CASE("each request reaches the VM and is answered", "[control]") {
  Fixture fixture;
  Response status = fixture.send(R"({"request":"status","id":1})");
  CHECK(status.ok);
  CHECK(status.id == 1);
  REQUIRE(status.status.has_value());
  CHECK(status.status->vcpus == 2);
  CHECK(status.status->disks.at(0).path == "/a.img");

  CHECK(fixture.send(R"({"request":"suspend"})").ok);
  CHECK(fixture.vm.suspends == 1);
  CHECK(fixture.send(R"({"request":"resume"})").ok);
  CHECK(fixture.vm.resumes == 1);
  CHECK(fixture.send(R"({"request":"disk_resize","disk":0,"size":8192})").ok);
  CHECK(fixture.vm.resized_to == 8192);
  CHECK(fixture.send(R"({"request":"stop"})").ok);
  // The stop starts once the answer is written, a moment after the client has it.
  CHECK(eventually([&] { return fixture.vm.stops == 1; }));
}

TEST_CASE("a request the VM refuses gets its error code and reason", "[control]") {
  Fixture fixture;
  Response resize = fixture.send(R"({"request":"disk_resize","disk":5,"size":8192})");
  CHECK_FALSE(resize.ok);
  CHECK(resize.error == "CROSVM_ERROR_INVALID_ARGUMENT");
  CHECK(resize.message == "there is no disk 5");
  fixture.vm.refuse = true;
  Response suspend = fixture.send(R"({"request":"suspend"})");
  CHECK(suspend.error == "CROSVM_ERROR_STATE");
}

TEST_CASE("a malformed request gets an error and the connection stays usable", "[control]") {
  Fixture fixture;
  RawClient client(fixture.server->path());
  client.send("this is not json\n{\"request\":\"launch\"}\n\n{\"request\":\"status\"}\n");
  Response first = client.read_response();
  CHECK_FALSE(first.ok);
  CHECK(first.error == "CROSVM_ERROR_PROTOCOL");
  CHECK(first.message == "the message is not valid JSON");
  Response second = client.read_response();
  CHECK(second.message.find("unknown request \"launch\"") == 0);
  CHECK(client.read_response().ok);  // the blank line was skipped
}

TEST_CASE("1000 malformed requests in a row leave the server serving", "[control]") {
  Fixture fixture;
  RawClient client(fixture.server->path());
  std::string garbage;
  for (int i = 0; i < 1000; ++i) garbage += (i % 2 ? "{\"request\":\"stop\",\"x\":1}\n" : "\x01\x02}{\n");
  client.send(garbage);
  for (int i = 0; i < 1000; ++i) REQUIRE_FALSE(client.read_response().ok);
  CHECK(fixture.vm.stops == 0);
  CHECK(fixture.send(R"({"request":"status"})").ok);
}

TEST_CASE("a stop from a client that hangs up at once still stops the VM", "[control]") {
  Fixture fixture;
  {
    RawClient client(fixture.server->path());
    client.send("{\"request\":\"stop\"}\n");
  }  // gone before the answer
  CHECK(eventually([&] { return fixture.vm.stops == 1; }));
  CHECK(fixture.send(R"({"request":"status"})").ok);
}

TEST_CASE("an oversized message is refused and its sender dropped", "[control]") {
  Fixture fixture;
  RawClient client(fixture.server->path());
  client.send(std::string(kMaxMessageBytes + 4096, 'x'));
  Response response = client.read_response();
  CHECK(response.error == "CROSVM_ERROR_PROTOCOL");
  CHECK(response.message.find("longer than") != std::string::npos);
  CHECK(client.closed_by_server());
  CHECK(fixture.send(R"({"request":"status"})").ok);
}

TEST_CASE("half a message, or silence, is dropped after the idle limit", "[control]") {
  Fixture fixture(ServerLimits{.max_clients = 16, .idle_timeout = 1s});
  RawClient silent(fixture.server->path());
  RawClient half(fixture.server->path());
  half.send("{\"request\":\"sta");
  // Meanwhile another client is served.
  CHECK(fixture.send(R"({"request":"status"})").ok);
  for (RawClient* client : {&silent, &half}) {
    Response response = client->read_response();
    CHECK(response.error == "CROSVM_ERROR_TIMEOUT");
    CHECK(client->closed_by_server());
  }
}

TEST_CASE("blank lines by the thousand are skipped, then the request is served", "[control]") {
  // Each read takes 4096 of them at once: skipping them must not nest calls
  // on the event loop's 1 MiB stack.
  Fixture fixture;
  RawClient client(fixture.server->path());
  client.send(std::string(1 << 20, '\n') + "{\"request\":\"status\",\"id\":7}\n");
  Response response = client.read_response();
  CHECK(response.ok);
  CHECK(response.id == 7);
}

TEST_CASE("a client that sends and never reads its answers is dropped at the deadline", "[control]") {
  Fixture fixture(ServerLimits{.max_clients = 1, .idle_timeout = 1s});
  RawClient greedy(fixture.server->path());
  const size_t requests = greedy.send_until_full("{\"request\":\"status\"}\n");
  REQUIRE(requests > 0);
  // Its answers fill the socket and the server's write waits: at the
  // deadline the connection is closed, and its slot goes to the next client.
  // Until then a newcomer is refused ("too many clients"), and may find the
  // connection closed before its request is even written.
  CHECK(eventually([&] {
    auto answer = send_request_line(fixture.server->path(), R"({"request":"status"})", crosvm::testing::kHangGuard);
    auto response = answer ? parse_response(*answer) : Result<Response>(answer.error());
    return response.ok() && response->ok;
  }));
  size_t answered = 0;
  while (!greedy.read_line().empty()) ++answered;
  CHECK(answered < requests);
}

TEST_CASE("several clients are served at once, up to the limit", "[control]") {
  Fixture fixture(ServerLimits{.max_clients = 3, .idle_timeout = 60s});
  RawClient a(fixture.server->path()), b(fixture.server->path()), c(fixture.server->path());
  for (RawClient* client : {&c, &a, &b}) client->send("{\"request\":\"status\"}\n");
  for (RawClient* client : {&a, &b, &c}) CHECK(client->read_response().ok);
  RawClient extra(fixture.server->path());
  Response refused = extra.read_response();
  CHECK_FALSE(refused.ok);
  CHECK(refused.message.find("too many clients") == 0);
  CHECK(extra.closed_by_server());
  a.send("{\"request\":\"resume\"}\n");
  CHECK(a.read_response().ok);
}

TEST_CASE("the socket is private to its owner and goes away on shutdown", "[control]") {
  Fixture fixture;
  const std::string path = fixture.server->path();
  struct stat info {};
  REQUIRE(::stat(path.c_str(), &info) == 0);
  CHECK(S_ISSOCK(info.st_mode));
  CHECK((info.st_mode & 0777) == 0600);
  fixture.loop.run([&] { fixture.server->shutdown(); });
  CHECK(::access(path.c_str(), F_OK) != 0);
}

TEST_CASE("a directory gets a socket named after the process", "[control]") {
  TempDir directory("control-dir");
  auto path = resolve_socket_path(directory.path() + "/");
  REQUIRE(path.ok());
  CHECK(*path == directory.path() + "/crosvm-" + std::to_string(::getpid()) + ".sock");
  auto plain = resolve_socket_path(directory.file("x.sock"));
  REQUIRE(plain.ok());
  CHECK(*plain == directory.file("x.sock"));
}

TEST_CASE("two VMs of one process given the same directory get a socket each", "[control]") {
  TempDir directory("control-two");
  Loop first_loop, second_loop;
  FakeVm first_vm, second_vm;
  auto first = ControlServer::bind(first_loop.context(), directory.path(), first_vm, Logger());
  REQUIRE(first.ok());
  auto second = ControlServer::bind(second_loop.context(), directory.path(), second_vm, Logger());
  REQUIRE(second.ok());
  const std::string pid = std::to_string(::getpid());
  CHECK((*first)->path() == directory.file("crosvm-" + pid + ".sock"));
  CHECK((*second)->path() == directory.file("crosvm-" + pid + "-2.sock"));
  first_loop.run([&] { (*first)->shutdown(); });
  second_loop.run([&] { (*second)->shutdown(); });
}

TEST_CASE("a live socket whose backlog is full is refused without waiting on it", "[control]") {
  TempDir directory("control-busy");
  const std::string path = directory.file("busy.sock");
  // A process that listens with a backlog of 0 and never accepts: one
  // pending connection fills it, and a blocking connect() would hang.
  UniqueFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
  REQUIRE(::bind(listener.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0);
  REQUIRE(::listen(listener.get(), 0) == 0);
  std::vector<UniqueFd> pending;
  for (int i = 0; i < 4; ++i) {
    UniqueFd client(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (::connect(client.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) != 0) break;
    pending.push_back(std::move(client));
  }
  Loop loop;
  FakeVm vm;
  auto refused = std::async(std::launch::async, [&] { return ControlServer::bind(loop.context(), path, vm, Logger()); });
  REQUIRE(refused.wait_for(crosvm::testing::kHangGuard) == std::future_status::ready);
  auto result = refused.get();
  REQUIRE_FALSE(result.ok());
  CHECK(result.error().message.find("in use by a running process") != std::string::npos);
  CHECK(::access(path.c_str(), F_OK) == 0);  // the live socket was left alone
}

TEST_CASE("a live VMM's socket is refused, a dead one's replaced", "[control]") {
  Fixture fixture;
  Loop other_loop;
  FakeVm other_vm;
  auto second = ControlServer::bind(other_loop.context(), fixture.server->path(), other_vm, Logger());
  REQUIRE_FALSE(second.ok());
  CHECK(second.error().code == ErrorCode::kIo);
  CHECK(second.error().message.find("in use by a running process") != std::string::npos);

  // A socket file nobody listens on, as a killed VMM leaves behind.
  const std::string stale = fixture.directory.file("stale.sock");
  {
    UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM, 0));
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    stale.copy(address.sun_path, sizeof(address.sun_path) - 1);
    REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0);
  }
  auto replaced = ControlServer::bind(other_loop.context(), stale, other_vm, Logger());
  REQUIRE(replaced.ok());
  (*replaced)->start();
  CHECK(send_request(stale, Request{RequestKind::kResume}, crosvm::testing::kHangGuard).ok());
  other_loop.run([&] { (*replaced)->shutdown(); });
}

TEST_CASE("a path that holds a file, or is too long, is refused", "[control]") {
  TempDir directory("control-bad");
  Loop loop;
  FakeVm vm;
  std::ofstream(directory.file("plain")) << "data";
  auto file = ControlServer::bind(loop.context(), directory.file("plain"), vm, Logger());
  REQUIRE_FALSE(file.ok());
  CHECK(file.error().message.find("is not a socket") != std::string::npos);
  auto long_path = ControlServer::bind(loop.context(), directory.file(std::string(200, 'x')), vm, Logger());
  REQUIRE_FALSE(long_path.ok());
  CHECK(long_path.error().code == ErrorCode::kInvalidArgument);
}

TEST_CASE("the client reports a missing socket", "[control]") {
  TempDir directory("control-client");
  auto missing = send_request(directory.file("none.sock"), Request{}, 1s);
  REQUIRE_FALSE(missing.ok());
  CHECK(missing.error().code == ErrorCode::kIo);
  CHECK(missing.error().message.find("cannot connect") == 0);
}

TEST_CASE("the client reports an answer that is not a response", "[control]") {
  TempDir directory("control-garbage");
  const std::string path = directory.file("garbage.sock");
  UniqueFd listener(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
  REQUIRE(::bind(listener.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0);
  REQUIRE(::listen(listener.get(), 1) == 0);
  std::thread server([&] {
    UniqueFd client(::accept(listener.get(), nullptr, nullptr));
    char request[256];
    (void)::recv(client.get(), request, sizeof(request), 0);
    const char answer[] = "this is not json\n";
    (void)::send(client.get(), answer, sizeof(answer) - 1, MSG_NOSIGNAL);
  });
  auto answer = send_request(path, Request{}, crosvm::testing::kHangGuard);
  server.join();
  REQUIRE_FALSE(answer.ok());
  CHECK(answer.error().code == ErrorCode::kProtocol);
}
