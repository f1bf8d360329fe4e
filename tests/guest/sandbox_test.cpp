// The sandbox seen from outside, as an administrator would check it: every
// device process of a running VM is jailed (seccomp, no_new_privs, no
// capabilities, namespaces of its own, an empty read-only root, no KVM fd),
// a device process that dies ends the VM with the reason, and none is
// left once the VM is destroyed.
#include <catch2/catch.hpp>

#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "guest_vm.h"
#include "temp_file.h"

using guest_tests::GuestVm;
using namespace std::chrono_literals;

namespace {

std::string read_text(const std::string& path) {
  std::ifstream file(path);
  std::stringstream text;
  text << file.rdbuf();
  return text.str();
}

std::string link_target(const std::string& path) {
  char target[256];
  const ssize_t length = ::readlink(path.c_str(), target, sizeof(target) - 1);
  return length < 0 ? "" : std::string(target, static_cast<size_t>(length));
}

// "Seccomp:\t2" -> "2".
std::string status_field(const std::string& status, const std::string& field) {
  const size_t at = status.find("\n" + field + ":");
  if (at == std::string::npos) return "";
  const size_t start = status.find_first_not_of(" \t", at + field.size() + 2);
  return status.substr(start, status.find('\n', start) - start);
}

std::vector<std::string> entries(const std::string& directory) {
  std::vector<std::string> names;
  DIR* dir = ::opendir(directory.c_str());
  if (dir == nullptr) return names;
  while (dirent* entry = ::readdir(dir)) {
    const std::string name = entry->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  ::closedir(dir);
  return names;
}

// This process's device processes: its children named crosvm-device.
std::vector<pid_t> device_processes() {
  std::vector<pid_t> pids;
  const std::string self = std::to_string(::getpid());
  for (const std::string& name : entries("/proc")) {
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    const std::string status = read_text("/proc/" + name + "/status");
    if (status_field(status, "PPid") == self && status_field("\n" + status, "Name") == "crosvm-device") {
      pids.push_back(std::stoi(name));
    }
  }
  return pids;
}

void enable_sandbox(crosvm_config* config, const char* const* denied = nullptr) {
  crosvm_sandbox_options sandbox = CROSVM_SANDBOX_OPTIONS_INIT;
  sandbox.flags = CROSVM_SANDBOX_ENABLED;
  sandbox.denied_syscalls = denied;
  REQUIRE(crosvm_config_set_sandbox(config, &sandbox) == CROSVM_OK);
}

}  // namespace

TEST_CASE("every device process of a sandboxed VM is jailed", "[guest][sandbox]") {
  const TempFile image("crosvm-sandbox-disk", guest_tests::virtio_blk_disk());
  const std::string path = image.path();
  GuestVm vm("ticker", 64, 1, [&](crosvm_config* config) {
    enable_sandbox(config);
    crosvm_disk_options disk = CROSVM_DISK_OPTIONS_INIT;
    disk.path = path.c_str();
    REQUIRE(crosvm_config_add_disk(config, &disk) == CROSVM_OK);
  });
  vm.start();
  REQUIRE(vm.wait_for_output("tick"));
  const std::vector<pid_t> pids = device_processes();
  REQUIRE(pids.size() == 2);  // the disk and the default rng

  static constexpr const char* kNamespaces[] = {"user", "mnt", "pid", "net", "ipc", "uts"};
  for (const pid_t pid : pids) {
    const std::string proc = "/proc/" + std::to_string(pid);
    INFO("device process " << pid);
    for (const std::string& task : entries(proc + "/task")) {
      const std::string status = read_text(proc + "/task/" + task + "/status");
      INFO("task " << task);
      CHECK(status_field(status, "Seccomp") == "2");
      CHECK(status_field(status, "NoNewPrivs") == "1");
      for (const char* set : {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"}) {
        INFO(set);
        CHECK(status_field(status, set) == "0000000000000000");
      }
      if (::geteuid() == 0) CHECK(status_field(status, "Uid").rfind("65534\t", 0) == 0);
    }
    for (const char* ns : kNamespaces) {
      INFO("namespace " << ns);
      const std::string theirs = link_target(proc + "/ns/" + ns);
      CHECK(!theirs.empty());
      CHECK(theirs != link_target(std::string("/proc/self/ns/") + ns));
    }
    // Its root: empty, read-only.
    CHECK(entries(proc + "/root").empty());
    struct statvfs root {};
    REQUIRE(::statvfs((proc + "/root/").c_str(), &root) == 0);
    CHECK((root.f_flag & ST_RDONLY) != 0);
    // No fd of KVM's: not /dev/kvm, not the VM, not a vCPU.
    for (const std::string& fd : entries(proc + "/fd")) {
      const std::string target = link_target(proc + "/fd/" + fd);
      INFO("fd " << fd << " -> " << target);
      CHECK(target != "/dev/kvm");
      CHECK(target.find("kvm-") == std::string::npos);
    }
  }
  CHECK(crosvm_vm_stop(vm.handle()) == CROSVM_OK);
}

TEST_CASE("a guest's virtio-blk in a jailed process answers as the VMM's own", "[guest][sandbox][virtio]") {
  const TempFile image("crosvm-sandbox-disk", guest_tests::virtio_blk_disk());
  const std::string path = image.path();
  {
    GuestVm vm("virtio_blk", 64, 1, [&](crosvm_config* config) {
      enable_sandbox(config);
      crosvm_disk_options disk = CROSVM_DISK_OPTIONS_INIT;
      disk.path = path.c_str();
      REQUIRE(crosvm_config_add_disk(config, &disk) == CROSVM_OK);
    });
    vm.start();
    CHECK(vm.wait_for_exit() == CROSVM_EXIT_POWEROFF);
    CHECK(vm.output() == guest_tests::kVirtioBlkAnswers);
    // Its log lines reach the VM's log, with its pid.
    CHECK(vm.log().find("bad request from the guest") != std::string::npos);
    CHECK(vm.log().find("[pid ") != std::string::npos);
  }
  // Destroyed with the VM: none is left, and none was left for an
  // embedder's waitpid(-1) to reap.
  CHECK(device_processes().empty());
  CHECK(::waitpid(-1, nullptr, WNOHANG) == -1);
}

TEST_CASE("a device process killed by seccomp ends the VM, naming it and the signal", "[guest][sandbox]") {
  const TempFile image("crosvm-sandbox-disk", guest_tests::virtio_blk_disk());
  const std::string path = image.path();
  // The disk's reads (preadv) taken out of its policy: the guest's first
  // read kills the device process.
  static constexpr const char* kDenied[] = {"preadv", "preadv2", "pread64", nullptr};
  GuestVm vm("virtio_blk", 64, 1, [&](crosvm_config* config) {
    enable_sandbox(config, kDenied);
    crosvm_disk_options disk = CROSVM_DISK_OPTIONS_INIT;
    disk.path = path.c_str();
    REQUIRE(crosvm_config_add_disk(config, &disk) == CROSVM_OK);
  });
  vm.start();
  CHECK(vm.wait_for_exit() == CROSVM_EXIT_CRASH);
  const std::string message = crosvm_vm_exit_message(vm.handle());
  INFO(message);
  CHECK(message.find("virtio-blk 0") != std::string::npos);
  CHECK(message.find("killed by signal 31 (SIGSYS)") != std::string::npos);
}

TEST_CASE("a device process killed from outside ends the VM, naming it", "[guest][sandbox]") {
  GuestVm vm("ticker", 64, 1, [&](crosvm_config* config) { enable_sandbox(config); });
  vm.start();
  REQUIRE(vm.wait_for_output("tick"));
  const std::vector<pid_t> pids = device_processes();
  REQUIRE(pids.size() == 1);  // the rng
  REQUIRE(::kill(pids[0], SIGKILL) == 0);
  CHECK(vm.wait_for_exit() == CROSVM_EXIT_CRASH);
  const std::string message = crosvm_vm_exit_message(vm.handle());
  INFO(message);
  CHECK(message.find("rng 0 (pid " + std::to_string(pids[0]) + ") killed by signal 9 (SIGKILL)") !=
        std::string::npos);
}

TEST_CASE("a device process that aborts ends the VM, naming it and the abort", "[guest][sandbox]") {
  // As its PID namespace's init the process has no default action for its
  // own SIGABRT; SIGABRT from outside takes the path an abort() inside
  // takes (the helper's handler), which the kernel lets through to init.
  GuestVm vm("ticker", 64, 1, [&](crosvm_config* config) { enable_sandbox(config); });
  vm.start();
  REQUIRE(vm.wait_for_output("tick"));
  const std::vector<pid_t> pids = device_processes();
  REQUIRE(pids.size() == 1);  // the rng
  REQUIRE(::kill(pids[0], SIGABRT) == 0);
  CHECK(vm.wait_for_exit() == CROSVM_EXIT_CRASH);
  const std::string message = crosvm_vm_exit_message(vm.handle());
  INFO(message);
  CHECK(message.find("rng 0 (pid " + std::to_string(pids[0]) + ") aborted (SIGABRT)") != std::string::npos);
  CHECK(device_processes().empty());
}

TEST_CASE("a sandbox without its helper fails at creation with a clear error", "[guest][sandbox]") {
  crosvm_config* config = nullptr;
  REQUIRE(crosvm_config_create(&config) == CROSVM_OK);
  REQUIRE(crosvm_config_set_demo_kernel(config) == CROSVM_OK);
  crosvm_sandbox_options sandbox = CROSVM_SANDBOX_OPTIONS_INIT;
  sandbox.flags = CROSVM_SANDBOX_ENABLED;
  sandbox.helper = "/nonexistent/crosvm-device";
  REQUIRE(crosvm_config_set_sandbox(config, &sandbox) == CROSVM_OK);
  crosvm_vm* vm = nullptr;
  CHECK(crosvm_vm_create(&vm, config) == CROSVM_ERROR_DEVICE);
  CHECK(std::string(crosvm_error_message()).find("/nonexistent/crosvm-device") != std::string::npos);
  crosvm_config_destroy(config);
  CHECK(device_processes().empty());
}
