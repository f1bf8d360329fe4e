// A virtual machine: the KVM objects, guest memory, devices on their buses,
// the vCPU threads and the event loop, with its lifecycle
// (created -> running <-> paused -> stopped).
//
// Threads: one per vCPU runs KVM_RUN and handles port/MMIO exits for the
// devices that live on the buses; everything else runs on the event loop.
// The first reason to stop (guest power-off, reset, crash, a host stop)
// wins; every vCPU is kicked out of KVM_RUN, and once the last one has left,
// the loop finishes device work and the VM is stopped.
#pragma once

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "arch/x86_64/acpi/tables.h"
#include "arch/x86_64/layout.h"
#include "base/log.h"
#include "base/result.h"
#include "devices/bus.h"
#include "devices/irq.h"
#include "devices/legacy/serial.h"
#include "devices/power_events.h"
#include "kvm/kvm.h"
#include "memory/guest_memory.h"
#include "vm/event_loop.h"
#include "vm/exit_reason.h"
#include "vm/serial_input.h"
#include "vm/vm_config.h"

namespace crosvm {

enum class VmState { kCreated, kRunning, kPaused, kStopping, kStopped };

class Vm final : public PowerEvents {
 public:
  // Builds the whole machine; nothing runs until start().
  static Result<std::unique_ptr<Vm>> create(VmConfig config);
  ~Vm() override;

  Result<void> start();
  // Waits until the VM has stopped (forever without a timeout) and joins its
  // threads. Fails with kTimeout, or kState when called from a VM thread.
  Result<ExitReason> wait(std::optional<std::chrono::milliseconds> timeout);
  // Stops the VM in order and waits for it.
  Result<ExitReason> stop();
  // Takes every vCPU out of KVM_RUN and holds it; resume() lets them go.
  Result<void> pause();
  Result<void> resume();

  VmState state() const;
  ExitReason exit_reason() const;
  std::string exit_message() const;

  // Queues host input for serial port `number` (1..4); returns bytes taken.
  Result<size_t> write_serial_input(uint32_t number, std::span<const uint8_t> bytes);

  void request_power_off(const std::string& source) override;
  void request_reset(const std::string& source) override;
  void report_panic(const std::string& source) override;
  // Ends the VM with `reason` unless it is already ending.
  void request_exit(ExitReason reason, const std::string& message);

  const GuestMemory& memory() const { return memory_; }
  const Bus& pio_bus() const { return pio_bus_; }
  const Bus& mmio_bus() const { return mmio_bus_; }
  const Logger& logger() const { return logger_; }
  uint32_t vcpu_count() const { return static_cast<uint32_t>(vcpus_.size()); }
  // True on one of this VM's vCPU or event-loop threads (inside a callback).
  bool is_own_thread() const;

 private:
  struct Machine {
    kvm::Kvm kvm;
    kvm::VmFd vm;
    GuestMemory memory;
    x86_64::MemoryLayout layout;
    std::vector<kvm::VcpuFd> vcpus;
  };
  Vm(VmConfig config, Machine machine);

  // Building (vm_builder.cpp).
  Result<void> attach_legacy_devices();
  Result<void> attach_serial(const SerialConfig& serial);
  Result<std::shared_ptr<EventFdIrqLine>> create_irq_line(uint32_t gsi);
  Result<void> load_guest(std::span<const uint8_t> kernel, std::span<const uint8_t> initrd);
  acpi::MachineDescription describe_machine() const;

  // Running (vcpu_loop.cpp).
  void run_vcpu(size_t index);
  bool handle_exit(const kvm::VcpuFd& vcpu);
  void report_crash(const kvm::VcpuFd& vcpu, const std::string& what);
  void park_vcpu();
  void vcpu_finished();
  void finish_on_loop();
  void kick_all_vcpus();
  void join_threads();

  VmConfig config_;
  Logger logger_;
  kvm::Kvm kvm_;
  kvm::VmFd vm_fd_;
  GuestMemory memory_;
  x86_64::MemoryLayout layout_;
  std::vector<kvm::VcpuFd> vcpus_;

  Bus pio_bus_{"port I/O"};
  Bus mmio_bus_{"MMIO"};
  std::vector<std::shared_ptr<IrqLine>> irq_lines_;
  std::array<std::shared_ptr<Serial>, 4> serials_;

  // The loop outlives what runs on it: declared before, destroyed after.
  EventLoop loop_;
  std::vector<std::unique_ptr<SerialInput>> serial_inputs_;

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  VmState state_ = VmState::kCreated;
  ExitReason exit_reason_ = ExitReason::kNone;
  std::string exit_message_;
  std::atomic<bool> stop_requested_{false};
  std::atomic<bool> pause_requested_{false};
  size_t running_vcpus_ = 0;
  size_t parked_vcpus_ = 0;

  mutable std::mutex threads_mutex_;  // guards kicking against joining
  std::mutex join_mutex_;             // serialises joining
  bool threads_joined_ = false;
  std::vector<std::thread> vcpu_threads_;
};

}  // namespace crosvm
