// Tiny guest programs run on whatever KVM the machine has (an instruction
// emulator will do) and check the VMM from inside a guest.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <ctime>
#include <future>
#include <thread>
#include <vector>

#include "guest_vm.h"
#include "temp_file.h"

using guest_tests::GuestVm;
using namespace std::chrono_literals;

TEST_CASE("a guest's UART output reaches the host and poweroff ends the VM", "[guest]") {
  GuestVm vm("hello");
  vm.start();
  CHECK(vm.wait_for_exit() == CROSVM_EXIT_POWEROFF);
  CHECK(vm.output() == "hello from a tiny guest\n");
  CHECK(std::string(crosvm_vm_exit_message(vm.handle())).find("powered off") != std::string::npos);
}

TEST_CASE("the built-in demo guest greets, reports its RAM and powers off", "[guest]") {
  GuestVm vm("", 64);  // the smallest guest the issue asks for
  vm.start();
  CHECK(vm.wait_for_exit() == CROSVM_EXIT_POWEROFF);
  CHECK(vm.output().find("Hello from the libcrosvm demo guest!") != std::string::npos);
  CHECK(vm.output().find("have 64 MiB of RAM") != std::string::npos);
}

TEST_CASE("an unclaimed port reads all-ones and swallows writes", "[guest]") {
  GuestVm vm("unclaimed_port");
  vm.start();
  CHECK(vm.wait_for_exit() == CROSVM_EXIT_POWEROFF);
  CHECK(vm.output() ==
        "byte 0x00000000000000ff word 0x000000000000ffff long 0x00000000ffffffff\n"
        "still running\n");
  CHECK(vm.log().find("0x1234") == std::string::npos);  // nothing logged per access
}

TEST_CASE("an unmapped MMIO address reads all-ones and swallows writes", "[guest]") {
  GuestVm vm("unmapped_mmio");
  vm.start();
  CHECK(vm.wait_for_exit() == CROSVM_EXIT_POWEROFF);
  CHECK(vm.output() == "mmio 0x00000000ffffffff byte 0x00000000000000ff\nstill running\n");
}

TEST_CASE("the i8042 reset command ends the VM with the reset reason", "[guest]") {
  GuestVm vm("i8042_reset");
  vm.start();
  CHECK(vm.wait_for_exit() == CROSVM_EXIT_RESET);
  CHECK(vm.output() == "resetting\n");
  CHECK(std::string(crosvm_vm_exit_message(vm.handle())).find("i8042") != std::string::npos);
}

TEST_CASE("a triple fault is a crash, with the registers logged", "[guest]") {
  GuestVm vm("triple_fault");
  vm.start();
  CHECK(vm.wait_for_exit() == CROSVM_EXIT_CRASH);
  CHECK(vm.output() == "faulting\n");
  CHECK(vm.log().find("crashed") != std::string::npos);
  CHECK(vm.log().find("rip=") != std::string::npos);
}

TEST_CASE("host input reaches the guest through the UART", "[guest]") {
  GuestVm vm("serial_echo");
  vm.start();
  REQUIRE(vm.wait_for_output("ready\n"));
  vm.send("hi there\n");
  CHECK(vm.wait_for_exit() == CROSVM_EXIT_POWEROFF);
  CHECK(vm.output() == "ready\necho: hi there\n");
}

TEST_CASE("the CMOS clock tells the guest the host's date and its memory", "[guest]") {
  const std::time_t before = std::time(nullptr);
  GuestVm vm("cmos_clock", 64);
  vm.start();
  CHECK(vm.wait_for_exit() == CROSVM_EXIT_POWEROFF);
  const std::time_t after = std::time(nullptr);
  auto format = [](std::time_t when) {
    char text[32];
    std::tm parts{};
    gmtime_r(&when, &parts);
    std::strftime(text, sizeof(text), "rtc %Y-%m-%d %H:%M", &parts);
    return std::string(text);
  };
  const std::string output = vm.output();
  INFO(output);
  CHECK((output.find(format(before)) != std::string::npos || output.find(format(after)) != std::string::npos));
  CHECK(output.find("above 16M 49152 KiB") != std::string::npos);
}

