#include <catch2/catch.hpp>

#include "options.h"

using launcher::parse_run_options;
using launcher::RunOptions;
using launcher::ControlCommand;
using launcher::parse_control_command;
using launcher::parse_size;

namespace {

RunOptions parse_ok(const std::vector<std::string>& args) {
  auto parsed = parse_run_options(args);
  if (auto* error = std::get_if<std::string>(&parsed)) FAIL(*error);
  return std::get<RunOptions>(parsed);
}

std::string parse_error(const std::vector<std::string>& args) {
  auto parsed = parse_run_options(args);
  REQUIRE(std::holds_alternative<std::string>(parsed));
  return std::get<std::string>(parsed);
}

}  // namespace

TEST_CASE("crosvm's defaults: 256 MiB, 1 vCPU, serial 1 as the console", "[launcher]") {
  const RunOptions options = parse_ok({"bzImage"});
  CHECK(options.memory_mib == 256);
  CHECK(options.cpus == 1);
  CHECK(options.kernel == "bzImage");
  CHECK_FALSE(options.demo);
  REQUIRE(options.serials.size() == 1);
  CHECK(options.serials[0].number == 1);
  CHECK(options.serials[0].type == "stdout");
  CHECK(options.serials[0].console);
  CHECK(options.serials[0].stdin_input);
}

TEST_CASE("short, long and inline option forms all work", "[launcher]") {
  const RunOptions options =
      parse_ok({"-m", "512", "--cpus=2", "-p", "console=ttyS0", "--params", "quiet", "-i",
                "initrd.img", "--mem=size=1024", "-c4", "bzImage"});
  CHECK(options.memory_mib == 1024);
  CHECK(options.cpus == 4);
  CHECK(options.params == std::vector<std::string>{"console=ttyS0", "quiet"});
  CHECK(options.initrd == "initrd.img");
}

TEST_CASE("no kernel means the demo guest", "[launcher]") {
  CHECK(parse_ok({}).demo);
  CHECK(parse_ok({"--demo"}).demo);
  CHECK(parse_error({"--demo", "bzImage"}).find("cannot be combined") != std::string::npos);
}

TEST_CASE("serial ports take crosvm's key=value lists", "[launcher]") {
  const RunOptions options = parse_ok(
      {"--serial", "type=file,num=2,path=/tmp/out,console", "--serial", "type=sink,num=1", "k"});
  REQUIRE(options.serials.size() == 2);
  CHECK(options.serials[0].number == 2);
  CHECK(options.serials[0].type == "file");
  CHECK(options.serials[0].path == "/tmp/out");
  CHECK(options.serials[0].console);
  CHECK_FALSE(options.serials[0].stdin_input);
  CHECK(options.serials[1].type == "sink");
}

TEST_CASE("bad arguments get one line naming the problem", "[launcher]") {
  CHECK(parse_error({"-m", "lots", "k"}).find("'lots'") != std::string::npos);
  CHECK(parse_error({"-m"}).find("--mem") == std::string::npos);  // names the flag used
  CHECK(parse_error({"--cpus", "-1", "k"}).find("vCPUs") != std::string::npos);
  CHECK(parse_error({"--bogus"}).find("unknown option '--bogus'") != std::string::npos);
  CHECK(parse_error({"a", "b"}).find("more than one kernel") != std::string::npos);
  CHECK(parse_error({"--serial", "num=9"}).find("1 to 4") != std::string::npos);
  CHECK(parse_error({"--serial", "type=file"}).find("path") != std::string::npos);
  CHECK(parse_error({"--serial", "colour=red"}).find("unknown key") != std::string::npos);
  CHECK(parse_error({"-i"}).find("path") != std::string::npos);
}

TEST_CASE("key=value lists split on commas; a bare key means true", "[launcher]") {
  const auto pairs = launcher::split_key_values("a=1,,b,c=x=y");
  REQUIRE(pairs.size() == 3);
  CHECK(pairs[0] == std::pair<std::string, std::string>{"a", "1"});
  CHECK(pairs[1] == std::pair<std::string, std::string>{"b", "true"});
  CHECK(pairs[2] == std::pair<std::string, std::string>{"c", "x=y"});
}

