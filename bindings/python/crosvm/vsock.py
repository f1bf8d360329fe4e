"""The host's end of a VM's vsock device (crosvm's --vsock cid=N on the
kernel's vhost-vsock): stream sockets to the guest's listeners, and a
listener for the guest's connections to the host (CID 2)."""
from __future__ import annotations

import errno
import socket
import time
from typing import TYPE_CHECKING, Optional, Tuple

from ._crosvm import StateError, WaitTimeoutError

if TYPE_CHECKING:
    from . import Vm

HOST_CID = 2  # what the guest connects to to reach the host
# What a connect() to a guest that is not listening yet ends in: its
# driver resets the connection, or it has no driver yet and nothing answers.
_NOT_YET = (errno.ECONNRESET, errno.ECONNREFUSED, errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENODEV)


class Vsock:
    """vm.vsock: sockets between the host and the guest's CID."""

    def __init__(self, vm: "Vm"):
        self._vm = vm

    @property
    def cid(self) -> int:
        """The guest's CID (crosvm_vm_vsock_cid)."""
        cid = self._vm._native.vsock_cid()
        if cid == 0:
            raise StateError("the VM has no vsock device (VmConfig(devices=[(\"vsock\", \"cid=N\")]))")
        return cid

    def connect(self, port: int, timeout: Optional[float] = 60.0) -> socket.socket:
        """A stream socket connected to the guest's listener on `port`. A
        guest still booting, or not listening yet, is tried again until
        `timeout` seconds (None: no limit) have passed; then
        crosvm.WaitTimeoutError (also Python's TimeoutError). The socket is
        Python's own, in blocking mode."""
        cid = self.cid
        deadline = time.monotonic() + (float("inf") if timeout is None else timeout)
        last: Optional[OSError] = None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeoutError(f"vsock port {port} of the guest (CID {cid}) did not accept a connection "
                                       f"in {timeout:g} s (last: {last})")
            connection = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
            connection.settimeout(min(remaining, 5.0))
            try:
                connection.connect((cid, port))
            except (socket.timeout, OSError) as error:
                connection.close()
                if isinstance(error, OSError) and not isinstance(error, socket.timeout) \
                        and error.errno not in _NOT_YET:
                    raise
                last = error
                time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
                continue
            connection.settimeout(None)
            return connection

    def listen(self, port: int, backlog: int = 16) -> "VsockListener":
        """A listener for the guest's connections to host port `port`
        (the guest connects to CID 2). Only this VM's connections are
        accepted; another guest's are closed."""
        return VsockListener(self.cid, port, backlog)


class VsockListener:
    """The host's listening socket for one VM's connections; a context manager."""

    def __init__(self, cid: int, port: int, backlog: int):
        self._cid = cid
        self._socket = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
        try:
            self._socket.bind((socket.VMADDR_CID_ANY, port))
            self._socket.listen(backlog)
        except OSError:
            self._socket.close()
            raise
        self.port = self._socket.getsockname()[1]

    def accept(self, timeout: Optional[float] = 60.0) -> Tuple[socket.socket, int]:
        """The next connection from the guest and the guest's port; waits
        at most `timeout` seconds (None: no limit), then
        crosvm.WaitTimeoutError."""
        deadline = time.monotonic() + (float("inf") if timeout is None else timeout)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeoutError(f"the guest (CID {self._cid}) did not connect to host port {self.port} "
                                       f"in {timeout:g} s")
            self._socket.settimeout(min(remaining, 3600.0))
            try:
                connection, (peer, peer_port) = self._socket.accept()
            except socket.timeout:
                continue
            if peer != self._cid:
                connection.close()  # another VM's
                continue
            connection.settimeout(None)
            return connection, peer_port

    def fileno(self) -> int:
        return self._socket.fileno()

    def close(self) -> None:
        self._socket.close()

    def __enter__(self) -> "VsockListener":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
