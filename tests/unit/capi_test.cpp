// The C ABI as a consumer sees it: error codes, messages, versioned structs.
// These cases need no KVM: every one fails before /dev/kvm is opened.
#include <catch2/catch.hpp>
#include <crosvm/crosvm.h>

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace {

struct Config {
  crosvm_config* handle = nullptr;
  Config() { REQUIRE(crosvm_config_create(&handle) == CROSVM_OK); }
  ~Config() { crosvm_config_destroy(handle); }
};

std::string last_message() { return crosvm_error_message(); }

}  // namespace

TEST_CASE("NULL handles are refused with INVALID_ARGUMENT", "[capi]") {
  CHECK(crosvm_config_create(nullptr) == CROSVM_ERROR_INVALID_ARGUMENT);
  CHECK(crosvm_config_set_memory_mib(nullptr, 1) == CROSVM_ERROR_INVALID_ARGUMENT);
  CHECK(last_message() == "config is NULL");
  CHECK(crosvm_vm_start(nullptr) == CROSVM_ERROR_INVALID_ARGUMENT);
  CHECK(crosvm_vm_create(nullptr, nullptr) == CROSVM_ERROR_INVALID_ARGUMENT);
  crosvm_vm_destroy(nullptr);
  crosvm_config_destroy(nullptr);
}

TEST_CASE("bad values get their own codes and a message", "[capi]") {
  Config config;
  CHECK(crosvm_config_set_memory_mib(config.handle, 0) == CROSVM_ERROR_MEMORY);
  CHECK(last_message().find("0") != std::string::npos);
  CHECK(crosvm_config_set_vcpu_count(config.handle, 0) == CROSVM_ERROR_VCPU);
  CHECK(crosvm_config_set_kernel(config.handle, "") == CROSVM_ERROR_KERNEL);
  CHECK(crosvm_config_set_memory_mib(config.handle, 128) == CROSVM_OK);
  CHECK(last_message().empty());  // success clears the message
}

TEST_CASE("creating a VM from a missing kernel names the file", "[capi]") {
  Config config;
  REQUIRE(crosvm_config_set_kernel(config.handle, "/nonexistent/vmlinuz") == CROSVM_OK);
  crosvm_vm* vm = reinterpret_cast<crosvm_vm*>(0x1);
  CHECK(crosvm_vm_create(&vm, config.handle) == CROSVM_ERROR_IO);
  CHECK(vm == nullptr);
  CHECK(last_message().find("/nonexistent/vmlinuz") != std::string::npos);
}

TEST_CASE("creating a VM from a file that is not a kernel says so", "[capi]") {
  char path[] = "/tmp/crosvm-capi-XXXXXX";
  const int fd = mkstemp(path);
  REQUIRE(fd >= 0);
  REQUIRE(write(fd, "#!/bin/sh\necho hello\n", 21) == 21);
  close(fd);
  Config config;
  REQUIRE(crosvm_config_set_kernel(config.handle, path) == CROSVM_OK);
  crosvm_vm* vm = nullptr;
  CHECK(crosvm_vm_create(&vm, config.handle) == CROSVM_ERROR_KERNEL);
  CHECK(last_message().find("not a Linux kernel") != std::string::npos);
  unlink(path);
}

TEST_CASE("serial options are checked", "[capi]") {
  Config config;
  crosvm_serial_options options = CROSVM_SERIAL_OPTIONS_INIT;
  options.number = 5;
  CHECK(crosvm_config_add_serial(config.handle, &options) == CROSVM_ERROR_INVALID_ARGUMENT);
  options.number = 1;
  options.type = CROSVM_SERIAL_FILE;
  CHECK(crosvm_config_add_serial(config.handle, &options) == CROSVM_ERROR_INVALID_ARGUMENT);
  options.type = CROSVM_SERIAL_CALLBACK;
  CHECK(crosvm_config_add_serial(config.handle, &options) == CROSVM_ERROR_INVALID_ARGUMENT);
  options.type = 42;
  CHECK(crosvm_config_add_serial(config.handle, &options) == CROSVM_ERROR_INVALID_ARGUMENT);
  options.type = CROSVM_SERIAL_SINK;
  options.flags = 0x80;
  CHECK(crosvm_config_add_serial(config.handle, &options) == CROSVM_ERROR_INVALID_ARGUMENT);
  options.flags = CROSVM_SERIAL_CONSOLE;
  CHECK(crosvm_config_add_serial(config.handle, &options) == CROSVM_OK);
}

TEST_CASE("an options struct from an older header is read up to its size", "[capi]") {
  Config config;
  // A caller that only knew struct_size and number: the rest keeps the
  // defaults (stdout), so a garbage `type` beyond the size is not read.
  crosvm_serial_options options = CROSVM_SERIAL_OPTIONS_INIT;
  options.struct_size = 2 * sizeof(uint32_t);
  options.number = 2;
  options.type = 1234;
  CHECK(crosvm_config_add_serial(config.handle, &options) == CROSVM_OK);
}

