"""Boot and script virtual machines with libcrosvm.

    import crosvm

    config = crosvm.VmConfig(kernel="bzImage", initrd="initrd.img",
                             params="console=ttyS0", memory_mib=512)
    with crosvm.Vm(config) as vm:
        vm.start()
        vm.serial.expect(r"# ")
        vm.serial.send("uname -r\\n")
        print(vm.serial.expect(r"(\\d+\\.\\d+\\S*)").group(1))

Everything goes through libcrosvm's public C ABI. Errors from it are
`crosvm.Error` subclasses named for their codes (`KernelError`,
`StateError`, ...); see docs/python.md.
"""
from __future__ import annotations

import codecs
import enum
import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, Iterable, Optional, Sequence, Tuple, Union

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
    MemoryError,
    ProtocolError,
    StateError,
    TimeoutError,
    VcpuError,
)

__all__ = [
    "VmConfig", "Disk", "Vm", "Serial", "State", "ExitReason", "ExpectTimeout", "control_request",
    "version", "device_kinds", "serve_device", "Error", "InvalidArgumentError", "KvmUnavailableError", "KvmCapabilityError",
    "KernelError", "InitrdError", "MemoryError", "VcpuError", "IoError", "StateError",
    "TimeoutError", "DeviceError", "ProtocolError", "InternalError",
]

PathLike = Union[str, "os.PathLike[str]"]


def version() -> str:
    """libcrosvm's release, e.g. "0.1.0"."""
    return _crosvm.version()


def device_kinds() -> Dict[str, str]:
    """The device kinds VmConfig.devices takes, each with its summary and
    keys (crosvm_device_kind_help)."""
    return _crosvm.device_kinds()


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


class ExpectTimeout(TimeoutError):
    """Serial.expect() did not see its pattern in time. The message ends
    with the tail of what the guest printed; `.output` holds all of it."""

    def __init__(self, message: str, output: str = ""):
        super().__init__(message)
        self.output = output


@dataclass
class Disk:
    """A virtio-blk disk over a raw image (/dev/vda, /dev/vdb, ... in order)."""
    path: PathLike
    read_only: bool = False
    root: bool = False        # root=/dev/vda on the command line
    id: Optional[str] = None  # the serial the guest reads (<= 20 bytes)


_CONSOLES = ("serial", "virtio")


