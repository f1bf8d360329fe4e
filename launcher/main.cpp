// crosvm-launch: a thin command over libcrosvm's C ABI with crosvm's
// interface. It includes only the public header.
#include <crosvm/crosvm.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "options.h"

namespace {

constexpr int kExitOk = 0;
constexpr int kExitError = 1;
constexpr int kExitReset = 32;
constexpr int kExitCrash = 33;
constexpr int kExitPanic = 34;

const char* const kUsage =
    "usage: crosvm-launch COMMAND [ARGS]\n"
    "\n"
    "commands:\n"
    "  run [OPTIONS] [KERNEL]   boot a VM (see crosvm-launch run --help)\n"
    "  version                  print the version\n";

int error(const std::string& message) {
  std::fprintf(stderr, "crosvm-launch: error: %s\n", message.c_str());
  return kExitError;
}

int library_error(const char* what) {
  return error(std::string(what) + ": " + crosvm_error_message());
}

// Raw input on the terminal while the guest owns it (keys, Ctrl-C included,
// go to the guest); output processing stays so log lines keep their shape.
class RawTerminal {
 public:
  RawTerminal() {
    if (::isatty(STDIN_FILENO) == 0 || ::tcgetattr(STDIN_FILENO, &saved_) != 0) return;
    termios raw = saved_;
    raw.c_iflag &= static_cast<tcflag_t>(~(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON));
    raw.c_lflag &= static_cast<tcflag_t>(~(ECHO | ECHONL | ICANON | ISIG | IEXTEN));
    raw.c_cc[VMIN] = 1;
    raw.c_cc[VTIME] = 0;
    active_ = ::tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0;
  }
  ~RawTerminal() {
    if (active_) ::tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
  }
  RawTerminal(const RawTerminal&) = delete;
  RawTerminal& operator=(const RawTerminal&) = delete;

 private:
  termios saved_{};
  bool active_ = false;
};

int exit_code(crosvm_exit_reason reason) {
  switch (reason) {
    case CROSVM_EXIT_POWEROFF:
    case CROSVM_EXIT_STOPPED: return kExitOk;
    case CROSVM_EXIT_RESET: return kExitReset;
    case CROSVM_EXIT_CRASH: return kExitCrash;
    case CROSVM_EXIT_PANIC: return kExitPanic;
    default: return kExitError;
  }
}

struct ConfigHandle {
  crosvm_config* config = nullptr;
  ~ConfigHandle() { crosvm_config_destroy(config); }
};

struct VmHandle {
  crosvm_vm* vm = nullptr;
  ~VmHandle() { crosvm_vm_destroy(vm); }
};

int configure(crosvm_config* config, const launcher::RunOptions& options) {
  if (crosvm_config_set_log(config, options.log_level, nullptr, nullptr) != 0 ||
      crosvm_config_set_memory_mib(config, options.memory_mib) != 0 ||
      crosvm_config_set_vcpu_count(config, options.cpus) != 0) {
    return -1;
  }
  if (options.demo) {
    if (crosvm_config_set_demo_kernel(config) != 0) return -1;
  } else if (crosvm_config_set_kernel(config, options.kernel.c_str()) != 0) {
    return -1;
  }
  if (!options.initrd.empty() && crosvm_config_set_initrd(config, options.initrd.c_str()) != 0) {
    return -1;
  }
  for (const std::string& params : options.params) {
    if (crosvm_config_append_params(config, params.c_str()) != 0) return -1;
  }
  for (const launcher::SerialOption& serial : options.serials) {
    crosvm_serial_options port = CROSVM_SERIAL_OPTIONS_INIT;
    port.number = serial.number;
    port.type = serial.type == "file" ? CROSVM_SERIAL_FILE
                : serial.type == "sink" ? CROSVM_SERIAL_SINK
                                        : CROSVM_SERIAL_STDOUT;
    port.path = serial.path.empty() ? nullptr : serial.path.c_str();
    port.hardware = serial.virtio_console ? CROSVM_SERIAL_HARDWARE_VIRTIO_CONSOLE : CROSVM_SERIAL_HARDWARE_UART;
    port.flags = (serial.console ? CROSVM_SERIAL_CONSOLE : 0u) |
                 (serial.earlycon ? CROSVM_SERIAL_EARLYCON : 0u) |
                 (serial.stdin_input ? CROSVM_SERIAL_STDIN : 0u);
    if (crosvm_config_add_serial(config, &port) != 0) return -1;
  }
  for (const launcher::DiskOption& disk : options.disks) {
    crosvm_disk_options added = CROSVM_DISK_OPTIONS_INIT;
    added.path = disk.path.c_str();
    added.id = disk.id.empty() ? nullptr : disk.id.c_str();
    added.flags = (disk.read_only ? CROSVM_DISK_READ_ONLY : 0u) | (disk.root ? CROSVM_DISK_ROOT : 0u);
    if (crosvm_config_add_disk(config, &added) != 0) return -1;
  }
  if (crosvm_config_set_rng(config, options.rng ? 1 : 0) != 0) return -1;
  return 0;
}

// SIGINT, SIGTERM and SIGHUP stop the VM in order. They are blocked before
// any VM thread exists (threads inherit the mask) and read from a signalfd
// by one watcher thread, which the main thread joins before it destroys the
// VM: the watcher may be inside crosvm_vm_stop() at that moment.
sigset_t stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  return set;
}

