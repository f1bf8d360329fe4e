// _crosvm: the Python extension under the `crosvm` package. It wraps only
// the public C ABI (crosvm/crosvm.h). Serial output is collected here, in
// C++, without the GIL: the VM's threads never wait for Python, and every
// call that can block (wait, stop, pause, destroy, control requests)
// releases the GIL.
#include <crosvm/crosvm.h>
#include <pybind11/functional.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <chrono>
#include <cmath>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace py = pybind11;

namespace {

// crosvm.Error and one subclass per crosvm_error code.
std::map<int, py::object>& error_types() {
  static auto* types = new std::map<int, py::object>();  // lives as long as the interpreter
  return *types;
}

[[noreturn]] void raise(int code) {
  const std::string message = crosvm_error_message();
  auto& types = error_types();
  auto found = types.find(code);
  py::object type = found != types.end() ? found->second : types.at(0);
  py::object error = type(message);
  error.attr("code") = code;
  error.attr("name") = std::string(crosvm_error_name(code));
  PyErr_SetObject(type.ptr(), error.ptr());
  throw py::error_already_set();
}

void check(int code) {
  if (code != CROSVM_OK) raise(code);
}

// Runs a C ABI call that may block without the GIL (so the VM's threads and
// other Python threads go on), then raises its error with the GIL back.
template <typename Call>
void check_unlocked(Call&& call) {
  int code;
  {
    py::gil_scoped_release unlocked;
    code = call();
  }
  check(code);
}

// Seconds from Python as the C ABI's milliseconds: None or infinity is -1
// (forever); NaN and, unless `negative_is_forever`, negative values are
// refused; anything beyond a year is forever too (no overflow further on).
int64_t timeout_ms(std::optional<double> seconds, bool negative_is_forever) {
  if (!seconds) return -1;
  if (std::isnan(*seconds)) throw py::value_error("timeout must be a number of seconds, not NaN");
  if (*seconds < 0) {
    if (negative_is_forever) return -1;
    throw py::value_error("timeout must be >= 0 (None: forever)");
  }
  constexpr double kYear = 365.0 * 24 * 3600;
  if (*seconds > kYear) return -1;
  return static_cast<int64_t>(*seconds * 1000.0);
}

// What a VM's serial port or virtio console printed, appended by the VM's
// threads, read by Python.
class OutputBuffer {
 public:
  static void append(const uint8_t* data, size_t length, void* userdata) {
    auto* self = static_cast<OutputBuffer*>(userdata);
    {
      std::lock_guard lock(self->mutex_);
      self->bytes_.append(reinterpret_cast<const char*>(data), length);
    }
    self->changed_.notify_all();
  }
  static void log(int level, const char* message, void* userdata) {
    static const char* const kNames[] = {"error", "warning", "info", "debug"};
    const std::string line =
        std::string(kNames[level >= 0 && level <= 3 ? level : 0]) + ": " + message + "\n";
    append(reinterpret_cast<const uint8_t*>(line.data()), line.size(), userdata);
  }

  py::bytes contents(size_t from) const {
    std::lock_guard lock(mutex_);
    return from < bytes_.size() ? py::bytes(bytes_.data() + from, bytes_.size() - from) : py::bytes();
  }
  size_t size() const {
    std::lock_guard lock(mutex_);
    return bytes_.size();
  }
  // Waits until there are more than `known` bytes, at most `timeout` seconds
  // (negative: forever); returns the size.
  size_t wait_for_more(size_t known, double timeout) {
    py::gil_scoped_release unlocked;
    std::unique_lock lock(mutex_);
    auto grown = [&] { return bytes_.size() > known || closed_; };
    if (timeout < 0) {
      changed_.wait(lock, grown);
    } else {
      changed_.wait_for(lock, std::chrono::duration<double>(timeout), grown);
    }
    return bytes_.size();
  }
  // Wakes waiters for good (the VM has stopped).
  void close() {
    {
      std::lock_guard lock(mutex_);
      closed_ = true;
    }
    changed_.notify_all();
  }

