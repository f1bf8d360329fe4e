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
#include <deque>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "arch/x86_64/acpi/tables.h"
#include "arch/x86_64/layout.h"
#include "base/image_source.h"
#include "base/log.h"
#include "base/result.h"
#include "base/thread.h"
#include "control/server.h"
#include "devices/bus.h"
#include "devices/io_events.h"
#include "devices/irq.h"
#include "devices/legacy/power_management.h"
#include "devices/legacy/serial.h"
#include "devices/pci/pci_root.h"
#include "devices/power_events.h"
#include "devices/virtio/block.h"
#include "devices/virtio/console.h"
#include "devices/virtio/virtio_pci.h"
#include "kvm/kvm.h"
#include "memory/guest_memory.h"
#include "base/event_loop.h"
#include "vm/host_output.h"
#include "vm/exit_reason.h"
#include "vm/fd_watch.h"
#include "vm/irq_routing.h"
#include "vm/serial_input.h"
#include "vm/vm_config.h"
#include "sandbox/companion.h"
#include "sandbox/device_process.h"
#include "sandbox/stream_pipes.h"

namespace crosvm {

enum class VmState { kCreated, kRunning, kPaused, kStopping, kStopped };

class Vm final : public PowerEvents {
 public:
  // Builds the whole machine; nothing runs until start().
  static Result<std::unique_ptr<Vm>> create(VmConfig config);
  ~Vm() override;

  Result<void> start();
  // start() and wait() in one, with the VM's event loop served on the
  // calling thread until the VM stops rather than on a thread of its own
  // (its handlers, the embedder's callbacks among them, run there).
  Result<ExitReason> run();
  // Waits until the VM has stopped (forever without a timeout) and joins its
  // threads. Fails with kTimeout, or kState when called from a VM thread.
  Result<ExitReason> wait(std::optional<std::chrono::milliseconds> timeout);
  // Stops the VM in order and waits for it.
  Result<ExitReason> stop();
  // Takes every vCPU out of KVM_RUN and holds it; resume() lets them go.
  Result<void> pause();
  // The same without waiting: `done` runs (on any thread, without locks
  // held) once every vCPU is held, or with the reason it cannot be.
  void request_pause(std::function<void(Result<void>)> done);
  Result<void> resume();
  // Grows disk `index` (0 is vda) to `new_size` bytes; the guest is told.
  Result<void> resize_disk(uint32_t index, uint64_t new_size);
  // Presses the ACPI power button (crosvm's powerbtn, QEMU's
  // system_powerdown): a guest that listens shuts down in order. kState
  // once the VM is stopping.
  Result<void> press_power_button();
  // What the control socket's "status" reports.
  control::Status status() const;
  // The control socket's path ("" without one).
  std::string control_socket_path() const;
  // Watches the embedder's `fd` on the event loop (fd_watch.h): `callback`
  // runs there while the VM runs. kState once the VM has stopped.
  Result<void> watch_fd(int fd, uint32_t events, FdWatches::Callback callback);
  // The first vsock device's CID; 0 without one.
  uint64_t vsock_cid() const;
  // The first vsock device's socket= (a userspace vsock); "" otherwise.
  std::string vsock_socket_path() const;

  VmState state() const;
  ExitReason exit_reason() const;
  std::string exit_message() const;

  // Queues host input for serial port `number` (1..4) of a kind; returns
  // bytes taken.
  Result<size_t> write_serial_input(SerialHardware hardware, uint32_t number,
                                    std::span<const uint8_t> bytes);

  void request_power_off(const std::string& source) override;
  void request_reset(const std::string& source) override;
  void report_panic(const std::string& source) override;
  // Ends the VM with `reason` unless it is already ending (a VM that never
  // started is stopped at once). Returns without waiting.
  void request_exit(ExitReason reason, const std::string& message);

  const GuestMemory& memory() const { return memory_; }
  const Bus& pio_bus() const { return pio_bus_; }
  const Bus& mmio_bus() const { return mmio_bus_; }
  // The virtio-blk devices in the order the guest sees them (vda first).
  const std::vector<std::shared_ptr<virtio::Block>>& disks() const { return disks_; }
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
  Result<void> attach_pci_devices();
  Result<void> attach_virtio(std::shared_ptr<virtio::VirtioDevice> device);
  Result<pid_t> attach_jailed(const std::string& kind, const std::string& name, std::vector<std::string> arguments,
                              std::vector<std::pair<std::string, UniqueFd>> fds);
  Result<uint64_t> allocate_bar(uint64_t size);
  Result<std::shared_ptr<EventFdIrqLine>> create_irq_line(uint32_t gsi);
  // Where a port's output goes; `socket` is a type=unix-stream's
  // connection, which may be its input too.
  struct PortOutput {
    std::shared_ptr<OutputStream> stream;
    std::shared_ptr<UniqueFd> socket;
  };
  Result<PortOutput> port_output(const SerialConfig& config);
  // A UART's or debugcon's: the port's output, stamped per line when asked.
  Serial::OutputSink port_sink(const SerialConfig& config, const PortOutput& output);
  Result<void> attach_debugcons();
  Result<void> attach_input(const SerialConfig& config, const PortOutput& output, std::shared_ptr<HostInput> device);
  Result<void> load_guest(const ImageSource& kernel, const ImageSource* initrd);
  acpi::MachineDescription describe_machine() const;