class StopSignalWatcher {
 public:
  explicit StopSignalWatcher(crosvm_vm* vm) {
    const sigset_t set = stop_signals();
    signals_ = ::signalfd(-1, &set, SFD_CLOEXEC);
    done_ = ::eventfd(0, EFD_CLOEXEC);
    if (signals_ < 0 || done_ < 0) return;
    thread_ = std::thread([this, vm] { watch(vm); });
  }
  ~StopSignalWatcher() {
    if (thread_.joinable()) {
      const uint64_t one = 1;
      (void)::write(done_, &one, sizeof(one));
      thread_.join();
    }
    if (signals_ >= 0) ::close(signals_);
    if (done_ >= 0) ::close(done_);
  }
  StopSignalWatcher(const StopSignalWatcher&) = delete;
  StopSignalWatcher& operator=(const StopSignalWatcher&) = delete;

 private:
  void watch(crosvm_vm* vm) {
    pollfd fds[2] = {{signals_, POLLIN, 0}, {done_, POLLIN, 0}};
    while (::poll(fds, 2, -1) < 0 && errno == EINTR) {
    }
    if ((fds[0].revents & POLLIN) == 0) return;  // the VM ended first
    signalfd_siginfo info{};
    if (::read(signals_, &info, sizeof(info)) == sizeof(info)) {
      std::fprintf(stderr, "crosvm-launch: %s: stopping the VM\n",
                   ::strsignal(static_cast<int>(info.ssi_signo)));
    }
    crosvm_vm_stop(vm);
  }

  int signals_ = -1;
  int done_ = -1;
  std::thread thread_;
};

int run(const std::vector<std::string>& args) {
  auto parsed = launcher::parse_run_options(args);
  if (auto* message = std::get_if<std::string>(&parsed)) return error(*message);
  const launcher::RunOptions& options = std::get<launcher::RunOptions>(parsed);
  if (options.help) {
    std::fputs(launcher::kRunUsage, stdout);
    return kExitOk;
  }

  const sigset_t signals = stop_signals();
  ::pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  ConfigHandle config;
  if (crosvm_config_create(&config.config) != 0) return library_error("configuration");
  if (configure(config.config, options) != 0) return error(crosvm_error_message());
  VmHandle vm;
  if (crosvm_vm_create(&vm.vm, config.config) != 0) return error(crosvm_error_message());

  bool reads_stdin = false;
  for (const auto& serial : options.serials) reads_stdin |= serial.stdin_input;
  std::optional<RawTerminal> terminal;
  if (reads_stdin) terminal.emplace();

  crosvm_exit_reason reason = CROSVM_EXIT_NONE;
  int ran;
  {
    StopSignalWatcher watcher(vm.vm);
    ran = crosvm_vm_run(&reason, vm.vm);
  }
  terminal.reset();
  if (ran != 0) return error(crosvm_error_message());
  return exit_code(reason);
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) {
    std::fputs(kUsage, stderr);
    return kExitError;
  }
  const std::string command = args.front();
  args.erase(args.begin());
  if (command == "-h" || command == "--help" || command == "help") {
    std::fputs(kUsage, stdout);
    return kExitOk;
  }
  if (command == "version" || command == "--version") {
    std::printf("crosvm-launch %s (libcrosvm ABI %u)\n", crosvm_version(), crosvm_abi_version());
    return kExitOk;
  }
  if (command == "run") return run(args);
  return error("unknown command '" + command + "' (see crosvm-launch --help)");
}
