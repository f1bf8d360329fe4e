"""Boot and script virtual machines with libcrosvm.

    import crosvm

    config = crosvm.VmConfig(kernel="bzImage", initrd="initrd.img",
                             params="console=ttyS0", memory_mib=512)
    with crosvm.Vm(config) as vm:
        vm.start()
        vm.serial.expect(r"# ")
        vm.serial.sendline("uname -r")
        vm.serial.expect(r"(\\d+\\.\\d+\\S*)")
        print(vm.serial.match.group(1))

The consoles script as pexpect does (expect() with a list returns the
index; before, after, match; EOF and TIMEOUT). Everything goes through
libcrosvm's public C ABI. Errors from it are `crosvm.Error` subclasses
named for their codes (`KernelError`, `StateError`, ...), none of them
named like a Python builtin, so `from crosvm import *` is harmless; see
docs/python.md.
"""
from __future__ import annotations

import enum
import json
import os
from dataclasses import dataclass, field
from typing import Dict, Optional, Sequence, Tuple, Union

from . import _crosvm
from ._crosvm import (  # noqa: F401  (re-exported)
    DeviceError,
    Error,
    InitrdError,
    InternalError,
    InvalidArgumentError,
    IoError,
    KernelError,
    KvmCapabilityError,
    KvmUnavailableError,
    GuestMemoryError,
    ProtocolError,
    StateError,
    VcpuError,
    WaitTimeoutError,
)
from .console import EOF, TIMEOUT, ExpectTimeout, Serial, _Transcript  # noqa: F401  (re-exported)
from .vsock import HOST_CID, Vsock, VsockListener  # noqa: F401  (re-exported)

__all__ = [
    "VmConfig", "Disk", "Vm", "Serial", "State", "ExitReason", "ExpectTimeout", "EOF", "TIMEOUT", "control_request",
    "create_qcow2", "Vsock", "VsockListener", "HOST_CID",
    "version", "device_kinds", "serve_device", "Error", "InvalidArgumentError", "KvmUnavailableError", "KvmCapabilityError",
    "KernelError", "InitrdError", "GuestMemoryError", "VcpuError", "IoError", "StateError",
    "WaitTimeoutError", "DeviceError", "ProtocolError", "InternalError",
]

PathLike = Union[str, "os.PathLike[str]"]


def version() -> str:
    """libcrosvm's release, e.g. "0.1.0"."""
    return _crosvm.version()


def device_kinds() -> Dict[str, str]:
    """The device kinds VmConfig.devices takes, each with its summary and
    keys (crosvm_device_kind_help)."""
    return _crosvm.device_kinds()


def create_qcow2(path: PathLike, size: int = 0, backing_file: Optional[PathLike] = None) -> None:
    """Creates an empty qcow2 image at `path` (which must not exist) of
    `size` bytes, or over `backing_file` and of its size (crosvm's
    create_qcow2, crosvm_create_qcow2). A relative backing file is found
    beside the image. A disk over it needs allow-backing=true."""
    _crosvm.create_qcow2(os.fspath(path), _integer("size", size, 2**62),
                         os.fspath(backing_file) if backing_file is not None else "")


def serve_device(kind: str, options: str, socket: PathLike) -> None:
    """Serves one device of the library ("block" with a block list such as
    "path=disk.img,ro=true", or "rng" with "") over vhost-user on a Unix
    socket at `socket`, to the first VMM that connects (crosvm_device_serve:
    VmConfig(devices=[("vhost-user", "type=block,socket=...")]), or QEMU).
    Blocks (without the GIL) until that VMM disconnects; a VMM that breaks
    the protocol raises crosvm.ProtocolError."""
    _crosvm.serve_device(kind, options, os.fspath(socket))


class State(enum.IntEnum):
    """Where a VM is in its life: created -> running <-> paused -> stopping -> stopped."""
    CREATED = 0
    RUNNING = 1
    PAUSED = 2
    STOPPING = 3
    STOPPED = 4