TEST_CASE("a running VM can be paused, resumed and stopped", "[guest][lifecycle]") {
  GuestVm vm("serial_echo");
  vm.start();
  REQUIRE(vm.wait_for_output("ready\n"));
  crosvm_exit_reason reason = CROSVM_EXIT_NONE;
  CHECK(crosvm_vm_wait(&reason, vm.handle(), 10) == CROSVM_ERROR_TIMEOUT);
  CHECK(crosvm_vm_pause(vm.handle()) == CROSVM_OK);
  CHECK(crosvm_vm_resume(vm.handle()) == CROSVM_OK);
  CHECK(crosvm_vm_stop(vm.handle()) == CROSVM_OK);
  CHECK(crosvm_vm_exit_reason(vm.handle()) == CROSVM_EXIT_STOPPED);
  CHECK(crosvm_vm_pause(vm.handle()) == CROSVM_ERROR_STATE);
}

TEST_CASE("a wait with an enormous timeout waits, rather than timing out at once", "[guest][lifecycle]") {
  GuestVm vm("serial_echo");
  vm.start();
  REQUIRE(vm.wait_for_output("ready\n"));
  auto waited = std::async(std::launch::async, [&] {
    crosvm_exit_reason reason = CROSVM_EXIT_NONE;
    const int result = crosvm_vm_wait(&reason, vm.handle(), INT64_MAX);
    return std::make_pair(result, reason);
  });
  // Not done while the guest still waits for its line (a clock overflow
  // used to make this a CROSVM_ERROR_TIMEOUT at once).
  CHECK(waited.wait_for(200ms) == std::future_status::timeout);
  vm.send("bye\n");
  REQUIRE(waited.wait_for(60s) == std::future_status::ready);
  const auto [result, reason] = waited.get();
  CHECK(result == CROSVM_OK);
  CHECK(reason == CROSVM_EXIT_POWEROFF);
}

TEST_CASE("a VM can be destroyed while its guest runs", "[guest][lifecycle]") {
  auto vm = std::make_unique<GuestVm>("serial_echo");
  vm->start();
  REQUIRE(vm->wait_for_output("ready\n"));
  vm.reset();  // must stop the vCPUs and join them, not hang or crash
  SUCCEED();
}

TEST_CASE("two VMs run at once in one process", "[guest][lifecycle]") {
  GuestVm first("serial_echo");
  GuestVm second("hello");
  first.start();
  second.start();
  CHECK(second.wait_for_exit() == CROSVM_EXIT_POWEROFF);
  REQUIRE(first.wait_for_output("ready\n"));
  first.send("still here\n");
  CHECK(first.wait_for_exit() == CROSVM_EXIT_POWEROFF);
  CHECK(first.output() == "ready\necho: still here\n");
  CHECK(second.output() == "hello from a tiny guest\n");
}

TEST_CASE("a VM that was never started can be stopped and destroyed", "[guest][lifecycle]") {
  GuestVm vm("hello");
  CHECK(crosvm_vm_stop(vm.handle()) == CROSVM_OK);
  CHECK(crosvm_vm_start(vm.handle()) == CROSVM_ERROR_STATE);
}

TEST_CASE("a pvpanic report ends the VM with the panic reason", "[guest]") {
  GuestVm vm("pvpanic");
  vm.start();
  CHECK(vm.wait_for_exit() == CROSVM_EXIT_PANIC);
  CHECK(vm.output() == "capabilities 0x0000000000000003\npanicking\n");
}

TEST_CASE("the guest finds valid ACPI tables where Linux looks for them", "[guest][acpi]") {
  GuestVm vm("acpi_tables");
  vm.start();
  CHECK(vm.wait_for_exit() == CROSVM_EXIT_POWEROFF);
  CHECK(vm.output() == "RSDP ok\nXSDT ok\nFACP ok\nDSDT ok\nAPIC ok\ncpus 1\nMCFG ok\n");
}

TEST_CASE("a VM with several vCPUs lists them all and still powers off", "[guest][acpi]") {
  GuestVm vm("acpi_tables", 64, 4);
  vm.start();
  // The application processors wait for the guest's INIT/SIPI, which this
  // guest never sends: power-off must still end the VM and join them.
  CHECK(vm.wait_for_exit() == CROSVM_EXIT_POWEROFF);
  CHECK(vm.output().find("cpus 4\n") != std::string::npos);
}

TEST_CASE("a guest above 4 GiB sees its memory split around the hole", "[guest]") {
  GuestVm vm("", 5120);
  vm.start();
  CHECK(vm.wait_for_exit() == CROSVM_EXIT_POWEROFF);
  CHECK(vm.output().find("have 5120 MiB of RAM") != std::string::npos);
}

