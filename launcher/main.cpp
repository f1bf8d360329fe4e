// crosvm-launch: a thin command over libcrosvm's C ABI with crosvm's
// interface. It includes only the public header.
#include <crosvm/crosvm.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "options.h"

namespace {

constexpr int kExitOk = 0;
constexpr int kExitError = 1;
constexpr int kExitReset = 32;
constexpr int kExitCrash = 33;
constexpr int kExitPanic = 34;
constexpr int kExitInvalidArgs = 35;  // crosvm's: the command line could not be used

const char* const kUsage =
    "usage: crosvm-launch COMMAND [ARGS]\n"
    "\n"
    "global options (before COMMAND, as crosvm's):\n"
    "  --log-level LEVEL        off, error, warn, info (default), debug or trace\n"
    "  --extended-status        run exits 32 (reset), 33 (crash) or 34 (panic)\n"
    "                           instead of 0, as crosvm's\n"
    "  --no-syslog              accepted (crosvm-launch logs to stderr only)\n"
    "  --syslog-tag TAG         what --serial type=syslog lines are tagged with\n"
    "                           (default: crosvm-launch)\n"
    "\n"
    "commands:\n"
    "  run [OPTIONS] [KERNEL]   boot a VM (see crosvm-launch run --help)\n"
    "  device KIND --socket PATH [OPTIONS]\n"
    "                           serve a device over vhost-user (see device --help)\n"
    "%s"
    "  version                  print the version\n";

int error(const std::string& message, int code = kExitError) {
  std::fprintf(stderr, "crosvm-launch: error: %s\n", message.c_str());
  return code;
}

// A command line that cannot be used: crosvm's exit status for it.
int usage_error(const std::string& message) { return error(message, kExitInvalidArgs); }

// --log-level off: the library's log goes nowhere (our own errors still print).
void discard_log(int /*level*/, const char* /*message*/, void* /*userdata*/) {}

int library_error(const char* what) {
  return error(std::string(what) + ": " + crosvm_error_message());
}

// Raw input on the terminal while the guest owns it (keys, Ctrl-C included,
// go to the guest); output processing stays so log lines keep their shape.
class RawTerminal {
 public:
  explicit RawTerminal(int fd) : fd_(fd) {
    if (::isatty(fd_) == 0 || ::tcgetattr(fd_, &saved_) != 0) return;
    termios raw = saved_;
    raw.c_iflag &= static_cast<tcflag_t>(~(IGNBRK | BRKINT | PARMRK | ISTRIP | INLCR | IGNCR | ICRNL | IXON));
    raw.c_lflag &= static_cast<tcflag_t>(~(ECHO | ECHONL | ICANON | ISIG | IEXTEN));
    raw.c_cc[VMIN] = 1;
    raw.c_cc[VTIME] = 0;
    active_ = ::tcsetattr(fd_, TCSANOW, &raw) == 0;
  }
  ~RawTerminal() {
    if (active_) ::tcsetattr(fd_, TCSANOW, &saved_);
  }
  RawTerminal(const RawTerminal&) = delete;
  RawTerminal& operator=(const RawTerminal&) = delete;

  int fd() const { return fd_; }
  // The settings to give back, or nullptr when nothing was changed.
  const termios* saved() const { return active_ ? &saved_ : nullptr; }

 private:
  int fd_;
  termios saved_{};
  bool active_ = false;
};

const char* const kEscapeHelp =
    "Ctrl-A x  stop the VM and exit\r\n"
    "Ctrl-A c  the VM's state\r\n"
    "Ctrl-A a  send Ctrl-A to the guest (Ctrl-A Ctrl-A too)\r\n"
    "Ctrl-A h  this help\r\n";

// QEMU's console escapes on a terminal: with the terminal raw, Ctrl-C and
// every other key go to the guest, and Ctrl-A x still leaves. The launcher
// reads the terminal itself and passes on all but its own keys through a
// pipe that takes stdin's place, so the library reads the guest's input as
// before; a full pipe holds the terminal's input back, as the guest's port
// would.
class ConsoleEscapes {
 public:
  enum class Action { kNone, kQuit, kStatus };

