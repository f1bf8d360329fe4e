// The device side of crosvm-device (device_main.h): one virtio device in a
// jailed process of its own, served over vhost-user on a socketpair to the
// VMM that spawned it. Not run by hand: the VMM
// (lib/sandbox/device_process.cpp) execs the helper with every fd it needs
// in place, and reads its log lines ("LEVEL<tab>message") from its stderr.
// It jails itself (with the helper's libcap and libseccomp), builds the
// device from its fds, loads the device's seccomp policy and serves until
// the VMM goes.
//
// usage: crosvm-device KIND --socket-fd N [--control-fd N] [--file-fd N] [device arguments]
//                      [--seccomp-log-failures] [--deny-syscall NAME]... [--debug]
//   block: --path PATH (for messages) [--read-only] [--id ID] [--name NAME]
//          [--backing-fd N]... [--direct-fd N] [--allow-backing] [--no-lock] [--no-sparse]
//          [--block-size N] [--num-queues N]
//   console: --output-fd N --input-fd N [--name NAME]
//   a registry kind (rng, net, ...): [--index N] [--option KEY=VALUE]... [--fd-NAME N]...
//     (--fd-NAME: what the kind's open() opened in the VMM, e.g. --fd-tap)
#include <malloc.h>
#include <sys/socket.h>
#include <unistd.h>

#include <charconv>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "base/file_io.h"
#include "base/log.h"
#include "devices/registry.h"
#include "base/event_loop.h"
#include "devices/virtio/block.h"
#include "devices/virtio/console.h"
#include "devices/virtio/vsock/user_vsock.h"
#include "disk/decompress.h"
#include "disk/disk_file.h"
#include "sandbox/device_control.h"
#include "sandbox/device_main.h"
#include "sandbox/jail.h"
#include "sandbox/policy.h"
#include "vhost_user/backend.h"
#include "vm/host_output.h"
#include "vm/serial_input.h"

namespace crosvm {
namespace {

struct Arguments {
  std::string kind;
  int socket_fd = -1;
  int control_fd = -1;
  int file_fd = -1;
  std::vector<int> backing_fds;  // block: a qcow2 image's backing files, in order
  int direct_fd = -1;            // block: the image's O_DIRECT description (direct=true)
  bool allow_backing = false;
  bool lock = true;
  virtio::BlockOptions block;  // its id is `id` below
  int output_fd = -1;  // console: what the guest writes, to the VMM
  int input_fd = -1;   // console: host input, from the VMM
  std::string path;
  bool read_only = false;
  std::string id;
  std::string name;
  uint32_t index = 0;
  std::vector<KeyValue> options;
  std::vector<std::pair<std::string, int>> resources;  // --fd-NAME N
  sandbox::FilterOptions filter;
  bool debug = false;
};

void write_line(LogLevel level, std::string_view message) {
  const std::string line = fmt::format("{}\t{}\n", log_level_name(level), message);
  write_all(STDERR_FILENO, std::span(reinterpret_cast<const uint8_t*>(line.data()), line.size()));
}

Result<int> fd_number(std::string_view text) {
  int value = -1;
  const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (error != std::errc{} || end != text.data() + text.size() || value < 3) {
    return make_error(ErrorCode::kInvalidArgument, "not an fd number: '{}'", text);
  }
  return value;
}

Result<Arguments> parse(int argc, char** argv) {
  if (argc < 2) return make_error(ErrorCode::kInvalidArgument, "usage: crosvm-device KIND --socket-fd N ...");
  Arguments arguments;
  arguments.kind = argv[1];
  for (int i = 2; i < argc; ++i) {
    const std::string_view flag = argv[i];
    auto value = [&]() -> Result<std::string_view> {
      if (i + 1 >= argc) return make_error(ErrorCode::kInvalidArgument, "{} needs a value", flag);
      return std::string_view(argv[++i]);
    };
    if (flag == "--socket-fd") {
      arguments.socket_fd = CROSVM_TRY(fd_number(CROSVM_TRY(value())));
    } else if (flag == "--control-fd") {
      arguments.control_fd = CROSVM_TRY(fd_number(CROSVM_TRY(value())));
    } else if (flag == "--file-fd") {
      arguments.file_fd = CROSVM_TRY(fd_number(CROSVM_TRY(value())));
    } else if (flag == "--backing-fd") {
      arguments.backing_fds.push_back(CROSVM_TRY(fd_number(CROSVM_TRY(value()))));
    } else if (flag == "--direct-fd") {
      arguments.direct_fd = CROSVM_TRY(fd_number(CROSVM_TRY(value())));
    } else if (flag == "--allow-backing") {
      arguments.allow_backing = true;
    } else if (flag == "--no-lock") {
      arguments.lock = false;
    } else if (flag == "--no-sparse") {
      arguments.block.sparse = false;
    } else if (flag == "--block-size") {
      const std::string_view text = CROSVM_TRY(value());
      const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), arguments.block.block_size);
      if (error != std::errc{} || end != text.data() + text.size()) {
        return make_error(ErrorCode::kInvalidArgument, "--block-size: not a number: '{}'", text);
      }
    } else if (flag == "--num-queues") {
      const std::string_view text = CROSVM_TRY(value());
      const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), arguments.block.num_queues);
      if (error != std::errc{} || end != text.data() + text.size() || arguments.block.num_queues == 0 ||
          arguments.block.num_queues > virtio::kMaxBlockQueues) {
        return make_error(ErrorCode::kInvalidArgument, "--num-queues: not 1 to {}: '{}'", virtio::kMaxBlockQueues,
                          text);
      }
    } else if (flag == "--output-fd") {
      arguments.output_fd = CROSVM_TRY(fd_number(CROSVM_TRY(value())));
    } else if (flag == "--input-fd") {
      arguments.input_fd = CROSVM_TRY(fd_number(CROSVM_TRY(value())));
    } else if (flag == "--path") {
      arguments.path = CROSVM_TRY(value());
    } else if (flag == "--read-only") {
      arguments.read_only = true;
    } else if (flag == "--id") {
      arguments.id = CROSVM_TRY(value());
    } else if (flag == "--name") {
      arguments.name = CROSVM_TRY(value());
    } else if (flag == "--index") {
      const std::string_view text = CROSVM_TRY(value());
      const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), arguments.index);
      if (error != std::errc{} || end != text.data() + text.size()) {
        return make_error(ErrorCode::kInvalidArgument, "--index: not a number: '{}'", text);
      }
    } else if (flag == "--option") {
      const std::string_view item = CROSVM_TRY(value());
      const size_t equals = item.find('=');
      if (equals == std::string_view::npos) return make_error(ErrorCode::kInvalidArgument, "--option {}: no '='", item);
      arguments.options.push_back({std::string(item.substr(0, equals)), std::string(item.substr(equals + 1)), false});
    } else if (flag.starts_with("--fd-") && flag.size() > 5) {
      arguments.resources.emplace_back(std::string(flag.substr(5)), CROSVM_TRY(fd_number(CROSVM_TRY(value()))));
    } else if (flag == "--seccomp-log-failures") {
      arguments.filter.log_failures = true;
    } else if (flag == "--deny-syscall") {
      arguments.filter.denied.emplace_back(CROSVM_TRY(value()));
    } else if (flag == "--debug") {
      arguments.debug = true;
    } else {
      return make_error(ErrorCode::kInvalidArgument, "unknown argument '{}'", flag);
    }
  }
  if (arguments.socket_fd < 0) return make_error(ErrorCode::kInvalidArgument, "--socket-fd is required");
  return arguments;
}