TEST_CASE("versions and error names are available", "[capi]") {
  CHECK(crosvm_abi_version() == CROSVM_ABI_VERSION);
  CHECK(std::string(crosvm_version()).size() > 0);
  CHECK(std::string(crosvm_error_name(CROSVM_ERROR_KERNEL)) == "CROSVM_ERROR_KERNEL");
  CHECK(std::string(crosvm_error_name(-1000)) == "CROSVM_ERROR_UNKNOWN");
}

TEST_CASE("disk options are checked", "[capi]") {
  Config config;
  CHECK(crosvm_config_add_disk(config.handle, nullptr) == CROSVM_ERROR_INVALID_ARGUMENT);
  crosvm_disk_options disk = CROSVM_DISK_OPTIONS_INIT;
  CHECK(crosvm_config_add_disk(config.handle, &disk) == CROSVM_ERROR_INVALID_ARGUMENT);
  CHECK(last_message() == "a disk needs a path");
  disk.path = "";
  CHECK(crosvm_config_add_disk(config.handle, &disk) == CROSVM_ERROR_INVALID_ARGUMENT);
  disk.path = "/tmp/disk.img";
  disk.flags = 0x100;
  CHECK(crosvm_config_add_disk(config.handle, &disk) == CROSVM_ERROR_INVALID_ARGUMENT);
  CHECK(last_message() == "unknown disk flags");
  disk.flags = CROSVM_DISK_READ_ONLY | CROSVM_DISK_ROOT;
  CHECK(crosvm_config_add_disk(config.handle, &disk) == CROSVM_OK);
  CHECK(crosvm_config_set_rng(config.handle, 1) == CROSVM_OK);
  CHECK(crosvm_config_set_rng(nullptr, 1) == CROSVM_ERROR_INVALID_ARGUMENT);
}

TEST_CASE("devices named as text: crosvm's key=value lists, one clear error each", "[capi]") {
  Config config;
  CHECK(crosvm_config_add_device(config.handle, "block", "path=/tmp/a.img,ro=true,id=a") == CROSVM_OK);
  CHECK(last_message().empty());
  CHECK(crosvm_config_add_device(config.handle, "serial", "type=sink,num=2,stdin") == CROSVM_OK);
  CHECK(crosvm_config_reads_stdin(config.handle) == 1);
  CHECK(crosvm_config_add_device(config.handle, "serial", "type=sink,num=2") == CROSVM_OK);  // replaces it
  CHECK(crosvm_config_reads_stdin(config.handle) == 0);
  CHECK(crosvm_config_reads_stdin(nullptr) == CROSVM_ERROR_INVALID_ARGUMENT);

  CHECK(crosvm_config_add_device(config.handle, "floppy", "path=a") == CROSVM_ERROR_INVALID_ARGUMENT);
  CHECK(last_message() == "unknown device kind 'floppy' (known: block, serial, vhost-user, rng, net, vsock)");
  CHECK(crosvm_config_add_device(config.handle, "block", "path=a,size=3") == CROSVM_ERROR_INVALID_ARGUMENT);
  CHECK(last_message() == "block: unknown key 'size' (known: path, ro, root, id, allow-backing, sparse, lock, block-size, num-queues, direct)");
  CHECK(crosvm_config_add_device(config.handle, "block", nullptr) == CROSVM_ERROR_INVALID_ARGUMENT);
  CHECK(last_message() == "block: needs path=");
  CHECK(crosvm_config_add_device(config.handle, nullptr, "") == CROSVM_ERROR_INVALID_ARGUMENT);
  CHECK(crosvm_config_add_device(nullptr, "block", "a.img") == CROSVM_ERROR_INVALID_ARGUMENT);

  std::string names;
  for (size_t i = 0; const char* kind = crosvm_device_kind_name(i); ++i) {
    names += std::string(kind) + " ";
    REQUIRE(crosvm_device_kind_help(kind) != nullptr);
    CHECK(std::string(crosvm_device_kind_help(kind)).rfind(kind, 0) == 0);
  }
  CHECK(names == "block serial vhost-user rng net vsock ");
  CHECK(crosvm_device_kind_help("floppy") == nullptr);
  CHECK(crosvm_device_kind_help(nullptr) == nullptr);
}

TEST_CASE("huge pages can be turned off and on, on a config that exists", "[capi]") {
  Config config;
  CHECK(crosvm_config_set_hugepages(config.handle, 0) == CROSVM_OK);
  CHECK(crosvm_config_set_hugepages(config.handle, 1) == CROSVM_OK);
  CHECK(crosvm_config_set_hugepages(nullptr, 1) == CROSVM_ERROR_INVALID_ARGUMENT);
}

