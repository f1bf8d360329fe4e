// The extern "C" layer: argument checks, Result -> error code + thread-local
// message, and a catch-all so no exception crosses the ABI.
#include "crosvm/crosvm.h"

#include <algorithm>
#include <cstring>
#include <exception>
#include <memory>
#include <string>

#include "capi/versioned.h"
#include "control/client.h"
#include "disk/qcow2.h"
#include "vm/callback_queue.h"
#include "vm/device_options.h"
#include "vm/device_server.h"
#include "vm/vm.h"

struct crosvm_config {
  crosvm::VmConfig config;
  crosvm_exit_callback exit_callback = nullptr;
  void* exit_userdata = nullptr;
  uint32_t callback_mode = CROSVM_CALLBACKS_ON_VM_THREADS;
};

struct crosvm_vm {
  // Declared before `vm`, so destroyed after it: the VM's threads queue
  // into these until they are joined.
  std::unique_ptr<crosvm::CallbackQueue> queue;  // CROSVM_CALLBACKS_ON_DISPATCH only
  std::vector<std::unique_ptr<crosvm::CallbackQueue::OutputCallback>> outputs;
  std::unique_ptr<crosvm::Vm> vm;
  bool dispatching = false;         // inside crosvm_vm_dispatch()
  bool destroy_requested = false;   // crosvm_vm_destroy() from a dispatched callback
};

namespace {

using crosvm::Error;
using crosvm::ErrorCode;

thread_local std::string last_error;

int fail(ErrorCode code, std::string message) {
  last_error = std::move(message);
  return static_cast<int>(code);
}

int fail(const Error& error) { return fail(error.code, error.message); }

int succeed() {
  last_error.clear();
  return CROSVM_OK;
}

// Runs `body`, turning any escaping exception into CROSVM_ERROR_INTERNAL.
template <typename Body>
int guarded(Body&& body) noexcept {
  try {
    return body();
  } catch (const std::bad_alloc&) {
    return fail(ErrorCode::kInternal, "out of memory");
  } catch (const std::exception& error) {
    return fail(ErrorCode::kInternal, std::string("internal error: ") + error.what());
  } catch (...) {
    return fail(ErrorCode::kInternal, "internal error");
  }
}

int null_argument(const char* name) {
  return fail(ErrorCode::kInvalidArgument, std::string(name) + " is NULL");
}

crosvm::LogLevel clamp_level(int level) {
  return static_cast<crosvm::LogLevel>(std::clamp(level, 0, 3));
}


// Timeouts beyond this are forever: a deadline of now() plus a huge
// timeout_ms would overflow the clock and time out at once.
constexpr std::chrono::milliseconds kLongestTimeout = std::chrono::hours(24 * 365);

std::optional<std::chrono::milliseconds> bounded_timeout(int64_t timeout_ms) {
  if (timeout_ms < 0 || timeout_ms > kLongestTimeout.count()) return std::nullopt;
  return std::chrono::milliseconds(timeout_ms);
}

int write_input(size_t* out_written, crosvm_vm* vm, crosvm::SerialHardware hardware, uint32_t number,
                const void* data, size_t length) {
  return guarded([&] {
    if (vm == nullptr) return null_argument("vm");
    if (data == nullptr && length != 0) return null_argument("data");
    auto written =
        vm->vm->write_serial_input(hardware, number, std::span(static_cast<const uint8_t*>(data), length));
    if (!written) return fail(written.error());
    if (out_written != nullptr) *out_written = *written;
    return succeed();
  });
}

}  // namespace

