#include <catch2/catch.hpp>

#include <fstream>
#include <map>

#include "options.h"
#include "vm/device_options.h"

using launcher::DeviceArg;
using launcher::RunOptions;
using launcher::ControlCommand;
using launcher::parse_control_command;
using launcher::parse_size;
using launcher::CrosvmOptionSupport;
using launcher::CrosvmRunOption;
using launcher::GlobalOptions;
using launcher::crosvm_run_options;
using launcher::parse_global_options;

namespace {

// The library's kinds, as crosvm-launch asks them of libcrosvm.
std::variant<RunOptions, std::string> parse_run_options(const std::vector<std::string>& args) {
  return launcher::parse_run_options(
      args, [](const std::string& kind) { return crosvm::find_device_kind(kind) != nullptr; });
}

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
  CHECK(options.devices == std::vector<DeviceArg>{{"serial", "type=stdout,num=1,console=true,stdin=true"}});
  // which the library takes as crosvm's default console
  crosvm::VmConfig config;
  REQUIRE(crosvm::add_device(config, "serial", options.devices[0].options).ok());
  CHECK(config.serials.at(0).console);
  CHECK(config.serials.at(0).read_stdin);
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

TEST_CASE("--serial and --block lists go to the library as given, in order", "[launcher]") {
  const RunOptions options = parse_ok(
      {"--serial", "type=file,num=2,path=/tmp/out,console", "--block", "d.img,ro", "--serial=type=sink", "k"});
  CHECK(options.devices == std::vector<DeviceArg>{{"serial", "type=file,num=2,path=/tmp/out,console"},
                                                  {"block", "d.img,ro"},
                                                  {"serial", "type=sink"}});
  CHECK(parse_error({"--serial"}).find("--serial needs a parameter list") != std::string::npos);
}

TEST_CASE("bad arguments get one line naming the problem", "[launcher]") {
  CHECK(parse_error({"-m", "lots", "k"}).find("'lots'") != std::string::npos);
  CHECK(parse_error({"-m"}).find("--mem") == std::string::npos);  // names the flag used
  CHECK(parse_error({"--cpus", "-1", "k"}).find("vCPUs") != std::string::npos);
  CHECK(parse_error({"--bogus"}).find("unknown option '--bogus'") != std::string::npos);
  CHECK(parse_error({"a", "b"}).find("more than one kernel") != std::string::npos);
  CHECK(parse_error({"--floppy", "path=a"}).find("unknown option '--floppy'") != std::string::npos);
  CHECK(parse_error({"-i"}).find("path") != std::string::npos);
}

TEST_CASE("crosvm's disk shorthands are block lists: -r/--rwroot/-d/--rwdisk PATH[,KEYS]", "[launcher]") {
  // As crosvm reads them: the path, then the disk's keys, with ro= and
  // root= set by the flag (before, "img,sparse=false" was taken as a name).
  const RunOptions options = parse_ok({"-d", "a.img,sparse=false", "--rwdisk", "b.img", "-r", "root.img", "-b",
                                       "path=c.img,ro=false", "--rwroot=r.img,id=R", "k"});
  CHECK(options.devices == std::vector<DeviceArg>{
                               {"block", "a.img,sparse=false,ro=true,root=false"},
                               {"block", "b.img,ro=false,root=false"},
                               {"block", "root.img,ro=true,root=true"},
                               {"block", "path=c.img,ro=false"},
                               {"block", "r.img,id=R,ro=false,root=true"},
                               {"serial", "type=stdout,num=1,console=true,stdin=true"}});
  crosvm::VmConfig config;
  REQUIRE(crosvm::add_device(config, "block", options.devices[0].options).ok());
  CHECK(config.disks.at(0).path == "a.img");
  CHECK(config.disks.at(0).read_only);
  CHECK_FALSE(config.disks.at(0).sparse);
  // A path with a comma in it, quoted as the library's lists quote.
  const RunOptions quoted = parse_ok({"--rwdisk", "\"a,1.img\",lock=false", "k"});
  REQUIRE(crosvm::add_device(config, "block", quoted.devices[0].options).ok());
  CHECK(config.disks.at(1).path == "a,1.img");
  CHECK_FALSE(config.disks.at(1).read_only);
}

TEST_CASE("bad disk shorthands name the problem", "[launcher]") {
  CHECK(parse_error({"--rwdisk"}).find("--rwdisk needs a path") != std::string::npos);
  CHECK(parse_error({"-d", ""}).find("-d needs a path") != std::string::npos);
  CHECK(parse_error({"-d", ",ro=true"}).find("-d needs a path") != std::string::npos);
  CHECK(parse_error({"--rwdisk", "a.img,ro=true"}) ==
        "--rwdisk sets ro= itself (ro=false, root=false); use --block for another combination");
  CHECK(parse_error({"-r", "a.img,root=false"}).find("-r sets root= itself") == 0);
}

TEST_CASE("crosvm's run options: ours work, the harmless are taken, the rest refused by name", "[launcher]") {
  CHECK(parse_ok({"-b", "a.img", "k"}).devices.front() == DeviceArg{"block", "a.img"});
  CHECK(parse_ok({"-p=console=ttyS0", "k"}).params == std::vector<std::string>{"console=ttyS0"});
  CHECK(parse_ok({"--name", "vm1", "k"}).name == "vm1");
  CHECK(parse_ok({"--seccomp-log-failures", "k"}).seccomp_log_failures);
  CHECK(parse_ok({"--log-level", "off", "k"}).log_level == -1);
  CHECK(parse_ok({"--no-usb", "--no-balloon", "k"}).kernel == "k");
  CHECK(parse_error({"--no-usb=1", "k"}) == "--no-usb takes no value");
  CHECK(parse_error({"--gpu", "backend=2d", "k"}) ==
        "crosvm's --gpu is not supported by crosvm-launch (see docs/launcher.md)");
  CHECK(parse_error({"--no-i8042", "k"}).find("not supported") != std::string::npos);
  CHECK(parse_error({"--log-level", "debug,disk=off"}).find("per-module filters are not supported") !=
        std::string::npos);
  // Every option the table says is ours is taken (with a value where it
  // needs one), and every other is refused by name, not as unknown.
  for (const CrosvmRunOption& option : crosvm_run_options()) {
    CAPTURE(option.name);
    for (const char* spelling : {option.name, option.alias}) {
      if (spelling[0] == '\0') continue;
      const std::string name = spelling;
      auto flag_alone = parse_run_options({name, "k"});
      if (option.support == CrosvmOptionSupport::kUnsupported) {
        REQUIRE(std::holds_alternative<std::string>(flag_alone));
        CHECK(std::get<std::string>(flag_alone).find("is not supported by crosvm-launch") != std::string::npos);
      } else {
        const std::string message = std::holds_alternative<std::string>(flag_alone) ? std::get<std::string>(flag_alone) : "";
        CAPTURE(message);
        CHECK(message.find("not supported") == std::string::npos);
        CHECK(message.find("unknown option") == std::string::npos);
      }
    }
  }
}

TEST_CASE("crosvm's global options come before the command", "[launcher]") {
  auto globals = parse_global_options({"--log-level", "debug", "--extended-status", "--no-syslog", "run", "k"});
  REQUIRE(std::holds_alternative<GlobalOptions>(globals));
  CHECK(std::get<GlobalOptions>(globals).log_level == 3);
  CHECK(std::get<GlobalOptions>(globals).extended_status);
  CHECK(std::get<GlobalOptions>(globals).consumed == 4);
  CHECK(std::get<GlobalOptions>(parse_global_options({"--log-level=off", "stop", "s"})).log_level == -1);
  CHECK(std::get<GlobalOptions>(parse_global_options({"run"})).consumed == 0);
  CHECK(std::get<std::string>(parse_global_options({"--log-level", "loud"})) ==
        "--log-level needs off, error, warn, info, debug or trace, not 'loud'");
  auto tagged = parse_global_options({"--syslog-tag", "vm7", "run", "k"});
  REQUIRE(std::holds_alternative<GlobalOptions>(tagged));
  CHECK(std::get<GlobalOptions>(tagged).syslog_tag == "vm7");
  CHECK(std::get<GlobalOptions>(tagged).consumed == 2);
  CHECK(std::get<std::string>(parse_global_options({"--syslog-tag"})) == "--syslog-tag needs a tag");
  CHECK(parse_ok({"--syslog-tag=vm8", "k"}).syslog_tag == "vm8");  // crosvm's older place
}

TEST_CASE("crosvm's older --net and --vsock spellings become the lists they stand for", "[launcher]") {
  CHECK(parse_ok({"--tap-name", "tap0", "--tap-fd", "5", "--net-vq-pairs", "2", "--vhost-net", "k"}).devices ==
        std::vector<DeviceArg>{{"net", "tap-name=tap0,vq-pairs=2,vhost-net=true"},
                               {"net", "tap-fd=5,vq-pairs=2,vhost-net=true"},
                               {"serial", "type=stdout,num=1,console=true,stdin=true"}});
  CHECK(parse_ok({"--host-ip", "10.0.0.1", "--netmask", "255.255.255.0", "--mac", "52:54:00:00:00:01", "k"})
            .devices.front() == DeviceArg{"net", "host-ip=10.0.0.1,netmask=255.255.255.0,mac=52:54:00:00:00:01"});
  CHECK(parse_ok({"--cid", "5", "--vhost-vsock-device", "/dev/vhost-vsock", "k"}).devices.front() ==
        DeviceArg{"vsock", "cid=5,device=/dev/vhost-vsock"});
  // What the library reads them as: each one device, each checked there.
  crosvm::VmConfig config;
  for (const DeviceArg& device : parse_ok({"--tap-name", "tap0", "--cid", "5", "k"}).devices) {
    CAPTURE(device.options);
    CHECK(crosvm::add_device(config, device.kind, device.options).ok());
  }
  CHECK(parse_error({"--cid", "5", "--cid", "6", "k"}) == "--cid is given twice");
  CHECK(parse_error({"--tap-name", "a,vhost-net", "k"}).find("one value, no list") != std::string::npos);
  CHECK(parse_error({"--mac"}) == "--mac needs a value");
  CHECK(parse_error({"--vhost-vsock-fd", "3", "k"}).find("not supported") != std::string::npos);
}

TEST_CASE("a serial port given twice is refused, as crosvm refuses it", "[launcher]") {
  CHECK(parse_error({"--serial", "type=sink", "--serial", "type=file,path=x,num=1", "k"}) ==
        "--serial hardware=serial,num=1 is given twice");
  CHECK(parse_error({"--serial", "hardware=virtio-console,num=2", "--serial",
                     "hardware=legacy-virtio-console,num=2", "k"}) ==
        "--serial hardware=virtio-console,num=2 is given twice");
  // Different hardware or numbers: ports of their own.
  CHECK(parse_ok({"--serial", "num=1", "--serial", "hardware=debugcon,num=1", "--serial", "num=2", "k"})
            .devices.size() == 3);
}

TEST_CASE("crosvm's default console: COM1 on stdout unless a port is the console or COM1 is given", "[launcher]") {
  const DeviceArg com1{"serial", "type=stdout,num=1,console=true,stdin=true"};
  CHECK(parse_ok({"k"}).devices == std::vector<DeviceArg>{com1});
  // A virtio console that is not the console: COM1 is added.
  CHECK(parse_ok({"--serial", "hardware=virtio-console,num=1", "k"}).devices.back() == com1);
  // One that reads stdin keeps it.
  CHECK(parse_ok({"--serial", "hardware=virtio-console,stdin=true", "k"}).devices.back() ==
        DeviceArg{"serial", "type=stdout,num=1,console=true"});
  // A console, or COM1 itself, given: nothing added.
  CHECK(parse_ok({"--serial", "hardware=virtio-console,console", "k"}).devices.size() == 1);
  CHECK(parse_ok({"--serial", "type=file,path=\"a,b\"", "k"}).devices.size() == 1);
  CHECK(parse_ok({"--serial", "num=2,console=true", "k"}).devices.size() == 1);
  CHECK(parse_ok({"--vhost-user", "type=console,socket=s", "k"}).devices.size() == 1);
  CHECK(parse_ok({"--vhost-user", "console,socket=s", "k"}).devices.size() == 1);  // crosvm's bare type
  // Flags as the library reads them: yes, on and 1 are true too.
  CHECK(parse_ok({"--serial", "num=2,console=on", "k"}).devices.size() == 1);
  CHECK(parse_ok({"--serial", "hardware=virtio-console,stdin=1", "k"}).devices.back() ==
        DeviceArg{"serial", "type=stdout,num=1,console=true"});
  CHECK(parse_ok({"--serial", "num=2", "k"}).devices.size() == 2);
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

TEST_CASE("the sandbox is on unless --disable-sandbox, and --jail takes crosvm's keys", "[launcher]") {
  CHECK(parse_ok({"k"}).sandbox);
  CHECK_FALSE(parse_ok({"--disable-sandbox", "k"}).sandbox);
  CHECK(parse_ok({"--disable-sandbox", "--sandbox", "k"}).sandbox);
  CHECK_FALSE(parse_ok({"k"}).seccomp_log_failures);
  CHECK(parse_ok({"--jail", "seccomp-log-failures", "k"}).seccomp_log_failures);
  CHECK_FALSE(parse_ok({"--jail", "seccomp-log-failures=false", "k"}).seccomp_log_failures);
  const RunOptions denied = parse_ok({"--jail", "seccomp-deny=pwritev,seccomp-deny=fsync", "k"});
  CHECK(denied.seccomp_denied == std::vector<std::string>{"pwritev", "fsync"});
  CHECK(parse_error({"--jail", "pivot-root=/x", "k"}).find("unknown key 'pivot-root'") != std::string::npos);
  CHECK(parse_error({"--jail", "seccomp-deny=", "k"}).find("needs a syscall name") != std::string::npos);
  CHECK(parse_error({"--jail", "seccomp-log-failures=maybe", "k"}).find("true or false") != std::string::npos);
  CHECK(parse_error({"--jail"}).find("--jail needs a list") != std::string::npos);
  CHECK(parse_error({"--sandbox=yes", "k"}).find("takes no value") != std::string::npos);
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
  CHECK(std::get<ControlCommand>(*stop).request_json == R"("Exit")");  // crosvm's own request
  CHECK_FALSE(std::get<ControlCommand>(*stop).print_response);
  auto status = parse_control_command("status", {"s"});
  CHECK(std::get<ControlCommand>(*status).print_response);
  CHECK(std::get<ControlCommand>(*status).request_json == R"({"request":"status"})");  // ours: crosvm has none
  auto resize = parse_control_command("disk", {"resize", "1", "2G", "s"});
  CHECK(std::get<ControlCommand>(*resize).request_json ==
        R"({"DiskCommand":{"disk_index":1,"command":{"Resize":{"new_size":2147483648}}}})");
  CHECK(std::get<ControlCommand>(*parse_control_command("powerbtn", {"s"})).request_json == R"("Powerbtn")");
  CHECK(std::get<ControlCommand>(*parse_control_command("suspend", {"s"})).request_json == R"("SuspendVcpus")");
  CHECK(std::get<ControlCommand>(*parse_control_command("suspend", {"--full", "s"})).request_json ==
        R"("SuspendVm")");
  CHECK(std::get<ControlCommand>(*parse_control_command("resume", {"s", "--full"})).request_json ==
        R"("ResumeVm")");
  CHECK(std::get<ControlCommand>(*parse_control_command("balloon", {"1G", "s"})).request_json ==
        R"({"BalloonCommand":{"Adjust":{"num_bytes":1073741824,"wait_for_success":false}}})");
  CHECK_FALSE(parse_control_command("run", {}).has_value());
  CHECK(std::get<std::string>(*parse_control_command("resume", {})) ==
        "usage: crosvm-launch resume [--full] SOCKET");
  CHECK(std::get<std::string>(*parse_control_command("powerbtn", {"a", "b"})) ==
        "usage: crosvm-launch powerbtn SOCKET");
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

TEST_CASE("--vhost-user lists go to the library like any device kind", "[launcher]") {
  const RunOptions options = parse_ok({"--vhost-user", "type=block,socket=/run/b.sock", "k"});
  REQUIRE_FALSE(options.devices.empty());
  CHECK(options.devices.front() == DeviceArg{"vhost-user", "type=block,socket=/run/b.sock"});
}

TEST_CASE("device KIND --socket PATH [OPTIONS]: crosvm's device command", "[launcher]") {
  using launcher::DeviceCommand;
  using launcher::parse_device_command;
  auto parsed = parse_device_command({"block", "--socket", "/run/b.sock", "path=d.img,ro"});
  REQUIRE(std::holds_alternative<DeviceCommand>(parsed));
  auto command = std::get<DeviceCommand>(parsed);
  CHECK(command.kind == "block");
  CHECK(command.socket == "/run/b.sock");
  CHECK(command.fd == -1);
  CHECK(command.options == "path=d.img,ro");
  // crosvm's spellings: --socket-path, --file.
  command = std::get<DeviceCommand>(parse_device_command({"block", "--socket-path", "/s", "--file", "d.img"}));
  CHECK(command.socket == "/s");
  CHECK(command.options == "d.img");
  command = std::get<DeviceCommand>(parse_device_command({"rng", "--fd", "3"}));
  CHECK(command.fd == 3);
  CHECK(command.options.empty());
  CHECK(std::get<DeviceCommand>(parse_device_command({"--help"})).help);

  const auto error = [](const std::vector<std::string>& args) {
    auto result = parse_device_command(args);
    REQUIRE(std::holds_alternative<std::string>(result));
    return std::get<std::string>(result);
  };
  CHECK(error({}).find("which KIND") != std::string::npos);
  CHECK(error({"block", "path=d.img"}).find("one of --socket PATH or --fd N") != std::string::npos);
  CHECK(error({"block", "--socket", "/s", "--fd", "3"}).find("one of --socket PATH or --fd N") != std::string::npos);
  CHECK(error({"block", "--socket"}).find("--socket needs a value") != std::string::npos);
  CHECK(error({"rng", "--fd", "x"}).find("--fd needs") != std::string::npos);
  CHECK(error({"block", "--socket", "/s", "a", "b"}).find("one list") != std::string::npos);
  CHECK(error({"block", "--colour"}).find("unknown option '--colour'") != std::string::npos);
}

TEST_CASE("docs/launcher.md's table of crosvm's run options is the launcher's", "[launcher]") {
  std::ifstream doc(CROSVM_SOURCE_ROOT "/docs/launcher.md");
  REQUIRE(doc.good());
  // Rows: | `--name`[, `-a`] | yes... / accepted... / not supported... |
  std::map<std::string, std::pair<std::string, CrosvmOptionSupport>> documented;
  std::string line;
  bool in_table = false;
  while (std::getline(doc, line)) {
    if (line == "| crosvm's option | crosvm-launch |") in_table = true;
    if (!in_table || !line.starts_with("| `-")) continue;
    const size_t cell_end = line.find(" | ", 2);
    REQUIRE(cell_end != std::string::npos);
    const std::string names = line.substr(2, cell_end - 2);
    const std::string what = line.substr(cell_end + 3);
    std::vector<std::string> spellings;
    for (size_t at = names.find('`'); at != std::string::npos; at = names.find('`', names.find('`', at + 1) + 1)) {
      spellings.push_back(names.substr(at + 1, names.find('`', at + 1) - at - 1));
    }
    CAPTURE(line);
    REQUIRE(!spellings.empty());
    const CrosvmOptionSupport support = what.starts_with("yes")        ? CrosvmOptionSupport::kSupported
                                        : what.starts_with("accepted") ? CrosvmOptionSupport::kHarmless
                                                                       : CrosvmOptionSupport::kUnsupported;
    if (support == CrosvmOptionSupport::kUnsupported) CHECK(what.starts_with("not supported"));
    CHECK(documented.emplace(spellings[0], std::pair{spellings.size() > 1 ? spellings[1] : "", support}).second);
  }
  size_t compared = 0;
  for (const CrosvmRunOption& option : crosvm_run_options()) {
    CAPTURE(option.name);
    auto found = documented.find(option.name);
    REQUIRE(found != documented.end());
    CHECK(found->second.first == option.alias);
    CHECK(found->second.second == option.support);
    ++compared;
  }
  CHECK(compared == documented.size());  // and no row the launcher lacks
  CHECK(compared > 100);
}
