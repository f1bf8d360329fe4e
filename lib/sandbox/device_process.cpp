#include "sandbox/device_process.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <cstdlib>
#include <cstring>

#include "base/guest_log.h"
#include "sandbox/output_lines.h"

#ifndef CROSVM_LIBEXECDIR
#define CROSVM_LIBEXECDIR "/usr/local/libexec"
#endif

namespace crosvm::sandbox {
namespace {

constexpr std::string_view kHelperName = "crosvm-device";
constexpr std::string_view kWithoutSandbox = "crosvm-launch --disable-sandbox runs the devices in the VMM";

bool executable(const std::string& path) { return !path.empty() && ::access(path.c_str(), X_OK) == 0; }

LogLevel level_named(std::string_view name) {
  if (name == "error") return LogLevel::kError;
  if (name == "warning") return LogLevel::kWarn;
  if (name == "debug") return LogLevel::kDebug;
  return LogLevel::kInfo;
}

}  // namespace

Result<std::string> find_helper(const std::string& configured) {
  if (!configured.empty()) {
    if (!executable(configured)) {
      return make_error(ErrorCode::kDevice, "device helper '{}': {} ({})", configured, std::strerror(errno),
                        kWithoutSandbox);
    }
    return configured;
  }
  if (const char* variable = std::getenv("CROSVM_DEVICE_HELPER"); variable != nullptr && *variable != 0) {
    if (!executable(variable)) {
      return make_error(ErrorCode::kDevice, "device helper '{}' (CROSVM_DEVICE_HELPER): {} ({})", variable,
                        std::strerror(errno), kWithoutSandbox);
    }
    return std::string(variable);
  }
  std::vector<std::string> tried;
  Dl_info info{};
  if (::dladdr(reinterpret_cast<void*>(&find_helper), &info) != 0 && info.dli_fname != nullptr) {
    std::string beside(info.dli_fname);
    const size_t slash = beside.rfind('/');
    if (slash != std::string::npos) {
      beside = beside.substr(0, slash + 1) + std::string(kHelperName);
      if (executable(beside)) return beside;
      tried.push_back(beside);
    }
  }
  const std::string installed = std::string(CROSVM_LIBEXECDIR) + "/" + std::string(kHelperName);
  if (executable(installed)) return installed;
  tried.push_back(installed);
  std::string list;
  for (const std::string& path : tried) list += (list.empty() ? "" : ", ") + path;
  return make_error(ErrorCode::kDevice,
                    "cannot find the device helper {} (tried {}; set CROSVM_DEVICE_HELPER, or run the devices in "
                    "the VMM: --disable-sandbox)",
                    kHelperName, list);
}

struct DeviceProcess::Watch : std::enable_shared_from_this<Watch> {
  Watch(boost::asio::io_context& context, std::string name, pid_t pid, const Logger& logger)
      : log_pipe(context),
        exited(context),
        name(std::move(name)),
        pid(pid),
        log(logger, fmt::format("[pid {}]", pid)) {}

  void read_log() {
    log_pipe.async_read_some(boost::asio::buffer(buffer), [self = shared_from_this()](const boost::system::error_code& error,
                                                                               size_t length) {
      const auto relay = [&](std::string_view line) { self->relay_line(line); };
      if (error || length == 0 || self->stopped) {
        self->lines.finish(relay);
        return;
      }
      self->lines.feed(std::span<const char>(self->buffer.data(), length), relay);
      self->read_log();
    });
  }

  // "LEVEL\tmessage" (crosvm-device's format), at that level.
  void relay_line(std::string_view text) {
    LogLevel level = LogLevel::kInfo;
    if (const size_t tab = text.find('\t'); tab != std::string_view::npos && tab < 8) {
      level = level_named(text.substr(0, tab));
      text.remove_prefix(tab + 1);
    }
    log.relay(level, text);
  }

