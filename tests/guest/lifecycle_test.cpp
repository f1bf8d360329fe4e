// The VM's lifecycle and its control socket, driven through the C ABI with
// a guest that ticks forever: pause stops its progress, resume continues it,
// stop ends it; callbacks delivered on the embedder's own thread.
#include <catch2/catch.hpp>
#include <crosvm/crosvm.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "guest_vm.h"
#include "temp_dir.h"
#include "temp_file.h"

using namespace guest_tests;
using namespace std::chrono_literals;

namespace {

constexpr int64_t kHangGuardMs = 60000;  // a hang guard, never a timing check

std::string control(const std::string& socket, const std::string& request, int expected = CROSVM_OK) {
  char* response = nullptr;
  const int result = crosvm_control_request(&response, socket.c_str(), request.c_str(), kHangGuardMs);
  INFO(request << " -> " << crosvm_error_message());
  CHECK(result == expected);
  std::string text = response != nullptr ? response : "";
  crosvm_string_free(response);
  return text;
}

// Waits (within the hang guard) until the guest has printed `more` ticks
// beyond what it had: it makes progress.
bool ticks_on(GuestVm& vm, int more = 2) {
  const size_t now = vm.output().size();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kHangGuardMs);
  while (std::chrono::steady_clock::now() < deadline) {
    const std::string output = vm.output();
    int seen = 0;
    for (size_t at = output.find("tick", now); at != std::string::npos; at = output.find("tick", at + 1)) ++seen;
    if (seen >= more) return true;
    std::this_thread::sleep_for(10ms);
  }
  return false;
}

// True when the guest prints nothing for a while (it is held).
bool stays_silent(GuestVm& vm) {
  const std::string before = vm.output();
  std::this_thread::sleep_for(300ms);
  return vm.output() == before;
}

}  // namespace

TEST_CASE("pause stops the guest's progress and resume continues it", "[guest][lifecycle]") {
  GuestVm vm("ticker");
  CHECK(crosvm_vm_get_state(vm.handle()) == CROSVM_STATE_CREATED);
  vm.start();
  REQUIRE(ticks_on(vm));
  CHECK(crosvm_vm_get_state(vm.handle()) == CROSVM_STATE_RUNNING);

  REQUIRE(crosvm_vm_pause(vm.handle()) == CROSVM_OK);
  CHECK(crosvm_vm_get_state(vm.handle()) == CROSVM_STATE_PAUSED);
  CHECK(stays_silent(vm));
  CHECK(crosvm_vm_pause(vm.handle()) == CROSVM_OK);  // already paused: nothing to do

  REQUIRE(crosvm_vm_resume(vm.handle()) == CROSVM_OK);
  CHECK(crosvm_vm_get_state(vm.handle()) == CROSVM_STATE_RUNNING);
  CHECK(ticks_on(vm));

  // A stop returns (within the hang guard) with every thread joined.
  auto stopped = std::async(std::launch::async, [&] { return crosvm_vm_stop(vm.handle()); });
  REQUIRE(stopped.wait_for(std::chrono::milliseconds(kHangGuardMs)) == std::future_status::ready);
  CHECK(stopped.get() == CROSVM_OK);
  CHECK(crosvm_vm_get_state(vm.handle()) == CROSVM_STATE_STOPPED);
  CHECK(crosvm_vm_exit_reason(vm.handle()) == CROSVM_EXIT_STOPPED);
  CHECK(crosvm_vm_resume(vm.handle()) == CROSVM_ERROR_STATE);
}