extern "C" {

const char* crosvm_error_message(void) { return last_error.c_str(); }

const char* crosvm_error_name(int code) {
  switch (code) {
    case CROSVM_OK: return "CROSVM_OK";
    case CROSVM_ERROR_INVALID_ARGUMENT: return "CROSVM_ERROR_INVALID_ARGUMENT";
    case CROSVM_ERROR_KVM_UNAVAILABLE: return "CROSVM_ERROR_KVM_UNAVAILABLE";
    case CROSVM_ERROR_KVM_CAPABILITY: return "CROSVM_ERROR_KVM_CAPABILITY";
    case CROSVM_ERROR_KERNEL: return "CROSVM_ERROR_KERNEL";
    case CROSVM_ERROR_INITRD: return "CROSVM_ERROR_INITRD";
    case CROSVM_ERROR_MEMORY: return "CROSVM_ERROR_MEMORY";
    case CROSVM_ERROR_VCPU: return "CROSVM_ERROR_VCPU";
    case CROSVM_ERROR_IO: return "CROSVM_ERROR_IO";
    case CROSVM_ERROR_STATE: return "CROSVM_ERROR_STATE";
    case CROSVM_ERROR_TIMEOUT: return "CROSVM_ERROR_TIMEOUT";
    case CROSVM_ERROR_DEVICE: return "CROSVM_ERROR_DEVICE";
    case CROSVM_ERROR_PROTOCOL: return "CROSVM_ERROR_PROTOCOL";
    case CROSVM_ERROR_INTERNAL: return "CROSVM_ERROR_INTERNAL";
    default: return "CROSVM_ERROR_UNKNOWN";
  }
}

uint32_t crosvm_abi_version(void) { return CROSVM_ABI_VERSION; }

const char* crosvm_version(void) { return CROSVM_VERSION_STRING; }

int crosvm_config_create(crosvm_config** out_config) {
  return guarded([&] {
    if (out_config == nullptr) return null_argument("out_config");
    *out_config = new crosvm_config();
    return succeed();
  });
}

void crosvm_config_destroy(crosvm_config* config) { delete config; }

int crosvm_config_set_memory_mib(crosvm_config* config, uint64_t mib) {
  return guarded([&] {
    if (config == nullptr) return null_argument("config");
    if (mib == 0) return fail(ErrorCode::kMemory, "guest memory size is 0");
    config->config.memory_mib = mib;
    return succeed();
  });
}

int crosvm_config_set_vcpu_count(crosvm_config* config, uint32_t count) {
  return guarded([&] {
    if (config == nullptr) return null_argument("config");
    if (count == 0) return fail(ErrorCode::kVcpu, "a VM needs at least one vCPU");
    config->config.vcpu_count = count;
    return succeed();
  });
}

int crosvm_config_set_kernel(crosvm_config* config, const char* path) {
  return guarded([&] {
    if (config == nullptr) return null_argument("config");
    if (path == nullptr || *path == '\0') return fail(ErrorCode::kKernel, "no kernel path given");
    config->config.kernel_path = path;
    config->config.demo_kernel = false;
    return succeed();
  });
}

int crosvm_config_set_demo_kernel(crosvm_config* config) {
  return guarded([&] {
    if (config == nullptr) return null_argument("config");
    config->config.kernel_path.clear();
    config->config.demo_kernel = true;
    return succeed();
  });
}

int crosvm_config_set_initrd(crosvm_config* config, const char* path) {
  return guarded([&] {
    if (config == nullptr) return null_argument("config");
    config->config.initrd_path = path != nullptr ? path : "";
    return succeed();
  });
}

int crosvm_config_append_params(crosvm_config* config, const char* params) {
  return guarded([&] {
    if (config == nullptr) return null_argument("config");
    if (params == nullptr) return null_argument("params");
    config->config.params.emplace_back(params);
    return succeed();
  });
}

int crosvm_config_add_serial(crosvm_config* config, const crosvm_serial_options* options) {
  return guarded([&] {
    if (config == nullptr) return null_argument("config");
    if (options == nullptr) return null_argument("options");
    const crosvm_serial_options in = crosvm::read_versioned(*options, crosvm_serial_options CROSVM_SERIAL_OPTIONS_INIT);
    if (in.number < 1 || in.number > 4) {
      return fail(ErrorCode::kInvalidArgument, "serial port " + std::to_string(in.number) +
                                                   " does not exist (1 to 4)");
    }
    crosvm::SerialConfig serial;
    serial.number = in.number;
    switch (in.hardware) {
      case CROSVM_SERIAL_HARDWARE_UART: serial.hardware = crosvm::SerialHardware::kUart; break;
      case CROSVM_SERIAL_HARDWARE_VIRTIO_CONSOLE:
        serial.hardware = crosvm::SerialHardware::kVirtioConsole;
        break;
      default:
        return fail(ErrorCode::kInvalidArgument, "unknown serial hardware " + std::to_string(in.hardware));
    }
    switch (in.type) {
      case CROSVM_SERIAL_SINK: serial.output = crosvm::SerialOutput::kSink; break;
      case CROSVM_SERIAL_STDOUT: serial.output = crosvm::SerialOutput::kStdout; break;
      case CROSVM_SERIAL_FILE:
        if (in.path == nullptr || *in.path == '\0') {
          return fail(ErrorCode::kInvalidArgument, "a file serial port needs a path");
        }
        serial.output = crosvm::SerialOutput::kFile;
        serial.path = in.path;
        break;
      case CROSVM_SERIAL_CALLBACK:
        if (in.callback == nullptr) {
          return fail(ErrorCode::kInvalidArgument, "a callback serial port needs a callback");
        }
        serial.output = crosvm::SerialOutput::kCallback;
        serial.callback = [callback = in.callback, userdata = in.userdata](std::span<const uint8_t> bytes) {
          callback(bytes.data(), bytes.size(), userdata);
        };
        break;
      default:
        return fail(ErrorCode::kInvalidArgument, "unknown serial type " + std::to_string(in.type));
    }
    if ((in.flags & ~(CROSVM_SERIAL_CONSOLE | CROSVM_SERIAL_EARLYCON | CROSVM_SERIAL_STDIN)) != 0) {
      return fail(ErrorCode::kInvalidArgument, "unknown serial flags");
    }
    serial.console = (in.flags & CROSVM_SERIAL_CONSOLE) != 0;
    serial.earlycon = (in.flags & CROSVM_SERIAL_EARLYCON) != 0;
    serial.read_stdin = (in.flags & CROSVM_SERIAL_STDIN) != 0;

    config->config.set_serial(std::move(serial));
    return succeed();
  });
}

int crosvm_config_add_disk(crosvm_config* config, const crosvm_disk_options* options) {
  return guarded([&] {
    if (config == nullptr) return null_argument("config");
    if (options == nullptr) return null_argument("options");
    const crosvm_disk_options in =
        crosvm::read_versioned(*options, crosvm_disk_options CROSVM_DISK_OPTIONS_INIT);
    if (in.path == nullptr || *in.path == '\0') return fail(ErrorCode::kInvalidArgument, "a disk needs a path");
    if ((in.flags & ~(CROSVM_DISK_READ_ONLY | CROSVM_DISK_ROOT)) != 0) {
      return fail(ErrorCode::kInvalidArgument, "unknown disk flags");
    }
    crosvm::DiskConfig disk;
    disk.path = in.path;
    disk.read_only = (in.flags & CROSVM_DISK_READ_ONLY) != 0;
    disk.root = (in.flags & CROSVM_DISK_ROOT) != 0;
    disk.id = in.id != nullptr ? in.id : "";
    config->config.disks.push_back(std::move(disk));
    return succeed();
  });
}

int crosvm_config_set_sandbox(crosvm_config* config, const crosvm_sandbox_options* options) {
  return guarded([&] {
    if (config == nullptr) return null_argument("config");
    if (options == nullptr) return null_argument("options");
    const crosvm_sandbox_options in =
        crosvm::read_versioned(*options, crosvm_sandbox_options CROSVM_SANDBOX_OPTIONS_INIT);
    if ((in.flags & ~(CROSVM_SANDBOX_ENABLED | CROSVM_SANDBOX_SECCOMP_LOG_FAILURES)) != 0) {
      return fail(ErrorCode::kInvalidArgument, "unknown sandbox flags");
    }
    crosvm::SandboxConfig sandbox;
    sandbox.enabled = (in.flags & CROSVM_SANDBOX_ENABLED) != 0;
    sandbox.seccomp_log_failures = (in.flags & CROSVM_SANDBOX_SECCOMP_LOG_FAILURES) != 0;
    sandbox.helper = in.helper != nullptr ? in.helper : "";
    for (const char* const* name = in.denied_syscalls; name != nullptr && *name != nullptr; ++name) {
      if (**name == '\0') return fail(ErrorCode::kInvalidArgument, "an empty syscall name in denied_syscalls");
      sandbox.denied_syscalls.emplace_back(*name);
    }
    config->config.sandbox = std::move(sandbox);
    return succeed();
  });
}

int crosvm_config_add_device(crosvm_config* config, const char* kind, const char* options) {
  return guarded([&] {
    if (config == nullptr) return null_argument("config");
    if (kind == nullptr) return null_argument("kind");
    auto added = crosvm::add_device(config->config, kind, options != nullptr ? options : "");
    if (!added) return fail(added.error());
    return succeed();
  });
}

int crosvm_config_reads_stdin(const crosvm_config* config) {
  return guarded([&] {
    if (config == nullptr) return null_argument("config");
    last_error.clear();
    const auto& serials = config->config.serials;
    return std::any_of(serials.begin(), serials.end(), [](const crosvm::SerialConfig& serial) {
      return serial.read_stdin;
    }) ? 1 : 0;
  });
}

const char* crosvm_device_kind_name(size_t index) {
  const auto kinds = crosvm::device_kinds();
  return index < kinds.size() ? kinds[index].name.data() : nullptr;
}

const char* crosvm_device_kind_help(const char* kind) {
  if (kind == nullptr) return nullptr;
  try {
    // Built once, kept for the process's life (the kinds are fixed).
    static const std::vector<std::string> texts = [] {
      std::vector<std::string> built;
      for (const crosvm::DeviceKind& known : crosvm::device_kinds()) {
        built.push_back(crosvm::describe_device_kind(known));
      }
      return built;
    }();
    const auto kinds = crosvm::device_kinds();
    for (size_t i = 0; i < kinds.size(); ++i) {
      if (kinds[i].name == kind) return texts[i].c_str();
    }
  } catch (...) {  // out of memory building the texts: none to give
  }
  return nullptr;
}

int crosvm_config_set_rng(crosvm_config* config, int enabled) {
  return guarded([&] {
    if (config == nullptr) return null_argument("config");
    config->config.rng = enabled != 0;
    return succeed();
  });
}

int crosvm_config_set_hugepages(crosvm_config* config, int enabled) {
  return guarded([&] {
    if (config == nullptr) return null_argument("config");
    config->config.hugepages = enabled != 0;
    return succeed();
  });
}

int crosvm_config_set_syslog_tag(crosvm_config* config, const char* tag) {
  return guarded([&] {
    if (config == nullptr) return null_argument("config");
    const std::string_view text = tag == nullptr ? std::string_view() : std::string_view(tag);
    if (text.size() > 64 || text.find_first_of(" \n\r[]:") != std::string_view::npos) {
      return fail(ErrorCode::kInvalidArgument,
                  "a syslog tag has at most 64 bytes and no spaces, line ends, brackets or colons");
    }
    config->config.syslog_tag = std::string(text);
    return succeed();
  });
}

int crosvm_config_set_log(crosvm_config* config, int max_level, crosvm_log_callback callback,
                          void* userdata) {
  return guarded([&] {
    if (config == nullptr) return null_argument("config");
    const crosvm::LogLevel level = clamp_level(max_level);
    if (callback == nullptr) {
      // stderr at the level asked for (debug too).
      config->config.logger = crosvm::Logger(crosvm::write_log_to_stderr, level);
    } else {
      config->config.logger = crosvm::Logger(
          [callback, userdata](crosvm::LogLevel message_level, std::string_view message) {
            const std::string text(message);
            callback(static_cast<int>(message_level), text.c_str(), userdata);
          },
          level);
    }
    return succeed();
  });
}

int crosvm_config_set_control_socket(crosvm_config* config, const char* path) {
  return guarded([&] {
    if (config == nullptr) return null_argument("config");
    config->config.control_socket = path != nullptr ? path : "";
    return succeed();
  });
}

int crosvm_config_set_exit_callback(crosvm_config* config, crosvm_exit_callback callback,
                                    void* userdata) {
  return guarded([&] {
    if (config == nullptr) return null_argument("config");
    config->exit_callback = callback;
    config->exit_userdata = userdata;
    return succeed();
  });
}

int crosvm_config_set_callback_mode(crosvm_config* config, uint32_t mode) {
  return guarded([&] {
    if (config == nullptr) return null_argument("config");
    if (mode != CROSVM_CALLBACKS_ON_VM_THREADS && mode != CROSVM_CALLBACKS_ON_DISPATCH) {
      return fail(ErrorCode::kInvalidArgument, "unknown callback mode " + std::to_string(mode));
    }
    config->callback_mode = mode;
    return succeed();
  });
}

int crosvm_vm_create(crosvm_vm** out_vm, const crosvm_config* config) {
  return guarded([&] {
    if (out_vm == nullptr) return null_argument("out_vm");
    *out_vm = nullptr;
    if (config == nullptr) return null_argument("config");
    auto handle = std::make_unique<crosvm_vm>();
    crosvm::VmConfig vm_config = config->config;
    if (config->callback_mode == CROSVM_CALLBACKS_ON_DISPATCH) {
      auto queue = crosvm::CallbackQueue::create();
      if (!queue) return fail(queue.error());
      handle->queue = std::move(queue).value();
      // Serial output is queued for crosvm_vm_dispatch() instead of called.
      uint32_t port = 0;
      for (crosvm::SerialConfig& serial : vm_config.serials) {
        if (serial.output != crosvm::SerialOutput::kCallback) continue;
        auto& inner = handle->outputs.emplace_back(
            std::make_unique<crosvm::CallbackQueue::OutputCallback>(std::move(serial.callback)));
        serial.callback = [queue = handle->queue.get(), callback = inner.get(),
                           id = port++](std::span<const uint8_t> bytes) {
          queue->push_output(id, *callback, bytes);
        };
      }
    }
    if (config->exit_callback != nullptr) {
      // The reason comes with the call: when crosvm_vm_destroy() stops a
      // running VM, this runs inside the Vm's destructor, and self->vm may
      // no longer be used.
      crosvm::CallbackQueue* queue = handle->queue.get();
      vm_config.on_stopped = [queue, callback = config->exit_callback,
                              userdata = config->exit_userdata](crosvm::ExitReason stopped) {
        const auto reason = static_cast<crosvm_exit_reason>(stopped);
        if (queue != nullptr) {
          queue->push([callback, reason, userdata] { callback(reason, userdata); });
        } else {
          callback(reason, userdata);
        }
      };
    }
    auto vm = crosvm::Vm::create(std::move(vm_config));
    if (!vm) return fail(vm.error());
    handle->vm = std::move(vm).value();
    *out_vm = handle.release();
    return succeed();
  });
}

int crosvm_vm_start(crosvm_vm* vm) {
  return guarded([&] {
    if (vm == nullptr) return null_argument("vm");
    auto started = vm->vm->start();
    return started ? succeed() : fail(started.error());
  });
}


int crosvm_vm_wait(crosvm_exit_reason* out_reason, crosvm_vm* vm, int64_t timeout_ms) {
  return guarded([&] {
    if (vm == nullptr) return null_argument("vm");
    auto reason = vm->vm->wait(bounded_timeout(timeout_ms));
    if (!reason) return fail(reason.error());
    if (out_reason != nullptr) *out_reason = static_cast<crosvm_exit_reason>(*reason);
    return succeed();
  });
}

int crosvm_vm_run(crosvm_exit_reason* out_reason, crosvm_vm* vm) {
  return guarded([&] {
    if (vm == nullptr) return null_argument("vm");
    auto reason = vm->vm->run();
    if (!reason) return fail(reason.error());
    if (out_reason != nullptr) *out_reason = static_cast<crosvm_exit_reason>(*reason);
    return succeed();
  });
}

int crosvm_vm_stop(crosvm_vm* vm) {
  return guarded([&] {
    if (vm == nullptr) return null_argument("vm");
    auto stopped = vm->vm->stop();
    return stopped ? succeed() : fail(stopped.error());
  });
}

int crosvm_vm_request_stop(crosvm_vm* vm) {
  return guarded([&] {
    if (vm == nullptr) return null_argument("vm");
    vm->vm->request_exit(crosvm::ExitReason::kStopped, "stopped by the host");
    return succeed();
  });
}

int crosvm_vm_pause(crosvm_vm* vm) {
  return guarded([&] {
    if (vm == nullptr) return null_argument("vm");
    auto paused = vm->vm->pause();
    return paused ? succeed() : fail(paused.error());
  });
}

int crosvm_vm_resume(crosvm_vm* vm) {
  return guarded([&] {
    if (vm == nullptr) return null_argument("vm");
    auto resumed = vm->vm->resume();
    return resumed ? succeed() : fail(resumed.error());
  });
}

int crosvm_vm_power_button(crosvm_vm* vm) {
  return guarded([&] {
    if (vm == nullptr) return null_argument("vm");
    auto pressed = vm->vm->press_power_button();
    return pressed ? succeed() : fail(pressed.error());
  });
}

crosvm_vm_state crosvm_vm_get_state(const crosvm_vm* vm) {
  if (vm == nullptr) return CROSVM_STATE_STOPPED;
  return static_cast<crosvm_vm_state>(vm->vm->state());
}

uint64_t crosvm_vm_vsock_cid(const crosvm_vm* vm) {
  if (vm == nullptr) return 0;
  return vm->vm->vsock_cid();
}

const char* crosvm_vm_vsock_socket_path(const crosvm_vm* vm) {
  if (vm == nullptr) return "";
  thread_local std::string path;
  try {
    path = vm->vm->vsock_socket_path();
  } catch (...) {
    path.clear();
  }
  return path.c_str();
}

const char* crosvm_vm_control_socket_path(const crosvm_vm* vm) {
  if (vm == nullptr) return "";
  thread_local std::string path;
  try {
    path = vm->vm->control_socket_path();
  } catch (...) {
    path.clear();
  }
  return path.c_str();
}

int crosvm_vm_event_fd(int* out_fd, const crosvm_vm* vm) {
  return guarded([&] {
    if (out_fd == nullptr) return null_argument("out_fd");
    if (vm == nullptr) return null_argument("vm");
    if (!vm->queue) {
      return fail(ErrorCode::kState, "the VM was not configured with CROSVM_CALLBACKS_ON_DISPATCH");
    }
    *out_fd = vm->queue->fd();
    return succeed();
  });
}

int crosvm_vm_dispatch(size_t* out_dispatched, crosvm_vm* vm) {
  const int result = guarded([&] {
    if (vm == nullptr) return null_argument("vm");
    if (!vm->queue) {
      return fail(ErrorCode::kState, "the VM was not configured with CROSVM_CALLBACKS_ON_DISPATCH");
    }
    if (vm->dispatching) return fail(ErrorCode::kState, "crosvm_vm_dispatch() called from a dispatched callback");
    vm->dispatching = true;
    struct Reset {
      bool& flag;
      ~Reset() { flag = false; }
    } reset{vm->dispatching};
    const size_t ran = vm->queue->dispatch([vm] { return !vm->destroy_requested; });
    if (const uint64_t dropped = vm->queue->take_dropped_bytes(); dropped != 0) {
      vm->vm->logger().warn("{} bytes of serial output were dropped: crosvm_vm_dispatch() fell behind",
                            dropped);
    }
    if (out_dispatched != nullptr) *out_dispatched = ran;
    return succeed();
  });
  if (vm != nullptr && vm->destroy_requested) crosvm_vm_destroy(vm);
  return result;
}

int crosvm_vm_watch_fd(crosvm_vm* vm, int fd, uint32_t events, crosvm_watch_callback callback,
                       void* userdata) {
  return guarded([&] {
    if (vm == nullptr) return null_argument("vm");
    if (callback == nullptr) return null_argument("callback");
    static_assert(CROSVM_WATCH_READABLE == crosvm::FdWatches::kReadable &&
                  CROSVM_WATCH_WRITABLE == crosvm::FdWatches::kWritable);
    auto watched = vm->vm->watch_fd(fd, events, [callback, userdata](int watched_fd, uint32_t ready) {
      return callback(watched_fd, ready, userdata);
    });
    return watched ? succeed() : fail(watched.error());
  });
}

crosvm_exit_reason crosvm_vm_exit_reason(const crosvm_vm* vm) {
  if (vm == nullptr) return CROSVM_EXIT_NONE;
  return static_cast<crosvm_exit_reason>(vm->vm->exit_reason());
}

const char* crosvm_vm_exit_message(const crosvm_vm* vm) {
  if (vm == nullptr) return "";
  thread_local std::string message;
  try {
    message = vm->vm->exit_message();
  } catch (...) {
    message.clear();
  }
  return message.c_str();
}


int crosvm_vm_serial_write(size_t* out_written, crosvm_vm* vm, uint32_t number, const void* data,
                           size_t length) {
  return write_input(out_written, vm, crosvm::SerialHardware::kUart, number, data, length);
}

int crosvm_vm_console_write(size_t* out_written, crosvm_vm* vm, uint32_t number, const void* data,
                            size_t length) {
  return write_input(out_written, vm, crosvm::SerialHardware::kVirtioConsole, number, data, length);
}

void crosvm_vm_destroy(crosvm_vm* vm) {
  if (vm == nullptr) return;
  try {
    if (vm->dispatching) {
      vm->destroy_requested = true;  // crosvm_vm_dispatch() frees it once the callback returns
      return;
    }
    if (vm->vm->is_own_thread()) {
      vm->vm->logger().error("crosvm_vm_destroy() called from the VM's own callback; the VM is kept");
      return;
    }
    delete vm;
  } catch (...) {
    // Nothing may escape; a VM that cannot be torn down is leaked.
  }
}

int crosvm_create_qcow2(const char* path, uint64_t size, const char* backing_file) {
  return guarded([&] {
    if (path == nullptr) return null_argument("path");
    auto created = crosvm::disk::create_qcow2(path, size, backing_file != nullptr ? backing_file : "");
    if (!created) return fail(created.error());
    return succeed();
  });
}

int crosvm_control_request(char** out_response, const char* socket_path, const char* request_json,
                           int64_t timeout_ms) {
  return guarded([&] {
    if (out_response == nullptr) return null_argument("out_response");
    *out_response = nullptr;
    if (socket_path == nullptr) return null_argument("socket_path");
    if (request_json == nullptr) return null_argument("request_json");
    // Checked here: a client's mistake is reported without bothering the
    // VM. Sent as given (a crosvm request keeps what we do not read).
    auto request = crosvm::control::parse_request(request_json);
    if (!request) return fail(request.error());
    const auto timeout = bounded_timeout(timeout_ms).value_or(kLongestTimeout);
    auto line = crosvm::control::send_request_line(socket_path, request_json, timeout);
    if (!line) return fail(line.error());
    const crosvm::control::Response response = crosvm::control::parse_response(*line).value();
    *out_response = ::strdup(line->c_str());
    if (*out_response == nullptr) return fail(ErrorCode::kInternal, "out of memory");
    if (!response.ok) {
      return fail(crosvm::control::error_code_from_name(response.error), response.message);
    }
    return succeed();
  });
}

void crosvm_string_free(char* text) { ::free(text); }

int crosvm_device_serve(const char* kind, const char* options, const char* socket_path) {
  return guarded([&] {
    if (kind == nullptr) return null_argument("kind");
    if (socket_path == nullptr) return null_argument("socket_path");
    auto served = crosvm::serve_device_at(kind, options != nullptr ? options : "", socket_path, crosvm::Logger());
    if (!served) return fail(served.error());
    return succeed();
  });
}

int crosvm_device_serve_fd(const char* kind, const char* options, int fd) {
  return guarded([&] {
    crosvm::UniqueFd connection(fd);
    if (kind == nullptr) return null_argument("kind");
    if (fd < 0) return fail(ErrorCode::kInvalidArgument, "fd is negative");
    auto served = crosvm::serve_device_on(kind, options != nullptr ? options : "", std::move(connection),
                                          crosvm::Logger());
    if (!served) return fail(served.error());
    return succeed();
  });
}

}  // extern "C"
