"""vhost-user on both sides with Debian's kernel and real peers: our VMM with
our own backend process (`crosvm-launch device block`), with
qemu-storage-daemon's vhost-user-blk export and with Debian's virtiofsd;
QEMU with our backend. Each peer serves one VMM, so a boot the nested
runner retries starts its peers again (boot's `prepare`)."""
import os
import pathlib
import signal
import subprocess
import time

import pytest

from test_virtio import GUEST_TEXT, HOST_TEXT, make_ext4

HANG_GUARD = 60  # a guard against hangs, never a timing check
VIRTIOFSD = "/usr/lib/qemu/virtiofsd"


class Peer:
    """A process that serves a socket (a backend, or a daemon exporting
    one), started again for each boot attempt."""

    def __init__(self, tmp_path: pathlib.Path, name: str, command):
        self.socket = tmp_path / f"{name}.sock"
        self.log = tmp_path / f"{name}.log"
        self.command = command
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        self.stop()
        if self.socket.exists():
            self.socket.unlink()
        self.process = subprocess.Popen(self.command(self.socket), stdin=subprocess.DEVNULL,
                                        stdout=self.log.open("ab"), stderr=subprocess.STDOUT)
        deadline = time.monotonic() + HANG_GUARD
        while not self.socket.exists():
            assert self.process.poll() is None, f"{self.command(self.socket)} exited: {self.log.read_text()}"
            assert time.monotonic() < deadline, f"no socket from {self.command(self.socket)}"
            time.sleep(0.05)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def wait(self) -> int:
        return self.process.wait(HANG_GUARD)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def peers():
    started = []

    def make(*args):
        peer = Peer(*args)
        started.append(peer)
        return peer

    yield make
    for peer in started:
        peer.stop()


def check_ext4(image: pathlib.Path) -> None:
    written = subprocess.run(["debugfs", "-R", "cat /guest.txt", str(image)], capture_output=True,
                             text=True, check=True)
    assert written.stdout.strip() == GUEST_TEXT
    fsck = subprocess.run(["e2fsck", "-fn", str(image)], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


def use_ext4_disk(guest) -> None:
    guest.run("mount -t ext4 /dev/vda /mnt")
    assert guest.run("cat /mnt/host.txt") == HOST_TEXT
    guest.run(f"echo '{GUEST_TEXT}' > /mnt/guest.txt && sync && umount /mnt")


def status(launcher: str, socket: pathlib.Path) -> str:
    return subprocess.run([launcher, "status", str(socket)], capture_output=True, text=True,
                          timeout=HANG_GUARD, check=True).stdout


def test_our_backend_process_serves_the_disk_and_its_death_costs_only_the_device(
        boot, peers, launcher, tmp_path):
    image = make_ext4(tmp_path / "data.img", {"host.txt": HOST_TEXT})
    backend = peers(tmp_path, "blk",
                    lambda socket: [launcher, "device", "block", "--socket", str(socket), f"path={image}"])
    control = tmp_path / "vm.sock"
    guest = boot("--vhost-user", f"type=block,socket={backend.socket}", "-s", str(control),
                 prepare=backend.start)
    assert "vhost-user0 (block, " in status(launcher, control)
    assert ": running" in status(launcher, control)
    # The existing ext4 checks, unchanged, through the backend process; the
    # guest's notifications reach it straight from KVM (the VMM holds no
    # copy of the data path) and MSI-X carries its interrupts.
    use_ext4_disk(guest)
    assert "PCI-MSI" in guest.run("grep virtio /proc/interrupts")

    # The backend dies: the VMM lives, the device needs a reset, the
    # control socket answers and the console works.
    backend.process.send_signal(signal.SIGKILL)
    backend.wait()
    deadline = time.monotonic() + HANG_GUARD
    while "needs reset" not in status(launcher, control):
        assert time.monotonic() < deadline, status(launcher, control)
        time.sleep(0.1)
    assert guest.run("echo still here") == "still here\n"
    assert guest.process.poll() is None
    guest.send("poweroff -f\n")
    assert guest.wait() == 0, guest.errors
    assert "vhost-user backend" in guest.errors and "closed the connection" in guest.errors
    check_ext4(image)


def test_qemu_drives_a_disk_served_by_our_backend(boot, peers, launcher, kernel, initramfs, tmp_path):
    image = make_ext4(tmp_path / "data.img", {"host.txt": HOST_TEXT})
    backend = peers(tmp_path, "blk",
                    lambda socket: [launcher, "device", "block", "--socket", str(socket), f"path={image}"])
    qemu = ["qemu-system-x86_64", "-nodefaults", "-display", "none", "-no-reboot",
            "-machine", "q35,accel=kvm", "-cpu", "host", "-m", "256",
            # vhost-user needs guest RAM the backend can map.
            "-object", "memory-backend-memfd,id=ram,size=256M,share=on", "-numa", "node,memdev=ram",
            "-chardev", f"socket,id=blk,path={backend.socket}",
            "-device", "vhost-user-blk-pci,chardev=blk",
            "-serial", "stdio", "-kernel", kernel, "-initrd", initramfs,
            "-append", "console=ttyS0 reboot=k panic=-1"]
    guest = boot(command=qemu, prepare=backend.start)
    use_ext4_disk(guest)
    guest.send("poweroff -f\n")
    assert guest.wait() == 0, guest.errors
    # QEMU's going is the end of our backend's session, not an error.
    assert backend.wait() == 0, backend.output()
    check_ext4(image)


def test_our_vmm_uses_qemu_storage_daemon_for_its_disk(boot, peers, tmp_path):
    image = make_ext4(tmp_path / "data.img", {"host.txt": HOST_TEXT})
    daemon = peers(tmp_path, "qsd", lambda socket: [
        "qemu-storage-daemon",
        "--blockdev", f"driver=file,node-name=file,filename={image}",
        "--blockdev", "driver=raw,node-name=disk,file=file",
        "--export", f"type=vhost-user-blk,id=export,node-name=disk,addr.type=unix,addr.path={socket},"
                    "writable=on"])
    guest = boot("--vhost-user", f"type=block,socket={daemon.socket}", prepare=daemon.start)
    assert guest.run("cat /sys/block/vda/ro").strip() == "0"
    use_ext4_disk(guest)
    guest.send("poweroff -f\n")
    assert guest.wait() == 0, guest.errors
    daemon.process.terminate()
    daemon.wait()
    check_ext4(image)


@pytest.mark.skipif(not os.path.exists(VIRTIOFSD), reason=f"no {VIRTIOFSD} (apt-get install qemu-system-common)")
def test_our_vmm_mounts_a_virtiofsd_share(boot, peers, tmp_path):
    share = tmp_path / "share"
    share.mkdir()
    (share / "host.txt").write_text(HOST_TEXT)
    daemon = peers(tmp_path, "virtiofsd", lambda socket: [
        VIRTIOFSD, f"--socket-path={socket}", "-o", f"source={share}", "-o", "cache=none"])
    guest = boot("--vhost-user", f"type=fs,socket={daemon.socket},tag=hostshare", prepare=daemon.start)
    guest.run("mount -t virtiofs hostshare /mnt")
    assert guest.run("cat /mnt/host.txt") == HOST_TEXT
    guest.run(f"echo '{GUEST_TEXT}' > /mnt/guest.txt && sync")
    assert (share / "guest.txt").read_text().strip() == GUEST_TEXT
    guest.run("umount /mnt")
    guest.send("poweroff -f\n")
    assert guest.wait() == 0, guest.errors
