// The seccomp policies, each rule tried in a forked child that loads the
// filter: an allowed call with its allowed arguments is let through (the
// kernel may still refuse the garbage in its other arguments: only
// survival counts), the same call with one checked argument perturbed is
// killed with SIGSYS, and what no device may do (network sockets, ptrace,
// mount, new namespaces, exec) is killed too.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <sched.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <functional>
#include <set>
#include <string>
#include <thread>

#include "sandbox/policy.h"

namespace {

using crosvm::sandbox::ArgumentCheck;
using crosvm::sandbox::Policy;
using crosvm::sandbox::SyscallRule;

// Runs `body` in a child under `kind`'s filter; its wait status. The child
// exits 0 when the body returns (a non-zero exit says the body failed).
int run_filtered(const std::string& kind, const std::function<int()>& body) {
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // Catch's handlers for fatal signals are not the child's: a signal
    // must end it as it would a device process.
    for (int signal : {SIGABRT, SIGSEGV, SIGILL, SIGFPE, SIGBUS, SIGTERM, SIGINT}) ::signal(signal, SIG_DFL);
    if (!crosvm::sandbox::load_filter(kind, {}, crosvm::sandbox::linked_jail_libraries())) ::_exit(100);
    ::_exit(body());
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  return status;
}

bool survived(int status) { return WIFEXITED(status) && WEXITSTATUS(status) == 0; }
bool killed_by(int status, int signal) { return WIFSIGNALED(status) && WTERMSIG(status) == signal; }

// Calls a process cannot survive or must not make with garbage: they are
// exercised by every child's start and end (threads, exit) instead.
const std::set<std::string_view> kNotCalledBlindly = {"exit", "exit_group", "clone", "rt_sigreturn",
                                                      "restart_syscall", "brk"};

bool satisfies(const SyscallRule& rule, const uint64_t (&arguments)[6]) {
  for (const ArgumentCheck& check : rule.checks) {
    if ((arguments[check.index] & check.mask) != check.value) return false;
  }
  return true;
}

// The arguments a rule allows, garbage (-1: a bad fd, a bad pointer, a bad
// size) where it does not look.
void allowed_arguments(const SyscallRule& rule, uint64_t (&arguments)[6]) {
  for (uint64_t& argument : arguments) argument = ~uint64_t{0};
  for (const ArgumentCheck& check : rule.checks) {
    arguments[check.index] = (arguments[check.index] & ~check.mask) | check.value;
  }
}

long call(const SyscallRule& rule, const uint64_t (&a)[6]) {
  const int number = seccomp_syscall_resolve_name(std::string(rule.name).c_str());
  return ::syscall(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}

void check_policy(const std::string& kind, const Policy& policy, const Policy& common, const Policy& own) {
  for (const SyscallRule& rule : policy.rules) {
    if (kNotCalledBlindly.count(rule.name) != 0) continue;
    uint64_t arguments[6];
    allowed_arguments(rule, arguments);
    INFO(kind << ": " << rule.name);
    CHECK(survived(run_filtered(kind, [&] {
      (void)call(rule, arguments);
      return 0;
    })));
    // Each checked argument perturbed, one bit of its mask at a time,
    // until no rule for this syscall allows it: then the call must die.
    for (const ArgumentCheck& check : rule.checks) {
      for (unsigned bit = 0; bit < 64; ++bit) {
        if ((check.mask >> bit & 1) == 0) continue;
        uint64_t perturbed[6];
        std::copy(std::begin(arguments), std::end(arguments), perturbed);
        perturbed[check.index] ^= uint64_t{1} << bit;
        bool allowed = false;
        for (const Policy* any : {&common, &own}) {
          for (const SyscallRule& other : any->rules) {
            allowed = allowed || (other.name == rule.name && satisfies(other, perturbed));
          }
        }
        if (allowed) continue;
        INFO("argument " << check.index << " with bit " << bit << " flipped");
        CHECK(killed_by(run_filtered(kind, [&] {
                          (void)call(rule, perturbed);
                          return 0;
                        }),
                        SIGSYS));
        break;
      }
    }
  }
}

}  // namespace

TEST_CASE("each device policy lets its calls through and kills them with a perturbed argument", "[sandbox]") {
  const Policy& common = crosvm::sandbox::common_policy();
  for (const char* kind : {"block", "rng", "console", "net", "net-vhost", "vsock", "vsock-user"}) {
    const Policy* own = crosvm::sandbox::device_policy(kind);
    REQUIRE(own != nullptr);
    check_policy(kind, common, common, *own);
    check_policy(kind, *own, common, *own);
  }
  CHECK(crosvm::sandbox::device_policy("console-that-does-not-exist") == nullptr);
}

TEST_CASE("what no device may do kills it", "[sandbox]") {
  for (const char* kind : {"block", "rng", "console", "net", "net-vhost", "vsock", "vsock-user"}) {
    INFO(kind);
    CHECK(killed_by(run_filtered(kind, [] { return ::socket(AF_INET, SOCK_STREAM, 0) >= 0 ? 1 : 2; }), SIGSYS));
    CHECK(killed_by(run_filtered(kind, [] { return ::socket(AF_UNIX, SOCK_STREAM, 0) >= 0 ? 1 : 2; }), SIGSYS));
    CHECK(killed_by(run_filtered(kind, [] { return ::ptrace(PTRACE_TRACEME, 0, nullptr, nullptr) == 0 ? 1 : 2; }),
                    SIGSYS));
    CHECK(killed_by(run_filtered(kind, [] { return ::mount("none", "/", "tmpfs", 0, nullptr) == 0 ? 1 : 2; }),
                    SIGSYS));
    CHECK(killed_by(run_filtered(kind, [] { return ::unshare(CLONE_NEWUSER) == 0 ? 1 : 2; }), SIGSYS));
    CHECK(killed_by(run_filtered(kind, [] {
                      char* const argv[] = {const_cast<char*>("/bin/true"), nullptr};
                      ::execve("/bin/true", argv, nullptr);
                      return 2;
                    }),
                    SIGSYS));
    // A thread made with other flags than a thread's (a new process).
    CHECK(killed_by(run_filtered(kind, [] { return ::syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0) >= 0 ? 1 : 2; }),
                    SIGSYS));
  }
}