 private:
  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::string bytes_;
  bool closed_ = false;
};

struct SerialSpec {
  uint32_t number;
  uint32_t hardware;
  uint32_t type;
  uint32_t flags;
  std::string path;
};

// A configuration; the output buffers it names go to the VM built from it.
class Config {
 public:
  Config() { check(crosvm_config_create(&config_)); }
  ~Config() { crosvm_config_destroy(config_); }
  Config(const Config&) = delete;
  Config& operator=(const Config&) = delete;

  void set_memory_mib(uint64_t mib) { check(crosvm_config_set_memory_mib(config_, mib)); }
  void set_vcpu_count(uint32_t count) { check(crosvm_config_set_vcpu_count(config_, count)); }
  void set_kernel(const std::string& path) { check(crosvm_config_set_kernel(config_, path.c_str())); }
  void set_demo_kernel() { check(crosvm_config_set_demo_kernel(config_)); }
  void set_initrd(const std::string& path) { check(crosvm_config_set_initrd(config_, path.c_str())); }
  void append_params(const std::string& params) { check(crosvm_config_append_params(config_, params.c_str())); }
  void set_rng(bool enabled) { check(crosvm_config_set_rng(config_, enabled ? 1 : 0)); }
  void set_hugepages(bool enabled) { check(crosvm_config_set_hugepages(config_, enabled ? 1 : 0)); }
  void set_syslog_tag(const std::string& tag) { check(crosvm_config_set_syslog_tag(config_, tag.c_str())); }
  void set_sandbox(bool enabled, const std::string& helper, bool seccomp_log_failures) {
    crosvm_sandbox_options options = CROSVM_SANDBOX_OPTIONS_INIT;
    options.flags = (enabled ? CROSVM_SANDBOX_ENABLED : 0) |
                    (seccomp_log_failures ? CROSVM_SANDBOX_SECCOMP_LOG_FAILURES : 0);
    options.helper = helper.empty() ? nullptr : helper.c_str();
    check(crosvm_config_set_sandbox(config_, &options));
  }
  void add_device(const std::string& kind, const std::string& options) {
    check(crosvm_config_add_device(config_, kind.c_str(), options.c_str()));
  }
  void set_control_socket(const std::string& path) {
    check(crosvm_config_set_control_socket(config_, path.c_str()));
  }
  void set_log_level(int level) {
    check(crosvm_config_set_log(config_, level, &OutputBuffer::log, log_.get()));
  }
  void add_disk(const std::string& path, bool read_only, bool root, std::optional<std::string> id) {
    crosvm_disk_options disk = CROSVM_DISK_OPTIONS_INIT;
    disk.path = path.c_str();
    disk.id = id ? id->c_str() : nullptr;
    disk.flags = (read_only ? CROSVM_DISK_READ_ONLY : 0u) | (root ? CROSVM_DISK_ROOT : 0u);
    check(crosvm_config_add_disk(config_, &disk));
  }
  // A port whose output Python reads (type "buffer"), or a file/sink.
  void add_serial(uint32_t number, bool virtio_console, const std::string& type, bool console,
                  const std::string& path) {
    crosvm_serial_options serial = CROSVM_SERIAL_OPTIONS_INIT;
    serial.number = number;
    serial.hardware = virtio_console ? CROSVM_SERIAL_HARDWARE_VIRTIO_CONSOLE : CROSVM_SERIAL_HARDWARE_UART;
    serial.flags = console ? CROSVM_SERIAL_CONSOLE : 0u;
    std::shared_ptr<OutputBuffer> buffer;
    if (type == "buffer") {
      buffer = std::make_shared<OutputBuffer>();
      serial.type = CROSVM_SERIAL_CALLBACK;
      serial.callback = &OutputBuffer::append;
      serial.userdata = buffer.get();
    } else if (type == "file") {
      serial.type = CROSVM_SERIAL_FILE;
      serial.path = path.c_str();
    } else if (type == "sink") {
      serial.type = CROSVM_SERIAL_SINK;
    } else if (type == "stdout") {
      serial.type = CROSVM_SERIAL_STDOUT;
    } else {
      throw py::value_error("serial type must be buffer, file, sink or stdout, not '" + type + "'");
    }
    check(crosvm_config_add_serial(config_, &serial));
    if (buffer) outputs_[{virtio_console, number}] = buffer;
  }