TEST_CASE("a pause that a resume overtakes returns instead of waiting for good", "[guest][lifecycle]") {
  GuestVm vm("ticker", 64, 2);
  vm.start();
  REQUIRE(ticks_on(vm));
  for (int round = 0; round < 200; ++round) {
    auto paused = std::async(std::launch::async, [&] { return crosvm_vm_pause(vm.handle()); });
    (void)crosvm_vm_resume(vm.handle());  // before, during or after the pause
    REQUIRE(paused.wait_for(std::chrono::milliseconds(kHangGuardMs)) == std::future_status::ready);
    const int result = paused.get();
    INFO("round " << round << ": " << crosvm_error_message());
    CHECK((result == CROSVM_OK || result == CROSVM_ERROR_STATE));
    if (crosvm_vm_get_state(vm.handle()) == CROSVM_STATE_PAUSED) {
      REQUIRE(crosvm_vm_resume(vm.handle()) == CROSVM_OK);
    }
  }
  CHECK(crosvm_vm_get_state(vm.handle()) == CROSVM_STATE_RUNNING);
  CHECK(ticks_on(vm));
}

TEST_CASE("a paused VM can be stopped and destroyed", "[guest][lifecycle]") {
  GuestVm vm("ticker", 64, 2);
  vm.start();
  REQUIRE(ticks_on(vm));
  REQUIRE(crosvm_vm_pause(vm.handle()) == CROSVM_OK);
  CHECK(crosvm_vm_stop(vm.handle()) == CROSVM_OK);
  CHECK(crosvm_vm_exit_reason(vm.handle()) == CROSVM_EXIT_STOPPED);
}

TEST_CASE("a VM says its vsock CID", "[guest][vsock]") {
  if (::access("/dev/vhost-vsock", R_OK | W_OK) != 0) {
    WARN("no /dev/vhost-vsock here: not checked");
    return;
  }
  const uint64_t cid = 3000 + static_cast<uint64_t>(::getpid()) % 100000;
  GuestVm vm("ticker", 64, 1, [&](crosvm_config* config) {
    REQUIRE(crosvm_config_add_device(config, "vsock", ("cid=" + std::to_string(cid)).c_str()) == CROSVM_OK);
  });
  CHECK(crosvm_vm_vsock_cid(vm.handle()) == cid);
}

TEST_CASE("the control socket suspends, resumes, reports and stops a VM", "[guest][control]") {
  TempDir directory("lifecycle");
  GuestVm vm("ticker", 64, 1, [&](crosvm_config* config) {
    REQUIRE(crosvm_config_set_control_socket(config, directory.path().c_str()) == CROSVM_OK);
    REQUIRE(crosvm_config_add_device(config, "serial", "hardware=debugcon,type=sink,name=firmware log") == CROSVM_OK);
  });
  const std::string socket = crosvm_vm_control_socket_path(vm.handle());
  CHECK(socket == directory.file("crosvm-" + std::to_string(::getpid()) + ".sock"));
  CHECK(crosvm_vm_vsock_cid(vm.handle()) == 0);  // no vsock device
  struct stat info {};
  REQUIRE(::stat(socket.c_str(), &info) == 0);
  CHECK((info.st_mode & 0777) == 0600);

  vm.start();
  REQUIRE(ticks_on(vm));
  const std::string status = control(socket, R"({"request":"status"})");
  CHECK(status.find(R"("state":"running")") != std::string::npos);
  CHECK(status.find(R"("vcpus":1)") != std::string::npos);
  CHECK(status.find(R"("memory_mib":64)") != std::string::npos);
  CHECK(status.find("serial1 (8250 UART, ttyS0)") != std::string::npos);
  CHECK(status.find(R"(debugcon1 (Bochs debug port 0x402) \"firmware log\")") != std::string::npos);

  control(socket, R"({"request":"suspend"})");
  CHECK(crosvm_vm_get_state(vm.handle()) == CROSVM_STATE_PAUSED);
  CHECK(stays_silent(vm));
  CHECK(control(socket, R"({"request":"status"})").find(R"("state":"paused")") != std::string::npos);
  control(socket, R"({"request":"resume"})");
  CHECK(ticks_on(vm));
  control(socket, R"({"request":"resume"})");  // running already: fine

  control(socket, R"({"request":"stop"})");
  CHECK(vm.wait_for_exit() == CROSVM_EXIT_STOPPED);
  CHECK(::access(socket.c_str(), F_OK) != 0);  // removed with the VM
}