TEST_CASE("under a device policy files cannot be opened, threads start and abort() aborts", "[sandbox]") {
  for (const char* kind : {"block", "rng", "console", "net", "net-vhost", "vsock", "vsock-user"}) {
    INFO(kind);
    CHECK(survived(run_filtered(kind, [] {
      const int fd = ::open("/etc/passwd", O_RDONLY | O_CLOEXEC);
      return fd < 0 && errno == ENOENT ? 0 : 1;
    })));
    CHECK(survived(run_filtered(kind, [] {
      const int fd = ::openat(AT_FDCWD, "/etc/passwd", O_RDONLY | O_CLOEXEC);
      return fd < 0 && errno == ENOENT ? 0 : 1;
    })));
    CHECK(survived(run_filtered(kind, [] {
      bool ran = false;
      std::thread thread([&] { ran = true; });
      thread.join();
      return ran ? 0 : 1;
    })));
    CHECK(killed_by(run_filtered(kind, [] {
                      std::abort();
                      return 0;
                    }),
                    SIGABRT));
  }
}

TEST_CASE("a denied syscall is taken out of the policy", "[sandbox]") {
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    if (!crosvm::sandbox::load_filter("block", {.log_failures = false, .denied = {"fdatasync"}}, crosvm::sandbox::linked_jail_libraries())) ::_exit(100);
    (void)::fdatasync(-1);
    ::_exit(0);
  }
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  CHECK(killed_by(status, SIGSYS));
}

TEST_CASE("in log mode a blocked syscall is named and fails instead of killing", "[sandbox]") {
  int output[2];
  REQUIRE(::pipe(output) == 0);
  const pid_t child = ::fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    ::dup2(output[1], STDERR_FILENO);
    if (!crosvm::sandbox::load_filter("rng", {.log_failures = true, .denied = {}}, crosvm::sandbox::linked_jail_libraries())) ::_exit(100);
    const long result = ::syscall(SYS_ptrace, PTRACE_TRACEME, 0, 0, 0);
    ::_exit(result == -1 && errno == ENOSYS ? 0 : 1);
  }
  ::close(output[1]);
  int status = 0;
  REQUIRE(::waitpid(child, &status, 0) == child);
  std::string text;
  char buffer[256];
  ssize_t got;
  while ((got = ::read(output[0], buffer, sizeof(buffer))) > 0) text.append(buffer, static_cast<size_t>(got));
  ::close(output[0]);
  CHECK(survived(status));
  CHECK(text.find("blocked syscall ptrace") != std::string::npos);
}

TEST_CASE("a policy for an unknown kind is an error", "[sandbox]") {
  auto loaded = crosvm::sandbox::load_filter("no-such-device", {}, crosvm::sandbox::linked_jail_libraries());
  REQUIRE(!loaded);
  CHECK(loaded.error().message.find("no-such-device") != std::string::npos);
}
