#include "sandbox/spawn.h"

#include <fcntl.h>
#include <linux/sched.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "base/file_io.h"

namespace crosvm::sandbox {
namespace {

// Where a uid or gid of the child's namespace lands outside it: root's
// devices run as nobody/nogroup, anyone else's as themselves.
constexpr unsigned kNobody = 65534;

Result<void> write_proc_file(pid_t pid, const char* name, const std::string& text) {
  const std::string path = fmt::format("/proc/{}/{}", pid, name);
  UniqueFd file(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!file) return make_errno_error(ErrorCode::kIo, errno, "cannot open {}", path);
  if (::write(file.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    return make_errno_error(ErrorCode::kIo, errno, "cannot write {}", path);
  }
  return {};
}

// Root maps the child's 0 to nobody and lets it drop root's supplementary
// groups itself; anyone else can map only themselves, and must deny
// setgroups() first (their groups stay, unmapped).
Result<void> write_id_maps(pid_t pid, bool root) {
  const unsigned uid = root ? kNobody : ::geteuid();
  const unsigned gid = root ? kNobody : ::getegid();
  CROSVM_TRY(write_proc_file(pid, "uid_map", fmt::format("0 {} 1\n", uid)));
  if (!root) CROSVM_TRY(write_proc_file(pid, "setgroups", "deny"));
  CROSVM_TRY(write_proc_file(pid, "gid_map", fmt::format("0 {} 1\n", gid)));
  return {};
}

// What the child needs, prepared before the clone: it allocates nothing.
struct ChildPlan {
  const char* program;
  char* const* argv;
  char* const* envp;
  const int* sources;  // sources[i] goes to fd i
  int count;
  int base;  // above every fd involved: where sources wait while fds move
  int sync_read;
  int sync_write;
  int error_write;
  bool become_root;   // in its new user namespace, once mapped
  bool drop_groups;  // root's supplementary groups (setgroups is allowed)
};

[[noreturn]] void child_fail(const ChildPlan& plan, int error) {
  // The parent reads errno from the error pipe (close-on-exec: a
  // successful exec closes it empty).
  ssize_t ignored = ::write(plan.error_write, &error, sizeof(error));
  (void)ignored;
  ::_exit(127);
}

[[noreturn]] void run_child(const ChildPlan& plan) {
  ::close(plan.sync_write);
  char go = 0;
  ssize_t got;
  do {
    got = ::read(plan.sync_read, &go, 1);
  } while (got < 0 && errno == EINTR);
  if (got != 1) ::_exit(126);  // the parent gave up on us

  // The clone kept the VMM's credentials (root outside: unmapped here).
  // Becoming the namespace's uid 0 (nobody outside) is what gives the
  // helper its capabilities in the namespace across exec, which it needs to
  // build its jail, and then drops. Raw syscalls: glibc's wrappers would
  // signal the VMM's other threads, which are not here.
  if (plan.become_root) {
    if (plan.drop_groups && ::syscall(SYS_setgroups, 0, nullptr) != 0) child_fail(plan, errno);
    if (::syscall(SYS_setresgid, 0, 0, 0) != 0 || ::syscall(SYS_setresuid, 0, 0, 0) != 0) child_fail(plan, errno);
  }

  sigset_t none;
  ::sigemptyset(&none);
  ::sigprocmask(SIG_SETMASK, &none, nullptr);

  // Every source first to [base, ...), then down to 0, 1, 2, ...: no move
  // overwrites a source still to be moved.
  int moved[64];
  for (int i = 0; i < plan.count; ++i) {
    moved[i] = plan.sources[i] < 0 ? -1 : ::fcntl(plan.sources[i], F_DUPFD, plan.base);
    if (plan.sources[i] >= 0 && moved[i] < 0) child_fail(plan, errno);
  }
  const int error_fd = ::fcntl(plan.error_write, F_DUPFD_CLOEXEC, plan.base);
  if (error_fd < 0) child_fail(plan, errno);
  ChildPlan after = plan;
  after.error_write = error_fd;
  for (int i = 0; i < plan.count; ++i) {
    if (moved[i] < 0) {
      ::close(i);
    } else if (::dup2(moved[i], i) < 0) {
      child_fail(after, errno);
    }
  }
  // Nothing else of the VMM's crosses: every fd above the placed ones goes
  // (close_range, Linux 5.9), except the error pipe until exec.
  if (::syscall(SYS_close_range, static_cast<unsigned>(plan.count), static_cast<unsigned>(error_fd - 1), 0) != 0 ||
      ::syscall(SYS_close_range, static_cast<unsigned>(error_fd + 1), ~0u, 0) != 0) {
    child_fail(after, errno);
  }
  ::execve(plan.program, plan.argv, plan.envp);
  child_fail(after, errno);
}

}  // namespace

Result<Process> spawn(const SpawnOptions& options) {
  std::vector<int> sources{options.stdin_fd, options.output_fd, options.output_fd};
  sources.insert(sources.end(), options.fds.begin(), options.fds.end());
  if (sources.size() > 64) return make_error(ErrorCode::kInvalidArgument, "too many fds for a device process");

  int sync[2];
  int error_pipe[2];
  if (::pipe2(sync, O_CLOEXEC) != 0) return make_errno_error(ErrorCode::kIo, errno, "pipe");
  UniqueFd sync_read(sync[0]), sync_write(sync[1]);
  if (::pipe2(error_pipe, O_CLOEXEC) != 0) return make_errno_error(ErrorCode::kIo, errno, "pipe");
  UniqueFd error_read(error_pipe[0]), error_write(error_pipe[1]);

  std::vector<std::string> strings{options.program};
  strings.insert(strings.end(), options.arguments.begin(), options.arguments.end());
  std::vector<char*> argv;
  for (std::string& s : strings) argv.push_back(s.data());
  argv.push_back(nullptr);
  char* envp[] = {nullptr};  // the helper inherits no environment

  int base = static_cast<int>(sources.size());
  for (int fd : sources) base = std::max(base, fd + 1);
  for (int fd : {sync[0], sync[1], error_pipe[0], error_pipe[1]}) base = std::max(base, fd + 1);
  const ChildPlan plan{
      .program = options.program.c_str(),
      .argv = argv.data(),
      .envp = envp,
      .sources = sources.data(),
      .count = static_cast<int>(sources.size()),
      .base = base,
      .sync_read = sync_read.get(),
      .sync_write = sync_write.get(),
      .error_write = error_write.get(),
      .become_root = options.new_namespaces,
      .drop_groups = ::geteuid() == 0,
  };

  int pidfd = -1;
  clone_args args{};
  args.flags = CLONE_PIDFD | CLONE_CLEAR_SIGHAND;
  if (options.new_namespaces) args.flags |= CLONE_NEWUSER | CLONE_NEWPID;
  args.pidfd = reinterpret_cast<uint64_t>(&pidfd);
  args.exit_signal = 0;  // a clone child: invisible to waitpid(-1, ...)
  const long pid = ::syscall(SYS_clone3, &args, sizeof(args));
  if (pid < 0) {
    const int error = errno;
    if (options.new_namespaces && (error == EPERM || error == EINVAL || error == ENOSPC)) {
      return make_errno_error(ErrorCode::kDevice, error,
                              "cannot create a device process in new user and PID namespaces (this host does not "
                              "allow user namespaces here; crosvm-launch --disable-sandbox runs devices in the VMM)");
    }
    return make_errno_error(ErrorCode::kDevice, error, "clone3");
  }
  if (pid == 0) run_child(plan);

  Process process{static_cast<pid_t>(pid), UniqueFd(pidfd)};
  sync_read.reset();
  error_write.reset();
  if (options.new_namespaces) {
    if (auto mapped = write_id_maps(process.pid, ::geteuid() == 0); !mapped) {
      (void)kill_and_reap(process);
      return Error{ErrorCode::kDevice, "device process: " + mapped.error().message};
    }
  }
  if (::write(sync_write.get(), "x", 1) != 1) {
    const int error = errno;
    (void)kill_and_reap(process);
    return make_errno_error(ErrorCode::kDevice, error, "device process: cannot release it");
  }
  sync_write.reset();
  int child_errno = 0;
  ssize_t got;
  do {
    got = ::read(error_read.get(), &child_errno, sizeof(child_errno));
  } while (got < 0 && errno == EINTR);
  if (got != 0) {
    (void)kill_and_reap(process);
    const int error = got == sizeof(child_errno) ? child_errno : EIO;
    if (error == EACCES && options.new_namespaces && ::geteuid() == 0) {
      return make_errno_error(ErrorCode::kDevice, error,
                              "cannot run {} (a device process runs as nobody: the helper and every directory "
                              "above it must be open to others)",
                              options.program);
    }
    return make_errno_error(ErrorCode::kDevice, error, "cannot run {}", options.program);
  }
  return process;
}

Result<std::optional<ExitStatus>> try_reap(int pidfd) {
  siginfo_t info{};
  if (::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd), &info, WEXITED | WNOHANG | __WALL) != 0) {
    return make_errno_error(ErrorCode::kIo, errno, "waitid on a device process");
  }
  if (info.si_pid == 0) return std::optional<ExitStatus>{};
  if (info.si_code == CLD_EXITED) return std::optional<ExitStatus>{ExitStatus{false, info.si_status}};
  return std::optional<ExitStatus>{ExitStatus{true, info.si_status}};
}