TEST_CASE("a second VM cannot take a live VM's control socket", "[guest][control]") {
  TempDir directory("lifecycle");
  const std::string socket = directory.file("vm.sock");
  GuestVm first("ticker", 64, 1, [&](crosvm_config* config) {
    REQUIRE(crosvm_config_set_control_socket(config, socket.c_str()) == CROSVM_OK);
  });
  crosvm_config* config = nullptr;
  REQUIRE(crosvm_config_create(&config) == CROSVM_OK);
  REQUIRE(crosvm_config_set_kernel(config, program_path("ticker").c_str()) == CROSVM_OK);
  REQUIRE(crosvm_config_set_memory_mib(config, 64) == CROSVM_OK);
  REQUIRE(crosvm_config_set_log(config, CROSVM_LOG_ERROR, nullptr, nullptr) == CROSVM_OK);
  REQUIRE(crosvm_config_set_control_socket(config, socket.c_str()) == CROSVM_OK);
  crosvm_vm* second = nullptr;
  CHECK(crosvm_vm_create(&second, config) == CROSVM_ERROR_IO);
  CHECK(std::string(crosvm_error_message()).find("in use by a running process") != std::string::npos);
  CHECK(second == nullptr);
  crosvm_config_destroy(config);
  CHECK(::access(socket.c_str(), F_OK) == 0);  // the first VM's socket is untouched
}

TEST_CASE("disks grow through the control socket; read-only ones and shrinking are refused",
          "[guest][control]") {
  TempDir directory("lifecycle");
  const std::vector<uint8_t> image(1 << 20, 0);
  TempFile writable("resize-rw", image);
  TempFile read_only("resize-ro", image);
  const std::string socket = directory.file("vm.sock");
  GuestVm vm("ticker", 64, 1, [&](crosvm_config* config) {
    REQUIRE(crosvm_config_set_control_socket(config, socket.c_str()) == CROSVM_OK);
    crosvm_disk_options disk = CROSVM_DISK_OPTIONS_INIT;
    disk.path = writable.path().c_str();
    REQUIRE(crosvm_config_add_disk(config, &disk) == CROSVM_OK);
    disk.path = read_only.path().c_str();
    disk.flags = CROSVM_DISK_READ_ONLY;
    REQUIRE(crosvm_config_add_disk(config, &disk) == CROSVM_OK);
  });
  vm.start();
  REQUIRE(ticks_on(vm));

  control(socket, R"({"request":"disk_resize","disk":0,"size":4194304})");
  struct stat info {};
  REQUIRE(::stat(writable.path().c_str(), &info) == 0);
  CHECK(info.st_size == 4194304);
  CHECK(control(socket, R"({"request":"status"})").find(R"("size":4194304)") != std::string::npos);

  CHECK(control(socket, R"({"request":"disk_resize","disk":0,"size":1048576})", CROSVM_ERROR_INVALID_ARGUMENT)
            .find("shrinking it") != std::string::npos);
  CHECK(control(socket, R"({"request":"disk_resize","disk":1,"size":4194304})", CROSVM_ERROR_INVALID_ARGUMENT)
            .find("read-only") != std::string::npos);
  control(socket, R"({"request":"disk_resize","disk":2,"size":4194304})", CROSVM_ERROR_INVALID_ARGUMENT);
  REQUIRE(::stat(read_only.path().c_str(), &info) == 0);
  CHECK(info.st_size == 1 << 20);
  CHECK(ticks_on(vm));  // the guest is undisturbed
}

namespace {

struct DispatchedEvents {
  std::string output;
  crosvm_exit_reason reason = CROSVM_EXIT_NONE;
  std::thread::id exit_thread;
  crosvm_vm* destroy_on_exit = nullptr;
};

void on_dispatched_output(const uint8_t* data, size_t length, void* userdata) {
  static_cast<DispatchedEvents*>(userdata)->output.append(reinterpret_cast<const char*>(data), length);
}

void on_dispatched_exit(crosvm_exit_reason reason, void* userdata) {
  auto* events = static_cast<DispatchedEvents*>(userdata);
  events->reason = reason;
  events->exit_thread = std::this_thread::get_id();
  // Allowed from a dispatched callback: freed once this returns.
  if (events->destroy_on_exit != nullptr) crosvm_vm_destroy(events->destroy_on_exit);
}

}  // namespace