  // On a terminal only; otherwise stdin stays the library's as it is.
  static std::optional<ConsoleEscapes> interpose() {
    if (::isatty(STDIN_FILENO) == 0) return std::nullopt;
    const int terminal = ::fcntl(STDIN_FILENO, F_DUPFD_CLOEXEC, 3);
    int pipe_fds[2];
    if (terminal < 0 || ::pipe2(pipe_fds, O_CLOEXEC) != 0) {
      if (terminal >= 0) ::close(terminal);
      return std::nullopt;
    }
    ::dup2(pipe_fds[0], STDIN_FILENO);  // the guest's input from here on
    ::close(pipe_fds[0]);
    ::fcntl(pipe_fds[1], F_SETFL, O_NONBLOCK);
    return ConsoleEscapes(terminal, pipe_fds[1]);
  }
  ConsoleEscapes(ConsoleEscapes&& other) noexcept
      : terminal_(std::exchange(other.terminal_, -1)), guest_(std::exchange(other.guest_, -1)),
        pending_(std::move(other.pending_)), escape_(other.escape_) {}
  ~ConsoleEscapes() {
    if (terminal_ >= 0) ::close(terminal_);
    if (guest_ >= 0) ::close(guest_);
  }

  int terminal() const { return terminal_; }
  // What to poll: the terminal while nothing waits for the guest, else the pipe.
  pollfd poll_entry() const {
    if (guest_ < 0) return {-1, 0, 0};
    return pending_.empty() ? pollfd{terminal_, POLLIN, 0} : pollfd{guest_, POLLOUT, 0};
  }

  // Reads the terminal (or sends what waits) after poll said so.
  Action ready(short revents) {
    if (revents == 0 || guest_ < 0) return Action::kNone;
    if (!pending_.empty()) return flush();
    char bytes[4096];
    const ssize_t got = ::read(terminal_, bytes, sizeof(bytes));
    if (got == 0 || (got < 0 && errno != EINTR && errno != EAGAIN)) {
      ::close(std::exchange(guest_, -1));  // end of input: the guest's too
      return Action::kNone;
    }
    Action action = Action::kNone;
    for (ssize_t i = 0; i < got; ++i) {
      const char byte = bytes[i];
      if (escape_) {
        escape_ = false;
        switch (byte) {
          case 'x': case 'X': action = Action::kQuit; break;
          case 'c': case 'C': action = action == Action::kQuit ? action : Action::kStatus; break;
          case 'a': case 'A': case kEscape: pending_.push_back(kEscape); break;
          case 'h': case 'H': case '?': std::fputs(kEscapeHelp, stderr); break;
          default: break;  // an unknown escape is dropped, as QEMU does
        }
      } else if (byte == kEscape) {
        escape_ = true;
      } else {
        pending_.push_back(byte);
      }
    }
    const Action flushed = flush();
    return action != Action::kNone ? action : flushed;
  }

 private:
  static constexpr char kEscape = 0x01;  // Ctrl-A
  ConsoleEscapes(int terminal, int guest) : terminal_(terminal), guest_(guest) {}

  Action flush() {
    while (!pending_.empty()) {
      const ssize_t sent = ::write(guest_, pending_.data(), pending_.size());
      if (sent < 0) {
        if (errno == EINTR) continue;
        if (errno != EAGAIN) pending_.clear();  // the guest's side is gone
        break;
      }
      pending_.erase(0, static_cast<size_t>(sent));
    }
    return Action::kNone;
  }