Result<ExitStatus> kill_and_reap(const Process& process) {
  ::syscall(SYS_pidfd_send_signal, process.pidfd.get(), SIGKILL, nullptr, 0);
  // A killed process is gone once the kernel has torn it down: poll the
  // pidfd rather than block in waitid forever on a task stuck in the kernel.
  pollfd entry{.fd = process.pidfd.get(), .events = POLLIN, .revents = 0};
  int ready;
  do {
    ready = ::poll(&entry, 1, 5000);
  } while (ready < 0 && errno == EINTR);
  if (ready == 0) return make_error(ErrorCode::kTimeout, "device process {} did not end after SIGKILL", process.pid);
  auto status = CROSVM_TRY(try_reap(process.pidfd.get()));
  if (!status) return make_error(ErrorCode::kInternal, "device process {} ended but cannot be reaped", process.pid);
  return *status;
}

std::string describe(const ExitStatus& status) {
  if (!status.signaled && status.code == kAbortedStatus) return "aborted (SIGABRT)";
  if (!status.signaled) return fmt::format("exited with status {}", status.code);
  const char* name = ::sigabbrev_np(status.code);
  return name != nullptr ? fmt::format("killed by signal {} (SIG{})", status.code, name)
                         : fmt::format("killed by signal {}", status.code);
}

}  // namespace crosvm::sandbox