TEST_CASE("an embedder's loop gets callbacks on its own thread through the event fd",
          "[guest][lifecycle]") {
  DispatchedEvents events;
  crosvm_config* config = nullptr;
  REQUIRE(crosvm_config_create(&config) == CROSVM_OK);
  REQUIRE(crosvm_config_set_kernel(config, program_path("ticker").c_str()) == CROSVM_OK);
  REQUIRE(crosvm_config_set_memory_mib(config, 64) == CROSVM_OK);
  crosvm_serial_options serial = CROSVM_SERIAL_OPTIONS_INIT;
  serial.type = CROSVM_SERIAL_CALLBACK;
  serial.callback = &on_dispatched_output;
  serial.userdata = &events;
  REQUIRE(crosvm_config_add_serial(config, &serial) == CROSVM_OK);
  REQUIRE(crosvm_config_set_callback_mode(config, CROSVM_CALLBACKS_ON_DISPATCH) == CROSVM_OK);
  REQUIRE(crosvm_config_set_exit_callback(config, &on_dispatched_exit, &events) == CROSVM_OK);
  crosvm_vm* vm = nullptr;
  REQUIRE(crosvm_vm_create(&vm, config) == CROSVM_OK);
  crosvm_config_destroy(config);
  events.destroy_on_exit = vm;
  int fd = -1;
  REQUIRE(crosvm_vm_event_fd(&fd, vm) == CROSVM_OK);
  REQUIRE(crosvm_vm_start(vm) == CROSVM_OK);

  // The embedder's loop: poll the fd, dispatch; stop after a few ticks.
  bool stop_requested = false;
  for (int rounds = 0; events.reason == CROSVM_EXIT_NONE && rounds < 100000; ++rounds) {
    pollfd entry{fd, POLLIN, 0};
    REQUIRE(::poll(&entry, 1, static_cast<int>(kHangGuardMs)) == 1);
    size_t ran = 0;
    REQUIRE(crosvm_vm_dispatch(&ran, vm) == CROSVM_OK);
    if (!stop_requested && events.output.find("tick 3\n") != std::string::npos) {
      REQUIRE(crosvm_vm_request_stop(vm) == CROSVM_OK);  // returns at once
      stop_requested = true;
    }
  }
  CHECK(stop_requested);
  CHECK(events.reason == CROSVM_EXIT_STOPPED);
  CHECK(events.exit_thread == std::this_thread::get_id());
  CHECK(events.output.rfind("tick 0\ntick 1\ntick 2\ntick 3\n", 0) == 0);
  // `vm` was freed by the exit callback.
}

TEST_CASE("the exit callback runs on the VM's thread by default", "[guest][lifecycle]") {
  DispatchedEvents events;
  GuestVm vm("hello", 64, 1, [&](crosvm_config* config) {
    REQUIRE(crosvm_config_set_exit_callback(config, &on_dispatched_exit, &events) == CROSVM_OK);
  });
  int fd = -1;
  CHECK(crosvm_vm_event_fd(&fd, vm.handle()) == CROSVM_ERROR_STATE);
  vm.start();
  CHECK(vm.wait_for_exit() == CROSVM_EXIT_POWEROFF);
  CHECK(events.reason == CROSVM_EXIT_POWEROFF);
  CHECK(events.exit_thread != std::this_thread::get_id());
}

