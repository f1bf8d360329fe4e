// Everything that describes a VM before it is built. The C ABI's
// crosvm_config fills one of these; Vm::create turns it into a machine.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/log.h"
#include "devices/key_values.h"
#include "disk/disk_file.h"
#include "vm/exit_reason.h"

namespace crosvm {

// kUnix: a line per datagram to a Unix datagram socket (crosvm's type=unix);
// kUnixStream: a connection to a Unix stream socket (crosvm's
// type=unix-stream); kSyslog: a line per message to the host's syslog.
enum class SerialOutput { kSink, kStdout, kFile, kCallback, kUnix, kUnixStream, kSyslog };
// kDebugcon: Bochs's debug port (crosvm's hardware=debugcon), output only.
enum class SerialHardware { kUart, kVirtioConsole, kDebugcon };

struct SerialConfig {
  SerialHardware hardware = SerialHardware::kUart;
  // 1..4 per kind: COM1..COM4 (ttyS0..ttyS3), or virtio consoles hvc0..hvc3.
  uint32_t number = 1;
  SerialOutput output = SerialOutput::kStdout;
  std::string path;     // for kFile, kUnix, kUnixStream
  std::string name;     // crosvm's name=: how logs and status call the port
  std::function<void(std::span<const uint8_t>)> callback;  // for kCallback
  bool console = false;     // console=ttySn (hvcN) on the command line
  bool earlycon = false;    // earlycon=uart8250,io,PORT (UARTs only)
  bool out_timestamp = false;  // crosvm's: each output line starts with the UTC time (UARTs only)
  bool read_stdin = false;  // the process's stdin feeds this port
  std::string input_path;   // crosvm's input=: this file's (or FIFO's) bytes feed the port
  bool input_unix_stream = false;  // kUnixStream: the socket is the input too
  uint16_t debugcon_port = 0x402;  // kDebugcon: its I/O port (OVMF's and SeaBIOS's)
};

struct DiskConfig {
  std::string path;
  bool read_only = false;
  bool root = false;  // root=/dev/vda on the command line; the guest sees it first
  std::string id;     // what VIRTIO_BLK_T_GET_ID returns (up to 20 bytes)
  bool allow_backing = false;  // qcow2: follow its backing file (disk::OpenOptions)
  bool lock = true;            // an OFD lock on the image (disk::OpenOptions)
  bool direct = false;         // O_DIRECT for aligned data (disk::OpenOptions)
  uint32_t block_size = 512;   // the logical block size the guest is told
  bool sparse = true;          // discard offered, write-zeroes may punch holes
  uint16_t num_queues = 1;     // virtio-blk request queues (1 to virtio::kMaxBlockQueues)
};

inline disk::OpenOptions disk_options(const DiskConfig& disk) {
  return {.path = disk.path,
          .read_only = disk.read_only,
          .allow_backing = disk.allow_backing,
          .lock = disk.lock,
          .direct = disk.direct};
}

// A virtio device whose queues another process serves over vhost-user
// (crosvm's --vhost-user type=block,socket=PATH).
struct VhostUserConfig {
  std::string type;    // block, fs, rng, net, console
  std::string socket;  // the backend's listening socket
  std::string tag;     // fs: the tag the guest mounts
  uint16_t max_queue_size = 256;
};

// crosvm's sandbox: each virtio device (disks and the registry's kinds) in
// a jailed process of its own (lib/sandbox/), served over vhost-user.
struct SandboxConfig {
  bool enabled = false;
  std::string helper;  // crosvm-device; empty: sandbox::find_helper()
  bool seccomp_log_failures = false;  // crosvm's --jail seccomp-log-failures
  std::vector<std::string> denied_syscalls;  // taken out of every policy (tests of the sandbox)
};

struct VmConfig {
  static constexpr uint64_t kDefaultMemoryMib = 256;  // crosvm's default

  uint64_t memory_mib = kDefaultMemoryMib;
  uint32_t vcpu_count = 1;
  std::string kernel_path;
  std::string syslog_tag;  // type=syslog ports' tag; empty: the program's name
  bool demo_kernel = false;  // the built-in tiny guest instead of a kernel file
  std::string initrd_path;
  std::vector<std::string> params;  // appended to the command line in order
  std::vector<SerialConfig> serials;
  std::vector<DiskConfig> disks;  // in the order given; see ordered_disks()
  // A virtio-rng fed by the host's getrandom(): on unless turned off, in
  // the C ABI, crosvm-launch (--no-rng) and Python alike, as in crosvm.
  // An rng named in `devices` replaces it.
  bool rng = true;
  // Devices of the registry's kinds (lib/devices/registry), in the order
  // given, each built by its kind's factory.
  std::vector<DeviceOptions> devices;
  // Devices served by other processes; guest RAM is then a shared memfd.
  std::vector<VhostUserConfig> vhost_user;
  SandboxConfig sandbox;
  bool hugepages = true;          // transparent huge pages behind guest RAM
  std::string kvm_path = "/dev/kvm";
  // A control socket (crosvm's -s): a path, or a directory for
  // crosvm-PID.sock in it; empty for none.
  std::string control_socket;
  Logger logger;
  // Called once when the VM has stopped, with the reason, on the thread
  // that saw it stop (the event loop, or the caller of stop() before
  // start(), or of the Vm's destructor).
  std::function<void(ExitReason)> on_stopped;

  // The command line the guest gets: defaults, the root disk, consoles, then
  // params (so a parameter given later overrides).
  std::string kernel_cmdline() const;
  // Adds `serial`, replacing a port of the same hardware and number.
  void set_serial(SerialConfig serial);
  // The disks in the order the guest finds them (vda, vdb, ...): the root
  // disk first, the others as given.
  std::vector<DiskConfig> ordered_disks() const;
};

}  // namespace crosvm
