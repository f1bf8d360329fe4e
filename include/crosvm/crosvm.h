/*
 * libcrosvm: an embeddable virtual machine monitor for Linux KVM.
 *
 * This header is the library's whole public interface, a stable C ABI. It
 * compiles as C99 and as C++.
 *
 * Conventions
 *   - Objects are opaque handles with create/destroy pairs.
 *   - Functions return 0 (CROSVM_OK) or a negative crosvm_error code; after a
 *     failure, crosvm_error_message() on the same thread says why in words.
 *   - Out-parameters come first; callbacks take `void *userdata` last.
 *   - Structs passed in start with `uint32_t struct_size`; initialise them with
 *     their *_INIT macro. They only ever grow at the end, and the library
 *     reads only the first struct_size bytes, so old callers keep working.
 *   - No C++ exception ever leaves the library.
 *
 * Process-wide effects
 *   - To stop a vCPU thread that is inside KVM_RUN, the library sends it the
 *     real-time signal SIGRTMIN (+0). The first crosvm_vm_start() installs a
 *     handler that does nothing for it; starting fails with
 *     CROSVM_ERROR_STATE if the process already handles that signal. The
 *     signal is only ever sent to the library's own vCPU threads.
 *   - Per running VM the library starts one thread per vCPU and one event
 *     loop thread (a Boost.Asio executor: virtqueues, host input, the
 *     control socket), except that crosvm_vm_run() serves the loop on its
 *     caller's thread. By default callbacks run on these threads and must
 *     not call crosvm_vm_wait(), crosvm_vm_stop(), crosvm_vm_pause() or
 *     crosvm_vm_destroy() on their VM. With CROSVM_CALLBACKS_ON_DISPATCH
 *     they run on the embedder's thread instead, inside crosvm_vm_dispatch().
 *   - A control socket (crosvm_config_set_control_socket) is a file the VM
 *     creates and removes when it stops.
 *   - A serial port that reads stdin duplicates fd 0 and sets O_NONBLOCK on
 *     it while the VM runs (restored when the VM stops).
 *   - Nothing else is global: several VMs in one process are independent.
 */
#ifndef CROSVM_CROSVM_H
#define CROSVM_CROSVM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CROSVM_EXPORT __attribute__((visibility("default")))

/* Bumped, with the library's SONAME, only when the ABI breaks. */
#define CROSVM_ABI_VERSION 1

/* ---- Errors ------------------------------------------------------------ */

typedef enum crosvm_error {
  CROSVM_OK = 0,
  CROSVM_ERROR_INVALID_ARGUMENT = -1, /* a NULL handle, a bad option value */
  CROSVM_ERROR_KVM_UNAVAILABLE = -2,  /* no /dev/kvm, or no permission to open it */
  CROSVM_ERROR_KVM_CAPABILITY = -3,   /* this host's KVM lacks something needed */
  CROSVM_ERROR_KERNEL = -4,           /* missing, empty, truncated or not a kernel */
  CROSVM_ERROR_INITRD = -5,           /* missing, empty or does not fit */
  CROSVM_ERROR_MEMORY = -6,           /* 0, too large, or cannot be mapped */
  CROSVM_ERROR_VCPU = -7,             /* 0 vCPUs or more than KVM allows */
  CROSVM_ERROR_IO = -8,               /* a host file or socket failed */
  CROSVM_ERROR_STATE = -9,            /* not possible in the VM's current state */
  CROSVM_ERROR_TIMEOUT = -10,         /* crosvm_vm_wait() timed out */
  CROSVM_ERROR_DEVICE = -11,          /* a device could not be set up */
  CROSVM_ERROR_PROTOCOL = -12,        /* a malformed message */
  CROSVM_ERROR_INTERNAL = -99         /* a bug in libcrosvm */
} crosvm_error;

/* Why the last call on this thread failed; "" if none did. The text stays
 * valid until the next libcrosvm call on this thread. */
CROSVM_EXPORT const char *crosvm_error_message(void);
/* A constant name such as "CROSVM_ERROR_KERNEL" for an error code. */
CROSVM_EXPORT const char *crosvm_error_name(int code);

