"""crosvm-launch's control socket, as crosvm's users drive it: run -s, then
stop|suspend|resume|status|disk resize from another shell."""
import json
import os
import signal
import socket
import stat
import subprocess
import time

import pytest

from conftest import needs_kvm

HANG_GUARD = 120  # seconds; a hang guard, not a timing check


def control(launcher, *args):
    return subprocess.run([launcher, *args], capture_output=True, text=True, timeout=HANG_GUARD)


class RunningVm:
    """crosvm-launch run -s SOCKET on the ticking guest, its console in a file."""

    def __init__(self, launcher, program, tmp_path, *extra, socket_arg=None):
        self.socket = str(tmp_path / "vm.sock")
        self.console = tmp_path / "console.txt"
        self.console_file = open(self.console, "wb")
        self.process = subprocess.Popen(
            [launcher, "run", "-s", socket_arg or self.socket, *extra, program],
            stdin=subprocess.DEVNULL, stdout=self.console_file, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + HANG_GUARD
        while not self.listening():
            assert self.process.poll() is None, self.process.stderr.read()
            assert time.monotonic() < deadline, "the control socket never appeared"
            time.sleep(0.05)

    def listening(self):
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            probe.connect(self.socket)
            return True
        except OSError:
            return False  # not there yet, or a stale file not yet replaced
        finally:
            probe.close()

    def ticks(self):
        return self.console.read_bytes().count(b"tick")

    def wait_for_ticks(self, more=2):
        start = self.ticks()
        deadline = time.monotonic() + HANG_GUARD
        while self.ticks() < start + more:
            assert time.monotonic() < deadline, "the guest made no progress"
            time.sleep(0.05)

    def finish(self):
        try:
            return self.process.wait(timeout=HANG_GUARD)
        finally:
            self.console_file.close()

    def kill(self):
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.console_file.close()


@pytest.fixture
def running_vm(launcher, guest_program, tmp_path):
    vms = []

    def start(*extra, **kwargs):
        vm = RunningVm(launcher, guest_program("ticker"), tmp_path, *extra, **kwargs)
        vms.append(vm)
        return vm
    yield start
    for vm in vms:
        vm.kill()


@needs_kvm
def test_suspend_resume_status_and_stop(launcher, running_vm):
    vm = running_vm()
    assert stat.S_IMODE(os.stat(vm.socket).st_mode) == 0o600
    vm.wait_for_ticks()

    status = control(launcher, "status", vm.socket)
    assert status.returncode == 0, status.stderr
    answer = json.loads(status.stdout)
    assert answer["ok"] is True
    assert answer["status"]["state"] == "running"
    assert answer["status"]["vcpus"] == 1
    assert answer["status"]["memory_mib"] == 256

    assert control(launcher, "suspend", vm.socket).returncode == 0
    assert json.loads(control(launcher, "status", vm.socket).stdout)["status"]["state"] == "paused"
    held = vm.ticks()
    time.sleep(0.5)
    assert vm.ticks() == held, "the guest made progress while suspended"

    assert control(launcher, "resume", vm.socket).returncode == 0
    vm.wait_for_ticks()

    stop = control(launcher, "stop", vm.socket)
    assert stop.returncode == 0, stop.stderr
    assert vm.finish() == 0
    assert not os.path.exists(vm.socket)


def exchange(client, request):
    """One request packet, one answer packet: as crosvm's Tube."""
    client.send(request)
    return client.recv(65536)


@needs_kvm
def test_crosvm_clients_drive_the_vm_with_its_own_packets(launcher, running_vm):
    """serde_json of crosvm's VmRequest, one per SOCK_SEQPACKET packet, as
    `crosvm stop|suspend|resume|powerbtn` and crosvm_control send them."""
    vm = running_vm()
    vm.wait_for_ticks()
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as client:
        client.settimeout(HANG_GUARD)
        client.connect(vm.socket)
        assert exchange(client, b'"SuspendVcpus"') == b'"Ok"'
        answer = json.loads(exchange(client, b'{"request":"status"}'))  # ours, on the same connection
        assert answer["status"]["state"] == "paused"
        assert exchange(client, b'"ResumeVcpus"') == b'"Ok"'
        assert exchange(client, b'"Sleepbtn"') == b'{"Err":95}'  # crosvm's answer: no such device
        assert exchange(client, b'{"BalloonCommand":"Stats"}') == b'{"Err":95}'
        # This tiny guest has no ACPI driver: the press is answered, and logged as unheard.
        assert exchange(client, b'"Powerbtn"') == b'"Ok"'
        vm.wait_for_ticks()
        assert exchange(client, b'"Exit"') == b'"Ok"'
    assert vm.finish() == 0
    assert "does not listen to it" in vm.process.stderr.read()
    assert not os.path.exists(vm.socket)


@needs_kvm
def test_crosvm_commands_for_devices_we_lack_say_so(launcher, running_vm):
    vm = running_vm()
    for args in (("balloon", "1G"), ("sleepbtn",), ("balloon_stats",)):
        refused = control(launcher, *args, vm.socket)
        assert refused.returncode == 1
        assert "Operation not supported (os error 95)" in refused.stderr, refused.stderr
    assert control(launcher, "powerbtn", vm.socket).returncode == 0
    assert control(launcher, "suspend", "--full", vm.socket).returncode == 0
    assert control(launcher, "resume", "--full", vm.socket).returncode == 0
    vm.wait_for_ticks()
    assert control(launcher, "stop", vm.socket).returncode == 0
    assert vm.finish() == 0


CROSVM_SCRIPT = """#!/bin/sh
# Written for crosvm, as its book shows it: run in one shell, control from another.
set -e
crosvm run --cpus 1 --mem 256 -b "$DISK",ro -s "$SOCK" --serial type=file,path="$CONSOLE",console "$KERNEL" &
vm=$!
until [ -S "$SOCK" ]; do sleep 0.1; done
until grep -q tick "$CONSOLE" 2>/dev/null; do sleep 0.1; done
crosvm suspend "$SOCK"
crosvm resume "$SOCK"
crosvm disk resize 0 1048576 "$SOCK" && exit 9  # a read-only disk must refuse
crosvm stop "$SOCK"
wait $vm
echo "the VM exited $?"
"""


@needs_kvm
def test_a_script_written_for_crosvm_runs_unchanged(launcher, guest_program, tmp_path):
    """The issue's measure: `crosvm` replaced by crosvm-launch (here, a
    `crosvm` on PATH that is crosvm-launch), nothing else changed."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "crosvm").symlink_to(launcher)
    script = tmp_path / "vm.sh"
    script.write_text(CROSVM_SCRIPT)
    disk = tmp_path / "disk.img"
    disk.write_bytes(b"\0" * 65536)
    environment = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "DISK": str(disk),
                   "SOCK": str(tmp_path / "vm.sock"), "CONSOLE": str(tmp_path / "console.txt"),
                   "KERNEL": guest_program("ticker")}
    result = subprocess.run(["sh", str(script)], capture_output=True, text=True, env=environment,
                            stdin=subprocess.DEVNULL, timeout=HANG_GUARD)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip().endswith("the VM exited 0"), result.stdout
    assert "read-only" in result.stderr  # the refused resize said why
    assert not (tmp_path / "vm.sock").exists()


@needs_kvm
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_vm_and_removes_the_socket(running_vm, signum):
    vm = running_vm()
    vm.wait_for_ticks()
    vm.process.send_signal(signum)
    assert vm.finish() == 0
    assert "stopping the VM" in vm.process.stderr.read()
    assert not os.path.exists(vm.socket)


@needs_kvm
def test_a_second_launcher_cannot_take_a_live_socket(launcher, guest_program, running_vm):
    vm = running_vm()
    second = subprocess.run([launcher, "run", "-s", vm.socket, guest_program("ticker")],
                            stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=HANG_GUARD)
    assert second.returncode == 1
    assert "in use by a running process" in second.stderr
    assert control(launcher, "status", vm.socket).returncode == 0  # the first one is untouched


@needs_kvm
def test_a_dead_launchers_socket_is_replaced(launcher, running_vm, tmp_path):
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(tmp_path / "vm.sock"))
    stale.close()  # the file stays, nobody listens: as after kill -9
    vm = running_vm()
    assert control(launcher, "status", vm.socket).returncode == 0


@needs_kvm
def test_a_directory_gets_a_socket_named_after_the_process(launcher, guest_program, tmp_path):
    process = subprocess.Popen([launcher, "run", "-s", str(tmp_path), guest_program("ticker")],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        path = tmp_path / f"crosvm-{process.pid}.sock"
        deadline = time.monotonic() + HANG_GUARD
        while not path.exists():
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        assert control(launcher, "stop", str(path)).returncode == 0
        assert process.wait(timeout=HANG_GUARD) == 0
        assert not path.exists()
    finally:
        if process.poll() is None:
            process.kill()


@needs_kvm
def test_disk_resize_grows_a_writable_disk_and_refuses_others(launcher, running_vm, tmp_path):
    writable = tmp_path / "rw.img"
    read_only = tmp_path / "ro.img"
    for image in (writable, read_only):
        image.write_bytes(b"\0" * (1 << 20))
    vm = running_vm("--rwdisk", str(writable), "-d", str(read_only))

    grown = control(launcher, "disk", "resize", "0", "8M", vm.socket)
    assert grown.returncode == 0, grown.stderr
    assert writable.stat().st_size == 8 << 20
    disks = json.loads(control(launcher, "status", vm.socket).stdout)["status"]["disks"]
    assert disks[0]["size"] == 8 << 20 and disks[0]["read_only"] is False
    assert disks[1]["size"] == 1 << 20 and disks[1]["read_only"] is True

    for args, words in [(("1", "8M"), "read-only"), (("0", "1M"), "shrinking"),
                        (("5", "8M"), "no disk 5"), (("0", "1000"), "512-byte sectors")]:
        refused = control(launcher, "disk", "resize", *args, vm.socket)
        assert refused.returncode == 1
        assert words in refused.stderr, refused.stderr
    assert read_only.stat().st_size == 1 << 20
    vm.wait_for_ticks()


def test_control_commands_report_usage_and_unreachable_sockets(launcher, tmp_path):
    for args, words in [(("stop",), "usage: crosvm-launch stop SOCKET"),
                        (("suspend", "a", "b"), "usage: crosvm-launch suspend [--full] SOCKET"),
                        (("powerbtn",), "usage: crosvm-launch powerbtn SOCKET"),
                        (("balloon", "lots", "s"), "SIZE must be a number of bytes"),
                        (("disk", "grow", "0", "1", "s"), "usage: crosvm-launch disk resize"),
                        (("disk", "resize", "x", "1", "s"), "INDEX must be a disk number"),
                        (("disk", "resize", "0", "lots", "s"), "SIZE must be a number of bytes"),
                        (("status", str(tmp_path / "none.sock")), "cannot connect to the control socket")]:
        result = control(launcher, *args)
        # crosvm's statuses: 35 for a command line that cannot be used, 1 for the rest.
        assert result.returncode == (1 if args[0] == "status" else 35), result
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("crosvm-launch: error: "), result.stderr
        assert words in lines[0]