struct Device {
  // A console's streams: its pipes, on an executor of their own. Declared
  // first, gone last.
  std::unique_ptr<EventLoop> loop;
  std::unique_ptr<SerialInput> input;
  std::shared_ptr<virtio::VirtioDevice> device;
  std::shared_ptr<virtio::Block> block;  // when it is a disk: what a resize request resizes

  Device() = default;
  Device(Device&&) = default;
  Device& operator=(Device&&) = default;
  ~Device() {
    if (input && loop) loop->run_sync([this] { input->shutdown(); });
    if (loop) loop->stop();
  }
};

// Built from fds alone: the jail has no file to open.
Result<Device> build_device(Arguments& arguments, const Logger& logger) {
  if (arguments.kind == "block") {
    if (arguments.file_fd < 0) return make_error(ErrorCode::kInvalidArgument, "block needs --file-fd");
    std::vector<UniqueFd> files;
    files.emplace_back(arguments.file_fd);
    for (int fd : arguments.backing_fds) files.emplace_back(fd);
    auto disk = CROSVM_TRY(disk::adopt_image(std::move(files),
                                             {.path = arguments.path,
                                              .read_only = arguments.read_only,
                                              .allow_backing = arguments.allow_backing,
                                              .lock = arguments.lock},
                                             arguments.direct_fd >= 0 ? UniqueFd(arguments.direct_fd) : UniqueFd()));
    const std::string name = arguments.name.empty() ? fmt::format("virtio-blk ({})", arguments.path) : arguments.name;
    arguments.block.id = arguments.id;
    auto block = std::make_shared<virtio::Block>(std::move(disk), arguments.block, name, logger);
    Device device;
    device.device = block;
    device.block = block;
    return device;
  }
  if (arguments.kind == "console") {
    if (arguments.output_fd < 0 || arguments.input_fd < 0) {
      return make_error(ErrorCode::kInvalidArgument, "console needs --output-fd and --input-fd");
    }
    Device device;
    device.loop = std::make_unique<EventLoop>("console_pipes");
    auto output = std::make_shared<HostOutput>(*device.loop, arguments.output_fd,
                                               std::make_shared<UniqueFd>(arguments.output_fd));
    auto console = std::make_shared<virtio::Console>(
        arguments.name.empty() ? std::string("virtio-console") : arguments.name, output, logger);
    device.input = CROSVM_TRY(SerialInput::create(*device.loop, arguments.input_fd, console));
    ::close(arguments.input_fd);  // SerialInput reads its own copy
    device.device = console;
    return device;
  }
  const VirtioKind* kind = find_virtio_kind(arguments.kind);
  if (kind == nullptr) return make_error(ErrorCode::kInvalidArgument, "unknown device kind '{}'", arguments.kind);
  DeviceOptions options(arguments.kind, arguments.options);
  CROSVM_TRY(kind->check(options));
  DeviceEnvironment environment{logger, arguments.index, {}};
  for (const auto& [name, fd] : arguments.resources) environment.fds.push_back({name, UniqueFd(fd)});
  Device device;
  device.device = CROSVM_TRY(kind->create(options, environment));
  return device;
}