/* The ABI version of the loaded library (compare with CROSVM_ABI_VERSION). */
CROSVM_EXPORT uint32_t crosvm_abi_version(void);
/* The library's release, e.g. "0.1.0". */
CROSVM_EXPORT const char *crosvm_version(void);

/* ---- Configuration (the VM builder) ------------------------------------ */

typedef struct crosvm_config crosvm_config;

CROSVM_EXPORT int crosvm_config_create(crosvm_config **out_config);
CROSVM_EXPORT void crosvm_config_destroy(crosvm_config *config);

/* Guest RAM in MiB (default 256). RAM beyond 3 GiB is placed above 4 GiB. */
CROSVM_EXPORT int crosvm_config_set_memory_mib(crosvm_config *config, uint64_t mib);
/* Number of vCPUs (default 1). */
CROSVM_EXPORT int crosvm_config_set_vcpu_count(crosvm_config *config, uint32_t count);
/* A bzImage (boot protocol 2.12+) or an ELF vmlinux, entered in 64-bit mode. */
CROSVM_EXPORT int crosvm_config_set_kernel(crosvm_config *config, const char *path);
/* Boot the built-in demo guest instead of a kernel file: it prints a greeting
 * on serial port 1 and powers off. Runs on any KVM. */
CROSVM_EXPORT int crosvm_config_set_demo_kernel(crosvm_config *config);
CROSVM_EXPORT int crosvm_config_set_initrd(crosvm_config *config, const char *path);
/* Appends space-separated parameters to the kernel command line. The line
 * starts with the library's defaults ("panic=-1", then console= and earlycon=
 * for serial ports that ask for them), so a later parameter overrides. */
CROSVM_EXPORT int crosvm_config_append_params(crosvm_config *config, const char *params);

/* Serial ports: 8250 UARTs at COM1..COM4 (guest ttyS0..ttyS3), or virtio
 * consoles (guest hvc0..hvc3), numbered 1..4 per kind. */
typedef enum crosvm_serial_hardware {
  CROSVM_SERIAL_HARDWARE_UART = 0,          /* an 8250 UART (the default) */
  CROSVM_SERIAL_HARDWARE_VIRTIO_CONSOLE = 1 /* a virtio-console on PCI */
} crosvm_serial_hardware;

typedef enum crosvm_serial_type {
  CROSVM_SERIAL_SINK = 0,    /* output is discarded */
  CROSVM_SERIAL_STDOUT = 1,  /* the process's stdout */
  CROSVM_SERIAL_FILE = 2,    /* appended to `path`, created if missing */
  CROSVM_SERIAL_CALLBACK = 3 /* `callback` gets every byte */
} crosvm_serial_type;

#define CROSVM_SERIAL_CONSOLE 0x1u  /* add console=ttyS<number-1> (hvc<number-1>) */
#define CROSVM_SERIAL_EARLYCON 0x2u /* add earlycon=uart8250,io,<port> (UARTs only) */
#define CROSVM_SERIAL_STDIN 0x4u    /* the process's stdin is this port's input */

/* Called on a vCPU thread with what the guest wrote; keep it short. */
typedef void (*crosvm_output_callback)(const uint8_t *data, size_t length, void *userdata);

typedef struct crosvm_serial_options {
  uint32_t struct_size;
  uint32_t number;                 /* 1..4 */
  uint32_t type;                   /* a crosvm_serial_type */
  uint32_t flags;                  /* CROSVM_SERIAL_* */
  const char *path;                /* CROSVM_SERIAL_FILE */
  crosvm_output_callback callback; /* CROSVM_SERIAL_CALLBACK */
  void *userdata;
  uint32_t hardware;               /* a crosvm_serial_hardware (since 0.2) */
} crosvm_serial_options;

#define CROSVM_SERIAL_OPTIONS_INIT \
  { sizeof(crosvm_serial_options), 1, CROSVM_SERIAL_STDOUT, 0, NULL, NULL, NULL, \
    CROSVM_SERIAL_HARDWARE_UART }

