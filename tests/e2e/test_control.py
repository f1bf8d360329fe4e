"""The control socket with Debian's kernel: a guest that ticks every second
is suspended and resumed, its disk grows under it, garbage on the socket
does not disturb it, and stop ends the launcher cleanly."""
import json
import os
import socket
import subprocess
import time

HANG_GUARD = 240  # seconds; a hang guard, not a timing check


def control(launcher, *args):
    return subprocess.run([launcher, *args], capture_output=True, text=True, timeout=HANG_GUARD)


def grow_disk_under_the_guest(launcher, guest, sock, disk):
    """Disk 0 (4 MiB) grows to 16 MiB; the guest's driver hears of it
    through a config change."""
    assert guest.run("cat /sys/block/vda/size").strip() == "8192"
    resized = control(launcher, "disk", "resize", "0", "16M", sock)
    assert resized.returncode == 0, resized.stderr
    deadline = time.monotonic() + HANG_GUARD
    while guest.run("cat /sys/block/vda/size").strip() != "32768":
        assert time.monotonic() < deadline, "the guest never saw the new size"
        time.sleep(0.5)
    assert disk.stat().st_size == 16 << 20


def ticks(guest):
    return guest.output.count("tick-")


def test_suspend_resume_resize_and_stop_a_linux_guest(boot, launcher, tmp_path):
    sock = str(tmp_path / "vm.sock")
    disk = tmp_path / "grow.img"
    disk.write_bytes(b"\0" * (4 << 20))
    guest = boot("-s", sock, "--rwdisk", str(disk))
    assert json.loads(control(launcher, "status", sock).stdout)["status"]["state"] == "running"

    grow_disk_under_the_guest(launcher, guest, sock, disk)

    guest.send("(i=0; while true; do echo tick-$i; i=$((i+1)); sleep 1; done) &\n")
    guest.expect(r"tick-2\b")

    assert control(launcher, "suspend", sock).returncode == 0
    held = ticks(guest)
    time.sleep(3)
    assert ticks(guest) == held, "the guest ticked while suspended"
    assert json.loads(control(launcher, "status", sock).stdout)["status"]["state"] == "paused"

    assert control(launcher, "resume", sock).returncode == 0
    guest.expect(rf"tick-{held + 1}\b")

    # 1000 malformed requests in a row on one connection, each answered.
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(HANG_GUARD)
        client.connect(sock)
        client.sendall(b"".join(b"{not json %d\n" % i for i in range(1000)))
        answers = b""
        while answers.count(b"\n") < 1000:
            chunk = client.recv(65536)
            assert chunk, "the VMM closed the connection"
            answers += chunk
    assert all(json.loads(line)["error"] == "CROSVM_ERROR_PROTOCOL" for line in answers.splitlines())
    now = ticks(guest)
    guest.expect(rf"tick-{now + 1}\b")  # undisturbed

    assert control(launcher, "stop", sock).returncode == 0
    assert guest.wait() == 0, guest.errors
    assert not os.path.exists(sock)
