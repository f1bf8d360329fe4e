#include "sandbox/policy.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <linux/if_tun.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
// Without the legacy ring layout's C helpers, which are not C++.
#define VIRTIO_RING_NO_LEGACY
#include <linux/vhost.h>
#include <sys/ioctl.h>
#include <termios.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <ucontext.h>
#include <unistd.h>

#include <cerrno>
#include <memory>

namespace crosvm::sandbox {
namespace {

constexpr uint64_t kInt = 0xffffffff;  // an int argument: its 32 bits, whatever is above

ArgumentCheck equals(unsigned index, uint64_t value) { return {index, kInt, value}; }

// Threads only: the address space, signal handlers and thread group are
// shared, and no namespace is created.
constexpr uint64_t kThreadFlags = CLONE_VM | CLONE_SIGHAND | CLONE_THREAD;
constexpr uint64_t kCloneMask = kThreadFlags | CLONE_NEWNS | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET |
                                CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP;

// A sanitizer build's runtime (ASan, UBSan) in the device process needs a
// few calls more: it probes memory through a pipe, counts CPUs, asks
// whether stderr is a terminal and whether the process is dumpable. Never
// in a production build (meson defines CROSVM_SANITIZED under -Db_sanitize).
void add_sanitizer_runtime(Policy& policy) {
#ifdef CROSVM_SANITIZED
  policy.rules.push_back({"pipe2", {}});
  policy.rules.push_back({"sched_getaffinity", {}});
  policy.rules.push_back({"ioctl", {equals(1, TCGETS)}});
  policy.rules.push_back({"prctl", {equals(0, PR_GET_DUMPABLE)}});
#else
  (void)policy;
#endif
}

Policy make_common() {
  Policy policy{"common", {}};
  auto allow = [&](std::string_view name, std::vector<ArgumentCheck> checks = {}) {
    policy.rules.push_back({name, std::move(checks)});
  };
  // Memory: never executable.
  allow("brk");
  allow("mmap", {{2, PROT_EXEC, 0}});
  allow("mprotect", {{2, PROT_EXEC, 0}});
  allow("munmap");
  allow("mremap");
  allow("madvise");
  // Threads (the device's worker), futexes, its name, its exit.
  allow("clone", {{0, kCloneMask, kThreadFlags}});
  allow("set_robust_list");
  allow("rseq");
  allow("futex");
  allow("gettid");
  allow("getpid");
  allow("sched_yield");
  // Its own CPUs only: glibc's malloc asks once a process's threads have
  // made more than 8 arenas (a disk's I/O threads do).
  allow("sched_getaffinity", {equals(0, 0)});
  allow("prctl", {equals(0, PR_SET_NAME)});
  allow("exit");
  allow("exit_group");
  allow("restart_syscall");
  // Signals: handlers, masks, abort().
  allow("rt_sigaction");
  allow("rt_sigprocmask");
  allow("rt_sigreturn");
  allow("sigaltstack");
  allow("tgkill");
  allow("rt_sigpending");    // write_all(): a SIGPIPE of its own is consumed, not left pending
  allow("rt_sigtimedwait");
  // Time.
  allow("clock_gettime");
  allow("clock_nanosleep");
  allow("nanosleep");
  // fds: the vhost-user socket (with fds in control messages), eventfds,
  // the device's event loop (epoll, timerfd), the log.
  allow("read");
  allow("write");
  allow("readv");
  allow("writev");
  allow("close");
  allow("recvmsg");
  allow("sendmsg");
  allow("recvfrom");
  allow("sendto");
  allow("shutdown");  // the end of the VMM's control channel
  allow("poll");
  allow("ppoll");
  allow("epoll_create1");
  allow("epoll_ctl");
  allow("epoll_wait");
  allow("epoll_pwait");
  allow("eventfd2");
  allow("timerfd_create");
  allow("timerfd_settime");
  allow("timerfd_gettime");
  allow("fstat");
  allow("newfstatat", {{3, AT_EMPTY_PATH, AT_EMPTY_PATH}});  // fstat() of glibc: an fd, never a path
  for (uint64_t command : {F_GETFL, F_SETFL, F_GETFD, F_SETFD, F_DUPFD_CLOEXEC}) allow("fcntl", {equals(1, command)});
  allow("ioctl", {equals(1, FIONBIO)});  // Asio's non-blocking mode
  add_sanitizer_runtime(policy);
  return policy;
}

Policy make_block() {
  Policy policy{"block", {}};
  auto allow = [&](std::string_view name, std::vector<ArgumentCheck> checks = {}) {
    policy.rules.push_back({name, std::move(checks)});
  };
  allow("pread64");
  allow("pwrite64");
  allow("preadv");
  allow("pwritev");
  allow("preadv2");
  allow("pwritev2");
  allow("fsync");
  allow("fdatasync");
  allow("fallocate");  // discard, write-zeroes
  allow("ftruncate");  // resize
  allow("ioctl", {equals(1, BLKGETSIZE64)});
  allow("fcntl", {equals(1, F_OFD_SETLK)});
  // The worker's own thread, between batching requests and answering at
  // once (devices/virtio/request_batching.h): no real-time policy.
  allow("sched_getscheduler", {equals(0, 0)});
  for (uint64_t scheduler : {SCHED_OTHER, SCHED_BATCH}) {
    allow("sched_setscheduler", {equals(0, 0), equals(1, scheduler)});
  }
  return policy;
}

Policy make_rng() {
  Policy policy{"rng", {}};
  policy.rules.push_back({"getrandom", {{2, kInt, 0}}});
  return policy;
}

// The NIC's TAP: reads and writes are common; the guest's offloads are set
// on it at activation and by its control queue, and its queues follow the
// driver's queue pairs.
Policy make_net() {
  Policy policy{"net", {}};
  policy.rules.push_back({"ioctl", {equals(1, TUNSETOFFLOAD)}});
  policy.rules.push_back({"ioctl", {equals(1, TUNSETQUEUE)}});  // queue pairs the driver starts or stops
  return policy;
}

// The vhost ioctls of an activation (the memory table, the rings and their
// eventfds, a call moved when the guest masks a vector) and of a reset (the
// rings' positions, the eventfds let go). VHOST_SET_OWNER and
// VHOST_GET_FEATURES ran before the filter.
void allow_kernel_vhost(Policy& policy) {
  for (const unsigned long request :
       {VHOST_SET_FEATURES, VHOST_SET_MEM_TABLE, VHOST_SET_VRING_NUM, VHOST_SET_VRING_ADDR, VHOST_SET_VRING_BASE,
        VHOST_GET_VRING_BASE, VHOST_SET_VRING_KICK, VHOST_SET_VRING_CALL, VHOST_SET_VRING_ERR}) {
    policy.rules.push_back({"ioctl", {equals(1, request)}});
  }
}

// A NIC whose pairs the kernel's vhost-net carries: the TAP's calls, the
// kernel's rings, and the TAP given to the kernel and taken back.
Policy make_net_vhost() {
  Policy policy = make_net();
  policy.kind = "net-vhost";
  allow_kernel_vhost(policy);
  policy.rules.push_back({"ioctl", {equals(1, VHOST_NET_SET_BACKEND)}});
  return policy;
}

// vhost-vsock: the kernel's rings, started and stopped. The guest's CID
// was claimed in the VMM.
Policy make_vsock() {
  Policy policy{"vsock", {}};
  allow_kernel_vhost(policy);
  policy.rules.push_back({"ioctl", {equals(1, VHOST_VSOCK_SET_RUNNING)}});
  return policy;
}

// The userspace vsock: host streams accepted on the VM's socket (the
// guest's own connections come from the VMM's broker, in messages).
Policy make_vsock_user() {
  Policy policy{"vsock-user", {}};
  policy.rules.push_back({"accept4", {}});
  return policy;
}

// The console's pipes need nothing beyond the common calls.
Policy make_console() { return Policy{"console", {}}; }

const char* const* g_syscall_names = nullptr;  // log mode: indexed by number
constexpr int kNamedSyscalls = 512;

void write_string(const char* text) {
  ssize_t ignored = ::write(STDERR_FILENO, text, ::strlen(text));
  (void)ignored;
}

// Log mode: names the call on stderr and makes it fail with ENOSYS.
void on_blocked_syscall(int, siginfo_t* info, void* context) {
  const int number = info->si_syscall;
  write_string("warning\tseccomp: blocked syscall ");
  if (number >= 0 && number < kNamedSyscalls && g_syscall_names[number] != nullptr) {
    write_string(g_syscall_names[number]);
  } else {
    char digits[16];
    int length = 0;
    for (unsigned value = static_cast<unsigned>(number); length == 0 || value != 0; value /= 10) {
      digits[length++] = static_cast<char>('0' + value % 10);
    }
    char text[17];
    for (int i = 0; i < length; ++i) text[i] = digits[length - 1 - i];
    text[length] = 0;
    write_string(text);
  }
  write_string(" (crosvm-launch --jail seccomp-log-failures)\n");
  static_cast<ucontext_t*>(context)->uc_mcontext.gregs[REG_RAX] = -ENOSYS;
}

Result<void> prepare_log_mode(const JailLibraries& libraries) {
  static const char* names[kNamedSyscalls] = {};
  for (int number = 0; number < kNamedSyscalls; ++number) {
    names[number] = libraries.seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, number);  // kept for the process's life
  }
  g_syscall_names = names;
  struct sigaction action{};
  action.sa_sigaction = on_blocked_syscall;
  action.sa_flags = SA_SIGINFO;
  if (::sigaction(SIGSYS, &action, nullptr) != 0) return make_errno_error(ErrorCode::kDevice, errno, "sigaction SIGSYS");
  return {};
}

using FilterContext = std::unique_ptr<void, decltype(JailLibraries::seccomp_release)>;

Result<void> add_rule(const JailLibraries& libraries, scmp_filter_ctx context, uint32_t action, const SyscallRule& rule) {
  const std::string name(rule.name);
  const int number = libraries.seccomp_syscall_resolve_name(name.c_str());
  if (number == __NR_SCMP_ERROR) return make_error(ErrorCode::kInternal, "seccomp: unknown syscall '{}'", name);
  std::vector<scmp_arg_cmp> comparisons;
  for (const ArgumentCheck& check : rule.checks) {
    comparisons.push_back(SCMP_CMP(check.index, SCMP_CMP_MASKED_EQ, check.mask, check.value));
  }
  const int added = libraries.seccomp_rule_add_array(context, action, number, static_cast<unsigned>(comparisons.size()),
                                             comparisons.data());
  if (added != 0) return make_errno_error(ErrorCode::kInternal, -added, "seccomp: rule for {}", name);
  return {};
}

}  // namespace