class ExitReason(enum.IntEnum):
    """Why a VM stopped."""
    NONE = 0       # it has not
    POWEROFF = 1   # the guest powered off
    RESET = 2      # the guest rebooted
    CRASH = 3      # a triple fault or a vCPU KVM could not run
    PANIC = 4      # the guest kernel panicked
    STOPPED = 5    # the host stopped it
    ERROR = 6      # the VMM failed (see Vm.exit_message)


@dataclass
class Disk:
    """A virtio-blk disk over a raw or qcow2 image (/dev/vda, /dev/vdb, ... in order).
    Read-only unless read_only=False, as crosvm-launch's -d: a harness
    never alters a golden image by accident."""
    path: PathLike
    read_only: bool = True
    root: bool = False        # root=/dev/vda on the command line
    id: Optional[str] = None  # the serial the guest reads (<= 20 bytes)
    # crosvm's other --block keys (docs/launcher.md), with its defaults.
    sparse: bool = True          # discard offered, write-zeroes may free space
    lock: bool = True            # an OFD lock against other VMMs
    direct: bool = False         # O_DIRECT for aligned requests
    block_size: int = 512        # the logical block size the guest sees
    num_queues: int = 1          # request queues (1 to 16)
    allow_backing: bool = False  # follow a qcow2 image's backing file

    def _keys(self) -> str:
        """The keys beyond add_disk's, as a block list ("" when all are the defaults)."""
        keys = []
        for name, default in (("sparse", True), ("lock", True), ("direct", False), ("allow_backing", False)):
            if getattr(self, name) != default:
                keys.append(f"{name.replace('_', '-')}={'true' if getattr(self, name) else 'false'}")
        for name, default in (("block_size", 512), ("num_queues", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidArgumentError(f"Disk.{name} must be an integer, not {value!r}")
            if value != default:
                keys.append(f"{name.replace('_', '-')}={value}")
        return ",".join(keys)


_CONSOLES = ("serial", "virtio")


@dataclass
class VmConfig:
    """What to build. `kernel=None` boots the built-in demo guest.

    `console` is where the kernel's console goes and what `Vm.serial`
    reads: "serial" (an 8250 UART, ttyS0) or "virtio" (a virtio console,
    hvc0). `log_level` is "error", "warning", "info" or "debug"; the log is
    kept in `Vm.log`. `hugepages=False` keeps guest RAM in small pages
    (crosvm_config_set_hugepages). `rng` is on by default, as in the C ABI
    and crosvm-launch. `syslog_tag` tags the lines of `("serial",
    "type=syslog")` ports (crosvm_config_set_syslog_tag; by default the
    program's name).

    `sandbox=True` runs each disk and registry device in a jailed process
    of its own (crosvm_config_set_sandbox; docs/security.md); off by
    default, as in the C ABI. The helper it runs, crosvm-device, is
    `sandbox_helper`, else the CROSVM_DEVICE_HELPER environment variable,
    else the installed one (a wheel does not carry it).

    `devices` names devices as crosvm's command line does, (kind,
    "key=value,...") pairs parsed by the library (crosvm_config_add_device),
    e.g. ("block", "path=disk.img,ro=true") or ("serial",
    "type=file,path=out.log,num=2"); `crosvm.device_kinds()` lists the
    kinds and their keys. They are added after `disks`, and before the
    console, which keeps port 1 of its kind.

    A bare path in `disks` is a read-only disk, as `-d PATH` in
    crosvm-launch; `Disk(path, read_only=False)` is a writable one.

    `serial_ports` and `virtio_consoles` add more consoles that Python
    scripts (`Vm.port(number)`, `Vm.port(number, virtio=True)`): serial
    ports 2 to 4 (ttyS1..ttyS3) and virtio consoles 1 to 4 (hvc0..hvc3),
    besides the one `console` names.
    """
    kernel: Optional[PathLike] = None
    initrd: Optional[PathLike] = None
    params: Union[str, Sequence[str]] = ()
    memory_mib: int = 256
    vcpus: int = 1
    disks: Sequence[Union[Disk, PathLike]] = field(default_factory=list)
    rng: bool = True
    hugepages: bool = True
    sandbox: bool = False
    sandbox_helper: Optional[PathLike] = None
    console: str = "serial"
    control_socket: Optional[PathLike] = None
    log_level: str = "info"
    devices: Sequence[Tuple[str, str]] = ()
    serial_ports: Sequence[int] = ()
    virtio_consoles: Sequence[int] = ()
    syslog_tag: Optional[str] = None

    def _ports(self) -> list:
        """(virtio, number) of every console Python scripts, the console's first."""
        if self.console not in _CONSOLES:
            raise InvalidArgumentError(f"console must be 'serial' or 'virtio', not {self.console!r}")
        ports = [(self.console == "virtio", 1)]
        for virtio, numbers in ((False, self.serial_ports), (True, self.virtio_consoles)):
            for number in numbers:
                if isinstance(number, bool) or not isinstance(number, int) or not 1 <= number <= 4:
                    raise InvalidArgumentError(f"a console's number is 1 to 4, not {number!r}")
                if (virtio, number) in ports:
                    what = "virtio console" if virtio else "serial port"
                    raise InvalidArgumentError(f"{what} {number} is named twice (the console is port 1 of its kind)")
                ports.append((virtio, number))
        return ports

    def _build(self) -> _crosvm.Config:
        native = _crosvm.Config()
        native.set_memory_mib(_integer("memory_mib", self.memory_mib, 2**64 - 1))
        native.set_vcpu_count(_integer("vcpus", self.vcpus, 2**32 - 1))
        if self.kernel is None:
            native.set_demo_kernel()
        else:
            native.set_kernel(os.fspath(self.kernel))
        if self.initrd is not None:
            native.set_initrd(os.fspath(self.initrd))
        for params in [self.params] if isinstance(self.params, str) else self.params:
            native.append_params(params)
        for disk in self.disks:
            if not isinstance(disk, Disk):
                disk = Disk(disk)  # read-only, as crosvm-launch's -d
            keys = disk._keys()
            if not keys:
                native.add_disk(os.fspath(disk.path), disk.read_only, disk.root, disk.id)
                continue
            # The library's block list, the one parser every front end shares.
            path = os.fspath(disk.path)
            if '"' in path or (disk.id is not None and '"' in disk.id):
                raise InvalidArgumentError(f"a Disk with {keys} cannot have a '\"' in its path or id")
            items = [f'path="{path}"', f"ro={'true' if disk.read_only else 'false'}",
                     f"root={'true' if disk.root else 'false'}", keys]
            if disk.id is not None:
                items.append(f'id="{disk.id}"')
            native.add_device("block", ",".join(items))
        for device in self.devices:
            if not (isinstance(device, tuple) and len(device) == 2 and all(isinstance(x, str) for x in device)):
                raise InvalidArgumentError(f"a device is a (kind, options) pair of strings, not {device!r}")
            native.add_device(device[0], device[1])
        native.set_rng(bool(self.rng))
        native.set_hugepages(bool(self.hugepages))
        if self.syslog_tag is not None:
            native.set_syslog_tag(str(self.syslog_tag))
        native.set_sandbox(bool(self.sandbox),
                           os.fspath(self.sandbox_helper) if self.sandbox_helper is not None else "", False)
        for index, (virtio, number) in enumerate(self._ports()):
            native.add_serial(number, virtio, "buffer", index == 0, "")
        if self.control_socket is not None:
            native.set_control_socket(os.fspath(self.control_socket))
        levels = {"error": 0, "warning": 1, "warn": 1, "info": 2, "debug": 3}
        if self.log_level not in levels:
            raise InvalidArgumentError(f"log_level must be one of {', '.join(levels)}, not {self.log_level!r}")
        native.set_log_level(levels[self.log_level])
        return native


def _integer(name: str, value: int, largest: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidArgumentError(f"{name} must be a non-negative integer, not {value!r}")
    if value > largest:
        raise InvalidArgumentError(f"{name} must be at most {largest}, not {value}")
    return value


class Vm:
    """A virtual machine, built from a VmConfig (nothing runs until start()).

    Use it as a context manager: leaving the block stops and frees the VM,
    whatever happened inside.
    """

    def __init__(self, config: VmConfig):
        self._native = _crosvm.Vm(config._build())
        self._ports = {port: Serial(self, *port) for port in config._ports()}
        self.serial = self._ports[(config.console == "virtio", 1)]
        self.vsock = Vsock(self)

    def port(self, number: int, virtio: bool = False) -> Serial:
        """A console Python scripts: serial port `number` (1 is ttyS0) or,
        with virtio=True, virtio console `number` (1 is hvc0). `serial` is
        the one `console` named."""
        found = self._ports.get((bool(virtio), number))
        if found is None:
            known = ", ".join(serial.name for serial in self._ports.values())
            raise InvalidArgumentError(f"no such console here (known: {known}); VmConfig's serial_ports and "
                                       "virtio_consoles add them")
        return found

    @property
    def ports(self) -> list:
        """Every console Python scripts, the console first."""
        return list(self._ports.values())

    def __enter__(self) -> "Vm":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def start(self) -> None:
        """Starts the vCPUs; returns at once."""
        self._native.start()

    def wait(self, timeout: Optional[float] = None) -> Optional[ExitReason]:
        """Waits until the VM stops (at most `timeout` seconds; None:
        forever) and returns why, or None if it still runs."""
        reason = self._native.wait(timeout)
        return None if reason is None else ExitReason(reason)

    def pause(self) -> None:
        """Holds every vCPU: the guest makes no progress until resume()."""
        self._native.pause()

    def resume(self) -> None:
        """Lets the vCPUs held by pause() run again."""
        self._native.resume()

    def power_button(self) -> None:
        """Presses the ACPI power button and returns at once: a guest that
        listens (an ACPI button driver and acpid, or systemd-logind) shuts
        down in order, and wait() then returns ExitReason.POWEROFF."""
        self._native.power_button()

    def stop(self) -> ExitReason:
        """Stops the VM in order and returns why it stopped (STOPPED unless
        the guest had already ended it)."""
        self._native.stop()
        return self.exit_reason

    def request_stop(self) -> None:
        """Asks the VM to stop and returns at once (wait() tells when)."""
        self._native.request_stop()

    def close(self) -> None:
        """Stops the VM if it runs and frees it. Idempotent."""
        self._native.close()

    @property
    def state(self) -> State:
        """Where the VM is in its life (State.RUNNING, ...)."""
        return State(self._native.state())

    @property
    def exit_reason(self) -> ExitReason:
        """Why the VM stopped (ExitReason.NONE while it runs)."""
        return ExitReason(self._native.exit_reason())

    @property
    def exit_message(self) -> str:
        """A sentence about why the VM stopped ("" while it runs)."""
        return self._native.exit_message()

    @property
    def control_socket(self) -> Optional[str]:
        """The control socket's path, if the VM has one."""
        return self._native.control_socket_path() or None

    @property
    def log(self) -> str:
        """The VM's log so far, one "level: message" line per entry."""
        return self._native.log().contents(0).decode(errors="replace")


def control_request(socket: PathLike, request: Union[str, dict], timeout: float = 30.0) -> Union[dict, str]:
    """Sends one request to a VM's control socket (another process's too)
    and returns the answer, in the request's dialect (docs/control-socket.md).
    crosvm's requests, named as its VmRequest: control_request(path,
    "Powerbtn") -> "Ok", control_request(path, {"DiskCommand": {"disk_index":
    0, "command": {"Resize": {"new_size": n}}}}) -> "Ok". Ours:
    control_request(path, "status") -> {"ok": True, "status": {...}}, or
    {"request": "disk_resize", "disk": 0, "size": n}. A refusal raises the
    matching crosvm.Error subclass (crosvm's {"Err": 95}, a request the VM
    does not serve: crosvm.ProtocolError)."""
    if isinstance(request, str) and not request[:1].isupper():
        request = {"request": request}  # ours: "status", "suspend", ...
    return json.loads(_crosvm.control_request(os.fspath(socket), json.dumps(request), timeout))