  int terminal_ = -1;
  int guest_ = -1;  // the pipe's write end; the read end is stdin
  std::string pending_;
  bool escape_ = false;
};

const char* state_name(crosvm_vm_state state) {
  switch (state) {
    case CROSVM_STATE_CREATED: return "created";
    case CROSVM_STATE_RUNNING: return "running";
    case CROSVM_STATE_PAUSED: return "paused";
    case CROSVM_STATE_STOPPING: return "stopping";
    case CROSVM_STATE_STOPPED: return "stopped";
  }
  return "unknown";
}

// crosvm's exit status: 0 for every way a VM ends unless --extended-status.
int exit_code(crosvm_exit_reason reason, bool extended_status) {
  if (!extended_status && reason != CROSVM_EXIT_ERROR && reason != CROSVM_EXIT_NONE) return kExitOk;
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

// Returns 0, or the exit status for the error (said already by the caller).
int configure(crosvm_config* config, const launcher::RunOptions& options, int log_level) {
  const int logged = log_level < 0 ? crosvm_config_set_log(config, CROSVM_LOG_ERROR, discard_log, nullptr)
                                   : crosvm_config_set_log(config, log_level, nullptr, nullptr);
  if (logged != 0 || crosvm_config_set_memory_mib(config, options.memory_mib) != 0 ||
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
  for (const launcher::DeviceArg& device : options.devices) {
    // A list the library cannot read is a bad command line, as in crosvm
    // (which parses these lists with the rest of its arguments).
    if (crosvm_config_add_device(config, device.kind.c_str(), device.options.c_str()) != 0) {
      return kExitInvalidArgs;
    }
  }
  if (crosvm_config_set_rng(config, options.rng ? 1 : 0) != 0) return -1;
  if (crosvm_config_set_hugepages(config, options.hugepages ? 1 : 0) != 0) return -1;
  if (crosvm_config_set_syslog_tag(config, options.syslog_tag.c_str()) != 0) return kExitInvalidArgs;
  std::vector<const char*> denied;
  for (const std::string& name : options.seccomp_denied) denied.push_back(name.c_str());
  denied.push_back(nullptr);
  crosvm_sandbox_options sandbox = CROSVM_SANDBOX_OPTIONS_INIT;
  sandbox.flags = (options.sandbox ? CROSVM_SANDBOX_ENABLED : 0) |
                  (options.seccomp_log_failures ? CROSVM_SANDBOX_SECCOMP_LOG_FAILURES : 0);
  sandbox.denied_syscalls = denied.data();
  if (crosvm_config_set_sandbox(config, &sandbox) != 0) return -1;
  if (!options.socket.empty() && crosvm_config_set_control_socket(config, options.socket.c_str()) != 0) {
    return -1;
  }
  return 0;
}

// crosvm's --name: the process's name as ps and top show it (at most 15
// bytes, as the kernel keeps it).
void set_process_name(const std::string& name) {
  if (!name.empty()) ::prctl(PR_SET_NAME, name.substr(0, 15).c_str(), 0, 0, 0);
}

// SIGINT, SIGTERM and SIGHUP stop the VM in order. They are blocked before
// any VM thread exists (threads inherit the mask) and read from a signalfd
// that the VM's event loop watches (crosvm_vm_watch_fd), as the terminal's
// escapes: the main thread serves that loop inside crosvm_vm_run(), as an
// embedder with nothing else to do would. No thread of the launcher's own,
// and none of the library's for the loop.
sigset_t stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGHUP);
  return set;
}

// What the launcher's watches share; used on the loop's thread only.
struct RunState {
  crosvm_vm* vm = nullptr;
  ConsoleEscapes* escapes = nullptr;
  std::optional<RawTerminal>* terminal = nullptr;
  bool stop_asked = false;
};

// What the second stop signal needs to leave: set before its handler is
// installed, only read after.
struct GiveUp {
  int terminal_fd = -1;
  termios terminal{};
  bool restore_terminal = false;
};
GiveUp g_give_up;

// The second stop signal's handler. The loop that reads the signalfd may
// itself be what does not end (a final flush to a reader that never
// reads), so this way out does not go through it: async-signal-safe calls
// only, the terminal given back, one line, the process ended.
void give_up_on_signal(int signal) {
  if (g_give_up.restore_terminal) ::tcsetattr(g_give_up.terminal_fd, TCSANOW, &g_give_up.terminal);
  const char* message = signal == SIGINT    ? "crosvm-launch: Interrupt again: exiting without waiting for the VM\n"
                        : signal == SIGHUP ? "crosvm-launch: Hangup again: exiting without waiting for the VM\n"
                                           : "crosvm-launch: Terminated again: exiting without waiting for the VM\n";
  (void)!::write(STDERR_FILENO, message, std::strlen(message));
  ::_exit(kExitError);
}

// From the first stop request on, a stop signal reaches the handler above
// on this thread (the loop's, the main one) instead of the signalfd.
void arm_give_up(const RunState& state) {
  if (const RawTerminal* terminal = state.terminal->has_value() ? &**state.terminal : nullptr;
      terminal != nullptr && terminal->saved() != nullptr) {
    g_give_up.terminal_fd = terminal->fd();
    g_give_up.terminal = *terminal->saved();
    g_give_up.restore_terminal = true;
  }
  struct sigaction action {};
  action.sa_handler = give_up_on_signal;
  sigemptyset(&action.sa_mask);
  const sigset_t set = stop_signals();
  for (const int signal : {SIGINT, SIGTERM, SIGHUP}) ::sigaction(signal, &action, nullptr);
  ::pthread_sigmask(SIG_UNBLOCK, &set, nullptr);
}

// A stop the user asked for (a signal, Ctrl-A x). A second one, while the
// VM has not stopped (the watches end when it does), gives up waiting: a
// stop that does not end (a device or an output that never returns) must
// not leave only SIGKILL. The process ends without the VM's destructor,
// which would wait for the stop again; the kernel reclaims the rest, and a
// control socket left behind is stale (the next VMM given that path
// replaces it).
void ask_stop(RunState& state, const char* why) {
  if (state.stop_asked) {
    std::fprintf(stderr, "crosvm-launch: %s again: exiting without waiting for the VM\n", why);
    state.terminal->reset();  // the user's terminal as it was
    std::_Exit(kExitError);
  }
  std::fprintf(stderr, "crosvm-launch: %s: stopping the VM\n", why);
  state.stop_asked = crosvm_vm_request_stop(state.vm) == 0;
  if (state.stop_asked) arm_give_up(state);
}

uint32_t on_stop_signal(int fd, uint32_t /*ready*/, void* userdata) {
  auto& state = *static_cast<RunState*>(userdata);
  signalfd_siginfo info{};
  if (::read(fd, &info, sizeof(info)) == sizeof(info)) {
    ask_stop(state, ::strsignal(static_cast<int>(info.ssi_signo)));
  }
  return CROSVM_WATCH_READABLE;
}

// What the escapes wait for: the terminal's input, or room in the guest's
// pipe for what waits to be sent; 0 once input has ended.
uint32_t console_events(const pollfd& entry) {
  if (entry.fd < 0) return 0;
  return (entry.events & POLLOUT) != 0 ? CROSVM_WATCH_WRITABLE : CROSVM_WATCH_READABLE;
}

uint32_t on_console(int fd, uint32_t ready, void* userdata) {
  auto& state = *static_cast<RunState*>(userdata);
  const short revents = (ready & CROSVM_WATCH_WRITABLE) != 0 ? POLLOUT : POLLIN;
  switch (state.escapes->ready(revents)) {
    case ConsoleEscapes::Action::kQuit: ask_stop(state, "Ctrl-A x"); break;
    case ConsoleEscapes::Action::kStatus:
      std::fprintf(stderr, "\r\ncrosvm-launch: the VM is %s (Ctrl-A h: help)\r\n",
                   state_name(crosvm_vm_get_state(state.vm)));
      break;
    case ConsoleEscapes::Action::kNone: break;
  }
  const pollfd next = state.escapes->poll_entry();
  if (next.fd == fd || next.fd < 0) return console_events(next);
  // From the terminal to the pipe or back: that descriptor's watch takes over.
  if (crosvm_vm_watch_fd(state.vm, next.fd, console_events(next), on_console, userdata) != 0) {
    std::fprintf(stderr, "crosvm-launch: the console's input stops: %s\n", crosvm_error_message());
  }
  return 0;
}

// Runs a created VM until it stops; a stop signal asks it to stop in order,
// a second one gives up waiting.
int run_until_stopped(crosvm_exit_reason* reason, RunState& state) {
  const sigset_t set = stop_signals();
  const int signals = ::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
  if (signals < 0) {
    std::fprintf(stderr, "crosvm-launch: error: signalfd: %s\n", std::strerror(errno));
    return -2;
  }
  int watched = crosvm_vm_watch_fd(state.vm, signals, CROSVM_WATCH_READABLE, on_stop_signal, &state);
  // The library watches its own copy.
  ::close(signals);
  if (watched == 0 && state.escapes != nullptr) {
    const pollfd console = state.escapes->poll_entry();
    if (console.fd >= 0) {
      watched = crosvm_vm_watch_fd(state.vm, console.fd, console_events(console), on_console, &state);
    }
  }
  if (watched != 0) return -1;
  return crosvm_vm_run(reason, state.vm);
}

int run(const std::vector<std::string>& args, const launcher::GlobalOptions& globals) {
  auto parsed = launcher::parse_run_options(
      args, [](const std::string& kind) { return crosvm_device_kind_help(kind.c_str()) != nullptr; });
  if (auto* message = std::get_if<std::string>(&parsed)) return usage_error(*message);
  launcher::RunOptions& options = std::get<launcher::RunOptions>(parsed);
  if (options.syslog_tag.empty()) options.syslog_tag = globals.syslog_tag;  // crosvm: run's wins
  if (options.help) {
    std::fputs(launcher::kRunUsage, stdout);
    // The device options are the library's kinds, each with its keys.
    std::fputs("\ndevices (repeatable; crosvm's key=value lists, a bare key meaning true):\n", stdout);
    for (size_t i = 0; const char* kind = crosvm_device_kind_name(i); ++i) {
      std::printf("  --%s LIST\n", kind);
      const std::string help = crosvm_device_kind_help(kind);
      for (size_t at = 0; at < help.size();) {  // each line indented under the option
        const size_t end = help.find('\n', at);
        std::printf("    %s\n", help.substr(at, end - at).c_str());
        at = end == std::string::npos ? help.size() : end + 1;
      }
    }
    std::fputs(launcher::kRunUsageEnd, stdout);
    return kExitOk;
  }

  const sigset_t signals = stop_signals();
  ::pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  ConfigHandle config;
  if (crosvm_config_create(&config.config) != 0) return library_error("configuration");
  const int log_level = options.log_level.value_or(globals.log_level.value_or(CROSVM_LOG_INFO));
  if (const int configured = configure(config.config, options, log_level); configured != 0) {
    return error(crosvm_error_message(), configured == kExitInvalidArgs ? kExitInvalidArgs : kExitError);
  }
  // Before the VM takes stdin: on a terminal, the guest's input comes
  // through the escapes.
  std::optional<ConsoleEscapes> escapes =
      crosvm_config_reads_stdin(config.config) == 1 ? ConsoleEscapes::interpose() : std::nullopt;
  VmHandle vm;
  if (crosvm_vm_create(&vm.vm, config.config) != 0) return error(crosvm_error_message());
  set_process_name(options.name);

  std::optional<RawTerminal> terminal;
  if (escapes) terminal.emplace(escapes->terminal());

  crosvm_exit_reason reason = CROSVM_EXIT_NONE;
  RunState state{vm.vm, escapes ? &*escapes : nullptr, &terminal};
  const int ran = run_until_stopped(&reason, state);
  terminal.reset();
  if (ran == -2) return kExitError;  // said already
  if (ran != 0) return error(crosvm_error_message());
  return exit_code(reason, globals.extended_status);
}

// One request to a running VM's control socket.
int control(const launcher::ControlCommand& command) {
  char* response = nullptr;
  const int sent = crosvm_control_request(&response, command.socket.c_str(),
                                          command.request_json.c_str(), 30000);
  if (sent == 0 && command.print_response && response != nullptr) std::printf("%s\n", response);
  crosvm_string_free(response);
  if (sent != 0) return error(crosvm_error_message());
  return kExitOk;
}

// crosvm's `crosvm device`: serves until the frontend disconnects.
int device(const std::vector<std::string>& args) {
  auto parsed = launcher::parse_device_command(args);
  if (auto* message = std::get_if<std::string>(&parsed)) return usage_error(*message);
  const auto& command = std::get<launcher::DeviceCommand>(parsed);
  if (command.help) {
    std::fputs(launcher::kDeviceUsage, stdout);
    return kExitOk;
  }
  const int served = command.fd >= 0
                         ? crosvm_device_serve_fd(command.kind.c_str(), command.options.c_str(), command.fd)
                         : crosvm_device_serve(command.kind.c_str(), command.options.c_str(), command.socket.c_str());
  if (served != 0) return library_error(("device " + command.kind).c_str());
  return kExitOk;
}

void print_usage(FILE* stream) { std::fprintf(stream, kUsage, launcher::kControlUsage); }

}  // namespace

