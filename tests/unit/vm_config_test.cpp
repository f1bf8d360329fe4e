#include <catch2/catch.hpp>

#include "vm/vm_config.h"
#include "vm/vm.h"

using namespace crosvm;

TEST_CASE("the command line has defaults, then consoles, then the user's parameters", "[config]") {
  VmConfig config;
  SerialConfig serial;
  serial.number = 2;
  serial.console = true;
  serial.earlycon = true;
  config.serials.push_back(serial);
  config.params = {"root=/dev/vda", "", "quiet"};
  CHECK(config.kernel_cmdline() ==
        "panic=-1 earlycon=uart8250,io,0x2f8 console=ttyS1 root=/dev/vda quiet");
}

TEST_CASE("building a VM fails clearly on bad configurations", "[config]") {
  VmConfig config;
  config.demo_kernel = true;
  config.logger = Logger([](LogLevel, std::string_view) {}, LogLevel::kError);

  SECTION("0 MiB of memory") {
    config.memory_mib = 0;
    auto vm = Vm::create(config);
    REQUIRE_FALSE(vm.ok());
    CHECK(vm.error().code == ErrorCode::kMemory);
  }
  SECTION("memory beyond any address space") {
    config.memory_mib = ~0ull;
    auto vm = Vm::create(config);
    REQUIRE_FALSE(vm.ok());
    CHECK(vm.error().code == ErrorCode::kMemory);
  }
  SECTION("0 vCPUs") {
    config.vcpu_count = 0;
    auto vm = Vm::create(config);
    REQUIRE_FALSE(vm.ok());
    CHECK(vm.error().code == ErrorCode::kVcpu);
  }
  SECTION("no kernel") {
    config.demo_kernel = false;
    auto vm = Vm::create(config);
    REQUIRE_FALSE(vm.ok());
    CHECK(vm.error().code == ErrorCode::kKernel);
  }
  SECTION("a missing kernel file") {
    config.demo_kernel = false;
    config.kernel_path = "/nonexistent/bzImage";
    auto vm = Vm::create(config);
    REQUIRE_FALSE(vm.ok());
    CHECK(vm.error().message.find("/nonexistent/bzImage") != std::string::npos);
  }
  SECTION("a missing initrd") {
    config.initrd_path = "/nonexistent/initrd";
    auto vm = Vm::create(config);
    REQUIRE_FALSE(vm.ok());
    CHECK(vm.error().code == ErrorCode::kInitrd);
  }
  SECTION("no /dev/kvm") {
    config.kvm_path = "/nonexistent/kvm";
    auto vm = Vm::create(config);
    REQUIRE_FALSE(vm.ok());
    CHECK(vm.error().code == ErrorCode::kKvmUnavailable);
    CHECK(vm.error().message.find("does not exist") != std::string::npos);
  }
  SECTION("a serial port twice") {
    config.serials = {SerialConfig{}, SerialConfig{}};
    auto vm = Vm::create(config);
    REQUIRE_FALSE(vm.ok());
    CHECK(vm.error().code == ErrorCode::kInvalidArgument);
  }
}