/* Adds (or replaces) serial port `options->number` of its hardware kind.
 * Without any call, a VM has no serial port. crosvm's other outputs and
 * keys (sockets, syslog, a debugcon, input=, out-timestamp, ...) are set
 * through crosvm_config_add_device(config, "serial", "type=unix,...")
 * (crosvm_device_kind_help("serial") lists them). */
CROSVM_EXPORT int crosvm_config_add_serial(crosvm_config *config,
                                           const crosvm_serial_options *options);

/* Disks: virtio-blk devices over raw image files, seen by the guest as
 * /dev/vda, /dev/vdb, ... (the root disk first, the others in the order
 * added). A writable image is locked so that no other process writes it
 * while the VM runs. */
#define CROSVM_DISK_READ_ONLY 0x1u /* the guest cannot write it */
#define CROSVM_DISK_ROOT 0x2u      /* add root=/dev/vda (ro or rw); one disk at most */

typedef struct crosvm_disk_options {
  uint32_t struct_size;
  uint32_t flags;   /* CROSVM_DISK_* */
  const char *path; /* the image */
  const char *id;   /* what the guest reads as the disk's serial (<= 20 bytes); NULL: none */
} crosvm_disk_options;

#define CROSVM_DISK_OPTIONS_INIT { sizeof(crosvm_disk_options), 0, NULL, NULL }

CROSVM_EXPORT int crosvm_config_add_disk(crosvm_config *config, const crosvm_disk_options *options);

/* A virtio-rng device fed by the host's getrandom() (default: on, as in
 * crosvm; crosvm-launch --no-rng and Python's rng=False turn it off). An
 * rng named with crosvm_config_add_device(config, "rng", NULL) replaces
 * it. */
CROSVM_EXPORT int crosvm_config_set_rng(crosvm_config *config, int enabled);

/* Devices named as text, in crosvm's syntax: a kind ("block", "serial",
 * "vhost-user", "rng"; crosvm_device_kind_name() lists them)
 * and a list "key=value,key=value,..." (a bare key means key=true; a value
 * in double quotes may hold commas), e.g.
 *   crosvm_config_add_device(config, "block", "path=disk.img,ro=true");
 *   crosvm_config_add_device(config, "serial", "type=file,path=out.log,num=2");
 * The same parser crosvm-launch's --block and --serial go through, with
 * the same defaults. CROSVM_ERROR_INVALID_ARGUMENT, with a message naming
 * the kind and the key, for an unknown kind or key, a key given twice or
 * a bad value. `options` may be NULL (no keys). */
CROSVM_EXPORT int crosvm_config_add_device(crosvm_config *config, const char *kind, const char *options);

/* 1 when a serial port or console of `config` reads the process's stdin
 * (CROSVM_SERIAL_STDIN, or stdin=true in a serial list): the caller may
 * then want its terminal in raw mode. 0 when none does, or a negative
 * crosvm_error. */
CROSVM_EXPORT int crosvm_config_reads_stdin(const crosvm_config *config);

/* The device kinds crosvm_config_add_device() knows: the name of kind
 * `index` (0, 1, ...), NULL past the last. */
CROSVM_EXPORT const char *crosvm_device_kind_name(size_t index);

/* A kind's summary and its keys, one per line (for usage texts), or NULL
 * for an unknown kind. The text lives as long as the process. */
CROSVM_EXPORT const char *crosvm_device_kind_help(const char *kind);

/* Transparent huge pages behind guest RAM (default: on). The guest's first
 * touch of each 2 MiB then costs one page fault instead of 512 and its TLB
 * misses are cheaper (a Linux guest boots markedly faster); guest memory is
 * then also taken from the host 2 MiB at a time. The kernel and initrd are
 * loaded into small pages first (huge ones there can stall set-up). Advice
 * to the host kernel: without THP (transparent_hugepage=never) RAM keeps
 * small pages. */
CROSVM_EXPORT int crosvm_config_set_hugepages(crosvm_config *config, int enabled);

/* What a serial port's type=syslog lines are tagged with (crosvm's
 * --syslog-tag): at most 64 bytes, no spaces, line ends, brackets or
 * colons. NULL or "" (the default): the program's name, as syslog(3)
 * tags it. */