TEST_CASE("a disk its guest keeps busy does not hold up the control socket", "[guest][lifecycle][virtio][hostile]") {
  // The guest offers each read again the moment it completes: the disk's
  // queue is never empty. Status requests are still answered, and the
  // disk is still being served after them.
  const TempFile image("crosvm-busy-disk", std::vector<uint8_t>(1 << 20, 0x5a));
  TempDir directory("lifecycle");
  const std::string socket = directory.path() + "/busy.sock";
  GuestVm vm("virtio_blk", 64, 1, [&](crosvm_config* config) {
    crosvm_disk_options disk = CROSVM_DISK_OPTIONS_INIT;
    disk.path = image.path().c_str();
    REQUIRE(crosvm_config_add_disk(config, &disk) == CROSVM_OK);
    REQUIRE(crosvm_config_append_params(config, "busy") == CROSVM_OK);
    REQUIRE(crosvm_config_set_control_socket(config, socket.c_str()) == CROSVM_OK);
  });
  vm.start();
  REQUIRE(vm.wait_for_output("busy 100\n"));
  for (int i = 0; i < 20; ++i) {
    CHECK(control(socket, R"({"request":"status"})").find("\"running\"") != std::string::npos);
  }
  const size_t progress = vm.output().size();
  CHECK(vm.wait_for_output_after(progress, "busy "));
  CHECK(crosvm_vm_stop(vm.handle()) == CROSVM_OK);
  CHECK(vm.log().find("needs a reset") == std::string::npos);
}

namespace {

// The names of this process's threads, from /proc/self/task/*/comm.
std::vector<std::string> thread_names() {
  std::vector<std::string> names;
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(task.path() / "comm");
    std::string name;
    if (std::getline(comm, name)) names.push_back(name);
  }
  return names;
}

// crosvm_vm_run() on a thread of the test's: its result and reason when
// it returns, and the thread's id (the one the VM's loop then runs on).
std::pair<std::future<std::pair<int, crosvm_exit_reason>>, std::thread::id> run_on_a_thread(GuestVm& vm) {
  std::promise<std::thread::id> runner_id;
  auto ran = std::async(std::launch::async, [&vm, &runner_id] {
    runner_id.set_value(std::this_thread::get_id());
    crosvm_exit_reason reason = CROSVM_EXIT_NONE;
    const int result = crosvm_vm_run(&reason, vm.handle());
    return std::make_pair(result, reason);
  });
  const std::thread::id runner = runner_id.get_future().get();
  return {std::move(ran), runner};
}

}  // namespace

TEST_CASE("crosvm_vm_run serves the VM's loop on the calling thread", "[guest][lifecycle][control]") {
  TempDir directory("lifecycle");
  DispatchedEvents events;
  GuestVm vm("ticker", 64, 1, [&](crosvm_config* config) {
    REQUIRE(crosvm_config_set_control_socket(config, directory.path().c_str()) == CROSVM_OK);
    REQUIRE(crosvm_config_set_exit_callback(config, &on_dispatched_exit, &events) == CROSVM_OK);
  });
  const std::string socket = crosvm_vm_control_socket_path(vm.handle());
  auto [ran, runner] = run_on_a_thread(vm);
  REQUIRE(ticks_on(vm));
  // The control socket is answered by the loop, which no thread of the
  // library's runs: the caller of crosvm_vm_run does.
  CHECK(control(socket, R"({"request":"status"})").find(R"("state":"running")") != std::string::npos);
  const std::vector<std::string> names = thread_names();
  CHECK(std::count(names.begin(), names.end(), "crosvm_vcpu0") == 1);
  CHECK(std::count(names.begin(), names.end(), "crosvm_loop") == 0);
  // A second start while it runs is refused, as for crosvm_vm_start.
  CHECK(crosvm_vm_run(nullptr, vm.handle()) == CROSVM_ERROR_STATE);

  control(socket, R"({"request":"stop"})");
  REQUIRE(ran.wait_for(std::chrono::milliseconds(kHangGuardMs)) == std::future_status::ready);
  const auto [result, reason] = ran.get();
  CHECK(result == CROSVM_OK);
  CHECK(reason == CROSVM_EXIT_STOPPED);
  CHECK(events.reason == CROSVM_EXIT_STOPPED);
  CHECK(events.exit_thread == runner);  // the exit callback came from the loop, on that thread
  CHECK(vm.wait_for_exit() == CROSVM_EXIT_STOPPED);  // waiting afterwards still answers
  CHECK(::access(socket.c_str(), F_OK) != 0);
}

