"""The control socket with Debian's kernel, driven as crosvm's own clients
drive crosvm's: raw SOCK_SEQPACKET packets holding serde_json of its
VmRequest. A guest that ticks every second is suspended and resumed, its
disk grows under it, 1000 random packets do not disturb it, and the ACPI
power button makes it unmount its ext4 disk and power off, after which the
host finds the file system clean and the file it wrote whole."""
import hashlib
import json
import os
import random
import socket
import subprocess
import time

HANG_GUARD = 240  # seconds; a hang guard, not a timing check


class CrosvmClient:
    """A connection as crosvm's Tube makes one: one packet per message."""

    def __init__(self, path):
        self.socket = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.socket.settimeout(HANG_GUARD)
        self.socket.connect(path)

    def request(self, message):
        self.socket.send(message.encode() if isinstance(message, str) else message)
        answer = self.socket.recv(1 << 20)
        assert answer, "the VMM closed the connection"
        return json.loads(answer)

    def close(self):
        self.socket.close()


def control(launcher, *args):
    """crosvm-launch's control commands (test_net, test_sandbox and test_virtio use them)."""
    return subprocess.run([launcher, *args], capture_output=True, text=True, timeout=HANG_GUARD)


def ticks(guest):
    return guest.output.count("tick-")


def wait_for_the_guest_to_see_16_mib(guest, disk):
    deadline = time.monotonic() + HANG_GUARD
    while guest.run("cat /sys/block/vda/size").strip() != "32768":
        assert time.monotonic() < deadline, "the guest never saw the new size"
        time.sleep(0.5)
    assert disk.stat().st_size == 16 << 20


def grow_disk_under_the_guest(launcher, guest, sock, disk):
    """Disk 0 (4 MiB) grows to 16 MiB with `crosvm-launch disk resize`;
    the guest's driver hears of it through a config change."""
    assert guest.run("cat /sys/block/vda/size").strip() == "8192"
    resized = control(launcher, "disk", "resize", "0", "16M", sock)
    assert resized.returncode == 0, resized.stderr
    wait_for_the_guest_to_see_16_mib(guest, disk)


def grow_disk_with_a_crosvm_packet(client, guest, disk):
    """The same with crosvm's own DiskCommand, as its crosvm_control sends it."""
    assert guest.run("cat /sys/block/vda/size").strip() == "8192"
    resize = {"DiskCommand": {"disk_index": 0, "command": {"Resize": {"new_size": 16 << 20}}}}
    assert client.request(json.dumps(resize)) == "Ok"
    wait_for_the_guest_to_see_16_mib(guest, disk)


def random_packets(count):
    """Random bytes, and valid requests cut short (never valid JSON)."""
    generator = random.Random(1204)
    whole = [b'"Exit"', b'"Powerbtn"', b'"SuspendVcpus"', b'{"request":"stop"}']
    for i in range(count):
        if i % 2:
            request = generator.choice(whole)
            yield request[:generator.randrange(1, len(request))]
        else:
            yield bytes(generator.randrange(256) for _ in range(generator.randrange(1, 512)))


def listen_to_the_power_button(guest):
    """busybox's acpid, as a small distribution runs it: the ACPI button
    driver turns the press into KEY_POWER on an input device, and acpid
    runs /etc/acpi/PWRF/00000080 for it."""
    handler = r"#!/bin/sh\nexec >/dev/console 2>&1\nsync && umount /mnt && echo acpid: unmounted && poweroff -f\n"
    guest.run(f"mkdir -p /etc/acpi/PWRF && printf '{handler}' > /etc/acpi/PWRF/00000080 && "
              "chmod +x /etc/acpi/PWRF/00000080")
    assert "Power Button" in guest.run("cat /sys/class/input/input*/name")
    # In the foreground (in the background of the shell): busybox 1.35's
    # daemon mode leaves its configuration directory before it looks there.
    guest.run("acpid -d -c /etc/acpi > /tmp/acpid.log 2>&1 & true")
    # A press before it opens the input device would reach nobody.
    guest.run("until ls -l /proc/$(pidof acpid)/fd 2>/dev/null | grep -q input/event; do sleep 0.1; done")


def test_crosvm_packets_drive_a_linux_guest_to_a_clean_power_off(boot, tmp_path):
    sock = str(tmp_path / "vm.sock")
    disk = tmp_path / "grow.img"
    disk.write_bytes(b"\0" * (4 << 20))
    filesystem = tmp_path / "fs.img"
    subprocess.run(["mkfs.ext4", "-q", "-F", str(filesystem), "32M"], check=True)
    guest = boot("-s", sock, "--rwdisk", str(disk), "--rwdisk", str(filesystem))
    client = CrosvmClient(sock)
    try:
        status = client.request('{"request":"status"}')  # ours: crosvm has no status
        assert status["status"]["state"] == "running"

        grow_disk_with_a_crosvm_packet(client, guest, disk)

        guest.send("(i=0; while true; do echo tick-$i; i=$((i+1)); sleep 1; done) &\n")
        guest.expect(r"tick-2\b")
        assert client.request('"SuspendVcpus"') == "Ok"
        held = ticks(guest)
        time.sleep(3)
        assert ticks(guest) == held, "the guest ticked while suspended"
        assert client.request('{"request":"status"}')["status"]["state"] == "paused"
        assert client.request('"ResumeVcpus"') == "Ok"
        guest.expect(rf"tick-{held + 1}\b")

        # 1000 random packets on one connection, each answered with an error.
        for packet in random_packets(1000):
            answer = client.request(packet)
            assert isinstance(answer, dict) and "ErrString" in answer, (packet, answer)
        assert client.request('"Sleepbtn"') == {"Err": 95}  # crosvm's answer: no such device
        now = ticks(guest)
        guest.expect(rf"tick-{now + 1}\b")  # undisturbed
        guest.run("kill $!")

        # A file on the ext4 disk, left in the guest's page cache.
        guest.run("mount /dev/vdb /mnt && dd if=/dev/urandom of=/mnt/data bs=1M count=8 2>/dev/null")
        digest = guest.run("sha256sum /mnt/data").split()[0]
        listen_to_the_power_button(guest)
        assert client.request('"Powerbtn"') == "Ok"
        guest.expect("acpid: unmounted")
        assert guest.wait() == 0, guest.errors  # powered off
    finally:
        client.close()
    assert not os.path.exists(sock)
    fsck = subprocess.run(["e2fsck", "-fn", str(filesystem)], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    data = subprocess.run(["debugfs", "-R", "cat /data", str(filesystem)], capture_output=True, check=True).stdout
    assert hashlib.sha256(data).hexdigest() == digest