CROSVM_EXPORT int crosvm_config_set_syslog_tag(crosvm_config *config, const char *tag);

/* crosvm's sandbox: every virtio device (disks, virtio consoles, rng, and
 * the other kinds of crosvm_config_add_device()) runs in a process of its own, jailed in
 * new user, PID, mount, network, IPC and UTS namespaces with an empty
 * read-only root, no capabilities and a seccomp filter that kills it on
 * any syscall its device does not need; the VMM keeps the PCI transport
 * and talks to it over vhost-user. A device process that dies ends the VM
 * with CROSVM_EXIT_CRASH and a message naming the device, its pid and the
 * signal; crosvm_vm_destroy() reaps them all. docs/security.md.
 *
 * Library default: off. It needs the helper program crosvm-device (found
 * as below) and a host that lets this process create user namespaces;
 * an embedder opts in (crosvm-launch does unless --disable-sandbox). */
#define CROSVM_SANDBOX_ENABLED (1u << 0)
/* crosvm's --jail seccomp-log-failures: a syscall outside a device's
 * policy fails (ENOSYS) and is named in the log instead of killing the
 * device. For writing policies, not for production. */
#define CROSVM_SANDBOX_SECCOMP_LOG_FAILURES (1u << 1)

typedef struct crosvm_sandbox_options {
  uint32_t struct_size;
  uint32_t flags; /* CROSVM_SANDBOX_* */
  /* crosvm-device's path. NULL: the CROSVM_DEVICE_HELPER environment
   * variable, else beside libcrosvm.so (a build tree), else the installed
   * libexecdir. */
  const char *helper;
  /* NULL, or a NULL-terminated list of syscall names taken out of every
   * device's policy: for tests of the sandbox itself. */
  const char *const *denied_syscalls;
} crosvm_sandbox_options;

#define CROSVM_SANDBOX_OPTIONS_INIT { sizeof(crosvm_sandbox_options), 0, NULL, NULL }

CROSVM_EXPORT int crosvm_config_set_sandbox(crosvm_config *config, const crosvm_sandbox_options *options);

typedef enum crosvm_log_level {
  CROSVM_LOG_ERROR = 0,
  CROSVM_LOG_WARNING = 1,
  CROSVM_LOG_INFO = 2,
  CROSVM_LOG_DEBUG = 3
} crosvm_log_level;

/* Called from any library thread, one whole message per call, no newline. */
typedef void (*crosvm_log_callback)(int level, const char *message, void *userdata);

/* Where the VM's log goes (default: stderr, info and above). A NULL callback
 * keeps stderr and only changes the level. */
CROSVM_EXPORT int crosvm_config_set_log(crosvm_config *config, int max_level,
                                        crosvm_log_callback callback, void *userdata);

/* A Unix socket on which other processes control the VM (crosvm's -s): a
 * SOCK_SEQPACKET socket that speaks crosvm's protocol (its `crosvm stop`
 * and crosvm_control library work with it) plus our status; see
 * docs/control-socket.md. `path` is the socket's path, or a directory in
 * which crosvm-<pid>.sock is made. The socket has mode 0600; a stale one from
 * a dead process is replaced, one a live process serves is refused
 * (CROSVM_ERROR_IO at crosvm_vm_create). NULL or "": no socket (default). */
CROSVM_EXPORT int crosvm_config_set_control_socket(crosvm_config *config, const char *path);

/* ---- Callbacks and the embedder's event loop ---------------------------- */

/* Where callbacks (serial output, the exit callback) run:
 *   CROSVM_CALLBACKS_ON_VM_THREADS (default): on the VM's own threads, at
 *     once. Keep them short; they must not wait for or destroy the VM.
 *   CROSVM_CALLBACKS_ON_DISPATCH: queued; crosvm_vm_event_fd() becomes
 *     readable, and the embedder's loop calls crosvm_vm_dispatch(), which
 *     runs them on its thread, in order. Such a callback may call any
 *     function on the VM, crosvm_vm_destroy() included. Serial output is
 *     merged per port; more than 4 MiB queued and not dispatched is dropped
 *     (and a warning logged). The log callback always runs at once. */