const Policy& common_policy() {
  static const Policy policy = make_common();
  return policy;
}

const Policy* device_policy(std::string_view kind) {
  static const Policy block = make_block();
  static const Policy rng = make_rng();
  static const Policy console = make_console();
  static const Policy net = make_net();
  static const Policy net_vhost = make_net_vhost();
  static const Policy vsock = make_vsock();
  static const Policy vsock_user = make_vsock_user();
  if (kind == block.kind) return &block;
  if (kind == net.kind) return &net;
  if (kind == net_vhost.kind) return &net_vhost;
  if (kind == console.kind) return &console;
  if (kind == rng.kind) return &rng;
  if (kind == vsock.kind) return &vsock;
  if (kind == vsock_user.kind) return &vsock_user;
  return nullptr;
}

Result<void> load_filter(std::string_view kind, const FilterOptions& options, const JailLibraries& libraries) {
  const Policy* own = device_policy(kind);
  if (own == nullptr) return make_error(ErrorCode::kInvalidArgument, "no seccomp policy for a device of kind '{}'", kind);
  if (options.log_failures) CROSVM_TRY(prepare_log_mode(libraries));
  FilterContext context(libraries.seccomp_init(options.log_failures ? SCMP_ACT_TRAP : SCMP_ACT_KILL_PROCESS),
                        libraries.seccomp_release);
  if (!context) return make_error(ErrorCode::kInternal, "seccomp_init failed");
  if (int failed = libraries.seccomp_attr_set(context.get(), SCMP_FLTATR_CTL_TSYNC, 1); failed != 0) {
    return make_errno_error(ErrorCode::kDevice, -failed, "seccomp: TSYNC");
  }
  // A binary tree of syscall numbers instead of a list: every system call a
  // device makes passes the filter first (in the nested runner, 120 ns of
  // filter instead of 210 for a read() near the list's end). Only speed:
  // a libseccomp without it (before 2.5) builds the list, which is as strict.
  (void)libraries.seccomp_attr_set(context.get(), SCMP_FLTATR_CTL_OPTIMIZE, 2);
  for (const char* name : {"open", "openat", "readlink", "readlinkat"}) {
    CROSVM_TRY(add_rule(libraries, context.get(), SCMP_ACT_ERRNO(ENOENT), SyscallRule{name, {}}));
  }
  CROSVM_TRY(add_rule(libraries, context.get(), SCMP_ACT_ERRNO(ENOSYS), SyscallRule{"clone3", {}}));
  for (const Policy* policy : {&common_policy(), own}) {
    for (const SyscallRule& rule : policy->rules) {
      bool denied = false;
      for (const std::string& name : options.denied) denied = denied || name == rule.name;
      if (!denied) CROSVM_TRY(add_rule(libraries, context.get(), SCMP_ACT_ALLOW, rule));
    }
  }
  if (int failed = libraries.seccomp_load(context.get()); failed != 0) {
    return make_errno_error(ErrorCode::kDevice, -failed, "seccomp: loading the filter");
  }
  return {};
}

}  // namespace crosvm::sandbox
