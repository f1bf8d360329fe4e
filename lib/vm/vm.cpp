#include "vm/vm.h"

#include <pthread.h>

#include <fmt/format.h>

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
}

Result<void> Vm::start() {
  CROSVM_TRY(install_kick_handler());
  bool failed = false;
  {
    std::lock_guard lock(mutex_);
    if (state_ != VmState::kCreated) {
      return make_error(ErrorCode::kState, "the VM was already started");
    }
    loop_.start_threads(1);
    for (auto& input : serial_inputs_) input->start();

    running_vcpus_ = vcpus_.size();
    state_ = VmState::kRunning;
    std::lock_guard threads_lock(threads_mutex_);
    for (size_t i = 0; i < vcpus_.size() && !failed; ++i) {
      try {
        vcpu_threads_.emplace_back([this, i] { run_vcpu(i); });
        ::pthread_setname_np(vcpu_threads_.back().native_handle(),
                             fmt::format("crosvm_vcpu{}", i).c_str());
      } catch (const std::system_error& error) {
        // The vCPUs that did start are told to stop; the missing ones count as done.
        running_vcpus_ -= vcpus_.size() - i;
        exit_reason_ = ExitReason::kError;
        exit_message_ = fmt::format("cannot start vCPU thread {}: {}", i, error.what());
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
  {
    std::lock_guard lock(mutex_);
    if (state_ == VmState::kCreated) {
      state_ = VmState::kStopped;
      exit_reason_ = ExitReason::kStopped;
      exit_message_ = "stopped before it started";
      return exit_reason_;
    }
  }
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
  lock.unlock();
  kick_all_vcpus();
  lock.lock();
  changed_.wait(lock, [this] { return parked_vcpus_ == running_vcpus_ || stop_requested_; });
  if (stop_requested_) return make_error(ErrorCode::kState, "the VM stopped while pausing");
  state_ = VmState::kPaused;
  changed_.notify_all();
  return {};
}

Result<void> Vm::resume() {
  std::lock_guard lock(mutex_);
  if (state_ == VmState::kRunning) return {};
  if (state_ != VmState::kPaused) {
    return make_error(ErrorCode::kState, "cannot resume a VM that is not paused");
  }
  pause_requested_ = false;
  state_ = VmState::kRunning;
  changed_.notify_all();
  return {};
}

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
  const bool uart = hardware == SerialHardware::kUart;
  HostInput* target = nullptr;
  if (number >= 1 && number <= serials_.size()) {
    target = uart ? static_cast<HostInput*>(serials_[number - 1].get())
                  : static_cast<HostInput*>(consoles_[number - 1].get());
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
  {
    std::lock_guard lock(mutex_);
    if (exit_reason_ != ExitReason::kNone) return;
    exit_reason_ = reason;
    exit_message_ = message;
    stop_requested_ = true;
    if (state_ == VmState::kRunning || state_ == VmState::kPaused) state_ = VmState::kStopping;
  }
  changed_.notify_all();  // parked vCPUs and pause() wake up to leave
  if (reason == ExitReason::kCrash || reason == ExitReason::kError) {
    logger_.error("{}", message);
  } else {
    logger_.info("{}", message);
  }
  kick_all_vcpus();
}

void Vm::kick_all_vcpus() {
  std::lock_guard lock(threads_mutex_);
  if (threads_joined_) return;
  for (size_t i = 0; i < vcpu_threads_.size(); ++i) {
    __atomic_store_n(&vcpus_[i].run_data()->immediate_exit, 1, __ATOMIC_SEQ_CST);
    kick_thread(vcpu_threads_[i].native_handle());
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
  for (std::thread& thread : vcpu_threads_) {
    if (thread.joinable()) thread.join();
  }
  loop_.stop();
}

bool Vm::is_own_thread() const {
  if (loop_.on_loop_thread()) return true;
  std::lock_guard lock(threads_mutex_);
  for (const std::thread& thread : vcpu_threads_) {
    if (thread.get_id() == std::this_thread::get_id()) return true;
  }
  return false;
}

}  // namespace crosvm
