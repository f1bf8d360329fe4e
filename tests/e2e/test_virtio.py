"""Virtio devices on PCI with Debian's kernel and its own drivers: a disk the
guest reads and writes (and the host then checks), a read-only disk, the
rng, and a virtio console in both directions; each test both with the
devices jailed (crosvm-launch's default) and in the VMM."""
import errno
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

from test_control import control
from test_sandbox import device_processes

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
    # Two queues on two vCPUs: the guest's block layer gets one each.
    guest = boot("-c", "2", "--block", f"{image},num-queues=2")
    assert guest.run("ls /sys/block/vda/mq").split() == ["0", "1"]
    # virtio-rng is there by default: /dev/hwrng yields data.
    assert "virtio_rng" in guest.run("cat /sys/class/misc/hw_random/rng_current")
    random = guest.run("head -c 32 /dev/hwrng | od -An -v -tx1").split()
    assert len(random) == 32
    assert len(set(random)) > 8  # not a constant fill
    assert guest.run("cat /sys/block/vda/ro").strip() == "0"
    guest.run("mount -t ext4 /dev/vda /mnt")
    assert guest.run("cat /mnt/host.txt") == HOST_TEXT
    # Four writers at once on two vCPUs, each flushed: the requests
    # overlap on the disk's I/O threads and every byte lands.
    sums = guest.run("for i in 1 2 3 4; do head -c 4194304 /dev/urandom > /tmp/f$i; done; "
                     "for i in 1 2 3 4; do dd if=/tmp/f$i of=/mnt/f$i bs=64k "
                     "oflag=direct conv=fsync 2>/dev/null & done; wait; sha256sum /tmp/f1 /tmp/f2 /tmp/f3 /tmp/f4")
    expected = {line.split()[1].removeprefix("/tmp/"): line.split()[0] for line in sums.strip().splitlines()}
    assert len(expected) == 4, sums
    guest.run(f"echo '{GUEST_TEXT}' > /mnt/guest.txt && sync && umount /mnt")
    # MSI-X carried the disk's interrupts.
    assert "PCI-MSI" in guest.run("grep virtio /proc/interrupts")
    guest.send("poweroff -f\n")
    assert guest.wait() == 0, guest.errors

    written = subprocess.run(["debugfs", "-R", "cat /guest.txt", str(image)], capture_output=True,
                             text=True, check=True)
    assert written.stdout.strip() == GUEST_TEXT
    for name, sha in expected.items():
        data = subprocess.run(["debugfs", "-R", f"cat /{name}", str(image)], capture_output=True,
                              check=True).stdout
        assert hashlib.sha256(data).hexdigest() == sha, name
    fsck = subprocess.run(["e2fsck", "-fn", str(image)], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


def test_a_read_only_disk_refuses_writes_and_compressed_qcow2_disks_read_back(boot, tmp_path):
    writable = make_ext4(tmp_path / "rw.img", {})
    read_only = make_ext4(tmp_path / "ro.img", {"host.txt": HOST_TEXT})
    before = digest(read_only)
    # The same file system compressed by qemu-img, deflate and zstd: each
    # disk's (jailed) process loads its decompressor before its jail.
    compressed = []
    for kind in ("zlib", "zstd"):
        image = tmp_path / f"{kind}.qcow2"
        subprocess.run(["qemu-img", "convert", "-q", "-c", "-f", "raw", "-O", "qcow2", "-o",
                        f"compression_type={kind}", str(read_only), str(image)], check=True)
        compressed += ["--disk", str(image)]
    guest = boot("--rwdisk", str(writable), "--disk", str(read_only), *compressed)
    assert guest.run("cat /sys/block/vdb/ro").strip() == "1"
    failed = guest.run("dd if=/dev/zero of=/dev/vdb bs=512 count=1 oflag=direct 2>&1; echo status=$?")
    assert "status=0" not in failed, failed
    for disk in ("vdb", "vdc", "vdd"):
        guest.run(f"mount -t ext4 -o ro /dev/{disk} /mnt")
        assert guest.run("cat /mnt/host.txt") == HOST_TEXT, disk
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


def test_images_the_vmm_must_not_serve_as_raw_are_one_clear_error(launcher, kernel, tmp_path, sandbox_mode):
    """A qcow2 image with a backing file (not followed unless allowed) and a
    format this VMM does not read: refused by name, never served as raw."""
    overlay = tmp_path / "overlay.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(tmp_path / "base.raw"), "1M"], check=True)
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", "base.raw", "-F", "raw", str(overlay)],
                   check=True)
    vmdk = tmp_path / "disk.img"
    subprocess.run(["qemu-img", "create", "-q", "-f", "vmdk", str(vmdk), "1M"], check=True)
    flags = ["--disable-sandbox"] if sandbox_mode == "in-the-vmm" else []
    for args, message in ((("--rwdisk", str(overlay)), "allow-backing=true"),
                          (("--rwdisk", str(vmdk)), "is a VMDK image")):
        result = subprocess.run([launcher, "run", *flags, *args, kernel], capture_output=True, text=True,
                                timeout=300)
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], result.stderr


