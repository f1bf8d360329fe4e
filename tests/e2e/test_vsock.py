"""virtio-vsock with Debian's kernel and its vmw_vsock_virtio_transport,
on the kernel's vhost-vsock and on the userspace vsock (run by nobody):
the host's sockets (AF_VSOCK, or the VM's Unix socket) and the guest's
(bin/vsock-io, built by the tests) talk both ways, each side connecting; a
guest that floods a host that does not read costs the VMM a bounded
amount of memory; and the mistakes a user can make with a CID are one line
and exit 1."""
import hashlib
import json
import os
import socket
import subprocess
import threading
import time

import pytest

from test_net import NOBODY, unprivileged_dir  # noqa: F401  (a fixture)

HANG_GUARD = 240  # a guard against hangs, never a timing check
MIB = 1 << 20
HOST_CID = 2


@pytest.fixture(params=["sandboxed", "in-the-vmm"])
def sandbox_mode(request) -> str:
    """Jailed (crosvm-launch's default: the jail's seccomp policy must let
    the kernel's rings be driven) and in the VMM (conftest's boot adds
    --disable-sandbox)."""
    return request.param


def guest_cid() -> int:
    # Unique among this host's VMs (the nested machine runs one test at a time).
    return 1000 + os.getpid() % 100000


class KernelVsock:
    """The host's end on the kernel's vhost-vsock: AF_VSOCK sockets."""

    def __init__(self, cid: int):
        self.cid = cid
        self.option = f"cid={cid}"
        self.described = f"vsock (virtio-vsock, cid {cid}, vhost-vsock)"

    def connect(self, port: int) -> socket.socket:
        connection = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
        connection.settimeout(HANG_GUARD)
        try:
            connection.connect((self.cid, port))
        except OSError:
            connection.close()
            raise
        return connection

    def listener(self, port: int) -> socket.socket:
        server = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
        server.bind((socket.VMADDR_CID_ANY, port))
        return server

    def from_this_guest(self, address) -> bool:
        return address[0] == self.cid


class UserVsock:
    """The host's end on the userspace vsock: the VM's Unix socket, and
    PATH_P for the guest's connections (open to the VMM's user, nobody)."""

    def __init__(self, cid: int, path: str):
        self.cid = cid
        self.path = path
        self.option = f"cid={cid},socket={path}"
        self.described = f"vsock (virtio-vsock, cid {cid}, userspace on {path})"

    def connect(self, port: int) -> socket.socket:
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        connection.settimeout(HANG_GUARD)
        try:
            connection.connect(self.path)
            connection.sendall(b"CONNECT %d\n" % port)
            answer = b""
            while not answer.endswith(b"\n"):
                chunk = connection.recv(1)
                if not chunk:
                    raise ConnectionRefusedError(f"the guest refused port {port}")
                answer += chunk
            assert answer.startswith(b"OK "), answer
        except OSError:
            connection.close()
            raise
        return connection

    def listener(self, port: int) -> socket.socket:
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(f"{self.path}_{port}")
        os.chmod(f"{self.path}_{port}", 0o777)
        return server

    def from_this_guest(self, address) -> bool:
        return True  # only this VM's broker reaches PATH_P


def connect_when_listening(host, port: int) -> socket.socket:
    """Connects to a guest listener that the guest's shell is starting."""
    deadline = time.monotonic() + HANG_GUARD
    while True:
        try:
            return host.connect(port)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def rss_kib(pid: int) -> int:
    """The resident memory of a process and every process below it (the
    VMM and its jailed devices)."""
    children: dict = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parent = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        pending.extend(children.get(current, []))
        try:
            with open(f"/proc/{current}/status") as status:
                for line in status:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def receive_all(connection: socket.socket) -> bytes:
    chunks = []
    while chunk := connection.recv(MIB):
        chunks.append(chunk)
    return b"".join(chunks)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def guest_sha256(guest, path: str) -> str:
    return guest.run(f"sha256sum {path}").split()[0]


@pytest.mark.parametrize("transport,sandbox_mode", [("vhost-vsock", "sandboxed"), ("vhost-vsock", "in-the-vmm"),
                                                     ("userspace", "sandboxed")])
