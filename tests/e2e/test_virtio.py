"""Virtio devices on PCI with Debian's kernel and its own drivers: a disk the
guest reads and writes (and the host then checks), a read-only disk, the
rng, and a virtio console in both directions; each test both with the
devices jailed (crosvm-launch's default) and in the VMM."""
import fcntl
import hashlib
import json
import os
import pathlib
import struct
import subprocess
import termios
import time

import pytest

HANG_GUARD = 240  # a guard against hangs, never a timing check
HOST_TEXT = "written by the host before boot\n"
GUEST_TEXT = "written by the guest"


@pytest.fixture(params=["sandboxed", "in-the-vmm"], autouse=True)
def sandbox_mode(request) -> str:
    """Every test here runs twice: with crosvm-launch's default, each device
    in a jailed process (the guest cannot tell), and with --disable-sandbox
    (conftest's boot adds it)."""
    return request.param


def make_ext4(path: pathlib.Path, files: dict[str, str], size: str = "64M") -> pathlib.Path:
    root = path.with_suffix(".root")
    root.mkdir()
    for name, text in files.items():
        (root / name).write_text(text)
    subprocess.run(["mkfs.ext4", "-q", "-F", "-d", str(root), str(path), size], check=True)
    return path


def digest(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_guest_reads_and_writes_an_ext4_disk_that_stays_clean_and_reads_its_hwrng(boot, tmp_path):
    image = make_ext4(tmp_path / "data.img", {"host.txt": HOST_TEXT})
    guest = boot("--rwdisk", str(image))
    # virtio-rng is there by default: /dev/hwrng yields data.
    assert "virtio_rng" in guest.run("cat /sys/class/misc/hw_random/rng_current")
    random = guest.run("head -c 32 /dev/hwrng | od -An -v -tx1").split()
    assert len(random) == 32
    assert len(set(random)) > 8  # not a constant fill
    assert guest.run("cat /sys/block/vda/ro").strip() == "0"
    guest.run("mount -t ext4 /dev/vda /mnt")
    assert guest.run("cat /mnt/host.txt") == HOST_TEXT
    guest.run(f"echo '{GUEST_TEXT}' > /mnt/guest.txt && sync && umount /mnt")
    # MSI-X carried the disk's interrupts.
    assert "PCI-MSI" in guest.run("grep virtio /proc/interrupts")
    guest.send("poweroff -f\n")
    assert guest.wait() == 0, guest.errors

    written = subprocess.run(["debugfs", "-R", "cat /guest.txt", str(image)], capture_output=True,
                             text=True, check=True)
    assert written.stdout.strip() == GUEST_TEXT
    fsck = subprocess.run(["e2fsck", "-fn", str(image)], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


def test_a_read_only_disk_refuses_writes(boot, tmp_path):
    writable = make_ext4(tmp_path / "rw.img", {})
    read_only = make_ext4(tmp_path / "ro.img", {"host.txt": HOST_TEXT})
    before = digest(read_only)
    guest = boot("--rwdisk", str(writable), "--disk", str(read_only))
    assert guest.run("cat /sys/block/vdb/ro").strip() == "1"
    failed = guest.run("dd if=/dev/zero of=/dev/vdb bs=512 count=1 oflag=direct 2>&1; echo status=$?")
    assert "status=0" not in failed, failed
    guest.run("mount -t ext4 -o ro /dev/vdb /mnt")
    assert guest.run("cat /mnt/host.txt") == HOST_TEXT
    guest.run("umount /mnt")
    guest.send("poweroff -f\n")
    assert guest.wait() == 0
    assert digest(read_only) == before


def test_the_root_disk_comes_first_and_is_on_the_command_line_and_no_rng_means_none(boot, tmp_path):
    data = make_ext4(tmp_path / "data.img", {})
    root = make_ext4(tmp_path / "root.img", {"root-marker": "root\n"})
    guest = boot("--rwdisk", str(data), "--root", str(root), "--no-rng")
    assert "root=/dev/vda ro" in guest.run("cat /proc/cmdline")
    guest.run("mount -t ext4 -o ro /dev/vda /mnt")
    assert guest.run("cat /mnt/root-marker").strip() == "root"
    assert "virtio" not in guest.run("cat /sys/class/misc/hw_random/rng_current 2>&1")
    guest.send("poweroff -f\n")
    assert guest.wait() == 0


def test_a_virtio_console_carries_the_shell_both_ways(boot, tmp_path):
    kernel_log = tmp_path / "kernel.log"
    guest = boot("--serial", f"type=file,num=1,path={kernel_log},console=true",
                 "--serial", "type=stdout,hardware=virtio-console,num=1,stdin=true",
                 params="reboot=k crosvm.shell=hvc0", kernel_log=kernel_log)
    # Everything this test typed and read went through hvc0.
    assert guest.run("tty").strip() == "/dev/hvc0"
    assert guest.run("echo $((6 * 7))").strip() == "42"
    guest.send("poweroff -f\n")
    assert guest.wait() == 0
    # The kernel's console stayed on the UART (its file); /init's words and
    # the shell went to hvc0 (stdout).
    kernel_text = kernel_log.read_text(errors="replace")
    assert "Linux version" in kernel_text
    assert "crosvm-e2e: init reached" not in kernel_text
    assert "crosvm-e2e: init reached" in guest.output


def queued_bytes(fd: int) -> int:
    return struct.unpack("i", fcntl.ioctl(fd, termios.FIONREAD, b"\0\0\0\0"))[0]


def test_hvc0_output_waits_for_its_reader_without_holding_up_the_vmm(boot, launcher, tmp_path):
    # The console's output goes to a FIFO that the test does not read yet.
    # The guest writes a megabyte: the pipe fills, the VMM's 64 KiB fill,
    # and the guest waits (virtio's flow control: Linux's hvc driver spins
    # until the device takes its buffer, as it would on a slow line). The
    # VMM meanwhile serves its control socket; once the reader reads, every
    # byte arrives, in order, and the guest goes on.
    fifo = tmp_path / "hvc0.fifo"
    os.mkfifo(fifo)
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # so the VMM's open does not wait
    sock = tmp_path / "vm.sock"
    try:
        guest = boot("--serial", "type=stdout,num=1,console=true,stdin=true",
                     "--serial", f"type=file,hardware=virtio-console,num=1,path={fifo}",
                     "-s", str(sock))
        guest.run("echo crosvm-hvc0-marker > /dev/hvc0")
        guest.send("head -c 1048576 /dev/zero > /dev/hvc0 &\n")
        deadline = time.monotonic() + HANG_GUARD
        queued, since = -1, time.monotonic()
        while queued <= 0 or time.monotonic() - since < 2:  # full: unchanged for 2 s
            assert time.monotonic() < deadline, "the console's output never reached the FIFO"
            now = queued_bytes(reader)
            if now != queued:
                queued, since = now, time.monotonic()
            time.sleep(0.1)

        status = subprocess.run([launcher, "status", str(sock)], capture_output=True, text=True,
                                timeout=HANG_GUARD)
        assert status.returncode == 0, status.stderr
        assert json.loads(status.stdout)["status"]["state"] == "running"

        # hvc0 is a terminal: its newline arrives as "\r\n".
        received = bytearray()
        megabyte = 1 << 20
        while b"\n" not in received or len(received) - received.index(b"\n") - 1 < megabyte:
            assert time.monotonic() < deadline + HANG_GUARD, f"{len(received)} bytes arrived"
            try:
                chunk = os.read(reader, 65536)
            except BlockingIOError:
                time.sleep(0.05)
                continue
            received.extend(chunk)
        line_end = received.index(b"\n")
        assert bytes(received[:line_end]).rstrip(b"\r") == b"crosvm-hvc0-marker"
        rest = received[line_end + 1:]
        assert len(rest) == megabyte and rest.count(0) == megabyte  # no diff of a megabyte on failure
        guest.run("wait")
        guest.send("poweroff -f\n")
        assert guest.wait() == 0
    finally:
        os.close(reader)


@pytest.mark.parametrize("args, message", [
    (("--rwdisk", "/nonexistent/disk.img"), "No such file"),
    (("--rwdisk", "/"), "Is a directory"),
    (("--disk", "/dev/null"), "neither a file nor a block device"),
])
def test_a_bad_disk_is_one_clear_error(launcher, kernel, args, message, sandbox_mode):
    flags = ["--disable-sandbox"] if sandbox_mode == "in-the-vmm" else []
    result = subprocess.run([launcher, "run", *flags, *args, kernel], capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
