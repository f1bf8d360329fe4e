// The control socket server against a fake VM: requests reach the VM and
// get answers; bad input gets an error or a dropped connection while the
// other clients are served; the socket file is made and removed safely.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
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
  Status status() const override {
    Status status{"running", 2, 128, {{0, "/a.img", 4096, false}}, {"rng"}};
    for (size_t i = 0; i < extra_devices; ++i) status.devices.push_back(std::string(100, 'd'));
    return status;
  }
  Result<void> resize_disk(uint32_t index, uint64_t size) override {
    if (index != 0) return make_error(ErrorCode::kInvalidArgument, "there is no disk {}", index);
    resized_to = size;
    return {};
  }
  Result<void> press_power_button() override {
    presses++;
    return {};
  }
  int changes() const { return stops + suspends + resumes + presses + (resized_to != 0 ? 1 : 0); }

  std::atomic<int> stops{0}, suspends{0}, resumes{0}, presses{0};
  std::atomic<uint64_t> resized_to{0};
  bool refuse = false;
  size_t extra_devices = 0;  // a status that takes room
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

// A raw client, for what a well-behaved one would never send: one packet
// per send, as crosvm's Tube.
class RawClient {
 public:
  explicit RawClient(const std::string& path) : fd_(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0)) {
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    path.copy(address.sun_path, sizeof(address.sun_path) - 1);
    REQUIRE(::connect(fd_.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0);
    timeval limit{10, 0};  // a hang guard
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof(limit));
  }
  // Sends one packet, with `fds` attached when given.
  void send(const std::string& packet, const std::vector<int>& fds = {}) {
    iovec part{const_cast<char*>(packet.data()), packet.size()};
    msghdr message{};
    message.msg_iov = &part;
    message.msg_iovlen = 1;
    std::vector<char> control(CMSG_SPACE(sizeof(int) * fds.size()));
    if (!fds.empty()) {
      message.msg_control = control.data();
      message.msg_controllen = control.size();
      cmsghdr* header = CMSG_FIRSTHDR(&message);
      header->cmsg_level = SOL_SOCKET;
      header->cmsg_type = SCM_RIGHTS;
      header->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
      std::memcpy(CMSG_DATA(header), fds.data(), sizeof(int) * fds.size());
    }
    ::sendmsg(fd_.get(), &message, MSG_NOSIGNAL);  // the server may drop us: what is read next tells
  }
  // Sends `packet` again and again without blocking until the socket takes
  // no more; returns how many went.
  size_t send_until_full(const std::string& packet) {
    size_t sent = 0;
    while (::send(fd_.get(), packet.data(), packet.size(), MSG_NOSIGNAL | MSG_DONTWAIT) > 0) ++sent;
    return sent;
  }
  // One packet, or "" at end of file.
  std::string read_packet() {
    std::string packet(1 << 20, '\0');
    const ssize_t n = ::recv(fd_.get(), packet.data(), packet.size(), 0);
    packet.resize(n > 0 ? static_cast<size_t>(n) : 0);
    return packet;
  }
  Response read_response() {
    auto response = parse_response(read_packet());
    REQUIRE(response.ok());
    return *response;
  }
  bool closed_by_server() { return read_packet().empty(); }

 private:
  UniqueFd fd_;
};

// A socket of `type` listening at `path`, as another process's would.
UniqueFd listen_at(const std::string& path, int type, int backlog, sockaddr_un& address) {
  UniqueFd listener(::socket(AF_UNIX, type | SOCK_CLOEXEC, 0));
  address = sockaddr_un{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path.c_str(), sizeof(address.sun_path) - 1);
  REQUIRE(::bind(listener.get(), reinterpret_cast<sockaddr*>(&address), sizeof(address)) == 0);
  REQUIRE(::listen(listener.get(), backlog) == 0);
  return listener;
}

size_t open_fds() {
  size_t count = 0;
  for ([[maybe_unused]] const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) ++count;
  return count;
}

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