std::vector<uint8_t> guest_tests::virtio_blk_disk() {
  std::vector<uint8_t> contents(64 * 1024);
  std::memcpy(contents.data(), "sector zero!", 12);
  std::memcpy(contents.data() + 512, "sector one!!", 12);
  return contents;
}

const char* const guest_tests::kVirtioBlkAnswers =
        "read sector 0: length 513 status 0 data sector zero!\n"
        "descriptor loop: returned unused\n"
        "buffer outside RAM: returned unused\n"
        "indirect table of 24 bytes: returned unused\n"
        "next index 20: returned unused\n"
        "read past the end: length 1 status 1\n"
        "read sector 1: length 513 status 0 data sector one!!\n"
        "avail index jump: needs reset\n"
        "after reset: length 513 status 0 data sector one!!\n";

TEST_CASE("a guest driving virtio-blk survives its own malformed requests", "[guest][virtio]") {
  // A small image whose first sectors say which they are.
  const TempFile image("crosvm-guest-disk", guest_tests::virtio_blk_disk());
  const std::string& path = image.path();

  GuestVm vm("virtio_blk", 64, 1, [&](crosvm_config* config) {
    crosvm_disk_options disk = CROSVM_DISK_OPTIONS_INIT;
    disk.path = path.c_str();
    REQUIRE(crosvm_config_add_disk(config, &disk) == CROSVM_OK);
  });
  vm.start();
  CHECK(vm.wait_for_exit() == CROSVM_EXIT_POWEROFF);
  CHECK(vm.output() == guest_tests::kVirtioBlkAnswers);
  // The guest's mistakes were logged, but only a bounded number of times.
  CHECK(vm.log().find("bad request from the guest") != std::string::npos);
  CHECK(vm.log().find("needs a reset") != std::string::npos);
}

namespace {

// A device served over vhost-user from a thread of the test, as
// `crosvm-launch device` serves it from a process: crosvm_device_serve()
// returns when the VM, its frontend, disconnects.
class ServedDevice {
 public:
  ServedDevice(const std::string& kind, const std::string& options)
      : socket_(std::string(std::getenv("TMPDIR") != nullptr ? std::getenv("TMPDIR") : "/tmp") +
                "/crosvm-guest-vhost-user-" + std::to_string(::getpid()) + ".sock") {
    server_ = std::async(std::launch::async, [this, kind, options] {
      return crosvm_device_serve(kind.c_str(), options.c_str(), socket_.c_str());
    });
    // The socket appears once the server listens (hang guard only).
    for (int i = 0; i < 1000 && !exists(); ++i) std::this_thread::sleep_for(10ms);
    REQUIRE(exists());
  }
  ~ServedDevice() {
    // A VM that never connected must not leave the server waiting.
    if (server_.valid() && server_.wait_for(0s) != std::future_status::ready && exists()) {
      const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_un address{};
      address.sun_family = AF_UNIX;
      std::strncpy(address.sun_path, socket_.c_str(), sizeof(address.sun_path) - 1);
      (void)::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof(address));
      ::close(fd);
    }
    if (server_.valid()) server_.wait();
  }
  const std::string& socket() const { return socket_; }
  // The server's result once its frontend has gone (hang guard only).
  int result() {
    REQUIRE(server_.wait_for(30s) == std::future_status::ready);
    return server_.get();
  }

 private:
  bool exists() const {
    struct stat status {};
    return ::stat(socket_.c_str(), &status) == 0 && S_ISSOCK(status.st_mode);
  }
  std::string socket_;
  std::future<int> server_;
};

}  // namespace

TEST_CASE("a guest's virtio-blk served by a vhost-user backend answers as the VMM's own", "[guest][virtio][vhost-user]") {
  const TempFile image("crosvm-guest-disk", guest_tests::virtio_blk_disk());
  ServedDevice backend("block", "path=" + image.path());
  {
    GuestVm vm("virtio_blk", 64, 1, [&](crosvm_config* config) {
      REQUIRE(crosvm_config_add_device(config, "vhost-user", ("type=block,socket=" + backend.socket()).c_str()) ==
              CROSVM_OK);
    });
    vm.start();
    CHECK(vm.wait_for_exit() == CROSVM_EXIT_POWEROFF);
    // The same answers as the in-process disk above: the backend process
    // runs the same device, and a ring the driver broke reaches the
    // transport as DEVICE_NEEDS_RESET through the error eventfd.
    CHECK(vm.output() == guest_tests::kVirtioBlkAnswers);
    CHECK(vm.log().find("needs a reset") != std::string::npos);
  }
  CHECK(backend.result() == CROSVM_OK);
}