int main(int argc, char** argv) {
  // A reader of our output that goes away (`crosvm-launch run ... | tee`,
  // then tee dies) costs the guest's output, not the VM: writes fail with
  // EPIPE instead of killing the process.
  std::signal(SIGPIPE, SIG_IGN);
  std::vector<std::string> args(argv + 1, argv + argc);
  auto global = launcher::parse_global_options(args);
  if (auto* message = std::get_if<std::string>(&global)) return usage_error(*message);
  const launcher::GlobalOptions& globals = std::get<launcher::GlobalOptions>(global);
  args.erase(args.begin(), args.begin() + static_cast<ptrdiff_t>(globals.consumed));
  if (args.empty()) {
    print_usage(stderr);
    return kExitInvalidArgs;
  }
  const std::string command = args.front();
  args.erase(args.begin());
  if (command == "-h" || command == "--help" || command == "help") {
    print_usage(stdout);
    return kExitOk;
  }
  if (command == "version" || command == "--version") {
    std::printf("crosvm-launch %s (libcrosvm ABI %u)\n", crosvm_version(), crosvm_abi_version());
    return kExitOk;
  }
  if (command == "run") return run(args, globals);
  if (command == "device") return device(args);
  if (command == "create_qcow2") {
    auto parsed = launcher::parse_create_qcow2(args);
    if (auto* message = std::get_if<std::string>(&parsed)) return usage_error(*message);
    const auto& create = std::get<launcher::CreateQcow2Command>(parsed);
    if (crosvm_create_qcow2(create.path.c_str(), create.size,
                            create.backing_file.empty() ? nullptr : create.backing_file.c_str()) != 0) {
      return library_error(("create_qcow2 " + create.path).c_str());
    }
    return kExitOk;
  }
  if (auto parsed = launcher::parse_control_command(command, args)) {
    if (auto* message = std::get_if<std::string>(&*parsed)) return usage_error(*message);
    return control(std::get<launcher::ControlCommand>(*parsed));
  }
  return usage_error("unknown command '" + command + "' (see crosvm-launch --help)");
}