  crosvm_config* handle() const { return config_; }
  const std::map<std::pair<bool, uint32_t>, std::shared_ptr<OutputBuffer>>& outputs() const { return outputs_; }
  std::shared_ptr<OutputBuffer> log() const { return log_; }

 private:
  crosvm_config* config_ = nullptr;
  std::map<std::pair<bool, uint32_t>, std::shared_ptr<OutputBuffer>> outputs_;
  std::shared_ptr<OutputBuffer> log_ = std::make_shared<OutputBuffer>();
};

class Vm {
 public:
  explicit Vm(const Config& config) : outputs_(config.outputs()), log_(config.log()) {
    check_unlocked([&] { return crosvm_vm_create(&vm_, config.handle()); });
  }
  ~Vm() { close(); }
  Vm(const Vm&) = delete;
  Vm& operator=(const Vm&) = delete;

  void start() { check(crosvm_vm_start(live())); }
  // Returns the exit reason, or None on timeout.
  std::optional<int> wait(std::optional<double> timeout) {
    crosvm_exit_reason reason = CROSVM_EXIT_NONE;
    const int64_t ms = timeout_ms(timeout, false);
    bool timed_out = false;
    blocking([&](crosvm_vm* vm) {
      const int result = crosvm_vm_wait(&reason, vm, ms);
      timed_out = result == CROSVM_ERROR_TIMEOUT;
      return timed_out ? CROSVM_OK : result;
    });
    if (timed_out) return std::nullopt;
    close_outputs();
    return static_cast<int>(reason);
  }
  void stop() {
    blocking([](crosvm_vm* vm) { return crosvm_vm_stop(vm); });
    close_outputs();
  }
  void request_stop() { check(crosvm_vm_request_stop(live())); }
  void pause() {
    blocking([](crosvm_vm* vm) { return crosvm_vm_pause(vm); });
  }
  void resume() { check(crosvm_vm_resume(live())); }
  void power_button() { check(crosvm_vm_power_button(live())); }
  int state() const { return vm_ != nullptr ? crosvm_vm_get_state(vm_) : CROSVM_STATE_STOPPED; }
  int exit_reason() const { return vm_ != nullptr ? crosvm_vm_exit_reason(vm_) : CROSVM_EXIT_NONE; }
  std::string exit_message() const { return vm_ != nullptr ? crosvm_vm_exit_message(vm_) : ""; }
  std::string control_socket_path() const { return vm_ != nullptr ? crosvm_vm_control_socket_path(vm_) : ""; }
  uint64_t vsock_cid() const { return vm_ != nullptr ? crosvm_vm_vsock_cid(vm_) : 0; }
  std::string vsock_socket_path() const { return vm_ != nullptr ? crosvm_vm_vsock_socket_path(vm_) : ""; }

  size_t write_input(bool virtio_console, uint32_t number, const py::bytes& data) {
    const std::string bytes = data;
    size_t written = 0;
    check(virtio_console ? crosvm_vm_console_write(&written, live(), number, bytes.data(), bytes.size())
                         : crosvm_vm_serial_write(&written, live(), number, bytes.data(), bytes.size()));
    return written;
  }

  std::shared_ptr<OutputBuffer> output(bool virtio_console, uint32_t number) const {
    auto found = outputs_.find({virtio_console, number});
    if (found == outputs_.end()) {
      throw py::value_error(std::string("the VM has no ") + (virtio_console ? "virtio console " : "serial port ") +
                            std::to_string(number) + " whose output is kept");
    }
    return found->second;
  }
  std::shared_ptr<OutputBuffer> log() const { return log_; }

