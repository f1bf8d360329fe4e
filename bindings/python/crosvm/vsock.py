"""The host's end of a VM's vsock device: stream sockets to the guest's
listeners, and a listener for the guest's connections to the host (CID 2).
Both kinds of device work the same from here: the kernel's vhost-vsock
("cid=N", AF_VSOCK sockets, needs /dev/vhost-vsock) and the userspace
vsock ("socket=PATH", Unix sockets, needs no root)."""
from __future__ import annotations

import errno
import os
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

    @property
    def socket_path(self) -> Optional[str]:
        """A userspace vsock's Unix socket (socket=PATH), or None for the
        kernel's vhost-vsock."""
        return self._vm._native.vsock_socket_path() or None

    def connect(self, port: int, timeout: Optional[float] = 60.0) -> socket.socket:
        """A stream socket connected to the guest's listener on `port`. A
        guest still booting, or not listening yet, is tried again until
        `timeout` seconds (None: no limit) have passed; then
        crosvm.WaitTimeoutError (also Python's TimeoutError). The socket is
        Python's own, in blocking mode: AF_VSOCK on the kernel's vsock, a
        Unix stream past its "CONNECT"/"OK" exchange on the userspace one."""
        cid = self.cid
        path = self.socket_path
        deadline = time.monotonic() + (float("inf") if timeout is None else timeout)
        last: Optional[Exception] = None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeoutError(f"vsock port {port} of the guest (CID {cid}) did not accept a connection "
                                       f"in {timeout:g} s (last: {last})")
            if path is not None:
                connection, last = _connect_userspace(path, port, min(remaining, 5.0))
                if connection is not None:
                    return connection
                time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))
                continue
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
        accepted; another guest's are closed. On the userspace vsock it is
        the Unix socket "<socket>_<port>" (removed when closed)."""
        return VsockListener(self.cid, port, backlog, self.socket_path)


def _connect_userspace(path: str, port: int, timeout: float):
    """One try: the connected stream, or None and why not. The device
    closes the stream without "OK" while the guest does not listen."""
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    connection.settimeout(timeout)
    try:
        connection.connect(path)
        connection.sendall(b"CONNECT %d\n" % port)
        answer = b""
        while not answer.endswith(b"\n") and len(answer) < 32:
            chunk = connection.recv(1)  # the line alone: what follows is the guest's
            if not chunk:
                break
            answer += chunk
    except (socket.timeout, OSError) as error:
        connection.close()
        if isinstance(error, OSError) and not isinstance(error, socket.timeout) \
                and error.errno not in _NOT_YET + (errno.ENOENT, errno.EPIPE):
            raise
        return None, error
    if not answer.startswith(b"OK "):
        connection.close()
        return None, ConnectionRefusedError(f"the guest refused port {port} ({answer!r})")
    connection.settimeout(None)
    return connection, None


class VsockListener:
    """The host's listening socket for one VM's connections; a context manager."""

    def __init__(self, cid: int, port: int, backlog: int, userspace_path: Optional[str] = None):
        self._cid = cid
        self._path = None if userspace_path is None else f"{userspace_path}_{port}"
        family = socket.AF_VSOCK if self._path is None else socket.AF_UNIX
        self._socket = socket.socket(family, socket.SOCK_STREAM)
        try:
            if self._path is None:
                self._socket.bind((socket.VMADDR_CID_ANY, port))
            else:
                if os.path.exists(self._path):
                    os.unlink(self._path)  # a listener before this one left it
                self._socket.bind(self._path)
            self._socket.listen(backlog)
        except OSError:
            self._socket.close()
            raise
        self.port = self._socket.getsockname()[1] if self._path is None else port

    def accept(self, timeout: Optional[float] = 60.0) -> Tuple[socket.socket, Optional[int]]:
        """The next connection from the guest and the guest's port (None on
        the userspace vsock, whose streams do not carry it); waits at most
        `timeout` seconds (None: no limit), then crosvm.WaitTimeoutError."""
        deadline = time.monotonic() + (float("inf") if timeout is None else timeout)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise WaitTimeoutError(f"the guest (CID {self._cid}) did not connect to host port {self.port} "
                                       f"in {timeout:g} s")
            self._socket.settimeout(min(remaining, 3600.0))
            try:
                connection, address = self._socket.accept()
            except socket.timeout:
                continue
            if self._path is not None:
                connection.settimeout(None)
                return connection, None  # only this VM's broker reaches this path
            peer, peer_port = address
            if peer != self._cid:
                connection.close()  # another VM's
                continue
            connection.settimeout(None)
            return connection, peer_port

    def fileno(self) -> int:
        return self._socket.fileno()

    def close(self) -> None:
        self._socket.close()
        if self._path is not None:
            try:
                os.unlink(self._path)
            except FileNotFoundError:
                pass

    def __enter__(self) -> "VsockListener":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