TEST_CASE("crosvm's requests, as its own clients send them, get crosvm's answers", "[control]") {
  // The packets crosvm's `crosvm` command and its crosvm_control library
  // send: serde_json of its VmRequest, one per SOCK_SEQPACKET packet. The
  // answers are serde_json of its VmResponse.
  Fixture fixture;
  RawClient client(fixture.server->path());
  auto exchange = [&](const std::string& request) {
    client.send(request);
    return client.read_packet();
  };
  CHECK(exchange(R"("Powerbtn")") == R"("Ok")");
  CHECK(fixture.vm.presses == 1);
  CHECK(exchange(R"("SuspendVcpus")") == R"("Ok")");
  CHECK(exchange(R"("ResumeVcpus")") == R"("Ok")");
  CHECK(exchange(R"("SuspendVm")") == R"("Ok")");
  CHECK(exchange(R"("ResumeVm")") == R"("Ok")");
  CHECK(fixture.vm.suspends == 2);
  CHECK(fixture.vm.resumes == 2);
  CHECK(exchange(R"({"DiskCommand":{"disk_index":0,"command":{"Resize":{"new_size":1048576}}}})") == R"("Ok")");
  CHECK(fixture.vm.resized_to == 1048576);
  CHECK(exchange(R"({"DiskCommand":{"disk_index":5,"command":{"Resize":{"new_size":1048576}}}})") ==
        R"({"ErrString":"there is no disk 5"})");
  fixture.vm.refuse = true;
  CHECK(exchange(R"("SuspendVcpus")") == R"({"ErrString":"cannot suspend a VM that is not running"})");
  // What this VM has no device for: crosvm's own answer, ENOTSUP.
  for (const char* request : {R"("Sleepbtn")", R"("MakeRT")", R"("VcpuPidTid")", R"({"BalloonCommand":"Stats"})",
                              R"({"BalloonCommand":{"Adjust":{"num_bytes":1073741824,"wait_for_success":false}}})",
                              R"({"UsbCommand":{"ListDevice":{"ports":[0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15]}}})",
                              R"({"Gpe":{"gpe":3,"clear_evt":null}})", R"({"Swap":"Enable"})"}) {
    CAPTURE(request);
    CHECK(exchange(request) == R"({"Err":95})");
  }
  // Ours, on the same connection, in our dialect.
  client.send(R"({"request":"status","id":3})");
  CHECK(client.read_response().id == 3);
  CHECK(exchange(R"("Exit")") == R"("Ok")");
  CHECK(eventually([&] { return fixture.vm.stops == 1; }));
}

TEST_CASE("a malformed request gets an error in its dialect and the connection stays usable", "[control]") {
  Fixture fixture;
  RawClient client(fixture.server->path());
  client.send("this is not json");
  CHECK(client.read_packet() == R"({"ErrString":"the message is not valid JSON"})");
  client.send(R"("Reboot")");
  CHECK(client.read_packet() == R"({"ErrString":"unknown request \"Reboot\""})");
  client.send(R"({"DiskCommand":{"disk_index":0,"command":{"Shrink":{}}}})");
  CHECK(client.read_packet().find("ErrString") != std::string::npos);
  client.send(R"({"request":"launch"})");
  Response ours = client.read_response();
  CHECK_FALSE(ours.ok);
  CHECK(ours.error == "CROSVM_ERROR_PROTOCOL");
  CHECK(ours.message.find("unknown request \"launch\"") == 0);
  client.send(R"({"request":"status"})");
  CHECK(client.read_response().ok);
  CHECK(fixture.vm.changes() == 0);
}

TEST_CASE("1000 random packets each get an error and leave the VM as it was", "[control]") {
  Fixture fixture;
  RawClient client(fixture.server->path());
  std::mt19937 random(20261204);
  const std::vector<std::string> valid = {
      R"("Exit")", R"("Powerbtn")", R"("SuspendVcpus")", R"({"request":"stop","id":1})",
      R"({"DiskCommand":{"disk_index":0,"command":{"Resize":{"new_size":4096}}}})"};
  for (int i = 0; i < 1000; ++i) {
    std::string packet;
    if (i % 2 == 0) {  // random bytes, 1 to 512 of them
      packet.resize(1 + random() % 512);
      for (char& byte : packet) byte = static_cast<char>(random());
    } else {  // a valid request cut short: never valid JSON
      const std::string& whole = valid[random() % valid.size()];
      packet = whole.substr(0, 1 + random() % (whole.size() - 1));
    }
    client.send(packet);
    const std::string answer = client.read_packet();
    CAPTURE(i, packet);
    REQUIRE_FALSE(answer.empty());  // answered, not dropped
    auto response = parse_response(answer);
    REQUIRE(response.ok());
    REQUIRE_FALSE(response->ok);
  }
  CHECK(fixture.vm.changes() == 0);
  client.send(R"({"request":"status"})");
  CHECK(client.read_response().ok);
}

TEST_CASE("descriptors a packet brings are closed, not kept", "[control]") {
  Fixture fixture;
  RawClient client(fixture.server->path());
  client.send(R"("Powerbtn")");  // accepted and served: its socket is counted
  REQUIRE(client.read_packet() == R"("Ok")");
  const size_t before = open_fds();
  UniqueFd null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  const std::vector<int> fds(32, null.get());
  for (int i = 0; i < 64; ++i) {  // 2048 descriptors in all
    client.send(R"({"UsbCommand":{"AttachDevice":{"file":0}}})", fds);
    REQUIRE(client.read_packet() == R"({"Err":95})");
  }
  client.send(R"("Powerbtn")", fds);
  CHECK(client.read_packet() == R"("Ok")");
  CHECK(open_fds() == before + 1);  // /dev/null, ours
}

