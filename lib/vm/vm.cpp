#include "vm/vm.h"

#include <pthread.h>

#include <fmt/format.h>

#include "base/file_io.h"
#include "devices/virtio/vsock/vsock.h"
#include "vm/vcpu_kick.h"

namespace crosvm {

Vm::Vm(VmConfig config, Machine machine)
    : config_(std::move(config)),
      logger_(config_.logger),
      kvm_(std::move(machine.kvm)),
      vm_fd_(std::move(machine.vm)),
      memory_(std::move(machine.memory)),
      layout_(std::move(machine.layout)),
      vcpus_(std::move(machine.vcpus)) {}

Vm::~Vm() {
  if (is_own_thread()) {
    // Joining our own thread is impossible; the C ABI refuses this earlier.
    logger_.error("a VM was destroyed from one of its own threads");
    std::terminate();
  }
  {
    std::lock_guard lock(mutex_);
    if (state_ == VmState::kCreated) state_ = VmState::kStopped;
  }
  if (state() != VmState::kStopped) {
    request_exit(ExitReason::kStopped, "the VM was destroyed");
    (void)wait(std::nullopt);
  }
  join_threads();
  loop_.stop();
  for (auto& input : serial_inputs_) input->shutdown();
  fd_watches_.shutdown();
}

Result<void> Vm::start() { return start_threads(true); }

Result<ExitReason> Vm::run() {
  if (is_own_thread()) {
    return make_error(ErrorCode::kState, "cannot run a VM from one of its own threads (a callback)");
  }
  CROSVM_TRY(start_threads(false));
  {
    // As on the library's own threads: the loop's writes to a pipe whose
    // reader left are errors, not the end of the embedder's process.
    SigpipeBlocked no_sigpipe;
    loop_.run_here_until([this] { return state() == VmState::kStopped; });
  }
  return wait(std::nullopt);
}

Result<void> Vm::start_threads(bool loop_thread) {
  CROSVM_TRY(install_kick_handler());
  loop_.set_failure_handler([this](std::string_view what) { fail_internally("the event loop", what); });
  bool failed = false;
  {
    std::lock_guard lock(mutex_);
    if (state_ != VmState::kCreated) {
      return make_error(ErrorCode::kState, "the VM was already started");
    }
    if (loop_thread) CROSVM_TRY(loop_.start_threads(1));
    for (auto& input : serial_inputs_) input->start();
    if (control_server_) control_server_->start();

    running_vcpus_ = vcpus_.size();
    state_ = VmState::kRunning;
    std::lock_guard threads_lock(threads_mutex_);
    for (size_t i = 0; i < vcpus_.size() && !failed; ++i) {
      // run_vcpu() contains what its loop throws; this handler is for
      // anything after that.
      auto thread = Thread::start(fmt::format("crosvm_vcpu{}", i), [this, i] { run_vcpu(i); },
                                  [this, i](std::string_view what) {
                                    fail_internally(fmt::format("vCPU {}", i), what);
                                  });
      if (thread) {
        vcpu_threads_.push_back(std::move(thread).value());
      } else {
        // The vCPUs that did start are told to stop; the missing ones count as done.
        running_vcpus_ -= vcpus_.size() - i;
        exit_reason_ = ExitReason::kError;
        exit_message_ = fmt::format("vCPU {}: {}", i, thread.error().message);
        stop_requested_ = true;
        state_ = VmState::kStopping;
        if (running_vcpus_ == 0) loop_.post([this] { finish_on_loop(); });
        failed = true;
      }
    }
  }
  if (failed) {
    logger_.error("{}", exit_message());
    kick_all_vcpus();
  }
  return {};
}

Result<ExitReason> Vm::wait(std::optional<std::chrono::milliseconds> timeout) {
  if (is_own_thread()) {
    return make_error(ErrorCode::kState, "cannot wait for a VM from one of its own threads (a callback)");
  }
  {
    std::unique_lock lock(mutex_);
    if (state_ == VmState::kCreated) return make_error(ErrorCode::kState, "the VM was not started");
    auto stopped = [this] { return state_ == VmState::kStopped; };
    if (timeout) {
      if (!changed_.wait_for(lock, *timeout, stopped)) {
        return make_error(ErrorCode::kTimeout, "the VM is still running after {} ms", timeout->count());
      }
    } else {
      changed_.wait(lock, stopped);
    }
  }
  join_threads();
  return exit_reason();
}

Result<ExitReason> Vm::stop() {
  request_exit(ExitReason::kStopped, "stopped by the host");
  return wait(std::nullopt);
}

Result<void> Vm::pause() {
  if (is_own_thread()) return make_error(ErrorCode::kState, "cannot pause a VM from its own thread");
  std::unique_lock lock(mutex_);
  if (state_ == VmState::kPaused) return {};
  if (state_ != VmState::kRunning) {
    return make_error(ErrorCode::kState, "cannot pause a VM that is not running");
  }
  pause_requested_ = true;
  const uint64_t resumes = resumes_;
  lock.unlock();
  changed_.notify_all();  // vCPUs still parked from an earlier pause count at once
  kick_all_vcpus();
  lock.lock();
  // The last vCPU to park makes the VM paused (park_vcpu). A resume() from
  // another thread (or the control socket) meanwhile calls the pause off.
  changed_.wait(lock, [&] { return state_ == VmState::kPaused || stop_requested_ || resumes_ != resumes; });
  if (state_ == VmState::kPaused) return {};
  if (stop_requested_) return make_error(ErrorCode::kState, "the VM stopped while pausing");
  return make_error(ErrorCode::kState, "the VM was resumed before it was paused");
}

void Vm::request_pause(std::function<void(Result<void>)> done) {
  std::unique_lock lock(mutex_);
  if (state_ == VmState::kPaused) {
    lock.unlock();
    done({});
    return;
  }
  if (state_ != VmState::kRunning) {
    lock.unlock();
    done(make_error(ErrorCode::kState, "cannot suspend a VM that is not running"));
    return;
  }
  pause_waiters_.push_back(std::move(done));
  pause_requested_ = true;
  lock.unlock();
  changed_.notify_all();
  kick_all_vcpus();
}

void Vm::settle_pause(std::vector<PauseWaiter> waiters, const Result<void>& result) {
  for (PauseWaiter& waiter : waiters) waiter(result);
}

Result<void> Vm::resume() {
  std::vector<PauseWaiter> cancelled;
  {
    std::lock_guard lock(mutex_);
    if (state_ == VmState::kRunning) {
      cancelled.swap(pause_waiters_);  // a pause still under way is called off
    } else if (state_ != VmState::kPaused) {
      return make_error(ErrorCode::kState, "cannot resume a VM that is not paused");
    }
    pause_requested_ = false;
    state_ = VmState::kRunning;
    ++resumes_;
  }
  changed_.notify_all();
  settle_pause(std::move(cancelled), make_error(ErrorCode::kState, "resumed before it was suspended"));
  return {};
}

Result<void> Vm::press_power_button() {
  {
    std::lock_guard lock(mutex_);
    if (state_ == VmState::kStopping || state_ == VmState::kStopped) {
      return make_error(ErrorCode::kState, "the VM is stopping: nobody is there to press the power button for");
    }
  }
  if (power_management_->press_power_button()) {
    logger_.info("power button pressed");
  } else {
    // The press is kept (the guest sees it if it enables the button later).
    logger_.warn("power button pressed, but the guest does not listen to it (yet): "
                 "no ACPI button driver (Linux: CONFIG_ACPI_BUTTON, the 'button' module)?");
  }
  return {};
}

Result<void> Vm::resize_disk(uint32_t index, uint64_t new_size) {
  if (index < jailed_disks_.size()) {
    // The device process resizes the image (the VMM checks nothing it
    // would not: the disk's own rules answer) and tells the guest.
    JailedDisk& disk = jailed_disks_[index];
    CROSVM_TRY(disk.process->request(sandbox::ControlRequest::kResize, new_size));
    disk.size = new_size;
    return {};
  }
  if (index >= disks_.size()) {
    return make_error(ErrorCode::kInvalidArgument, "the VM has {} disk(s); there is no disk {}",
                      disks_.size(), index);
  }
  return disks_[index]->resize(new_size);
}

control::Status Vm::status() const {
  static constexpr const char* kStateNames[] = {"created", "running", "paused", "stopping", "stopped"};
  control::Status status;
  status.state = kStateNames[static_cast<size_t>(state())];
  status.vcpus = vcpu_count();
  status.memory_mib = config_.memory_mib;
  const std::vector<DiskConfig> disks = config_.ordered_disks();
  for (size_t i = 0; i < disks_.size() && i < disks.size(); ++i) {
    status.disks.push_back({static_cast<uint32_t>(i), disks[i].path, disks_[i]->size(),
                            disks_[i]->read_only()});
  }
  for (const SerialConfig& serial : config_.serials) {
    std::string line;
    switch (serial.hardware) {
      case SerialHardware::kUart:
        line = fmt::format("serial{} (8250 UART, ttyS{})", serial.number, serial.number - 1);
        break;
      case SerialHardware::kVirtioConsole:
        line = fmt::format("console{} (virtio-console, hvc{}{})", serial.number, serial.number - 1,
                           console_pids_[serial.number - 1] != 0
                               ? fmt::format(", jailed: pid {}", console_pids_[serial.number - 1])
                               : "");
        break;
      case SerialHardware::kDebugcon:
        line = fmt::format("debugcon{} (Bochs debug port {:#x})", serial.number, serial.debugcon_port);
        break;
    }
    if (!serial.name.empty()) line += fmt::format(" \"{}\"", serial.name);
    status.devices.push_back(std::move(line));
  }

  for (size_t i = 0; i < jailed_disks_.size() && i < disks.size(); ++i) {
    status.disks.push_back({static_cast<uint32_t>(i), disks[i].path, jailed_disks_[i].size.load(),
                            jailed_disks_[i].read_only});
  }
  for (size_t i = 0; i < disks_.size(); ++i) {
    status.devices.push_back(fmt::format("disk{} (virtio-blk, vd{}, {})", i, static_cast<char>('a' + i),
                                         disks_[i]->disk_format()));
  }
  for (size_t i = 0; i < jailed_disks_.size(); ++i) {
    status.devices.push_back(fmt::format("disk{} (virtio-blk, vd{}, {}, jailed: pid {})", i,
                                         static_cast<char>('a' + i), jailed_disks_[i].format,
                                         jailed_disks_[i].process->pid()));
  }
  status.devices.insert(status.devices.end(), unit_status_.begin(), unit_status_.end());
  // The vhost-user devices were attached last, in order.
  const size_t first_vhost_user = virtio_devices_.size() - std::min(virtio_devices_.size(), config_.vhost_user.size());
  for (size_t i = 0; i < config_.vhost_user.size() && first_vhost_user + i < virtio_devices_.size(); ++i) {
    const uint8_t device_status = virtio_devices_[first_vhost_user + i]->device_status();
    const char* state = (device_status & virtio::kStatusNeedsReset) != 0 ? "needs reset"
                        : (device_status & virtio::kStatusDriverOk) != 0 ? "running"
                                                                          : "not started";
    status.devices.push_back(fmt::format("vhost-user{} ({}, {}): {}", i, config_.vhost_user[i].type,
                                         config_.vhost_user[i].socket, state));
  }
  if (control_server_) status.devices.push_back("control socket " + control_server_->path());
  return status;
}

uint64_t Vm::vsock_cid() const {
  for (const DeviceOptions& device : config_.devices) {
    if (device.kind() != "vsock") continue;
    auto cid = virtio::vsock_guest_cid(device);  // checked when the device was added
    return cid ? *cid : 0;
  }
  return 0;
}

std::string Vm::vsock_socket_path() const {
  for (const DeviceOptions& device : config_.devices) {
    if (device.kind() == "vsock") return device.text("socket").value_or("");
  }
  return "";
}

Result<void> Vm::watch_fd(int fd, uint32_t events, FdWatches::Callback callback) {
  // Refused here once stopped; a stop between this check and add() is
  // caught there (finish_on_loop() shuts the watches down first).
  if (state() == VmState::kStopped) {
    return make_error(ErrorCode::kState, "the VM has stopped: nothing is watched any more");
  }
  return fd_watches_.add(fd, events, std::move(callback));
}

std::string Vm::control_socket_path() const { return control_server_ ? control_server_->path() : ""; }

VmState Vm::state() const {
  std::lock_guard lock(mutex_);
  return state_;
}

ExitReason Vm::exit_reason() const {
  std::lock_guard lock(mutex_);
  return exit_reason_;
}

std::string Vm::exit_message() const {
  std::lock_guard lock(mutex_);
  return exit_message_;
}

Result<size_t> Vm::write_serial_input(SerialHardware hardware, uint32_t number,
                                      std::span<const uint8_t> bytes) {
  if (hardware == SerialHardware::kDebugcon) {
    return make_error(ErrorCode::kInvalidArgument, "a debugcon has no input");
  }
  const bool uart = hardware == SerialHardware::kUart;
  HostInput* target = nullptr;
  if (number >= 1 && number <= serials_.size()) {
    target = uart ? static_cast<HostInput*>(serials_[number - 1].get())
                  : console_inputs_[number - 1].get();
  }
  if (target == nullptr) {
    return make_error(ErrorCode::kInvalidArgument, "the VM has no {} {}",
                      uart ? "serial port" : "virtio console", number);
  }
  return target->queue_input(bytes);
}

void Vm::request_power_off(const std::string& source) {
  request_exit(ExitReason::kPowerOff, fmt::format("the guest powered off ({})", source));
}

void Vm::request_reset(const std::string& source) {
  request_exit(ExitReason::kReset, fmt::format("the guest reset ({})", source));
}

void Vm::report_panic(const std::string& source) {
  request_exit(ExitReason::kPanic, fmt::format("the guest kernel panicked ({})", source));
}

void Vm::request_exit(ExitReason reason, const std::string& message) {
  std::vector<PauseWaiter> waiters;
  bool never_started = false;
  {
    std::lock_guard lock(mutex_);
    if (exit_reason_ != ExitReason::kNone) return;
    exit_reason_ = reason;
    exit_message_ = message;
    stop_requested_ = true;
    if (state_ == VmState::kRunning || state_ == VmState::kPaused) state_ = VmState::kStopping;
    never_started = state_ == VmState::kCreated;
    if (never_started) state_ = VmState::kStopped;  // no thread to finish
    waiters.swap(pause_waiters_);
  }
  if (never_started) announce_stopped();
  changed_.notify_all();  // parked vCPUs and pause() wake up to leave
  settle_pause(std::move(waiters), make_error(ErrorCode::kState, "the VM is stopping"));
  if (reason == ExitReason::kCrash || reason == ExitReason::kError) {
    logger_.error("{}", message);
  } else {
    logger_.info("{}", message);
  }
  kick_all_vcpus();
}

void Vm::announce_stopped() {
  if (control_server_) control_server_->shutdown();  // the socket file goes with the VM
  if (!config_.on_stopped) return;
  // The embedder's callback: whatever it throws stays here, and whoever
  // waits for the VM is still woken.
  try {
    config_.on_stopped(exit_reason());
  } catch (const std::exception& error) {
    logger_.error("the VM's exit callback threw: {}", error.what());
  } catch (...) {
    logger_.error("the VM's exit callback threw");
  }
}

void Vm::kick_all_vcpus() {
  std::lock_guard lock(threads_mutex_);
  if (threads_joined_) return;
  for (size_t i = 0; i < vcpu_threads_.size(); ++i) {
    __atomic_store_n(&vcpus_[i].run_data()->immediate_exit, 1, __ATOMIC_SEQ_CST);
    // A vCPU asking for this itself (a guest power-off) is not in KVM_RUN:
    // immediate_exit is enough, and a signal to itself is two syscalls and
    // a handler for nothing.
    if (!vcpu_threads_[i].is_current()) kick_thread(vcpu_threads_[i].native_handle());
  }
}

void Vm::join_threads() {
  // Held throughout: a second caller (two threads waiting at once) returns
  // only when the joining is complete, never while it is under way.
  std::lock_guard join_lock(join_mutex_);
  {
    std::lock_guard lock(threads_mutex_);
    if (threads_joined_) return;
    threads_joined_ = true;  // no kick from here on: every vCPU has left
  }
  for (Thread& thread : vcpu_threads_) thread.join();
  loop_.stop();
}

bool Vm::is_own_thread() const {
  if (loop_.on_loop_thread()) return true;
  std::lock_guard lock(threads_mutex_);
  for (const Thread& thread : vcpu_threads_) {
    if (thread.is_current()) return true;
  }
  return false;
}

}  // namespace crosvm