  void wait_exit(std::function<void(const std::string&)> on_exit) {
    exited.async_wait(boost::asio::posix::descriptor_base::wait_read,
                      [self = shared_from_this(), on_exit = std::move(on_exit)](
                          const boost::system::error_code& error) {
                        if (error || self->stopped) return;
                        auto status = try_reap(self->exited.native_handle());
                        std::string message;
                        if (!status) {
                          message = fmt::format("device {} (pid {}) ended: {}", self->name, self->pid,
                                                status.error().message);
                        } else if (!*status) {
                          return;  // not yet (a spurious wakeup cannot happen on a pidfd, but never block)
                        } else {
                          self->reaped = true;
                          message = fmt::format("device {} (pid {}) {}", self->name, self->pid, describe(**status));
                        }
                        on_exit(message);
                      });
  }

  boost::asio::posix::stream_descriptor log_pipe;
  boost::asio::posix::stream_descriptor exited;  // a copy of the pidfd
  std::array<char, 4096> buffer{};
  OutputLines lines;
  std::string name;
  pid_t pid = -1;
  // A device process is as untrusted as its guest: its lines are bounded
  // in length (OutputLines::kMaxLine) and in number (GuestLog's bucket).
  GuestLog log;
  std::atomic<bool> stopped{false};
  std::atomic<bool> reaped{false};
};

DeviceProcess::DeviceProcess(Process process, std::string name, UniqueFd log, UniqueFd control,
                             const Logger& logger)
    : process_(std::move(process)),
      name_(std::move(name)),
      log_(std::move(log)),
      control_(std::move(control)),
      logger_(logger) {}

Result<void> DeviceProcess::request(ControlRequest request, uint64_t value) {
  std::lock_guard lock(control_mutex_);
  if (!control_) return make_error(ErrorCode::kState, "{}: its control channel is closed", name_);
  auto answered = send_control_request(control_.get(), request, value, 5000);
  if (!answered && (answered.error().code == ErrorCode::kTimeout || answered.error().code == ErrorCode::kProtocol ||
                    answered.error().code == ErrorCode::kIo)) {
    // A reply that is late or malformed leaves the channel out of step:
    // it is not used again.
    control_.reset();
  }
  if (!answered) return Error{answered.error().code, fmt::format("{}: {}", name_, answered.error().message)};
  return {};
}

constexpr int kExitGraceMs = 500;

DeviceProcess::~DeviceProcess() {
  if (watch_) watch_->stopped = true;
  if (reaped_ || (watch_ && watch_->reaped)) return;
  // Its frontend has closed the socket by now: a device that keeps state
  // for the host (a qcow2 disk's cached tables and the clusters it frees)
  // writes it back and ends on its own. One that does not is killed.
  pollfd entry{.fd = process_.pidfd.get(), .events = POLLIN, .revents = 0};
  int ready;
  do {
    ready = ::poll(&entry, 1, kExitGraceMs);
  } while (ready < 0 && errno == EINTR);
  if (auto ended = kill_and_reap(process_); !ended) logger_.error("{}: {}", name_, ended.error().message);
}

Result<std::unique_ptr<DeviceProcess>> DeviceProcess::start(DeviceProcessOptions options, const Logger& logger,
                                                            UniqueFd& connection) {
  int pair[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
    return make_errno_error(ErrorCode::kIo, errno, "{}: socketpair", options.name);
  }
  UniqueFd ours(pair[0]), theirs(pair[1]);
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) != 0) {
    return make_errno_error(ErrorCode::kIo, errno, "{}: socketpair", options.name);
  }
  UniqueFd control_ours(pair[0]), control_theirs(pair[1]);
  int log_pipe[2];
  if (::pipe2(log_pipe, O_CLOEXEC) != 0) return make_errno_error(ErrorCode::kIo, errno, "{}: pipe", options.name);
  UniqueFd log_read(log_pipe[0]), log_write(log_pipe[1]);
  UniqueFd null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!null) return make_errno_error(ErrorCode::kIo, errno, "/dev/null");

  SpawnOptions spawn_options{.program = options.helper,
                             .arguments = {options.kind, "--socket-fd", "3", "--control-fd", "4"},
                             .fds = {theirs.get(), control_theirs.get()},
                             .stdin_fd = null.get(),
                             .output_fd = log_write.get()};
  for (const auto& [flag, fd] : options.fds) {
    spawn_options.arguments.insert(spawn_options.arguments.end(),
                                   {flag, std::to_string(3 + spawn_options.fds.size())});
    spawn_options.fds.push_back(fd.get());
  }
  if (options.seccomp_log_failures) spawn_options.arguments.push_back("--seccomp-log-failures");
  for (const std::string& name : options.denied_syscalls) {
    spawn_options.arguments.insert(spawn_options.arguments.end(), {"--deny-syscall", name});
  }
  if (options.debug) spawn_options.arguments.push_back("--debug");
  spawn_options.arguments.insert(spawn_options.arguments.end(), options.arguments.begin(), options.arguments.end());

  Process process = CROSVM_TRY(spawn(spawn_options));
  logger.debug("{}: device process {} started", options.name, process.pid);
  connection = std::move(ours);
  return std::unique_ptr<DeviceProcess>(
      new DeviceProcess(std::move(process), std::move(options.name), std::move(log_read), std::move(control_ours), logger));
}