#define CROSVM_CALLBACKS_ON_VM_THREADS 0u
#define CROSVM_CALLBACKS_ON_DISPATCH 1u
CROSVM_EXPORT int crosvm_config_set_callback_mode(crosvm_config *config, uint32_t mode);

typedef enum crosvm_exit_reason {
  CROSVM_EXIT_NONE = 0,     /* not stopped yet */
  CROSVM_EXIT_POWEROFF = 1, /* the guest powered off */
  CROSVM_EXIT_RESET = 2,    /* the guest reset (reboot) */
  CROSVM_EXIT_CRASH = 3,    /* triple fault or an unrunnable vCPU (registers logged), or a jailed device process died */
  CROSVM_EXIT_PANIC = 4,    /* the guest kernel reported a panic */
  CROSVM_EXIT_STOPPED = 5,  /* the host stopped it */
  CROSVM_EXIT_ERROR = 6     /* the VMM failed; see crosvm_vm_exit_message() */
} crosvm_exit_reason;

/* Called once when a started VM has stopped (also after crosvm_vm_stop()
 * before start), with why. NULL: none. */
typedef void (*crosvm_exit_callback)(crosvm_exit_reason reason, void *userdata);
CROSVM_EXPORT int crosvm_config_set_exit_callback(crosvm_config *config,
                                                  crosvm_exit_callback callback, void *userdata);

/* ---- Virtual machines -------------------------------------------------- */

typedef struct crosvm_vm crosvm_vm;

/* created -> running <-> paused -> stopping -> stopped */
typedef enum crosvm_vm_state {
  CROSVM_STATE_CREATED = 0,  /* built, not started */
  CROSVM_STATE_RUNNING = 1,
  CROSVM_STATE_PAUSED = 2,   /* every vCPU held outside KVM_RUN */
  CROSVM_STATE_STOPPING = 3, /* a reason to stop was seen; threads are finishing */
  CROSVM_STATE_STOPPED = 4
} crosvm_vm_state;

/* Builds the VM from `config` (which may then be destroyed or reused): opens
 * KVM, maps guest memory, creates vCPUs and devices, loads the kernel. Fails
 * with a specific code and message for every bad input. Nothing runs yet. */
CROSVM_EXPORT int crosvm_vm_create(crosvm_vm **out_vm, const crosvm_config *config);

/* Starts the vCPUs and the event loop and returns at once. */
CROSVM_EXPORT int crosvm_vm_start(crosvm_vm *vm);

/* Waits until the VM stops, at most `timeout_ms` (negative or more than a
 * year: forever), and stores why (CROSVM_ERROR_TIMEOUT if it still runs). */
CROSVM_EXPORT int crosvm_vm_wait(crosvm_exit_reason *out_reason, crosvm_vm *vm,
                                 int64_t timeout_ms);

/* crosvm_vm_start() then crosvm_vm_wait() without a timeout, except that
 * the VM's event loop (host input and output, the control socket, timers)
 * runs on the calling thread while it waits, not on a thread of the
 * library's: callbacks that come from the loop (log lines, the exit
 * callback) then run on this thread, inside this call. */
CROSVM_EXPORT int crosvm_vm_run(crosvm_exit_reason *out_reason, crosvm_vm *vm);

/* Stops the VM in order (vCPUs out of KVM_RUN and joined, device work
 * finished) and waits for it. The exit reason becomes CROSVM_EXIT_STOPPED
 * unless the guest had already ended it. */
CROSVM_EXPORT int crosvm_vm_stop(crosvm_vm *vm);

/* Asks the VM to stop in order and returns at once; the exit callback (or
 * crosvm_vm_wait) tells when it has. For event loops that must not block. */
CROSVM_EXPORT int crosvm_vm_request_stop(crosvm_vm *vm);

/* Holds every vCPU outside KVM_RUN (returns once they all are: the guest
 * makes no progress, its clocks keep running) / lets them run again. Device
 * work already queued finishes; input from the host waits. */
CROSVM_EXPORT int crosvm_vm_pause(crosvm_vm *vm);
CROSVM_EXPORT int crosvm_vm_resume(crosvm_vm *vm);