  // Stops (if running) and frees the VM; idempotent. A wait(), stop() or
  // pause() that another thread is in the middle of returns first (the VM
  // is asked to stop, which ends them all): the VM is never freed under a
  // call that still uses it.
  void close() {
    if (vm_ == nullptr) return;
    crosvm_vm* vm = vm_;
    vm_ = nullptr;  // from here on, new calls raise StateError ("closed")
    auto finish = [&] {
      std::unique_lock lock(in_flight_mutex_);
      if (in_flight_ > 0) {
        crosvm_vm_request_stop(vm);
        in_flight_done_.wait(lock, [this] { return in_flight_ == 0; });
      }
      lock.unlock();
      crosvm_vm_destroy(vm);
    };
    if (PyGILState_Check()) {
      py::gil_scoped_release unlocked;
      finish();
    } else {
      finish();
    }
    close_outputs();
  }

 private:
  // A call that blocks without the GIL: counted, so that close() on another
  // thread waits for it instead of freeing the VM under it. live() and the
  // count happen with the GIL held, as close() takes the VM away with it.
  template <typename Call>
  void blocking(Call&& call) {
    crosvm_vm* vm = live();
    {
      std::lock_guard lock(in_flight_mutex_);
      ++in_flight_;
    }
    int code;
    {
      py::gil_scoped_release unlocked;
      code = call(vm);
      std::lock_guard lock(in_flight_mutex_);
      if (--in_flight_ == 0) in_flight_done_.notify_all();
    }
    check(code);
  }

  crosvm_vm* live() const {
    if (vm_ == nullptr) {
      PyErr_SetString(error_types().at(CROSVM_ERROR_STATE).ptr(), "the VM was closed");
      throw py::error_already_set();
    }
    return vm_;
  }
  void close_outputs() {
    for (auto& [key, buffer] : outputs_) buffer->close();
  }

  crosvm_vm* vm_ = nullptr;
  std::mutex in_flight_mutex_;
  std::condition_variable in_flight_done_;
  int in_flight_ = 0;
  std::map<std::pair<bool, uint32_t>, std::shared_ptr<OutputBuffer>> outputs_;
  std::shared_ptr<OutputBuffer> log_;
};

std::string control_request(const std::string& socket, const std::string& request, double timeout) {
  const int64_t ms = timeout_ms(timeout, true);
  char* response = nullptr;
  std::unique_ptr<char, decltype(&crosvm_string_free)> owned(nullptr, &crosvm_string_free);
  check_unlocked([&] {
    const int result = crosvm_control_request(&response, socket.c_str(), request.c_str(), ms);
    owned.reset(response);  // freed whether or not the VM said ok
    return result;
  });
  return owned ? std::string(owned.get()) : std::string();
}

}  // namespace