TEST_CASE("a stop from a client that hangs up at once still stops the VM", "[control]") {
  Fixture fixture;
  {
    RawClient client(fixture.server->path());
    client.send(R"("Exit")");
  }  // gone before the answer
  CHECK(eventually([&] { return fixture.vm.stops == 1; }));
  CHECK(fixture.send(R"({"request":"status"})").ok);
}

TEST_CASE("an oversized packet is refused and the connection goes on", "[control]") {
  Fixture fixture;
  RawClient client(fixture.server->path());
  client.send("\"" + std::string(kMaxMessageBytes + 4096, 'x') + "\"");
  const std::string refused = client.read_packet();
  CHECK(refused.find("ErrString") != std::string::npos);
  CHECK(refused.find("the limit is 65536") != std::string::npos);
  client.send(R"({"request":"status"})");
  CHECK(client.read_response().ok);
}

TEST_CASE("a silent client is dropped after the idle limit, without a word", "[control]") {
  Fixture fixture(ServerLimits{.max_clients = 16, .idle_timeout = 1s});
  RawClient silent(fixture.server->path());
  // Meanwhile another client is served.
  CHECK(fixture.send(R"({"request":"status"})").ok);
  // Nothing it did not ask for: a packet would be read as its next answer.
  CHECK(silent.closed_by_server());
}

TEST_CASE("a client that sends and never reads its answers is dropped at the deadline", "[control]") {
  Fixture fixture(ServerLimits{.max_clients = 1, .idle_timeout = 1s});
  fixture.vm.extra_devices = 40;  // answers of 4 KiB to requests of 20 bytes
  RawClient greedy(fixture.server->path());
  const size_t requests = greedy.send_until_full(R"({"request":"status"})");
  REQUIRE(requests > 0);
  // Its answers fill the socket and the server's send waits: at the
  // deadline the connection is closed, and its slot goes to the next client.
  // Until then a newcomer is refused ("too many clients"), and may find the
  // connection closed before its request is even sent.
  CHECK(eventually([&] {
    auto answer = send_request_line(fixture.server->path(), R"({"request":"status"})", crosvm::testing::kHangGuard);
    auto response = answer ? parse_response(*answer) : Result<Response>(answer.error());
    return response.ok() && response->ok;
  }));
  size_t answered = 0;
  while (!greedy.read_packet().empty()) ++answered;
  CHECK(answered < requests);
}

TEST_CASE("several clients are served at once, up to the limit", "[control]") {
  Fixture fixture(ServerLimits{.max_clients = 3, .idle_timeout = 60s});
  RawClient a(fixture.server->path()), b(fixture.server->path()), c(fixture.server->path());
  for (RawClient* client : {&c, &a, &b}) client->send(R"({"request":"status"})");
  for (RawClient* client : {&a, &b, &c}) CHECK(client->read_response().ok);
  RawClient extra(fixture.server->path());
  CHECK(extra.read_packet() == R"({"ErrString":"too many clients (3 at once); try again later"})");
  CHECK(extra.closed_by_server());
  a.send(R"("ResumeVcpus")");
  CHECK(a.read_packet() == R"("Ok")");
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
  sockaddr_un address{};
  UniqueFd listener = listen_at(path, SOCK_STREAM, 0, address);
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

TEST_CASE("the client names a socket of the wrong kind", "[control]") {
  TempDir directory("control-stream");
  const std::string path = directory.file("stream.sock");
  sockaddr_un address{};
  UniqueFd listener = listen_at(path, SOCK_STREAM, 1, address);
  auto answer = send_request(path, Request{}, 1s);
  REQUIRE_FALSE(answer.ok());
  CHECK(answer.error().message.find("is not a control socket of crosvm's kind") != std::string::npos);
}

TEST_CASE("the client reports an answer that is not a response", "[control]") {
  TempDir directory("control-garbage");
  const std::string path = directory.file("garbage.sock");
  sockaddr_un address{};
  UniqueFd listener = listen_at(path, SOCK_SEQPACKET, 1, address);
  std::thread server([&] {
    UniqueFd client(::accept(listener.get(), nullptr, nullptr));
    char request[256];
    (void)::recv(client.get(), request, sizeof(request), 0);
    const char answer[] = "this is not json";
    (void)::send(client.get(), answer, sizeof(answer) - 1, MSG_NOSIGNAL);
  });
  auto answer = send_request(path, Request{}, crosvm::testing::kHangGuard);
  server.join();
  REQUIRE_FALSE(answer.ok());
  CHECK(answer.error().code == ErrorCode::kProtocol);
}
