// Command-line parsing for crosvm-launch, following crosvm's option names,
// defaults and key=value list syntax (e.g. --serial type=stdout,num=1).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

namespace launcher {

// A device as the command line gives it, in order: a device kind of the
// library's and its key=value list, handed as they are to
// crosvm_config_add_device(), which parses and checks them (one parser for
// every front end). -d/-r/--rwdisk/--rwroot become "block" lists.
struct DeviceArg {
  std::string kind;     // "block", "serial", ...
  std::string options;  // "path=disk.img,ro=true"
  bool operator==(const DeviceArg&) const = default;
};

// crosvm's global options, before the command: `crosvm-launch --log-level
// debug --extended-status run ...`.
struct GlobalOptions {
  std::optional<int> log_level;  // -1: off
  bool extended_status = false;  // run exits 32-34 for reset, crash, panic (else 0, as crosvm)
  std::string syslog_tag;        // what type=syslog ports' lines are tagged with
  size_t consumed = 0;           // how many arguments were global options
};
std::variant<GlobalOptions, std::string> parse_global_options(const std::vector<std::string>& args);

// crosvm's --log-level: off, error, warn, info, debug, trace; -1 is off.
std::optional<int> parse_log_level(const std::string& text);

// How crosvm-launch meets each of crosvm's `run` options.
enum class CrosvmOptionSupport {
  kSupported,    // does what crosvm's does
  kHarmless,     // accepted and without effect, since what it turns off is not here (--no-usb)
  kUnsupported,  // refused with one line saying so
};
struct CrosvmRunOption {
  const char* name;   // "--block"
  const char* alias;  // "-b", or ""
  CrosvmOptionSupport support;
};
// Every option of crosvm's `run` (crosvm as of 2026), as docs/launcher.md's
// table lists them; a test keeps the two the same.
std::span<const CrosvmRunOption> crosvm_run_options();

struct RunOptions {
  uint64_t memory_mib = 256;
  uint32_t cpus = 1;
  std::vector<std::string> params;
  std::string initrd;
  std::string kernel;
  bool demo = false;  // the built-in demo guest (also when no kernel is given)
  // --KIND LIST for every kind of the library's (--block, --serial, ...),
  // and the disk shorthands. Without a serial: serial 1 on stdout as the
  // console, reading stdin (crosvm's default).
  std::vector<DeviceArg> devices;
  bool rng = true;  // as crosvm (and the library): on unless --no-rng
  bool hugepages = true;  // on unless --no-hugepages (crosvm's --hugepages is accepted)
  // Each virtio device in a jailed process, as crosvm: on unless
  // --disable-sandbox (--sandbox is accepted).
  bool sandbox = true;
  // --jail LIST: crosvm's seccomp-log-failures, and seccomp-deny=NAME (tests
  // of the sandbox: NAME taken out of every device's policy).
  bool seccomp_log_failures = false;
  std::vector<std::string> seccomp_denied;
  std::optional<int> log_level;  // -1: off; unset: the global --log-level, else info
  std::string name;  // --name: the process's name (15 bytes, as crosvm)
  std::string syslog_tag;  // run --syslog-tag (crosvm's deprecated place; the global one wins otherwise)
  std::string socket;  // -s/--socket: the control socket (a path or a directory)
  bool help = false;
};

// stop|powerbtn|suspend|resume|status SOCKET, disk resize INDEX SIZE
// SOCKET, ...: one request for a running VM's control socket, in crosvm's
// encoding (ours for status).
struct ControlCommand {
  std::string socket;
  std::string request_json;
  bool print_response = false;  // status prints the VM's answer
};

// Parses a control command (`command` is its first word, `args` the rest).
// Returns nullopt when `command` is not one.
std::optional<std::variant<ControlCommand, std::string>> parse_control_command(
    const std::string& command, const std::vector<std::string>& args);

// crosvm's `crosvm device KIND --socket PATH [OPTIONS]`: one device of the
// library's served to a vhost-user frontend.
struct DeviceCommand {
  std::string kind;     // "block", "rng"
  std::string socket;   // --socket / --socket-path: listen here
  int fd = -1;          // --fd N: serve this connected socket instead
  std::string options;  // the device's key=value list
  bool help = false;
};

// Parses the arguments after "device". Returns the command or one line
// saying what is wrong (the options themselves are the library's to check).
std::variant<DeviceCommand, std::string> parse_device_command(const std::vector<std::string>& args);
extern const char* const kDeviceUsage;

// crosvm's `crosvm create_qcow2 PATH [SIZE] [--backing-file FILE]`.
struct CreateQcow2Command {
  std::string path;
  uint64_t size = 0;
  std::string backing_file;
};
std::variant<CreateQcow2Command, std::string> parse_create_qcow2(const std::vector<std::string>& args);

// "1073741824", "512M", "10G" (binary units) into bytes.
std::optional<uint64_t> parse_size(const std::string& text);

extern const char* const kControlUsage;

// Whether the library knows a device kind of this name (main asks
// crosvm_device_kind_help()).
using IsDeviceKind = std::function<bool(const std::string& kind)>;

// Parses the arguments after "run". Returns the options or one line saying
// what is wrong. A device list's keys and values are checked when the
// library is given them, not here.
std::variant<RunOptions, std::string> parse_run_options(const std::vector<std::string>& args,
                                                        const IsDeviceKind& is_device_kind);

// The usage of `run`: kRunUsage, the device kinds (from the library), then
// kRunUsageEnd.
extern const char* const kRunUsage;
extern const char* const kRunUsageEnd;

}  // namespace launcher