def test_a_direct_disk_is_written_past_the_page_cache_or_refused_in_one_line(boot, launcher, kernel, tmp_path,
                                                                               sandbox_mode):
    """direct=true: the VMM opens the image a second time with O_DIRECT. Where
    the file system has none (tmpfs before Linux 6.6, as in the nested
    runner) that is one line of error, found before any device starts."""
    image = make_ext4(tmp_path / "direct.img", {"host.txt": HOST_TEXT})
    try:
        os.close(os.open(image, os.O_RDWR | os.O_DIRECT))
        supported = True
    except OSError as error:
        assert error.errno == errno.EINVAL, error
        supported = False
    if not supported:
        flags = ["--disable-sandbox"] if sandbox_mode == "in-the-vmm" else []
        result = subprocess.run([launcher, "run", *flags, "--block", f"{image},direct=true", kernel],
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 1
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "does not support O_DIRECT" in lines[0], result.stderr
        return
    guest = boot("--block", f"{image},direct=true")
    guest.run("mount -t ext4 /dev/vda /mnt")
    assert guest.run("cat /mnt/host.txt") == HOST_TEXT
    guest.run(f"echo '{GUEST_TEXT}' > /mnt/guest.txt && sync && umount /mnt")
    guest.send("poweroff -f\n")
    assert guest.wait() == 0, guest.errors
    written = subprocess.run(["debugfs", "-R", "cat /guest.txt", str(image)], capture_output=True, text=True,
                             check=True)
    assert written.stdout.strip() == GUEST_TEXT


def qemu_img_check(image: pathlib.Path) -> dict:
    checked = subprocess.run(["qemu-img", "check", "-f", "qcow2", "--output=json", str(image)],
                             capture_output=True, text=True)
    assert checked.returncode in (0, 3), checked.stdout + checked.stderr  # 3: leaked clusters only
    return json.loads(checked.stdout)


def test_a_qcow2_disk_takes_an_ext4_that_qemu_reads_back_and_checks_clean(boot, launcher, tmp_path):
    image = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "256M"], check=True)
    sock = str(tmp_path / "vm.sock")
    guest = boot("-s", sock, "--rwdisk", str(image))
    status = json.loads(control(launcher, "status", sock).stdout)["status"]
    assert any(line.startswith("disk0 (virtio-blk, vda, qcow2") for line in status["devices"]), status
    assert guest.run("cat /sys/block/vda/size").strip() == str(256 * 2048)
    made = guest.run("mke2fs.e2fsprogs -q -t ext4 /dev/vda && mount -t ext4 /dev/vda /mnt && echo mounted")
    assert made.strip().endswith("mounted"), made
    assert guest.run("head -c 25165824 /dev/urandom > /mnt/data && sync && echo written").strip() == "written"
    written = guest.run("sha256sum < /mnt/data").split()[0]
    # Read back from the disk, not the page cache.
    remounted = guest.run("umount /mnt && echo 3 > /proc/sys/vm/drop_caches && mount -t ext4 -o ro /dev/vda /mnt "
                          "&& echo remounted")
    assert remounted.strip() == "remounted", remounted
    assert guest.run("sha256sum < /mnt/data").split()[0] == written
    assert guest.run("umount /mnt && echo unmounted").strip() == "unmounted"
    # Grown past what its L1 table covers (512 MiB a table entry here).
    resized = control(launcher, "disk", "resize", "0", "1G", sock)
    assert resized.returncode == 0, resized.stderr
    assert guest.run("cat /sys/block/vda/size").strip() == str(1024 * 2048)
    # Written past the old end with O_DIRECT and never flushed: a clean
    # power-off still leaves it in the image (the disk writes back its
    # tables as the VM ends, jailed or not).
    late = guest.run("dd if=/dev/urandom of=/tmp/late bs=64k count=4 2>/dev/null && "
                     "dd if=/tmp/late of=/dev/vda bs=64k seek=9000 oflag=direct 2>/dev/null && "
                     "sha256sum < /tmp/late").split()[0]
    guest.send("poweroff -f\n")
    assert guest.wait() == 0, guest.errors

    checked = qemu_img_check(image)
    assert checked.get("corruptions", 0) == 0 and checked.get("leaks", 0) == 0, checked
    # QEMU's own reading of the image holds the guest's file system.
    raw = tmp_path / "disk.raw"
    subprocess.run(["qemu-img", "convert", "-O", "raw", str(image), str(raw)], check=True)
    fsck = subprocess.run(["e2fsck", "-fn", str(raw)], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr
    data = subprocess.run(["debugfs", "-R", "cat /data", str(raw)], capture_output=True, check=True).stdout
    assert hashlib.sha256(data).hexdigest() == written
    assert raw.stat().st_size == 1 << 30
    with open(raw, "rb") as disk:
        disk.seek(9000 * 65536)
        assert hashlib.sha256(disk.read(4 * 65536)).hexdigest() == late


def test_a_qcow2_disk_whose_writer_is_killed_mid_write_has_no_corruption(boot, tmp_path, sandbox_mode):
    """SIGKILL to whoever writes the image while the guest writes: the disk's
    device process when it is jailed, the VMM otherwise."""
    image = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "128M"], check=True)
    guest = boot("--rwdisk", str(image))
    # Scattered 256 KiB writes, each flushed, until the writer dies.
    guest.send("while true; do dd if=/dev/urandom of=/dev/vda bs=64k count=4 seek=$((RANDOM % 2000)) "
               "conv=fsync 2>/dev/null; done &\n")
    deadline = time.monotonic() + HANG_GUARD
    while image.stat().st_size < 24 * 1024 * 1024:  # many clusters allocated: mid-run
        assert time.monotonic() < deadline, "the guest's writes did not reach the image"
        time.sleep(0.2)
    if sandbox_mode == "sandboxed":
        writers = [pid for pid in device_processes() if opens(pid, image)]
        assert len(writers) == 1
        os.kill(writers[0], 9)
        assert guest.wait() == 33  # a device process that dies ends the VM, as crosvm
    else:
        guest.kill()
    checked = qemu_img_check(image)
    assert checked.get("corruptions", 0) == 0, checked
    # And the image opens and is written again, this time through crosvm's
    # sparse= and block-size= keys.
    guest = boot("--block", f"{image},sparse=false,block-size=4096")
    assert guest.run("cat /sys/block/vda/queue/logical_block_size").strip() == "4096"
    assert guest.run("cat /sys/block/vda/queue/discard_max_bytes").strip() == "0"
    guest.run("dd if=/dev/urandom of=/dev/vda bs=64k count=16 conv=fsync 2>/dev/null")
    guest.send("poweroff -f\n")
    assert guest.wait() == 0, guest.errors
    assert qemu_img_check(image).get("corruptions", 0) == 0


def opens(pid: int, path: pathlib.Path) -> bool:
    try:
        return any(os.readlink(link) == str(path) for link in pathlib.Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False