def test_host_and_guest_exchange_a_mib_each_way_each_side_connecting_and_100_connections_at_once(
        boot, launcher, kernel, initramfs, transport, sandbox_mode, unprivileged_dir):  # noqa: F811
    """The userspace vsock is run by nobody: no root, no /dev/vhost-vsock
    (the in-the-VMM half of its code is the unit tests' own)."""
    cid = guest_cid()
    sock = os.path.join(unprivileged_dir, "control.sock")
    if transport == "vhost-vsock":
        host = KernelVsock(cid)
        guest = boot("--vsock", host.option, "-s", sock)
    else:
        host = UserVsock(cid, os.path.join(unprivileged_dir, "vm.vsock"))
        guest = boot(command=[*NOBODY, launcher, "run", "-i", initramfs, "-p", "console=ttyS0 reboot=k", "-s", sock,
                              "--vsock", host.option, kernel])
    status = subprocess.run([launcher, "status", sock], capture_output=True, text=True, timeout=HANG_GUARD)
    devices = json.loads(status.stdout)["status"]["devices"]
    assert any(line.startswith(host.described) for line in devices), devices
    assert guest.run("vsock-io cid").strip() == str(cid)

    # The host connects: 1 MiB to the guest, then 1 MiB from it.
    to_guest = os.urandom(MIB)
    guest.run("vsock-io listen 5000 </dev/null >/tmp/from-host 2>/tmp/listen.err & :")
    with connect_when_listening(host, 5000) as connection:
        connection.sendall(to_guest)
        connection.shutdown(socket.SHUT_WR)
        assert receive_all(connection) == b""
    assert guest.run("sleep 0.2; wait; cat /tmp/listen.err").strip() == ""
    assert guest_sha256(guest, "/tmp/from-host") == sha256(to_guest)
    guest.run("head -c 1048576 /dev/urandom >/tmp/to-host")
    guest.run("vsock-io listen 5001 </tmp/to-host >/dev/null & :")
    with connect_when_listening(host, 5001) as connection:
        connection.shutdown(socket.SHUT_WR)
        from_guest = receive_all(connection)
    assert len(from_guest) == MIB
    assert sha256(from_guest) == guest_sha256(guest, "/tmp/to-host")

    # The guest connects to the host: 1 MiB each way on one connection.
    reply = os.urandom(MIB)
    received: dict = {}
    with host.listener(6000) as server:
        server.listen(1)
        server.settimeout(HANG_GUARD)

        def serve():
            connection, address = server.accept()
            with connection:
                connection.settimeout(HANG_GUARD)
                received["peer"] = host.from_this_guest(address)
                received["data"] = receive_all(connection)  # until the guest's stdin ended
                connection.sendall(reply)

        thread = threading.Thread(target=serve)
        thread.start()
        answer = guest.run(f"vsock-io connect {HOST_CID} 6000 </tmp/to-host >/tmp/from-host2; echo exit $?",
                           timeout=HANG_GUARD)
        thread.join(HANG_GUARD)
    assert "exit 0" in answer, answer
    assert received["peer"]
    assert sha256(received["data"]) == guest_sha256(guest, "/tmp/to-host")
    assert guest_sha256(guest, "/tmp/from-host2") == sha256(reply)

    # 100 connections at once, each echoed by a guest process of its own.
    guest.run("vsock-io echo 7000 100 >/tmp/echo.out 2>&1 & :")
    connections = [connect_when_listening(host, 7000)]
    for _ in range(99):
        connections.append(host.connect(7000))
    messages = [b"%03d" % index + os.urandom(4093) for index in range(len(connections))]
    for connection, message in zip(connections, messages):
        connection.sendall(message)
    for connection, message in zip(connections, messages):
        echoed = b""
        while len(echoed) < len(message):
            chunk = connection.recv(len(message) - len(echoed))
            assert chunk, "a connection closed before its echo"
            echoed += chunk
        assert echoed == message
        connection.close()
    assert guest.run("sleep 0.5; wait; cat /tmp/echo.out").strip() == "echoed 100"

    if transport == "userspace":
        # A guest that floods a host program that does not read: the VMM
        # (and its device processes) hold a connection's credit, no more.
        with host.listener(6500) as server:
            server.listen(1)
            server.settimeout(HANG_GUARD)
            before = rss_kib(guest.process.pid)
            guest.run("vsock-io connect 2 6500 </dev/zero >/dev/null 2>&1 & :")
            flood, _ = server.accept()
            with flood:
                time.sleep(3)  # the guest writes until its credit is spent
                grown = rss_kib(guest.process.pid) - before
                assert grown < 8 * 1024, f"the VMM grew by {grown} KiB under a flood"
                # The flood was real: the bytes are there, and whole.
                flood.settimeout(HANG_GUARD)
                taken = 0
                while taken < 4 * MIB:
                    chunk = flood.recv(MIB)
                    assert chunk and chunk.count(0) == len(chunk)
                    taken += len(chunk)
        guest.run("kill $(pidof vsock-io) 2>/dev/null; wait; :")
    guest.send("poweroff -f\n")
    assert guest.wait(HANG_GUARD) == 0


def test_a_cid_in_use_a_reserved_cid_and_a_missing_device_are_each_one_line_and_exit_1_or_35(
        boot, launcher, kernel, initramfs, tmp_path):
    cid = guest_cid()
    first = boot("--vsock", str(cid))  # crosvm's bare form
    assert first.run("vsock-io cid").strip() == str(cid)

    def refused(*options: str, code: int = 1) -> str:
        """code: 1 for a set-up error, 35 for a list the library cannot take (crosvm's statuses)."""
        ran = subprocess.run([launcher, "run", "-i", initramfs, *options, kernel], capture_output=True, text=True,
                             timeout=HANG_GUARD)
        assert ran.returncode == code, ran.stdout + ran.stderr
        lines = [line for line in ran.stderr.splitlines() if line.strip()]
        assert len(lines) == 1, ran.stderr
        return lines[0]

    assert f"vsock: CID {cid} is in use by another VM on this host" in refused("--vsock", f"cid={cid}")
    for reserved in ("0", "1", "2", "4294967295"):
        assert f"CID {reserved} is reserved" in refused("--vsock", f"cid={reserved}", code=35)
    missing = refused("--vsock", f"cid={cid + 1},device={tmp_path}/vhost-vsock")
    assert "is missing (load the kernel's vhost_vsock module: modprobe vhost_vsock)" in missing, missing
    # The first VM never noticed.
    assert first.run("vsock-io cid").strip() == str(cid)
    first.send("poweroff -f\n")
    assert first.wait(HANG_GUARD) == 0