  // Running (vcpu_loop.cpp).
  void run_vcpu(size_t index);
  void vcpu_loop(size_t index);
  // An exception reached the top of a thread of the VM's: the VM ends with
  // CROSVM_EXIT_ERROR and the reason.
  void fail_internally(const std::string& where, std::string_view what) noexcept;
  bool handle_exit(const kvm::VcpuFd& vcpu);
  void report_crash(const kvm::VcpuFd& vcpu, const std::string& what);
  void park_vcpu();
  void vcpu_finished();
  void finish_on_loop();
  // The VM has just become stopped: its control socket goes and the
  // embedder is told. Called once, without mutex_ held.
  void announce_stopped();
  void kick_all_vcpus();
  Result<void> attach_control_socket();
  using PauseWaiter = std::function<void(Result<void>)>;
  // Hands the pending pause waiters `result`; call without mutex_ held.
  static void settle_pause(std::vector<PauseWaiter> waiters, const Result<void>& result);
  // start() with the loop on a thread of its own or (run()) the caller's.
  Result<void> start_threads(bool loop_thread);
  void join_threads();

  // The executor outlives everything that posts to it: declared first,
  // destroyed last.
  EventLoop loop_;
  VmConfig config_;
  Logger logger_;
  kvm::Kvm kvm_;
  kvm::VmFd vm_fd_;
  GuestMemory memory_;
  x86_64::MemoryLayout layout_;
  std::vector<kvm::VcpuFd> vcpus_;

  // Devices reach KVM through these, so they are declared (and outlive
  // the devices) before the buses.
  class KvmIoEvents final : public IoEventRegistry {
   public:
    explicit KvmIoEvents(const kvm::VmFd& vm) : vm_(vm) {}
    Result<void> register_mmio(const EventFd& event, uint64_t address, uint32_t length) override {
      return vm_.register_ioeventfd(event.fd(), address, length, false);
    }
    Result<void> unregister_mmio(const EventFd& event, uint64_t address, uint32_t length) override {
      return vm_.unregister_ioeventfd(event.fd(), address, length, false);
    }

   private:
    const kvm::VmFd& vm_;
  };
  KvmIoEvents io_events_{vm_fd_};
  std::unique_ptr<IrqRouting> irq_routing_;
  std::shared_ptr<PowerManagement> power_management_;  // also on the port bus

  // The jailed devices' processes: destroyed (killed and reaped) after
  // their frontends (held by the PCI root and the buses), which close the sockets first.
  std::string sandbox_helper_;
  std::vector<std::unique_ptr<sandbox::DeviceProcess>> device_processes_;
  // Host programs devices rely on (passt): they outlive the devices.
  std::vector<std::unique_ptr<HostService>> companions_;

  Bus pio_bus_{"port I/O"};
  Bus mmio_bus_{"MMIO"};
  std::vector<std::shared_ptr<IrqLine>> irq_lines_;
  std::array<std::shared_ptr<Serial>, 4> serials_;
  std::shared_ptr<pci::PciRoot> pci_root_;
  std::vector<std::shared_ptr<virtio::VirtioPciDevice>> virtio_devices_;
  std::vector<std::shared_ptr<virtio::Block>> disks_;
  struct JailedDisk {
    std::atomic<uint64_t> size{0};  // what status reports; a resize changes it
    bool read_only = false;
    std::string format;  // "raw" or "qcow2"
    sandbox::DeviceProcess* process = nullptr;  // in device_processes_
  };
  std::deque<JailedDisk> jailed_disks_;  // with the sandbox, instead of disks_
  std::vector<std::string> unit_status_;  // the registry's devices' status lines, in order
  // Each virtio console's input: the device itself, or the pipe to its
  // jailed process.
  std::array<std::shared_ptr<HostInput>, 4> console_inputs_;
  std::array<pid_t, 4> console_pids_{};  // a jailed console's process, or 0
  std::vector<std::unique_ptr<sandbox::OutputPump>> output_pumps_;  // jailed consoles' output
  std::vector<std::shared_ptr<sandbox::PipeInput>> pipe_inputs_;    // and input
  uint64_t next_bar_address_ = x86_64::kPciMmioStart;

  std::vector<std::unique_ptr<SerialInput>> serial_inputs_;
  FdWatches fd_watches_{loop_};  // the embedder's, ended with the serial inputs
  // Stdout and file outputs of ports and consoles, flushed when the VM stops.
  std::vector<std::shared_ptr<HostOutput>> host_outputs_;

  // The control socket talks to the VM through this narrow view.
  class ControlView final : public control::ControlTarget {
   public:
    explicit ControlView(Vm& vm) : vm_(vm) {}
    void stop() override { vm_.request_exit(ExitReason::kStopped, "stopped through the control socket"); }
    void suspend(std::function<void(Result<void>)> done) override { vm_.request_pause(std::move(done)); }
    Result<void> resume() override { return vm_.resume(); }
    control::Status status() const override { return vm_.status(); }
    Result<void> resize_disk(uint32_t index, uint64_t new_size) override {
      return vm_.resize_disk(index, new_size);
    }
    Result<void> press_power_button() override { return vm_.press_power_button(); }

   private:
    Vm& vm_;
  };
  ControlView control_view_{*this};
  std::unique_ptr<control::ControlServer> control_server_;

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  VmState state_ = VmState::kCreated;
  ExitReason exit_reason_ = ExitReason::kNone;
  std::string exit_message_;
  std::atomic<bool> stop_requested_{false};
  std::atomic<bool> pause_requested_{false};
  size_t running_vcpus_ = 0;
  size_t parked_vcpus_ = 0;
  std::vector<PauseWaiter> pause_waiters_;
  uint64_t resumes_ = 0;  // under mutex_: a pause() under way sees a resume() it lost to

  mutable std::mutex threads_mutex_;  // guards kicking against joining
  std::mutex join_mutex_;             // serialises joining
  bool threads_joined_ = false;
  std::vector<Thread> vcpu_threads_;
};

}  // namespace crosvm