TEST_CASE("crosvm's disk options: -r/--rwroot/-d/--rwdisk and --block", "[launcher]") {
  const RunOptions options =
      parse_ok({"-d", "a.img", "--rwdisk", "b.img", "-r", "root.img", "--block",
                "path=c.img,ro=false,id=serial-c", "--block", "d.img,ro", "k"});
  REQUIRE(options.disks.size() == 5);
  CHECK(options.disks[0].path == "a.img");
  CHECK(options.disks[0].read_only);
  CHECK_FALSE(options.disks[0].root);
  CHECK(options.disks[1].path == "b.img");
  CHECK_FALSE(options.disks[1].read_only);
  CHECK(options.disks[2].path == "root.img");
  CHECK(options.disks[2].read_only);
  CHECK(options.disks[2].root);
  CHECK(options.disks[3].path == "c.img");
  CHECK_FALSE(options.disks[3].read_only);
  CHECK(options.disks[3].id == "serial-c");
  CHECK(options.disks[4].path == "d.img");
  CHECK(options.disks[4].read_only);

  const RunOptions rwroot = parse_ok({"--rwroot", "r.img", "k"});
  REQUIRE(rwroot.disks.size() == 1);
  CHECK(rwroot.disks[0].root);
  CHECK_FALSE(rwroot.disks[0].read_only);
  // --block is writable unless it says ro, as in crosvm.
  CHECK_FALSE(parse_ok({"--block", "path=x.img", "k"}).disks[0].read_only);
}

TEST_CASE("bad disk options name the problem", "[launcher]") {
  CHECK(parse_error({"--rwdisk"}).find("--rwdisk") != std::string::npos);
  CHECK(parse_error({"--block", "ro=true"}).find("path=") != std::string::npos);
  CHECK(parse_error({"--block", "path=x,ro=maybe"}).find("ro must be true or false") != std::string::npos);
  CHECK(parse_error({"--block", "path=x,size=3"}).find("unknown key 'size'") != std::string::npos);
  CHECK(parse_error({"--block", "path=x,id=123456789012345678901"}).find("20 bytes") != std::string::npos);
}

TEST_CASE("huge pages are on by default; --no-hugepages turns them off", "[launcher]") {
  CHECK(parse_ok({"k"}).hugepages);
  CHECK_FALSE(parse_ok({"--no-hugepages", "k"}).hugepages);
  CHECK(parse_ok({"--no-hugepages", "--hugepages", "k"}).hugepages);
}

TEST_CASE("the rng is on by default and --no-rng turns it off", "[launcher]") {
  CHECK(parse_ok({"k"}).rng);
  CHECK_FALSE(parse_ok({"--no-rng", "k"}).rng);
}

TEST_CASE("a serial can be a virtio console", "[launcher]") {
  const RunOptions options = parse_ok({"--serial", "type=stdout,hardware=virtio-console,num=1,console", "k"});
  REQUIRE(options.serials.size() == 1);
  CHECK(options.serials[0].virtio_console);
  CHECK(options.serials[0].console);
  CHECK(parse_error({"--serial", "hardware=usb"}).find("serial or virtio-console") != std::string::npos);
  CHECK(parse_error({"--serial", "hardware=virtio-console,earlycon"}).find("earlycon") != std::string::npos);
}

TEST_CASE("-s/--socket is kept for the control socket", "[launcher]") {
  auto parsed = parse_run_options({"-s", "/run/vm.sock", "--demo"});
  REQUIRE(std::holds_alternative<RunOptions>(parsed));
  CHECK(std::get<RunOptions>(parsed).socket == "/run/vm.sock");
  auto inline_value = parse_run_options({"--socket=/tmp/"});
  REQUIRE(std::holds_alternative<RunOptions>(inline_value));
  CHECK(std::get<RunOptions>(inline_value).socket == "/tmp/");
  CHECK(std::get<std::string>(parse_run_options({"-s"})) == "-s needs a path");
}

TEST_CASE("control commands become one JSON request each", "[launcher]") {
  auto stop = parse_control_command("stop", {"/run/vm.sock"});
  REQUIRE(stop.has_value());
  REQUIRE(std::holds_alternative<ControlCommand>(*stop));
  CHECK(std::get<ControlCommand>(*stop).socket == "/run/vm.sock");
  CHECK(std::get<ControlCommand>(*stop).request_json == R"({"request":"stop"})");
  CHECK_FALSE(std::get<ControlCommand>(*stop).print_response);
  auto status = parse_control_command("status", {"s"});
  CHECK(std::get<ControlCommand>(*status).print_response);
  auto resize = parse_control_command("disk", {"resize", "1", "2G", "s"});
  CHECK(std::get<ControlCommand>(*resize).request_json ==
        R"({"request":"disk_resize","disk":1,"size":2147483648})");
  CHECK_FALSE(parse_control_command("run", {}).has_value());
  CHECK(std::get<std::string>(*parse_control_command("resume", {})) == "usage: crosvm-launch resume SOCKET");
}

TEST_CASE("sizes take binary suffixes and refuse overflow", "[launcher]") {
  CHECK(parse_size("512") == 512u);
  CHECK(parse_size("4K") == 4096u);
  CHECK(parse_size("16M") == 16u << 20);
  CHECK(parse_size("1t") == 1ull << 40);
  CHECK_FALSE(parse_size("").has_value());
  CHECK_FALSE(parse_size("G").has_value());
  CHECK_FALSE(parse_size("-1").has_value());
  CHECK_FALSE(parse_size("1.5G").has_value());
  CHECK_FALSE(parse_size("99999999999T").has_value());
}