TEST_CASE("crosvm_vm_run returns the guest's own ending", "[guest][lifecycle]") {
  GuestVm vm("hello");
  crosvm_exit_reason reason = CROSVM_EXIT_NONE;
  INFO(crosvm_error_message());
  REQUIRE(crosvm_vm_run(&reason, vm.handle()) == CROSVM_OK);
  CHECK(reason == CROSVM_EXIT_POWEROFF);
  CHECK(vm.output().find("hello from a tiny guest") != std::string::npos);
  CHECK(crosvm_vm_run(&reason, vm.handle()) == CROSVM_ERROR_STATE);  // once only
}

namespace {

// An embedder's pipe, watched on the VM's loop: each byte read is noted
// with the thread that read it; an 's' asks the VM to stop.
struct WatchedPipe {
  crosvm_vm* vm = nullptr;
  std::mutex mutex;
  std::string read;
  std::vector<std::thread::id> threads;
};

uint32_t on_watched_pipe(int fd, uint32_t ready, void* userdata) {
  auto* pipe = static_cast<WatchedPipe*>(userdata);
  char byte = 0;
  if ((ready & CROSVM_WATCH_READABLE) == 0 || ::read(fd, &byte, 1) != 1) return 0;
  {
    std::lock_guard lock(pipe->mutex);
    pipe->read.push_back(byte);
    pipe->threads.push_back(std::this_thread::get_id());
  }
  if (byte == 's') crosvm_vm_request_stop(pipe->vm);  // allowed from a loop callback
  return CROSVM_WATCH_READABLE;
}

}  // namespace

TEST_CASE("an embedder's descriptor is served inside crosvm_vm_run, on the caller's thread",
          "[guest][lifecycle]") {
  GuestVm vm("ticker");
  int fds[2];
  REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
  WatchedPipe watched;
  watched.vm = vm.handle();
  REQUIRE(crosvm_vm_watch_fd(vm.handle(), fds[0], CROSVM_WATCH_READABLE, on_watched_pipe, &watched) == CROSVM_OK);
  ::close(fds[0]);  // the library watches, and hands the callback, its own copy
  // Bad watches: each refused with its code, the VM unharmed.
  CHECK(crosvm_vm_watch_fd(vm.handle(), fds[1], 0, on_watched_pipe, &watched) == CROSVM_ERROR_INVALID_ARGUMENT);
  CHECK(crosvm_vm_watch_fd(vm.handle(), fds[1], CROSVM_WATCH_READABLE, nullptr, nullptr) ==
        CROSVM_ERROR_INVALID_ARGUMENT);
  CHECK(crosvm_vm_watch_fd(nullptr, fds[1], CROSVM_WATCH_READABLE, on_watched_pipe, &watched) ==
        CROSVM_ERROR_INVALID_ARGUMENT);

  auto [ran, runner] = run_on_a_thread(vm);
  REQUIRE(ticks_on(vm));
  REQUIRE(::write(fds[1], "a", 1) == 1);
  REQUIRE(ticks_on(vm));  // the guest goes on while the embedder's input is served
  REQUIRE(::write(fds[1], "s", 1) == 1);
  REQUIRE(ran.wait_for(std::chrono::milliseconds(kHangGuardMs)) == std::future_status::ready);
  const auto [result, reason] = ran.get();
  CHECK(result == CROSVM_OK);
  CHECK(reason == CROSVM_EXIT_STOPPED);
  {
    std::lock_guard lock(watched.mutex);
    CHECK(watched.read == "as");
    CHECK(std::count(watched.threads.begin(), watched.threads.end(), runner) == 2);
  }
  // The watches ended with the VM: a new one is refused, and input
  // written now reaches nobody.
  CHECK(crosvm_vm_watch_fd(vm.handle(), fds[1], CROSVM_WATCH_WRITABLE, on_watched_pipe, &watched) ==
        CROSVM_ERROR_STATE);
  ::close(fds[1]);
}