/* Presses the ACPI power button (crosvm's powerbtn, QEMU's
 * system_powerdown) and returns at once: a guest that listens (Linux with
 * its ACPI button driver and acpid, systemd-logind...) syncs its disks and
 * powers off, which the exit callback and crosvm_vm_wait report as
 * CROSVM_EXIT_POWEROFF. A guest that does not listen goes on (a warning
 * is logged). CROSVM_ERROR_STATE once the VM is stopping. */
CROSVM_EXPORT int crosvm_vm_power_button(crosvm_vm *vm);

CROSVM_EXPORT crosvm_vm_state crosvm_vm_get_state(const crosvm_vm *vm);

/* The control socket's path ("" without one); valid until the next call on
 * this thread. */
CROSVM_EXPORT const char *crosvm_vm_control_socket_path(const crosvm_vm *vm);

/* The guest's vsock CID (a "vsock" device's cid=), or 0 when the VM has no
 * vsock device. The host reaches the guest with an AF_VSOCK socket to that
 * CID; the guest reaches the host as CID 2. */
CROSVM_EXPORT uint64_t crosvm_vm_vsock_cid(const crosvm_vm *vm);

/* A userspace vsock's Unix socket (the "vsock" device's socket=), or ""
 * when the VM has none (no vsock device, or the kernel's): a host program
 * connects to it and writes "CONNECT <port>\n" to reach the guest's
 * listener on that port, and listens on "<path>_<port>" for the guest's
 * connections to host port <port>. Valid until the next call on this
 * thread. */
CROSVM_EXPORT const char *crosvm_vm_vsock_socket_path(const crosvm_vm *vm);

/* CROSVM_CALLBACKS_ON_DISPATCH only: an fd that is readable while callbacks
 * wait to be dispatched (watch it for POLLIN; do not read or close it), and
 * the call that runs them on the calling thread and stores how many ran
 * (`out_dispatched` may be NULL). Not re-entrant. */
CROSVM_EXPORT int crosvm_vm_event_fd(int *out_fd, const crosvm_vm *vm);
CROSVM_EXPORT int crosvm_vm_dispatch(size_t *out_dispatched, crosvm_vm *vm);

/* The embedder's own descriptors on the VM's event loop: an embedder that
 * serves the loop inside crosvm_vm_run() handles its signals (a signalfd),
 * terminal or sockets there too, with no thread of its own for them.
 * `callback` runs on the loop's thread (inside crosvm_vm_run(), the
 * caller's; after crosvm_vm_start(), the library's loop thread) whatever
 * the callback mode, each time one of the events it waits for is ready
 * (an error or hang-up counts as ready: the callback's own read or write
 * sees it). The library watches a duplicate of `fd`, which the caller may
 * close at once; the callback is given that duplicate (read or write it,
 * never close it) and the events that are ready, and returns the events
 * to wait for next, or 0 to end the watch (the duplicate is closed then).
 * Like every loop callback it must not wait for, stop
 * (crosvm_vm_request_stop is fine), pause or destroy its VM, and it holds
 * up the loop while it runs. Every watch ends when the VM stops. At most
 * 16 at once; a regular file or directory (always ready) is refused;
 * CROSVM_ERROR_STATE once the VM has stopped. */
#define CROSVM_WATCH_READABLE 0x1u
#define CROSVM_WATCH_WRITABLE 0x2u
typedef uint32_t (*crosvm_watch_callback)(int fd, uint32_t ready, void *userdata);
CROSVM_EXPORT int crosvm_vm_watch_fd(crosvm_vm *vm, int fd, uint32_t events,
                                     crosvm_watch_callback callback, void *userdata);

/* Why the VM stopped so far (CROSVM_EXIT_NONE while it runs). */
CROSVM_EXPORT crosvm_exit_reason crosvm_vm_exit_reason(const crosvm_vm *vm);
/* A sentence about the exit ("the guest reset (i8042 reset)"); "" before.
 * Valid until the next call on this thread. */
CROSVM_EXPORT const char *crosvm_vm_exit_message(const crosvm_vm *vm);

/* Queues `length` bytes as input of serial port `number`; stores how many
 * were taken (fewer when the port's input buffer is full). */
