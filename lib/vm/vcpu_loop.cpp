// The vCPU threads: KVM_RUN, port and MMIO exits dispatched to the buses,
// and the exits that end the VM.
#include <fmt/format.h>

#include "vm/vcpu_kick.h"
#include "vm/vm.h"

namespace crosvm {

void Vm::run_vcpu(size_t index) {
  unblock_kick_signal();
  // Nothing thrown on this thread (an embedder's callback, an allocation)
  // may end the process: it ends the VM, with the reason.
  try {
    vcpu_loop(index);
  } catch (const std::exception& error) {
    fail_internally(fmt::format("vCPU {}", index), error.what());
  } catch (...) {
    fail_internally(fmt::format("vCPU {}", index), "an exception of unknown type");
  }
  vcpu_finished();
}

void Vm::fail_internally(const std::string& where, std::string_view what) noexcept {
  try {
    request_exit(ExitReason::kError, fmt::format("{}: internal error: {}", where, what));
  } catch (...) {
    // Out of memory even for the message: stop without one.
    stop_requested_ = true;
    kick_all_vcpus();
  }
}

void Vm::vcpu_loop(size_t index) {
  const kvm::VcpuFd& vcpu = vcpus_[index];
  kvm_run* run = vcpu.run_data();
  while (true) {
    // Clear first, then look at the requests: a kick that lands after this
    // point finds immediate_exit set, and KVM_RUN returns at once.
    __atomic_store_n(&run->immediate_exit, 0, __ATOMIC_SEQ_CST);
    if (stop_requested_.load()) break;
    if (pause_requested_.load()) {
      park_vcpu();
      continue;
    }
    Result<kvm::VcpuFd::RunStatus> status = vcpu.run();
    if (!status) {
      request_exit(ExitReason::kError, status.error().message);
      break;
    }
    if (*status == kvm::VcpuFd::RunStatus::kInterrupted) continue;
    if (!handle_exit(vcpu)) break;
  }
}

bool Vm::handle_exit(const kvm::VcpuFd& vcpu) {
  kvm_run* run = vcpu.run_data();
  switch (run->exit_reason) {
    case KVM_EXIT_IO: {
      uint8_t* data = reinterpret_cast<uint8_t*>(run) + run->io.data_offset;
      for (uint32_t i = 0; i < run->io.count; ++i, data += run->io.size) {
        std::span<uint8_t> bytes(data, run->io.size);
        if (run->io.direction == KVM_EXIT_IO_OUT) {
          pio_bus_.write(run->io.port, bytes);
        } else {
          pio_bus_.read(run->io.port, bytes);
        }
      }
      return true;
    }
    case KVM_EXIT_MMIO: {
      std::span<uint8_t> bytes(run->mmio.data, std::min<uint32_t>(run->mmio.len, sizeof(run->mmio.data)));
      if (run->mmio.is_write != 0) {
        mmio_bus_.write(run->mmio.phys_addr, bytes);
      } else {
        mmio_bus_.read(run->mmio.phys_addr, bytes);
      }
      return true;
    }
    case KVM_EXIT_SHUTDOWN:
      report_crash(vcpu, "triple fault");
      return false;
    case KVM_EXIT_SYSTEM_EVENT:
      switch (run->system_event.type) {
        case KVM_SYSTEM_EVENT_SHUTDOWN: request_power_off("system event"); break;
        case KVM_SYSTEM_EVENT_RESET: request_reset("system event"); break;
        default: report_crash(vcpu, fmt::format("system event {}", run->system_event.type)); break;
      }
      return false;
    case KVM_EXIT_INTERNAL_ERROR:
      report_crash(vcpu, run->internal.suberror == KVM_INTERNAL_ERROR_EMULATION
                             ? std::string("KVM could not emulate an instruction")
                             : fmt::format("KVM internal error {}", run->internal.suberror));
      return false;
    case KVM_EXIT_FAIL_ENTRY:
      report_crash(vcpu, fmt::format("VM entry failed (hardware reason {:#x})",
                                     run->fail_entry.hardware_entry_failure_reason));
      return false;
    case KVM_EXIT_HLT:  // only without an in-kernel irqchip
    case KVM_EXIT_INTR:
    case KVM_EXIT_IRQ_WINDOW_OPEN:
      return true;
    default:
      request_exit(ExitReason::kError, fmt::format("vCPU {}: unexpected KVM exit {}", vcpu.id(),
                                                   run->exit_reason));
      return false;
  }
}

void Vm::report_crash(const kvm::VcpuFd& vcpu, const std::string& what) {
  std::string message = fmt::format("vCPU {} crashed: {}", vcpu.id(), what);
  auto regs = vcpu.get_regs();
  auto sregs = vcpu.get_sregs();
  if (regs && sregs) {
    message += fmt::format(
        "\n  rip={:016x} rsp={:016x} rbp={:016x} rflags={:08x}"
        "\n  rax={:016x} rbx={:016x} rcx={:016x} rdx={:016x}"
        "\n  rsi={:016x} rdi={:016x} r8 ={:016x} r9 ={:016x}"
        "\n  cr0={:016x} cr2={:016x} cr3={:016x} cr4={:016x} efer={:x}"
        "\n  cs={:04x} ss={:04x} ds={:04x} gdt={:x}/{:x} idt={:x}/{:x}",
        regs->rip, regs->rsp, regs->rbp, regs->rflags, regs->rax, regs->rbx, regs->rcx, regs->rdx,
        regs->rsi, regs->rdi, regs->r8, regs->r9, sregs->cr0, sregs->cr2, sregs->cr3, sregs->cr4,
        sregs->efer, sregs->cs.selector, sregs->ss.selector, sregs->ds.selector, sregs->gdt.base,
        sregs->gdt.limit, sregs->idt.base, sregs->idt.limit);
  }
  request_exit(ExitReason::kCrash, message);
}

void Vm::park_vcpu() {
  std::unique_lock lock(mutex_);
  ++parked_vcpus_;
  // Looked at again after every change, not only on the way in: a resume
  // and the next pause can both happen before a parked vCPU wakes, and then
  // every vCPU is parked already when the new pause is asked for.
  while (pause_requested_ && !stop_requested_) {
    if (parked_vcpus_ == running_vcpus_ && state_ == VmState::kRunning) {
      // All are out: the VM is paused now.
      state_ = VmState::kPaused;
      std::vector<PauseWaiter> waiters;
      waiters.swap(pause_waiters_);
      lock.unlock();
      settle_pause(std::move(waiters), {});
      lock.lock();
      changed_.notify_all();
      continue;
    }
    changed_.wait(lock);
  }
  --parked_vcpus_;
}

void Vm::vcpu_finished() {
  bool last;
  {
    std::lock_guard lock(mutex_);
    last = --running_vcpus_ == 0;
  }
  changed_.notify_all();
  if (last) loop_.post([this] { finish_on_loop(); });
}

void Vm::finish_on_loop() {
  for (auto& input : serial_inputs_) input->shutdown();
  fd_watches_.shutdown();
  for (auto& input : pipe_inputs_) input->stop();
  // Before anyone hears that the VM stopped: its last words are written
  // (a jailed console's, from its pipe, first).
  for (auto& pump : output_pumps_) pump->drain_and_stop();
  for (auto& output : host_outputs_) output->flush();
  {
    std::lock_guard lock(mutex_);
    state_ = VmState::kStopped;
  }
  announce_stopped();  // before waking waiters: one of them may destroy the VM at once
  changed_.notify_all();
}

}  // namespace crosvm
