#include "sandbox/companion.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdlib>
#include <cstring>

#include "base/guest_log.h"
#include "sandbox/output_lines.h"

namespace crosvm::sandbox {
namespace {

// Relays `output` line by line until it ends or `stop` is signalled; when
// it ended because the program failed, says how (the process is left for
// the owner to reap).
void relay_lines(int output, int stop, int pidfd, GuestLog& log,
                 const std::function<bool(std::string_view)>& is_noise) {
  std::array<char, 4096> buffer{};
  OutputLines lines;
  const auto relay = [&](std::string_view line) {
    if (!(is_noise && is_noise(line))) log.relay(LogLevel::kWarn, line);
  };
  while (true) {
    std::array<pollfd, 2> entries{pollfd{output, POLLIN, 0}, pollfd{stop, POLLIN, 0}};
    if (::poll(entries.data(), entries.size(), -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    if (entries[1].revents != 0) return;
    if (entries[0].revents != 0) {
      const ssize_t got = ::read(output, buffer.data(), buffer.size());
      if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (got <= 0) break;
      lines.feed(std::span<const char>(buffer.data(), static_cast<size_t>(got)), relay);
    }
  }
  lines.finish(relay);
  std::array<pollfd, 2> entries{pollfd{pidfd, POLLIN, 0}, pollfd{stop, POLLIN, 0}};
  while (::poll(entries.data(), entries.size(), -1) < 0 && errno == EINTR) {
  }
  if (entries[1].revents != 0 || entries[0].revents == 0) return;  // stopped: the owner killed it
  siginfo_t info{};
  if (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd), &info, WEXITED | WNOWAIT | __WALL) != 0) return;
  const ExitStatus status{.signaled = info.si_code != CLD_EXITED, .code = info.si_status};
  // Status 0 is the end it was asked for (passt's, when its peer closes).
  if (status.signaled || status.code != 0) log.relay(LogLevel::kWarn, describe(status));
}

}  // namespace

Result<std::string> find_program(const std::string& name) {
  if (name.empty()) return make_error(ErrorCode::kInvalidArgument, "no program named");
  if (name.find('/') != std::string::npos) {
    if (::access(name.c_str(), X_OK) != 0) return make_errno_error(ErrorCode::kDevice, errno, "{}", name);
    return name;
  }
  const char* path = std::getenv("PATH");
  const std::string directories = path != nullptr && *path != 0 ? path : "/usr/local/bin:/usr/bin:/bin";
  size_t start = 0;
  while (start <= directories.size()) {
    size_t end = directories.find(':', start);
    if (end == std::string::npos) end = directories.size();
    const std::string directory = end > start ? directories.substr(start, end - start) : ".";
    const std::string candidate = directory + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    start = end + 1;
  }
  return make_error(ErrorCode::kDevice, "{} is not on PATH ({})", name, directories);
}

Result<std::unique_ptr<Companion>> Companion::start(CompanionOptions options, const Logger& logger) {
  int output_pipe[2];
  if (::pipe2(output_pipe, O_CLOEXEC) != 0) return make_errno_error(ErrorCode::kIo, errno, "{}: pipe", options.name);
  UniqueFd output_read(output_pipe[0]), output_write(output_pipe[1]);
  UniqueFd null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!null) return make_errno_error(ErrorCode::kIo, errno, "/dev/null");
  UniqueFd stop(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!stop) return make_errno_error(ErrorCode::kIo, errno, "{}: eventfd", options.name);
  Process process = CROSVM_TRY(spawn({.program = options.program,
                                      .arguments = options.arguments,
                                      .fds = options.fds,
                                      .stdin_fd = null.get(),
                                      .output_fd = output_write.get(),
                                      .new_namespaces = false}));
  output_write.reset();  // the child's alone: the relay sees its end
  std::unique_ptr<Companion> companion(new Companion(std::move(process), options.name));
  companion->stop_ = std::move(stop);
  logger.debug("{}: started {} (pid {})", options.name, options.program, companion->pid());
  auto log = std::make_shared<GuestLog>(logger, fmt::format("{} (pid {})", options.name, companion->pid()));
  auto started = Thread::start(
      "crosvm-companion",
      [output = std::make_shared<UniqueFd>(std::move(output_read)), stop = companion->stop_.get(),
       pidfd = companion->process_.pidfd.get(), log, is_noise = std::move(options.is_noise)] {
        relay_lines(output->get(), stop, pidfd, *log, is_noise);
      },
      [log](std::string_view what) { log->relay(LogLevel::kError, fmt::format("relaying its output: {}", what)); });
  if (!started) return started.error();  // the destructor kills and reaps it
  companion->relay_ = std::move(started).value();
  return companion;
}

Result<std::optional<ExitStatus>> Companion::exited() {
  if (status_) return status_;
  auto status = CROSVM_TRY(try_reap(process_.pidfd.get()));
  if (status) status_ = status;
  return status;
}

Companion::~Companion() {
  // The relay first: it must not report the kill below as an exit.
  if (relay_.joinable()) {
    const uint64_t one = 1;
    (void)!::write(stop_.get(), &one, sizeof(one));
    relay_.join();
  }
  if (!status_) (void)kill_and_reap(process_);
}

}  // namespace crosvm::sandbox