CROSVM_EXPORT int crosvm_vm_serial_write(size_t *out_written, crosvm_vm *vm, uint32_t number,
                                         const void *data, size_t length);

/* The same for virtio console `number` (hvc<number-1>). */
CROSVM_EXPORT int crosvm_vm_console_write(size_t *out_written, crosvm_vm *vm, uint32_t number,
                                          const void *data, size_t length);

/* Stops the VM if it runs, then frees it. Safe at any state; not from one of
 * the VM's own callbacks on its threads (the VM is then kept and an error is
 * logged); from a dispatched callback it is freed when that returns. */
CROSVM_EXPORT void crosvm_vm_destroy(crosvm_vm *vm);

/* ---- Disk images ------------------------------------------------------- */

/* Creates an empty qcow2 image (version 3, 64 KiB clusters) at `path`,
 * which must not exist (crosvm's `create_qcow2`): `size` bytes, or, with a
 * `backing_file` (NULL for none), the backing file's size with `size` 0.
 * The backing file is named in the image as given (a relative name is
 * found beside the image) with its format (raw or qcow2, read from it).
 * CROSVM_ERROR_INVALID_ARGUMENT for a size of 0 without a backing file or
 * one with it, CROSVM_ERROR_IO when the file exists or the backing file
 * cannot be read; nothing is left behind on failure. */
CROSVM_EXPORT int crosvm_create_qcow2(const char *path, uint64_t size, const char *backing_file);

/* ---- Control socket clients --------------------------------------------- */

/* Sends one JSON request to the control socket at `socket_path`, in
 * crosvm's encoding ("Exit", "Powerbtn", {"DiskCommand":{...}}) or ours
 * ({"request":"status"}): see docs/control-socket.md. Waits at most
 * `timeout_ms` (negative or more than a year: forever) for the answer,
 * stored in `*out_response` (free it with crosvm_string_free) whenever one
 * came. Returns 0 when the VM answered with success ({"ok":true}, "Ok" or
 * another of crosvm's non-error responses); else the answer's error code
 * (CROSVM_ERROR_STATE, ...; crosvm's {"Err":95}, a request this VM does
 * not serve, is CROSVM_ERROR_PROTOCOL) with its message, or
 * CROSVM_ERROR_PROTOCOL for a malformed request (nothing is sent),
 * CROSVM_ERROR_IO when the socket cannot be reached, CROSVM_ERROR_TIMEOUT. */
CROSVM_EXPORT int crosvm_control_request(char **out_response, const char *socket_path,
                                         const char *request_json, int64_t timeout_ms);
CROSVM_EXPORT void crosvm_string_free(char *text);

/* Device backends (crosvm's `crosvm device`): one virtio device of this
 * library served to one vhost-user frontend, which owns the transport:
 * another VM of this library (crosvm_config_add_device(config,
 * "vhost-user", "type=block,socket=PATH")) or QEMU (-device
 * vhost-user-blk-pci with a shared memory backend). `kind` is "block" or
 * "rng"; `options` is a list as for crosvm_config_add_device ("block":
 * "path=disk.img,ro=true"; "rng": none; NULL for none).
 *
 * crosvm_device_serve() listens on a Unix socket at `socket_path` (a stale
 * socket there is replaced; a live one or another file is
 * CROSVM_ERROR_IO), serves the first frontend that connects and returns 0
 * when it disconnects, the socket removed. It blocks the calling thread.
 * CROSVM_ERROR_INVALID_ARGUMENT for an unknown kind or option,
 * CROSVM_ERROR_DEVICE when the device cannot be built (a missing image),
 * CROSVM_ERROR_PROTOCOL when the frontend broke the protocol (the message
 * says how; the device was reset and every fd it sent closed).
 * crosvm_device_serve_fd() serves a connected socket `fd` instead, and
 * closes it. */
CROSVM_EXPORT int crosvm_device_serve(const char *kind, const char *options, const char *socket_path);
CROSVM_EXPORT int crosvm_device_serve_fd(const char *kind, const char *options, int fd);

#ifdef __cplusplus
}
#endif

#endif /* CROSVM_CROSVM_H */
