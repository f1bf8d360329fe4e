// Assembling a VM, in one straight line:
// open /dev/kvm -> create the VM -> guest memory -> irqchip -> vCPUs ->
// devices on the buses -> kernel and initrd -> boot information and registers.
#include <errno.h>
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <map>

#include <fmt/format.h>

#include "arch/x86_64/acpi/tables.h"
#include "arch/x86_64/boot_setup.h"
#include "arch/x86_64/cpu_state.h"
#include "arch/x86_64/cpuid.h"
#include "arch/x86_64/kernel_loader.h"
#include "base/file_io.h"
#include "base/unix_socket.h"
#include "devices/legacy/cmos.h"
#include "devices/legacy/debugcon.h"
#include "devices/legacy/i8042.h"
#include "devices/legacy/power_management.h"
#include "devices/legacy/pvpanic.h"
#include "devices/registry.h"
#include "vhost_user/frontend.h"
#include "sandbox/device_process.h"
#include "sandbox/stream_pipes.h"
#include "devices/virtio/rng/rng.h"
#include "disk/disk_file.h"
#include "tinyguest/demo_image.h"
#include "vm/device_options.h"
#include "vm/line_timestamps.h"
#include "vm/vm.h"

namespace crosvm {
namespace {

// With the sandbox on, guest RAM is a shared memfd only when some device
// actually runs in another process.
bool has_jailed_devices(const VmConfig& config) {
  if (!config.sandbox.enabled) return false;
  const bool console = std::any_of(config.serials.begin(), config.serials.end(), [](const SerialConfig& serial) {
    return serial.hardware == SerialHardware::kVirtioConsole;
  });
  return !config.disks.empty() || !config.devices.empty() || config.rng || console;
}

constexpr uint64_t kMaxMemoryMib = UINT64_MAX >> 20;

// type=syslog: the host's syslog socket, and how glibc's syslog() heads a
// message sent there (RFC 3164): user.info, the local time, the program's
// name and pid.
constexpr const char* kSyslogSocket = "/dev/log";
std::string syslog_header(const std::string& tag) {
  const time_t now = ::time(nullptr);
  tm local{};
  ::localtime_r(&now, &local);
  char stamp[32];
  const size_t length = ::strftime(stamp, sizeof(stamp), "%b %e %T", &local);
  return fmt::format("<{}>{} {}[{}]: ", LOG_USER | LOG_INFO, std::string_view(stamp, length),
                     tag.empty() ? std::string_view(program_invocation_short_name) : std::string_view(tag),
                     ::getpid());
}

// type=unix: how long the VM waits for its socket to appear.
constexpr std::chrono::milliseconds kDatagramSocketPatience{5000};

Result<void> validate(const VmConfig& config) {
  if (config.memory_mib == 0) return make_error(ErrorCode::kMemory, "guest memory size is 0");
  if (config.memory_mib > kMaxMemoryMib) {
    return make_error(ErrorCode::kMemory, "guest memory of {} MiB is beyond any address space",
                      config.memory_mib);
  }
  if (config.vcpu_count == 0) return make_error(ErrorCode::kVcpu, "a VM needs at least one vCPU");
  if (config.kernel_path.empty() && !config.demo_kernel) {
    return make_error(ErrorCode::kKernel, "no kernel given");
  }
  bool used[3][4] = {};
  size_t stdin_readers = 0;
  size_t pci_devices = config.disks.size() + (config.rng ? 1 : 0);
  for (const SerialConfig& serial : config.serials) {
    const auto hardware = static_cast<size_t>(serial.hardware);
    static constexpr const char* kKinds[] = {"serial port", "virtio console", "debugcon"};
    const char* kind = kKinds[hardware];
    if (serial.number < 1 || serial.number > 4) {
      return make_error(ErrorCode::kInvalidArgument, "{} {} does not exist (1 to 4)", kind,
                        serial.number);
    }
    if (used[hardware][serial.number - 1]) {
      return make_error(ErrorCode::kInvalidArgument, "{} {} is configured twice", kind, serial.number);
    }
    used[hardware][serial.number - 1] = true;
    if (serial.hardware != SerialHardware::kUart && serial.earlycon) {
      return make_error(ErrorCode::kInvalidArgument, "{} {} cannot be an earlycon (a UART can)", kind,
                        serial.number);
    }
    if (serial.hardware == SerialHardware::kDebugcon &&
        (serial.console || serial.read_stdin || !serial.input_path.empty() || serial.input_unix_stream)) {
      return make_error(ErrorCode::kInvalidArgument, "debugcon {} is output only: no console, no input",
                        serial.number);
    }
    pci_devices += serial.hardware == SerialHardware::kVirtioConsole ? 1 : 0;
    const bool socket = serial.output == SerialOutput::kUnix || serial.output == SerialOutput::kUnixStream;
    if ((serial.output == SerialOutput::kFile || socket) && serial.path.empty()) {
      return make_error(ErrorCode::kInvalidArgument, "{} {} writes to a {} but has no path", kind, serial.number,
                        socket ? "socket" : "file");
    }
    if (serial.output == SerialOutput::kCallback && !serial.callback) {
      return make_error(ErrorCode::kInvalidArgument, "{} {} has no output callback", kind, serial.number);
    }
    if (serial.input_unix_stream && serial.output != SerialOutput::kUnixStream) {
      return make_error(ErrorCode::kInvalidArgument, "{} {}: input-unix-stream needs type=unix-stream", kind,
                        serial.number);
    }
    stdin_readers += serial.read_stdin ? 1 : 0;
  }
  if (stdin_readers > 1) {
    return make_error(ErrorCode::kInvalidArgument, "only one serial port can read stdin");
  }
  size_t roots = 0;
  for (const DiskConfig& disk : config.disks) {
    if (disk.path.empty()) return make_error(ErrorCode::kInvalidArgument, "a disk without a path");
    if (disk.id.size() > virtio::kBlockIdLength) {
      return make_error(ErrorCode::kInvalidArgument, "disk id '{}' is longer than {} bytes", disk.id,
                        virtio::kBlockIdLength);
    }
    roots += disk.root ? 1 : 0;
  }
  if (roots > 1) return make_error(ErrorCode::kInvalidArgument, "only one disk can be the root");
  if (pci_devices > pci::kSlotCount - 1) {
    return make_error(ErrorCode::kInvalidArgument, "{} PCI devices requested; a VM has room for {}",
                      pci_devices, pci::kSlotCount - 1);
  }
  return {};
}

Result<void> check_capabilities(const kvm::Kvm& kvm) {
  CROSVM_TRY(kvm.require_extension(KVM_CAP_USER_MEMORY, "user memory regions"));
  CROSVM_TRY(kvm.require_extension(KVM_CAP_IRQCHIP, "an in-kernel interrupt controller"));
  CROSVM_TRY(kvm.require_extension(KVM_CAP_PIT2, "an in-kernel PIT"));
  CROSVM_TRY(kvm.require_extension(KVM_CAP_SET_TSS_ADDR, "KVM_SET_TSS_ADDR"));
  CROSVM_TRY(kvm.require_extension(KVM_CAP_EXT_CPUID, "KVM_GET_SUPPORTED_CPUID"));
  CROSVM_TRY(kvm.require_extension(KVM_CAP_IRQFD, "irqfd"));
  CROSVM_TRY(kvm.require_extension(KVM_CAP_IOEVENTFD, "ioeventfd"));
  CROSVM_TRY(kvm.require_extension(KVM_CAP_IMMEDIATE_EXIT, "immediate_exit"));
  CROSVM_TRY(kvm.require_extension(KVM_CAP_IRQ_ROUTING, "interrupt routing (MSI)"));
  return {};
}

// The kernel file, or the built-in demo guest.
Result<ImageSource> open_kernel(const VmConfig& config) {
  if (config.demo_kernel) return ImageSource(demo_kernel_image());
  ImageSource kernel = CROSVM_TRY(ImageSource::open(config.kernel_path, "kernel"));
  if (auto format = x86_64::detect_kernel_format(kernel); !format) {
    return make_error(ErrorCode::kKernel, "kernel '{}': {}", config.kernel_path, format.error().message);
  }
  return kernel;
}

}  // namespace

Result<std::unique_ptr<Vm>> Vm::create(VmConfig config) {
  CROSVM_TRY(validate(config));
  // Files first: a wrong path is the likeliest mistake and the cheapest check.
  const ImageSource kernel = CROSVM_TRY(open_kernel(config));
  std::optional<ImageSource> initrd;
  if (!config.initrd_path.empty()) {
    auto file = ImageSource::open(config.initrd_path, "initrd");
    if (!file) return Error{ErrorCode::kInitrd, file.error().message};
    if (file->empty()) return make_error(ErrorCode::kInitrd, "initrd '{}' is empty", config.initrd_path);
    initrd = std::move(file).value();
  }

  kvm::Kvm kvm = CROSVM_TRY(kvm::Kvm::open(config.kvm_path));
  CROSVM_TRY(check_capabilities(kvm));
  const uint32_t max_vcpus = std::min(kvm.max_vcpus(), x86_64::kMaxVcpus);
  if (config.vcpu_count > max_vcpus) {
    return make_error(ErrorCode::kVcpu,
                      "{} vCPUs requested; at most {} are possible (this host's KVM allows {}, "
                      "xAPIC IDs {})",
                      config.vcpu_count, max_vcpus, kvm.max_vcpus(), x86_64::kMaxVcpus);
  }
  x86_64::MemoryLayout layout =
      CROSVM_TRY(x86_64::plan_memory(config.memory_mib << 20, x86_64::host_physical_address_bits()));

  kvm::VmFd vm_fd = CROSVM_TRY(kvm.create_vm());
  // Shared (a memfd) when another process serves a device and must map it.
  GuestMemory memory =
      CROSVM_TRY(GuestMemory::create(layout.ram, {.shared = !config.vhost_user.empty() || has_jailed_devices(config)}));
  CROSVM_TRY(memory.register_with(vm_fd));

  // The TSS and identity-map pages sit in the MMIO hole, clear of RAM and devices.
  CROSVM_TRY(vm_fd.set_tss_address(x86_64::kTssAddress));
  CROSVM_TRY(vm_fd.set_identity_map_address(x86_64::kIdentityMapAddress));
  CROSVM_TRY(vm_fd.create_irqchip());
  CROSVM_TRY(vm_fd.create_pit2());

  const size_t run_size = CROSVM_TRY(kvm.vcpu_mmap_size());
  const std::vector<kvm_cpuid_entry2> supported = CROSVM_TRY(kvm.supported_cpuid());
  const x86_64::CpuidOptions cpuid_options{
      .vcpu_count = config.vcpu_count,
      .tsc_deadline_timer = kvm.check_extension(KVM_CAP_TSC_DEADLINE_TIMER) > 0,
  };
  std::vector<kvm::VcpuFd> vcpus;
  for (uint32_t id = 0; id < config.vcpu_count; ++id) {
    kvm::VcpuFd vcpu = CROSVM_TRY(vm_fd.create_vcpu(id, run_size));
    CROSVM_TRY(vcpu.set_cpuid(x86_64::cpuid_for_vcpu(supported, id, cpuid_options)));
    CROSVM_TRY(x86_64::configure_vcpu_common(vcpu));
    vcpus.push_back(std::move(vcpu));
  }

  auto vm = std::unique_ptr<Vm>(new Vm(std::move(config),
                                       Machine{std::move(kvm), std::move(vm_fd), std::move(memory),
                                               std::move(layout), std::move(vcpus)}));
  CROSVM_TRY(vm->attach_legacy_devices());
  CROSVM_TRY(vm->attach_pci_devices());
  CROSVM_TRY(vm->attach_debugcons());
  CROSVM_TRY(vm->load_guest(kernel, initrd ? &*initrd : nullptr));
  // After loading: the images stay in small pages (see advise_huge_pages).
  if (vm->config_.hugepages) {
    vm->memory_.advise_huge_pages();
    if (vm->memory_.fd() >= 0 && shared_memory_huge_page_policy() == "never") {
      vm->logger_.info(
          "guest RAM is shared with device processes and this host's shmem_enabled is 'never': "
          "small pages only ('advise' gives huge pages; see docs/c-api.md)");
    }
  }
  // Last: a VM that failed to build leaves no socket behind.
  CROSVM_TRY(vm->attach_control_socket());
  return vm;
}

Result<void> Vm::attach_control_socket() {
  if (config_.control_socket.empty()) return {};
  control_server_ = CROSVM_TRY(
      control::ControlServer::bind(loop_.context(), config_.control_socket, control_view_, logger_));
  logger_.info("control socket: {}", control_server_->path());
  return {};
}

// A port's input: the process's stdin, crosvm's input=PATH, or its
// type=unix-stream connection (input-unix-stream). A FIFO is opened
// read-write, so that opening it does not wait for a writer and the input
// does not end when a writer closes it.
Result<void> Vm::attach_input(const SerialConfig& config, const PortOutput& output, std::shared_ptr<HostInput> device) {
  if (config.read_stdin) {
    serial_inputs_.push_back(CROSVM_TRY(SerialInput::create(loop_, STDIN_FILENO, std::move(device))));
    return {};
  }
  if (config.input_unix_stream && output.socket) {
    serial_inputs_.push_back(CROSVM_TRY(SerialInput::create(loop_, output.socket->get(), std::move(device))));
    return {};
  }
  if (config.input_path.empty()) return {};
  struct stat info {};
  const bool fifo = ::stat(config.input_path.c_str(), &info) == 0 && S_ISFIFO(info.st_mode);
  UniqueFd fd(::open(config.input_path.c_str(), (fifo ? O_RDWR : O_RDONLY) | O_CLOEXEC | O_NONBLOCK));
  if (!fd) {
    return make_errno_error(ErrorCode::kIo, errno, "serial {}: cannot open its input {}", config.number,
                            config.input_path);
  }
  serial_inputs_.push_back(CROSVM_TRY(SerialInput::create(loop_, fd.get(), std::move(device))));
  return {};
}

Result<std::shared_ptr<EventFdIrqLine>> Vm::create_irq_line(uint32_t gsi) {
  EventFd event = CROSVM_TRY(EventFd::create());
  CROSVM_TRY(vm_fd_.register_irqfd(event.fd(), gsi));
  auto line = std::make_shared<EventFdIrqLine>(std::move(event), gsi);
  irq_lines_.push_back(line);
  return line;
}

Result<void> Vm::attach_legacy_devices() {
  // First: the SCI (and then PCI's INTx) are level lines of this routing.
  irq_routing_ = std::make_unique<IrqRouting>(vm_fd_, static_cast<uint32_t>(
                                                          kvm_.check_extension(KVM_CAP_IRQ_ROUTING)));
  CROSVM_TRY(irq_routing_->initialize());
  for (const SerialConfig& serial : config_.serials) {
    if (serial.hardware == SerialHardware::kUart) CROSVM_TRY(attach_serial(serial));
  }
  CROSVM_TRY(pio_bus_.insert(std::make_shared<I8042>(*this), I8042::kBasePort, I8042::kLength));
  CROSVM_TRY(pio_bus_.insert(std::make_shared<Cmos>(layout_.low_ram_end, layout_.high_ram_end),
                             Cmos::kBasePort, Cmos::kLength));
  const acpi::MachineDescription machine;  // for the SCI's number
  power_management_ =
      std::make_shared<PowerManagement>(*this, CROSVM_TRY(irq_routing_->level_line(machine.sci_irq)));
  CROSVM_TRY(pio_bus_.insert(power_management_, PowerManagement::kBasePort, PowerManagement::kLength));
  CROSVM_TRY(pio_bus_.insert(std::make_shared<PvPanic>(*this), PvPanic::kPort, 1));
  return {};
}

acpi::MachineDescription Vm::describe_machine() const {
  acpi::MachineDescription machine;
  machine.vcpu_count = vcpu_count();
  for (const SerialConfig& serial : config_.serials) {
    if (serial.hardware != SerialHardware::kUart) continue;
    machine.serial_ports.push_back(
        {serial.number, Serial::kPorts[serial.number - 1], Serial::kIrqs[serial.number - 1]});
  }
  machine.pci_mmio32_base = x86_64::kPciMmioStart;
  machine.pci_mmio32_size = x86_64::kPciMmioSize;
  machine.pci_mmio64_base = layout_.pci_mmio64_base;
  machine.pci_mmio64_size = layout_.pci_mmio64_size;
  machine.ecam_base = x86_64::kEcamAddress;
  machine.ecam_last_bus = 0;
  machine.pm1a_event_port = PowerManagement::kEventBlockPort;
  machine.pm1a_control_port = PowerManagement::kControlBlockPort;
  machine.sleep_type_s5 = PowerManagement::kSleepTypeS5;
  machine.reset_port = ResetControl::kPort;
  machine.reset_value = ResetControl::kResetValue;
  machine.pvpanic_port = PvPanic::kPort;
  return machine;
}

// Where a port's output goes: nowhere, the embedder's callback, or a host
// fd written in batches by the event loop (HostOutput): stdout, a file, a
// Unix socket (a stream, or a datagram per line) or the host's syslog.
Result<Vm::PortOutput> Vm::port_output(const SerialConfig& config) {
  PortOutput port;
  std::shared_ptr<HostOutput> output;
  const std::string what = fmt::format("serial {} output", config.number);
  switch (config.output) {
    case SerialOutput::kSink: port.stream = std::make_shared<CallbackOutput>(); return port;
    case SerialOutput::kCallback: port.stream = std::make_shared<CallbackOutput>(config.callback); return port;
    case SerialOutput::kStdout: output = std::make_shared<HostOutput>(loop_, STDOUT_FILENO); break;
    case SerialOutput::kFile: {
      auto file = std::make_shared<UniqueFd>(
          CROSVM_TRY(open_file(config.path, O_WRONLY | O_CREAT | O_APPEND, "serial output file")));
      output = std::make_shared<HostOutput>(loop_, file->get(), file);
      break;
    }
    case SerialOutput::kUnixStream:
      port.socket = std::make_shared<UniqueFd>(CROSVM_TRY(connect_unix_socket(config.path, SOCK_STREAM, what, {})));
      output = std::make_shared<HostOutput>(loop_, port.socket->get(), port.socket);
      break;
    case SerialOutput::kUnix: {
      // crosvm waits for the socket to appear (its reader may start after
      // it); so do we, for a while.
      auto socket = std::make_shared<UniqueFd>(
          CROSVM_TRY(connect_unix_socket(config.path, SOCK_DGRAM, what, kDatagramSocketPatience)));
      output = std::make_shared<HostOutput>(loop_, socket->get(), socket, HostOutput::Datagrams{});
      break;
    }
    case SerialOutput::kSyslog: {
      auto socket = std::make_shared<UniqueFd>(CROSVM_TRY(connect_unix_socket(kSyslogSocket, SOCK_DGRAM, what, {})));
      output = std::make_shared<HostOutput>(loop_, socket->get(), socket,
                                            HostOutput::Datagrams{[tag = config_.syslog_tag] { return syslog_header(tag); }});
      break;
    }
  }
  host_outputs_.push_back(output);
  port.stream = std::move(output);
  return port;
}

Serial::OutputSink Vm::port_sink(const SerialConfig& config, const PortOutput& port) {
  // The UART's vCPU waits when the output is full, as on a slow line.
  std::shared_ptr<OutputStream> output = port.stream;
  if (!config.out_timestamp) {
    return [output](std::span<const uint8_t> bytes) { output->write_waiting(bytes); };
  }
  return [output, stamps = std::make_shared<LineTimestamps>()](std::span<const uint8_t> bytes) {
    const std::string stamped = stamps->stamp(bytes);
    output->write_waiting(std::span(reinterpret_cast<const uint8_t*>(stamped.data()), stamped.size()));
  };
}

Result<void> Vm::attach_serial(const SerialConfig& config) {
  const size_t index = config.number - 1;
  PortOutput output = CROSVM_TRY(port_output(config));
  Serial::OutputSink sink = port_sink(config, output);
  auto irq = CROSVM_TRY(create_irq_line(Serial::kIrqs[index]));
  static constexpr std::string_view kNames[] = {"serial 1", "serial 2", "serial 3", "serial 4"};
  auto serial = std::make_shared<Serial>(kNames[index], std::move(irq), std::move(sink));
  CROSVM_TRY(pio_bus_.insert(serial, Serial::kPorts[index], Serial::kRegisterCount));
  CROSVM_TRY(attach_input(config, output, serial));
  serials_[index] = std::move(serial);
  return {};
}

// Last among the port devices: a debugcon's port is the user's to choose,
// and one that collides with a device of the machine's is refused naming it.
Result<void> Vm::attach_debugcons() {
  for (const SerialConfig& config : config_.serials) {
    if (config.hardware != SerialHardware::kDebugcon) continue;
    PortOutput output = CROSVM_TRY(port_output(config));
    auto debugcon = std::make_shared<Debugcon>(fmt::format("debugcon {}", config.number),
                                               port_sink(config, output));
    CROSVM_TRY(pio_bus_.insert(std::move(debugcon), config.debugcon_port, 1));
  }
  return {};
}

// PCI: the root bus with its two access paths, then the virtio devices in
// the order the guest should find them: disks (root first), rng, consoles,
// then the devices other processes serve (vhost-user).
Result<void> Vm::attach_pci_devices() {
  pci_root_ = std::make_shared<pci::PciRoot>(mmio_bus_, logger_);
  static_assert(ResetControl::kPort == pci::kConfigAddressPort + 1);
  CROSVM_TRY(pio_bus_.insert(pci_root_->io_access(std::make_shared<ResetControl>(*this)),
                             pci::kConfigAddressPort, pci::kConfigIoLength));
  CROSVM_TRY(mmio_bus_.insert(pci_root_->ecam_access(), x86_64::kEcamAddress,
                              (uint64_t{describe_machine().ecam_last_bus} + 1) * pci::kEcamBusSize));

  if (config_.sandbox.enabled) sandbox_helper_ = CROSVM_TRY(sandbox::find_helper(config_.sandbox.helper));
  const std::vector<DiskConfig> disks = config_.ordered_disks();
  for (size_t i = 0; i < disks.size(); ++i) {
    const DiskConfig& disk = disks[i];
    const std::string name = fmt::format("virtio-blk {} ({})", i, disk.path);
    if (config_.sandbox.enabled) {
      // The VMM opens, checks and locks the image; the device process gets
      // the fd (and the lock with it).
      auto opened = disk::open_image_files(disk_options(disk));
      if (!opened) return Error{ErrorCode::kDevice, opened.error().message};
      std::vector<std::string> arguments{"--path", disk.path, "--name", name};
      if (disk.read_only) arguments.push_back("--read-only");
      if (disk.allow_backing) arguments.push_back("--allow-backing");
      if (!disk.lock) arguments.push_back("--no-lock");
      if (!disk.sparse) arguments.push_back("--no-sparse");
      arguments.insert(arguments.end(), {"--block-size", std::to_string(disk.block_size)});
      arguments.insert(arguments.end(), {"--num-queues", std::to_string(disk.num_queues)});
      if (!disk.id.empty()) arguments.insert(arguments.end(), {"--id", disk.id});
      std::vector<std::pair<std::string, UniqueFd>> fds;
      for (size_t file = 0; file < opened->fds.size(); ++file) {
        fds.emplace_back(file == 0 ? "--file-fd" : "--backing-fd", std::move(opened->fds[file]));
      }
      if (opened->direct) fds.emplace_back("--direct-fd", std::move(opened->direct));
      CROSVM_TRY(attach_jailed("block", name, std::move(arguments), std::move(fds)));
      JailedDisk& jailed = jailed_disks_.emplace_back();
      jailed.size = opened->size;
      jailed.format = opened->format;
      jailed.read_only = disk.read_only;
      jailed.process = device_processes_.back().get();
      continue;
    }
    auto file = disk::open_disk(disk_options(disk));
    if (!file) return Error{ErrorCode::kDevice, file.error().message};
    auto block = std::make_shared<virtio::Block>(std::move(file).value(), block_device_options(disk), name, logger_);
    CROSVM_TRY(attach_virtio(block));
    disks_.push_back(std::move(block));
  }
  // The registry's devices, each from its kind's factory; the default rng
  // first unless one was named.
  std::vector<DeviceOptions> units = config_.devices;
  const bool rng_named = std::any_of(units.begin(), units.end(), [](const DeviceOptions& options) {
    return options.kind() == virtio::kRngKind.name;
  });
  if (config_.rng && !rng_named) units.insert(units.begin(), DeviceOptions(std::string(virtio::kRngKind.name), {}));
  std::map<std::string, uint32_t> counts;
  for (DeviceOptions& options : units) {
    const VirtioKind* kind = find_virtio_kind(options.kind());
    if (kind == nullptr) return make_error(ErrorCode::kInvalidArgument, "unknown device kind '{}'", options.kind());
    const uint32_t index = counts[options.kind()]++;
    if (config_.sandbox.enabled) {
      // The VMM opens what the device needs; the device process gets the fds.
      std::vector<std::pair<std::string, UniqueFd>> fds;
      if (kind->open != nullptr) {
        OpenedResources opened = CROSVM_TRY(kind->open(options, logger_));
        for (NamedFd& named : opened.fds) fds.emplace_back("--fd-" + named.name, std::move(named.fd));
        for (auto& companion : opened.companions) companions_.push_back(std::move(companion));
      }
      std::vector<std::string> arguments{"--index", std::to_string(index)};
      for (const KeyValue& item : options.items()) {
        arguments.insert(arguments.end(), {"--option", item.key + "=" + item.value});
      }
      const pid_t pid = CROSVM_TRY(attach_jailed(options.kind(), fmt::format("{} {}", options.kind(), index),
                                                 std::move(arguments), std::move(fds)));
      unit_status_.push_back(fmt::format("{}, jailed: pid {}", kind->describe(options, index), pid));
      continue;
    }
    auto device =
        CROSVM_TRY(create_device_here(*kind, options, DeviceEnvironment{logger_, index, {}}, companions_));
    CROSVM_TRY(attach_virtio(std::move(device)));
    unit_status_.push_back(kind->describe(options, index));
  }
  for (const SerialConfig& serial : config_.serials) {
    if (serial.hardware != SerialHardware::kVirtioConsole) continue;
    const std::string name = fmt::format("virtio-console {}", serial.number);
    PortOutput output = CROSVM_TRY(port_output(serial));
    std::shared_ptr<HostInput> input;
    if (config_.sandbox.enabled) {
      // The console's streams cross as two pipes (sandbox/stream_pipes.h).
      int output_pipe[2], input_pipe[2];
      if (::pipe2(output_pipe, O_CLOEXEC) != 0) return make_errno_error(ErrorCode::kIo, errno, "{}: pipe", name);
      UniqueFd output_read(output_pipe[0]), output_write(output_pipe[1]);
      if (::pipe2(input_pipe, O_CLOEXEC) != 0) return make_errno_error(ErrorCode::kIo, errno, "{}: pipe", name);
      UniqueFd input_read(input_pipe[0]), input_write(input_pipe[1]);
      std::vector<std::pair<std::string, UniqueFd>> fds;
      fds.emplace_back("--output-fd", std::move(output_write));
      fds.emplace_back("--input-fd", std::move(input_read));
      console_pids_[serial.number - 1] = CROSVM_TRY(attach_jailed("console", name, {"--name", name}, std::move(fds)));
      output_pumps_.push_back(
          CROSVM_TRY(sandbox::OutputPump::create(loop_, std::move(output_read), output.stream)));
      auto pipe_input = CROSVM_TRY(sandbox::PipeInput::create(loop_, std::move(input_write)));
      pipe_inputs_.push_back(pipe_input);
      input = std::move(pipe_input);
    } else {
      auto console = std::make_shared<virtio::Console>(name, output.stream, logger_);
      CROSVM_TRY(attach_virtio(console));
      input = std::move(console);
    }
    CROSVM_TRY(attach_input(serial, output, input));
    console_inputs_[serial.number - 1] = std::move(input);
  }
  for (size_t i = 0; i < config_.vhost_user.size(); ++i) {
    const VhostUserConfig& device = config_.vhost_user[i];
    const vhost_user::FrontendKind* kind = vhost_user::find_frontend_kind(device.type);
    if (kind == nullptr) return make_error(ErrorCode::kInvalidArgument, "vhost-user: unknown type '{}'", device.type);
    auto frontend = CROSVM_TRY(vhost_user::Frontend::connect(
        *kind,
        {.socket = device.socket,
         .name = fmt::format("vhost-user {} ({}, {})", i, device.type, device.socket),
         .tag = device.tag,
         .queue_size = device.max_queue_size},
        logger_));
    CROSVM_TRY(attach_virtio(frontend));
  }
  return {};
}

// A device in a jailed process of its own: crosvm-device serves it over
// vhost-user on a socketpair, a frontend here stands for it on the PCI bus.
Result<pid_t> Vm::attach_jailed(const std::string& kind, const std::string& name, std::vector<std::string> arguments,
                                std::vector<std::pair<std::string, UniqueFd>> fds) {
  const vhost_user::FrontendKind* frontend_kind = vhost_user::find_frontend_kind(kind);
  if (frontend_kind == nullptr) {
    return make_error(ErrorCode::kDevice, "{}: a device of kind '{}' cannot run jailed yet (--disable-sandbox)", name,
                      kind);
  }
  sandbox::DeviceProcessOptions options{
      .helper = sandbox_helper_,
      .kind = kind,
      .name = name,
      .arguments = std::move(arguments),
      .fds = std::move(fds),
      .seccomp_log_failures = config_.sandbox.seccomp_log_failures,
      .denied_syscalls = config_.sandbox.denied_syscalls,
      .debug = logger_.enabled(LogLevel::kDebug),
  };
  UniqueFd connection;
  auto process = CROSVM_TRY(sandbox::DeviceProcess::start(std::move(options), logger_, connection));
  const pid_t pid = process->pid();
  auto frontend = vhost_user::Frontend::create(*frontend_kind, vhost_user::Connection(std::move(connection)),
                                               {.socket = "", .name = name}, logger_);
  if (!frontend) {
    return make_error(ErrorCode::kDevice,
                      "{}: the device process (pid {}) {} (crosvm-launch --disable-sandbox runs the devices in the VMM)",
                      name, pid, process->failure_report());
  }
  // Watched from now on: a device that dies while the VM runs ends it,
  // with the reason.
  CROSVM_TRY(process->watch(loop_, [this](const std::string& why) { request_exit(ExitReason::kCrash, why); }));
  device_processes_.push_back(std::move(process));
  CROSVM_TRY(attach_virtio(std::move(frontend).value()));
  return pid;
}

Result<void> Vm::attach_virtio(std::shared_ptr<virtio::VirtioDevice> device) {
  const std::optional<uint8_t> slot = pci_root_->free_slot();
  if (!slot) return make_error(ErrorCode::kDevice, "no free PCI slot for {}", device->name());
  const uint8_t gsi = describe_machine().pci_intx_gsi(*slot, 0);  // INTA
  virtio::PciTransportResources resources{
      .memory = &memory_,
      .msi_router = irq_routing_.get(),
      .io_events = &io_events_,
      .intx = CROSVM_TRY(irq_routing_->level_line(gsi)),
      .intx_gsi = gsi,
      .bar_address = CROSVM_TRY(allocate_bar(virtio::VirtioPciDevice::kBarSize)),
      .logger = logger_,
  };
  auto transport = CROSVM_TRY(virtio::VirtioPciDevice::create(std::move(device), std::move(resources)));
  CROSVM_TRY(pci_root_->add_device(*slot, transport));
  virtio_devices_.push_back(std::move(transport));
  return {};
}

// BARs are naturally aligned in the 32-bit PCI window, below the ECAM.
Result<uint64_t> Vm::allocate_bar(uint64_t size) {
  const uint64_t address = (next_bar_address_ + size - 1) & ~(size - 1);
  if (address + size > x86_64::kPciMmioStart + x86_64::kPciMmioSize) {
    return make_error(ErrorCode::kDevice, "the PCI window is full");
  }
  next_bar_address_ = address + size;
  return address;
}

Result<void> Vm::load_guest(const ImageSource& kernel_image, const ImageSource* initrd_image) {
  auto loaded = x86_64::load_kernel(memory_, layout_.low_ram_end, kernel_image);
  if (!loaded) {
    const std::string what = config_.demo_kernel ? "the demo guest" : fmt::format("kernel '{}'", config_.kernel_path);
    return Error{loaded.error().code, fmt::format("{}: {}", what, loaded.error().message)};
  }
  const x86_64::LoadedKernel& kernel = *loaded;

  x86_64::BootInfo boot{};
  boot.kernel = &kernel;
  boot.layout = &layout_;
  const std::string cmdline = config_.kernel_cmdline();
  boot.cmdline = cmdline;
  if (initrd_image != nullptr) {
    const uint64_t size = initrd_image->size();
    const uint64_t address = CROSVM_TRY(x86_64::place_initrd(kernel, layout_.low_ram_end, size));
    auto target = CROSVM_TRY(memory_.slice(address, size));
    if (auto read = initrd_image->read(0, target); !read) return Error{ErrorCode::kInitrd, read.error().message};
    boot.initrd = x86_64::InitrdLocation{address, size};
  }
  const acpi::AcpiTables tables = CROSVM_TRY(
      acpi::build_tables(describe_machine(), x86_64::kAcpiTablesAddress, x86_64::kHighMemoryStart));
  CROSVM_TRY(acpi::write_tables(memory_, tables));
  boot.rsdp_address = tables.rsdp_address;
  CROSVM_TRY(x86_64::write_boot_info(memory_, boot));
  CROSVM_TRY(x86_64::write_boot_tables(memory_));
  CROSVM_TRY(x86_64::configure_boot_vcpu(vcpus_[0], kernel.entry_point));
  logger_.debug("kernel entry {:#x}, command line: {}", kernel.entry_point, cmdline);
  return {};
}

}  // namespace crosvm