// The seccomp policy: the kind's, or for a NIC given /dev/vhost-net, the
// one that also lets it drive the kernel's rings.
std::string policy_kind(const Arguments& arguments) {
  if (arguments.kind == "vsock") {
    for (const auto& resource : arguments.resources) {
      if (resource.first == "vsock-listen") return "vsock-user";
    }
  }
  if (arguments.kind != "net") return arguments.kind;
  for (const auto& resource : arguments.resources) {
    if (resource.first.starts_with("vhost-net")) return "net-vhost";
  }
  return arguments.kind;
}

// The userspace vsock holds a host stream per connection, up to its cap.
sandbox::JailLimits jail_limits(const Arguments& arguments) {
  sandbox::JailLimits limits;
  if (policy_kind(arguments) == "vsock-user") limits.max_fds += virtio::UserVsock::kMaxConnections;
  return limits;
}

// The VMM's requests (device_control.h), on a thread of their own.
Result<void> answer_requests(int fd, const std::shared_ptr<virtio::Block>& block) {
  return sandbox::serve_control_requests(fd, [&](sandbox::ControlRequest request, uint64_t value) -> Result<void> {
    if (request == sandbox::ControlRequest::kResize && block) return block->resize(value);
    return make_error(ErrorCode::kInvalidArgument, "this device cannot do that");
  });
}

// A qcow2 image may hold compressed clusters, whose libraries are loaded
// when first needed (disk/decompress.h): here, before the jail, which has
// no file system to load them from. A raw disk's process never maps them.
void preload_for_image(const Arguments& arguments, const Logger& logger) {
  if (arguments.kind != "block" || arguments.file_fd < 0) return;
  const Result<disk::Format> format = disk::detect_format(arguments.file_fd, arguments.path);
  if (!format || *format != disk::Format::kQcow2) return;
  if (auto loaded = disk::preload_decompressors(); !loaded) {
    logger.warn("{}: compressed clusters cannot be read: {}", arguments.path, loaded.error().message);
  }
}

Result<void> run(int argc, char** argv, const sandbox::JailLibraries& libraries, Logger& logger) {
  Arguments arguments = CROSVM_TRY(parse(argc, argv));
  if (arguments.debug) logger = Logger(write_line, LogLevel::kDebug);
  preload_for_image(arguments, logger);
  CROSVM_TRY(sandbox::enter_jail(jail_limits(arguments), libraries));
  Device device = CROSVM_TRY(build_device(arguments, logger));
  CROSVM_TRY(sandbox::load_filter(policy_kind(arguments), arguments.filter, libraries));
#ifndef CROSVM_SANITIZED
  // libseccomp built the filter on the heap and freed it: give those pages
  // back (madvise and brk are in every policy). Not under a sanitizer,
  // whose allocator replaces glibc's: glibc's, first woken here, would ask
  // getrandom for its tcache key, after the filter.
  ::malloc_trim(0);
#endif
  if (device.loop) {
    CROSVM_TRY(device.loop->start_threads(1));
    device.input->start();
  }
  logger.debug("{}: jailed, serving", device.device->name());
  std::thread control;
  if (arguments.control_fd >= 0) {
    control = std::thread([&] {
      if (auto served = answer_requests(arguments.control_fd, device.block); !served) {
        logger.warn("control channel: {}", served.error().message);
      }
    });
  }
  vhost_user::Backend backend(device.device, logger);
  Result<void> served = backend.serve(vhost_user::Connection(UniqueFd(arguments.socket_fd)));
  if (control.joinable()) {
    ::shutdown(arguments.control_fd, SHUT_RDWR);  // the thread's read returns
    control.join();
  }
  return served;
}

}  // namespace
}  // namespace crosvm

int crosvm_device_helper_main(int argc, char** argv, const crosvm_jail_libraries* libraries) {
  // One malloc arena for the process instead of one per thread (glibc's
  // default, up to 8 per core): a device's few threads contend little, and
  // each arena holds pages of its own.
  ::mallopt(M_ARENA_MAX, 1);
  crosvm::Logger logger(crosvm::write_line, crosvm::LogLevel::kInfo);
  if (libraries == nullptr) {
    logger.error("crosvm-device: no jail libraries");
    return 1;
  }
  if (auto served = crosvm::run(argc, argv, *libraries, logger); !served) {
    logger.error("{}", served.error().message);
    return 1;
  }
  return 0;
}