PYBIND11_MODULE(_crosvm, m) {
  m.doc() = "libcrosvm's C ABI for Python (use the crosvm package, not this module).";

  py::object base = py::reinterpret_steal<py::object>(
      PyErr_NewExceptionWithDoc("crosvm.Error", "A libcrosvm call failed; .code and .name say how.",
                                PyExc_RuntimeError, nullptr));
  m.attr("Error") = base;
  base.attr("code") = py::none();  // also for errors raised by the Python layer
  base.attr("name") = "";
  error_types()[0] = base;
  const std::pair<int, const char*> kinds[] = {
      {CROSVM_ERROR_INVALID_ARGUMENT, "InvalidArgumentError"},
      {CROSVM_ERROR_KVM_UNAVAILABLE, "KvmUnavailableError"},
      {CROSVM_ERROR_KVM_CAPABILITY, "KvmCapabilityError"},
      {CROSVM_ERROR_KERNEL, "KernelError"},
      {CROSVM_ERROR_INITRD, "InitrdError"},
      {CROSVM_ERROR_MEMORY, "GuestMemoryError"},
      {CROSVM_ERROR_VCPU, "VcpuError"},
      {CROSVM_ERROR_IO, "IoError"},
      {CROSVM_ERROR_STATE, "StateError"},
      {CROSVM_ERROR_TIMEOUT, "WaitTimeoutError"},
      {CROSVM_ERROR_DEVICE, "DeviceError"},
      {CROSVM_ERROR_PROTOCOL, "ProtocolError"},
      {CROSVM_ERROR_INTERNAL, "InternalError"},
  };
  for (const auto& [code, name] : kinds) {
    // A timeout is also Python's own TimeoutError, so that `except
    // TimeoutError` catches it (and an expect timeout) without naming ours.
    py::object bases = code == CROSVM_ERROR_TIMEOUT
                           ? py::object(py::make_tuple(base, py::handle(PyExc_TimeoutError)))
                           : base;
    py::object type = py::reinterpret_steal<py::object>(PyErr_NewExceptionWithDoc(
        (std::string("crosvm.") + name).c_str(), crosvm_error_name(code), bases.ptr(), nullptr));
    type.attr("code") = code;
    type.attr("name") = std::string(crosvm_error_name(code));
    error_types()[code] = type;
    m.attr(name) = type;
  }

  py::class_<OutputBuffer, std::shared_ptr<OutputBuffer>>(m, "OutputBuffer")
      .def("contents", &OutputBuffer::contents, py::arg("start") = 0)
      .def("size", &OutputBuffer::size)
      .def("wait_for_more", &OutputBuffer::wait_for_more, py::arg("known"), py::arg("timeout"));

  py::class_<Config>(m, "Config")
      .def(py::init<>())
      .def("set_memory_mib", &Config::set_memory_mib)
      .def("set_vcpu_count", &Config::set_vcpu_count)
      .def("set_kernel", &Config::set_kernel)
      .def("set_demo_kernel", &Config::set_demo_kernel)
      .def("set_initrd", &Config::set_initrd)
      .def("append_params", &Config::append_params)
      .def("set_rng", &Config::set_rng)
      .def("set_hugepages", &Config::set_hugepages)
      .def("set_syslog_tag", &Config::set_syslog_tag)
      .def("set_sandbox", &Config::set_sandbox)
      .def("set_control_socket", &Config::set_control_socket)
      .def("set_log_level", &Config::set_log_level)
      .def("add_device", &Config::add_device, py::arg("kind"), py::arg("options"))
      .def("add_disk", &Config::add_disk, py::arg("path"), py::arg("read_only"), py::arg("root"), py::arg("id"))
      .def("add_serial", &Config::add_serial, py::arg("number"), py::arg("virtio_console"), py::arg("type"),
           py::arg("console"), py::arg("path"));

  py::class_<Vm>(m, "Vm")
      .def(py::init<const Config&>())
      .def("start", &Vm::start)
      .def("wait", &Vm::wait, py::arg("timeout"))
      .def("stop", &Vm::stop)
      .def("request_stop", &Vm::request_stop)
      .def("pause", &Vm::pause)
      .def("resume", &Vm::resume)
      .def("power_button", &Vm::power_button)
      .def("state", &Vm::state)
      .def("exit_reason", &Vm::exit_reason)
      .def("exit_message", &Vm::exit_message)
      .def("control_socket_path", &Vm::control_socket_path)
      .def("write_input", &Vm::write_input)
      .def("vsock_cid", &Vm::vsock_cid)
      .def("vsock_socket_path", &Vm::vsock_socket_path)
      .def("output", &Vm::output)
      .def("log", &Vm::log)
      .def("close", &Vm::close);

  m.def("control_request", &control_request, py::arg("socket"), py::arg("request"), py::arg("timeout"));
  m.def("version", [] { return std::string(crosvm_version()); });
  m.def("abi_version", [] { return crosvm_abi_version(); });
  m.def(
      "serve_device",
      [](const std::string& kind, const std::string& options, const std::string& socket) {
        check_unlocked([&] { return crosvm_device_serve(kind.c_str(), options.c_str(), socket.c_str()); });
      },
      py::arg("kind"), py::arg("options"), py::arg("socket"));
  m.def(
      "create_qcow2",
      [](const std::string& path, uint64_t size, const std::string& backing_file) {
        check_unlocked([&] {
          return crosvm_create_qcow2(path.c_str(), size, backing_file.empty() ? nullptr : backing_file.c_str());
        });
      },
      py::arg("path"), py::arg("size"), py::arg("backing_file"));
  m.def("device_kinds", [] {
    py::dict kinds;
    for (size_t i = 0; const char* kind = crosvm_device_kind_name(i); ++i) kinds[kind] = crosvm_device_kind_help(kind);
    return kinds;
  });
}