@dataclass
class VmConfig:
    """What to build. `kernel=None` boots the built-in demo guest.

    `console` is where the kernel's console goes and what `Vm.serial`
    reads: "serial" (an 8250 UART, ttyS0) or "virtio" (a virtio console,
    hvc0). `log_level` is "error", "warning", "info" or "debug"; the log is
    kept in `Vm.log`. `hugepages=False` keeps guest RAM in small pages
    (crosvm_config_set_hugepages). `rng` is on by default, as in the C ABI
    and crosvm-launch.

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
                disk = Disk(disk)
            native.add_disk(os.fspath(disk.path), disk.read_only, disk.root, disk.id)
        for device in self.devices:
            if not (isinstance(device, tuple) and len(device) == 2 and all(isinstance(x, str) for x in device)):
                raise InvalidArgumentError(f"a device is a (kind, options) pair of strings, not {device!r}")
            native.add_device(device[0], device[1])
        native.set_rng(bool(self.rng))
        native.set_hugepages(bool(self.hugepages))
        native.set_sandbox(bool(self.sandbox),
                           os.fspath(self.sandbox_helper) if self.sandbox_helper is not None else "", False)
        if self.console not in _CONSOLES:
            raise InvalidArgumentError(f"console must be 'serial' or 'virtio', not {self.console!r}")
        native.add_serial(1, self.console == "virtio", "buffer", True, "")
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


# Terminal control sequences: CSI (ESC [ ... final byte), OSC (ESC ] ...
# BEL or ESC \) and the short escapes. Shells put them in their output (busybox
# ash asks for the cursor position with ESC [6n after each prompt), where
# they would stand between a pattern such as r"# $" and the end of the text.
_CONTROL_SEQUENCE = re.compile(
    r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[ -/]*[0-Z\\^-~])")
# The start of one that has not fully arrived yet: held back until it has.
_UNFINISHED_SEQUENCE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*|\][^\x07\x1b]*\x1b?|[ -/]*)\Z")
_LONGEST_HELD = 256  # an unterminated sequence longer than this is passed on as text


class _Transcript:
    """What a console printed, as text: decoded as UTF-8 as it arrives (a
    character split between two arrivals is not mangled) and without
    terminal control sequences. It only ever grows at the end, so positions
    in it stay valid. Safe to use from several threads."""

    def __init__(self, buffer: "_crosvm.OutputBuffer"):
        self._buffer = buffer
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._consumed = 0  # bytes of the buffer taken in so far
        self._held = ""     # an unfinished control sequence at the end
        self._text = ""
        self._lock = threading.Lock()

    def text(self) -> str:
        with self._lock:
            return self._update()

    def _update(self) -> str:
        data = self._buffer.contents(self._consumed)
        if data:
            self._consumed += len(data)
            pending = self._held + self._decoder.decode(data)
            unfinished = _UNFINISHED_SEQUENCE.search(pending)
            if unfinished and len(pending) - unfinished.start() <= _LONGEST_HELD:
                pending, self._held = pending[:unfinished.start()], pending[unfinished.start():]
            else:
                self._held = ""
            self._text += _CONTROL_SEQUENCE.sub("", pending)
        return self._text


class Serial:
    """The guest's console: what it printed, and a keyboard.

    What it printed is text: UTF-8 decoded, with terminal control sequences
    (colours, cursor movement, a shell's cursor-position query) taken out,
    so that `expect(r"# $")` matches a prompt whatever the shell sends
    after it. `raw_output` has the bytes as they came. `expect()` searches
    what arrived since the previous match, as pexpect does; `read()`
    returns what arrived since the previous read().
    """

    def __init__(self, vm: "Vm", virtio: bool):
        self._vm = vm
        self._virtio = virtio
        self._buffer = vm._native.output(virtio, 1)
        self._transcript = _Transcript(self._buffer)
        self._match_position = 0
        self._read_position = 0

    @property
    def output(self) -> str:
        """Everything the guest printed so far, as text."""
        return self._transcript.text()

    @property
    def raw_output(self) -> bytes:
        """Everything the guest printed so far, byte for byte."""
        return self._buffer.contents(0)

    def read(self) -> str:
        """What arrived since the previous read(), as text."""
        text = self._transcript.text()
        new, self._read_position = text[self._read_position:], len(text)
        return new

    def send(self, text: Union[str, bytes], timeout: float = 30.0) -> None:
        """Types `text` (str is UTF-8 encoded) into the guest's console,
        waiting while the port's input buffer is full."""
        data = text.encode() if isinstance(text, str) else bytes(text)
        deadline = time.monotonic() + timeout
        while data:
            taken = self._vm._native.write_input(self._virtio, 1, data)
            data = data[taken:]
            if data:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the guest did not take {len(data)} bytes of input in {timeout} s")
                time.sleep(0.01)

    def expect(self, pattern: Union[str, "re.Pattern[str]"], timeout: float = 60.0) -> "re.Match[str]":
        """Waits until `pattern` (a regular expression) matches what the
        guest printed since the previous match; returns the match. Raises
        ExpectTimeout (with the tail of the output) when it does not in
        `timeout` seconds or the VM stops first."""
        regex = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while True:
            # Looked at before the output: a stopped VM prints no more, so
            # what is searched below is all there will ever be.
            stopped = self._vm.state == State.STOPPED
            known = self._buffer.size()
            text = self._transcript.text()
            match = regex.search(text, self._match_position)
            if match:
                self._match_position = match.end()
                return match
            remaining = deadline - time.monotonic()
            if remaining <= 0 or stopped:
                why = (f"the VM stopped ({self._vm.exit_reason.name.lower()})" if stopped
                       else f"not within {timeout:g} s")
                tail = text[-2000:]
                raise ExpectTimeout(f"{regex.pattern!r} did not appear: {why}; the guest printed last:\n{tail}",
                                    text)
            self._buffer.wait_for_more(known, min(remaining, 0.5))


class Vm:
    """A virtual machine, built from a VmConfig (nothing runs until start()).

    Use it as a context manager: leaving the block stops and frees the VM,
    whatever happened inside.
    """

    def __init__(self, config: VmConfig):
        self._native = _crosvm.Vm(config._build())
        self.serial = Serial(self, config.console == "virtio")

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


def control_request(socket: PathLike, request: Union[str, dict], timeout: float = 30.0) -> dict:
    """Sends one request to a VM's control socket (another process's too)
    and returns the answer as a dict: control_request(path, "suspend") or
    control_request(path, {"request": "disk_resize", "disk": 0, "size": n}).
    A refusal raises the matching crosvm.Error subclass."""
    if isinstance(request, str):
        request = {"request": request}
    return json.loads(_crosvm.control_request(os.fspath(socket), json.dumps(request), timeout))