TEST_CASE("a syslog tag is one word of at most 64 bytes", "[capi]") {
  Config config;
  CHECK(crosvm_config_set_syslog_tag(config.handle, "crosvm") == CROSVM_OK);
  CHECK(crosvm_config_set_syslog_tag(config.handle, nullptr) == CROSVM_OK);  // back to the program's name
  CHECK(crosvm_config_set_syslog_tag(config.handle, "") == CROSVM_OK);
  for (const char* bad : {"two words", "line\nbreak", "a[1]", "a:b"}) {
    CAPTURE(bad);
    CHECK(crosvm_config_set_syslog_tag(config.handle, bad) == CROSVM_ERROR_INVALID_ARGUMENT);
  }
  CHECK(crosvm_config_set_syslog_tag(config.handle, std::string(65, 't').c_str()) == CROSVM_ERROR_INVALID_ARGUMENT);
  CHECK(crosvm_config_set_syslog_tag(nullptr, "x") == CROSVM_ERROR_INVALID_ARGUMENT);
}

TEST_CASE("a VM with two root disks or a long disk id is refused", "[capi]") {
  Config config;
  REQUIRE(crosvm_config_set_demo_kernel(config.handle) == CROSVM_OK);
  crosvm_disk_options disk = CROSVM_DISK_OPTIONS_INIT;
  disk.path = "/tmp/a.img";
  disk.id = "an-id-of-twenty-one-b";
  REQUIRE(crosvm_config_add_disk(config.handle, &disk) == CROSVM_OK);
  crosvm_vm* vm = nullptr;
  CHECK(crosvm_vm_create(&vm, config.handle) == CROSVM_ERROR_INVALID_ARGUMENT);
  CHECK(last_message().find("longer than 20 bytes") != std::string::npos);

  Config roots;
  REQUIRE(crosvm_config_set_demo_kernel(roots.handle) == CROSVM_OK);
  disk.id = nullptr;
  disk.flags = CROSVM_DISK_ROOT;
  REQUIRE(crosvm_config_add_disk(roots.handle, &disk) == CROSVM_OK);
  disk.path = "/tmp/b.img";
  REQUIRE(crosvm_config_add_disk(roots.handle, &disk) == CROSVM_OK);
  CHECK(crosvm_vm_create(&vm, roots.handle) == CROSVM_ERROR_INVALID_ARGUMENT);
  CHECK(last_message() == "only one disk can be the root");
  CHECK(vm == nullptr);
}

TEST_CASE("callback and control socket options are checked", "[capi]") {
  Config config;
  CHECK(crosvm_config_set_callback_mode(config.handle, 7) == CROSVM_ERROR_INVALID_ARGUMENT);
  CHECK(last_message() == "unknown callback mode 7");
  CHECK(crosvm_config_set_callback_mode(config.handle, CROSVM_CALLBACKS_ON_DISPATCH) == CROSVM_OK);
  CHECK(crosvm_config_set_exit_callback(config.handle, nullptr, nullptr) == CROSVM_OK);
  CHECK(crosvm_config_set_control_socket(config.handle, nullptr) == CROSVM_OK);
  CHECK(crosvm_config_set_control_socket(nullptr, "/tmp/x") == CROSVM_ERROR_INVALID_ARGUMENT);
  int fd = -1;
  CHECK(crosvm_vm_event_fd(&fd, nullptr) == CROSVM_ERROR_INVALID_ARGUMENT);
  CHECK(crosvm_vm_dispatch(nullptr, nullptr) == CROSVM_ERROR_INVALID_ARGUMENT);
  CHECK(crosvm_vm_request_stop(nullptr) == CROSVM_ERROR_INVALID_ARGUMENT);
  CHECK(crosvm_vm_get_state(nullptr) == CROSVM_STATE_STOPPED);
  CHECK(std::string(crosvm_vm_control_socket_path(nullptr)).empty());
  CHECK(crosvm_vm_vsock_cid(nullptr) == 0);
  CHECK(std::string(crosvm_vm_vsock_socket_path(nullptr)).empty());
}

TEST_CASE("a control request is checked before anything is sent", "[capi]") {
  char* response = reinterpret_cast<char*>(1);
  CHECK(crosvm_control_request(&response, "/nonexistent/vm.sock", "{\"request\":\"halt\"}", 1000) ==
        CROSVM_ERROR_PROTOCOL);
  CHECK(response == nullptr);
  CHECK(last_message().find("unknown request \"halt\"") == 0);
  CHECK(crosvm_control_request(&response, "/nonexistent/vm.sock", "not json", 1000) == CROSVM_ERROR_PROTOCOL);
  CHECK(crosvm_control_request(&response, "/nonexistent/vm.sock", "{\"request\":\"stop\"}", 1000) ==
        CROSVM_ERROR_IO);
  CHECK(last_message().find("cannot connect to the control socket /nonexistent/vm.sock") == 0);
  CHECK(response == nullptr);
  CHECK(crosvm_control_request(nullptr, "/x", "{}", 0) == CROSVM_ERROR_INVALID_ARGUMENT);
  crosvm_string_free(nullptr);
}