std::string DeviceProcess::failure_report() {
  if (watch_ || reaped_) return "";
  pollfd entry{.fd = process_.pidfd.get(), .events = POLLIN, .revents = 0};
  int ready;
  do {
    ready = ::poll(&entry, 1, 1000);
  } while (ready < 0 && errno == EINTR);
  std::string report;
  if (ready > 0) {
    if (auto status = try_reap(process_.pidfd.get()); status && *status) {
      reaped_ = true;
      report = describe(**status);
    }
  }
  if (report.empty()) report = "still running";
  // What it wrote before it ended (the pipe's write end is the child's
  // alone: once it has ended, a read never blocks).
  std::string output;
  if (reaped_) {
    char chunk[1024];
    ssize_t got;
    while (output.size() < 4096 && (got = ::read(log_.get(), chunk, sizeof(chunk))) > 0) {
      output.append(chunk, static_cast<size_t>(got));
    }
  }
  std::string said;
  size_t start = 0;
  while (start < output.size()) {
    size_t end = output.find('\n', start);
    if (end == std::string::npos) end = output.size();
    std::string_view line(output.data() + start, end - start);
    if (const size_t tab = line.find('\t'); tab != std::string_view::npos && tab < 8) line.remove_prefix(tab + 1);
    if (!line.empty()) said += fmt::format("{}{}", said.empty() ? "" : "; ", line);
    start = end + 1;
  }
  return said.empty() ? report : fmt::format("{}: {}", report, said);
}

Result<void> DeviceProcess::watch(EventLoop& loop, std::function<void(const std::string&)> on_exit) {
  if (watch_) return make_error(ErrorCode::kState, "{} is already watched", name_);
  auto watch = std::make_shared<Watch>(loop.context(), name_, process_.pid, logger_);
  boost::system::error_code error;
  watch->log_pipe.assign(log_.release(), error);
  if (error) return make_error(ErrorCode::kIo, "{}: watching its log: {}", name_, error.message());
  UniqueFd pidfd(::fcntl(process_.pidfd.get(), F_DUPFD_CLOEXEC, 0));
  if (!pidfd) return make_errno_error(ErrorCode::kIo, errno, "{}: pidfd", name_);
  watch->exited.assign(pidfd.release(), error);
  if (error) return make_error(ErrorCode::kIo, "{}: watching its pidfd: {}", name_, error.message());
  watch_ = watch;
  watch->read_log();
  watch->wait_exit(std::move(on_exit));
  return {};
}

}  // namespace crosvm::sandbox
