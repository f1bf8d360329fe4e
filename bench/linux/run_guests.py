#!/usr/bin/python3
"""The Linux-guest benchmarks, libcrosvm's launcher and QEMU's microvm side
by side in one run, on a hardware-backed KVM (bench/run starts this inside
the nested runner where the machine has none).

    run_guests.py --build DIR --kernel BZIMAGE --initramfs CPIO --runs N --out JSON

For each run, in an order that rotates between runs (each VMM first in turn):
  boot    a VMM process is started; the time until the guest's /init prints
          its marker on the serial console (nothing but the kernel and the
          initramfs; no disk, no network), with the kernel's full console
          output and with `quiet`: ours, the boot floor (bench-floor boot),
          Debian 12's QEMU and the current one (QEMU10_PREFIX);
  memory  at that moment, the VMM's peak RSS (VmHWM) and the resident part
          of its guest RAM mapping (the memory the guest touched, kernel and
          initramfs included); the overhead is the difference;
  block   a fresh raw image as a virtio-blk disk on PCI; the guest's
          blkbench writes and reads 64 MiB sequentially with O_DIRECT and
          makes 4 KiB random reads and writes, one at a time and 32 at
          once; for ours, also with the disk served by our own backend
          process over vhost-user (crosvm-launch device block), beside the
          in-process disk; ours and QEMU's on a fresh, empty qcow2 image
          (qemu-img create) of the same size; and the floor: blkbench
          itself on this host, on a fresh raw image, opened as the VMMs
          open theirs (no O_DIRECT); then ours, QEMU's and the floor
          again on a disk with a latency of its own (null_blk, 1 ms per
          request, memory-backed), all three with O_DIRECT;
  net     a virtio-net NIC on a TAP in a network namespace this script
          makes (10.0.2.1/24 on the host's side): iperf3 host -> guest and
          guest -> host (-R), and netrr's 1-byte TCP request/response; ours
          and QEMU's virtio-net-pci, each without and with vhost-net, and
          ours on passt (in a namespace of its own that stands for a host,
          the guest's ports forwarded to its loopback); the net guest boots
          its own initramfs (iperf3 and netrr in it);
  vsock   the same guest with a vsock device and vsockbench's server:
          64 MiB host -> guest and guest -> host, then a new connection
          per one-byte round trip for the run's seconds; ours on the
          kernel's vhost-vsock, QEMU's vhost-vsock-pci, and ours on the
          userspace vsock (its Unix socket, in the VMM and jailed);
  sandbox ours again with the devices jailed (crosvm-launch's default:
          boot with a jailed rng, block with a jailed disk), beside ours
          with --disable-sandbox (for the boot: with the same rng, in the
          VMM, crosvm-rng); and ours with every kind of device
          jailed and in use (the network guest, crosvm_bench.devices=1);
          their memory adds the pages the device processes add to the
          VMM's (resident, guest RAM left out, mapped by no page of the
          VMM: /proc/PID/pagemap) to its overhead; their PSS is recorded
          beside.
Guest RAM shared with a device process is a memfd, which gets huge pages
only as the host's shmem_enabled allows: where this script may set it (as
root, in the nested machine) every VM runs with `advise`, as docs/c-api.md
asks of hosts that run devices out of process, and the sandboxed boot is
measured once more with Debian's default `never` (crosvm-sandboxed-never).
Private guest RAM (ours in-process, QEMU's) does not depend on it.
A run that fails (the guest never reaches its marker, a VMM ends early) is
recorded with what it printed, and the run is made again, at most twice.
"""
import argparse
import json
import os
import re
import select
import signal
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from staging import Stage  # noqa: E402

MARKER = b"crosvm-bench: init reached"
DONE = b"crosvm-bench: done"
DEVICES_READY = b"crosvm-bench: devices ready"
PARAMS = "console=ttyS0 reboot=k panic=-1"
# How people boot when they care about speed: the kernel prints errors only.
QUIET_PARAMS = PARAMS + " quiet"
# Debian's current QEMU, unpacked beside the system's by tests/nested/run
# --install-emulator (.ci/install-deps): the second peer.
QEMU10_PREFIX = os.environ.get("CROSVM_NESTED_QEMU_PREFIX", "/opt/crosvm-nested-qemu")
# Each boot twice, with the kernel's full console output and with `quiet`:
# ours, the boot floor (bench-floor boot), QEMU microvm (Debian 12's) and
# QEMU microvm (current); then ours jailed (an rng), with Debian's default
# shmem policy, and with every kind of device jailed and in use.
BOOT_VMMS = ["crosvm", "crosvm-quiet", "floor", "floor-quiet", "qemu", "qemu-quiet", "qemu10", "qemu10-quiet",
             "crosvm-rng", "crosvm-sandboxed"]
MEMORY_MIB = 256
BLOCK_MIB = 64
RANDOM_READS = 2000
SHMEM_ENABLED = "/sys/kernel/mm/transparent_hugepage/shmem_enabled"
BOOT_LIMIT = 180  # seconds: only a guard against a hung guest
ATTEMPTS = 3
NET_READY = b"crosvm-bench: net ready"
NET_NAMESPACE = "crosvm-bench-net"
PASST_NAMESPACE = "crosvm-bench-passt"
TAP = "benchtap0"
HOST_IP = "10.0.2.1"
GUEST_IP = "10.0.2.15"
GUEST_MAC = "52:54:00:12:34:56"
IPERF_PORT, RR_PORT = 5201, 5202
NET_VMMS = ["crosvm", "crosvm-vhost-net", "qemu", "qemu-vhost-net", "crosvm-passt"]
BLOCK_QCOW2_VMMS = ["crosvm-qcow2", "qemu-qcow2"]
# "floor": blkbench itself on the host, on the same kind of image.
BLOCK_VMMS = ["crosvm", "qemu", "crosvm-vhost-user", "crosvm-sandboxed", *BLOCK_QCOW2_VMMS, "floor"]
# The same on a disk with a latency of its own: null_blk, memory-backed,
# 1 ms per request, opened with O_DIRECT by all three (ours direct=true,
# QEMU cache=none): there the host's I/O costs more than a request's trip
# through the VM, and requests that overlap show it.
SLOW_DISK = "/dev/nullb0"
SLOW_VMMS = ["crosvm-slow", "qemu-slow", "floor-slow"]
VSOCK_READY = b"crosvm-bench: vsock ready"
VSOCK_PORT = 5300
VSOCK_CID = 3  # one VM at a time: the kernel frees the CID with its VMM
VSOCK_MIB = 64
VSOCK_VMMS = ["crosvm-vhost-vsock", "qemu-vhost-vsock", "crosvm-user-vsock", "crosvm-user-vsock-sandboxed"]


def crosvm_command(launcher: str, kernel: str, initramfs: str, params: str, disk: str | None,
                   sandbox: bool = False, rng: bool | None = None) -> list[str]:
    # In-process unless `sandbox`: then the devices run jailed (the disk, and
    # an rng, so that a boot without a disk has one device process too).
    # `rng` (by default: when sandboxed) adds the virtio-rng either way.
    devices = ["--sandbox"] if sandbox else ["--disable-sandbox"]
    if not (sandbox if rng is None else rng):
        devices.append("--no-rng")
    command = [launcher, "run", *devices,
               "-m", str(MEMORY_MIB), "-i", initramfs, "-p", params]
    if disk:
        command += ["--rwdisk", disk]
    return command + [kernel]


def qemu_command(qemu: list[str], kernel: str, initramfs: str, params: str, disk: str | None,
                 tap_vhost: bool | None = None, vsock_cid: int | None = None, disk_format: str = "raw",
                 direct: bool = False) -> list[str]:
    # microvm as QEMU's documentation recommends for fast boots (no option
    # ROMs), with the ISA serial port the guest's console is on; PCIe only
    # when there is a virtio-blk-pci disk or a virtio-net-pci NIC (on the
    # TAP, with `tap_vhost` saying whether vhost-net carries it) to put on
    # it. `qemu`: the program and where its firmware is.
    nic = tap_vhost is not None
    machine = "microvm,x-option-roms=off" + (",pcie=on" if disk or nic or vsock_cid else "")
    command = qemu + ["-M", machine, "-enable-kvm", "-cpu", "host",
               "-m", str(MEMORY_MIB), "-smp", "1", "-nodefaults", "-no-user-config",
               "-display", "none", "-serial", "stdio", "-no-reboot",
               "-kernel", kernel, "-initrd", initramfs, "-append", params]
    if disk:
        cache = ",cache=none" if direct else ""  # O_DIRECT, as our direct=true
        command += ["-drive", f"file={disk},if=none,id=disk0,format={disk_format}{cache}",
                    "-device", "virtio-blk-pci,drive=disk0"]
    if nic:
        command += ["-netdev", f"tap,id=net0,ifname={TAP},script=no,downscript=no,vhost={'on' if tap_vhost else 'off'}",
                    "-device", f"virtio-net-pci,netdev=net0,mac={GUEST_MAC},romfile="]
    if vsock_cid:
        command += ["-device", f"vhost-vsock-pci,guest-cid={vsock_cid},romfile="]
    return command


# The first command line of each (benchmark, VMM), for the report: each row
# says exactly what ran.
COMMANDS: dict = {}


def record(benchmark: str, vmm: str, command: list[str]) -> list[str]:
    """Keeps the first command of each (benchmark, VMM); returns `command`."""
    COMMANDS.setdefault(f"{benchmark} {vmm}", [str(word) for word in command])
    return command


def in_namespace(namespace: str, command: list[str]) -> list[str]:
    return ["ip", "netns", "exec", namespace, *command]


def make_namespaces() -> None:
    """The TAP's namespace (the host's side 10.0.2.1/24), and passt's: a
    namespace that stands for a host, with an address and a default route
    for passt to copy (a TAP nobody reads)."""
    remove_namespaces()
    for name, commands in (
            (NET_NAMESPACE, [["link", "set", "lo", "up"], ["tuntap", "add", "dev", TAP, "mode", "tap"],
                             ["addr", "add", f"{HOST_IP}/24", "dev", TAP], ["link", "set", TAP, "up"]]),
            (PASST_NAMESPACE, [["link", "set", "lo", "up"], ["tuntap", "add", "dev", "uplink0", "mode", "tap"],
                               ["addr", "add", f"{GUEST_IP}/24", "dev", "uplink0"],
                               ["link", "set", "uplink0", "up"],
                               ["route", "add", "default", "via", "10.0.2.2"]])):
        subprocess.run(["ip", "netns", "add", name], check=True)
        for command in commands:
            subprocess.run(["ip", "-n", name, *command], check=True)


def remove_namespaces() -> None:
    for name in (NET_NAMESPACE, PASST_NAMESPACE):
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


def guest_ram_rss_kib(pid: int) -> int:
    """Resident KiB of the mapping that holds guest RAM: the one mapping of
    MEMORY_MIB (QEMU's may carry a little alignment slack)."""
    size = rss = None
    best = 0
    with open(f"/proc/{pid}/smaps") as smaps:
        for line in smaps:
            header = re.match(r"^([0-9a-f]+)-([0-9a-f]+) ", line)
            if header:
                size = int(header.group(2), 16) - int(header.group(1), 16)
            elif line.startswith("Rss:") and size is not None:
                rss = int(line.split()[1])
                if MEMORY_MIB << 20 <= size <= (MEMORY_MIB + 4) << 20:
                    best = max(best, rss)
    return best


def peak_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        return int(re.search(r"VmHWM:\s+(\d+)", status.read()).group(1))


class Guest:
    """A VMM process whose console (stdout) is read as it comes."""

    def __init__(self, command: list[str], env: dict):
        self.started = time.monotonic()
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.STDOUT, env=env)
        self.output = b""

    def wait_for(self, text: bytes, limit: float) -> float | None:
        """Seconds since the start until `text` appeared, or None."""
        deadline = self.started + limit
        while text not in self.output:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            ready, _, _ = select.select([self.process.stdout], [], [], min(remaining, 1.0))
            if ready:
                chunk = os.read(self.process.stdout.fileno(), 65536)
                if not chunk:
                    return None
                self.output += chunk
                if text in self.output:
                    return time.monotonic() - self.started
        return time.monotonic() - self.started

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def tail(self) -> str:
        return self.output[-1500:].decode(errors="replace")


def device_processes(pid: int) -> list[int]:
    """The jailed device processes a VMM spawned: its children whose
    program is crosvm-device (by its path: staged, its name is the copy's)."""
    children = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as status:
                text = status.read()
            with open(f"/proc/{entry}/cmdline", "rb") as cmdline:
                program = cmdline.read().split(b"\0")[0]
        except OSError:
            continue
        if program.endswith(b"crosvm-device") and re.search(rf"^PPid:\s+{pid}$", text, re.M):
            children.append(int(entry))
    return children


def device_pss_kib(pid: int) -> int | None:
    """A device process's proportional set size (each page it maps divided
    by the processes that map it), guest RAM left out: reported beside
    device_pages_kib, which the rows use."""
    total = 0
    guest_ram = False
    try:
        with open(f"/proc/{pid}/smaps") as smaps:
            lines = smaps.readlines()
    except (FileNotFoundError, ProcessLookupError):
        return None  # it ended since it was listed
    for line in lines:
        header = re.match(r"^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \S+\s*(.*)$", line)
        if header:
            guest_ram = header.group(1).startswith("/memfd:crosvm_guest")
        elif line.startswith("Pss:") and not guest_ram:
            total += int(line.split()[1])
    return total


PAGE_PRESENT = 1 << 63
PAGE_FRAME = (1 << 55) - 1


def resident_frames(pid: int, skip_guest_ram: bool) -> set[int] | None:
    """The physical page frames resident in pid's mappings
    (/proc/PID/pagemap; root sees the frame numbers, others zeros), with
    or without the guest RAM memfd; None if the process is gone."""
    frames = set()
    try:
        with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/pagemap", "rb") as pagemap:
            for line in maps:
                fields = line.split()
                if skip_guest_ram and len(fields) > 5 and fields[5].startswith("/memfd:crosvm_guest"):
                    continue
                start, end = (int(address, 16) for address in fields[0].split("-"))
                if start >= 1 << 47:
                    continue  # [vsyscall]: pagemap has nothing there
                pagemap.seek(start // 4096 * 8)
                for (entry,) in struct.iter_unpack("<Q", pagemap.read((end - start) // 4096 * 8)):
                    if entry & PAGE_PRESENT:
                        frames.add(entry & PAGE_FRAME)
    except (FileNotFoundError, ProcessLookupError):
        return None
    if frames == {0}:
        sys.exit("run_guests: /proc/PID/pagemap shows no page frames (it needs root)")
    return frames


def device_pages_kib(vmm_pid: int, device_pids: list[int]) -> tuple[int, int]:
    """What a VM's device processes add to its VMM's memory: the resident
    pages (guest RAM left out) mapped by any of them and not by the VMM,
    each page once however many devices map it. The VMM's figure, an RSS,
    already counts every page it maps in full (the library text, libc and
    the loader a device shares with it); these are the pages that exist
    only because the devices run apart. Returns (KiB, processes counted)."""
    devices = [frames for frames in (resident_frames(pid, skip_guest_ram=True) for pid in device_pids)
               if frames is not None]
    if not devices:
        return 0, 0
    vmm = resident_frames(vmm_pid, skip_guest_ram=False) or set()
    added = set().union(*devices) - vmm
    return len(added) * 4, len(devices)


def shmem_policy() -> str:
    """The host's shmem_enabled: the bracketed word, or "unknown"."""
    try:
        with open(SHMEM_ENABLED) as policy:
            found = re.search(r"\[(\w[\w-]*)\]", policy.read())
    except OSError:
        return "unknown"
    return found.group(1) if found else "unknown"


def set_shmem_policy(value: str) -> bool:
    try:
        with open(SHMEM_ENABLED, "w") as policy:
            policy.write(value)
    except OSError:
        return False
    return shmem_policy() == value


def boot_command(vmm: str, args, directory: str) -> tuple[list[str], bytes]:
    """The boot's command line and the marker that ends the wait."""
    quiet = vmm.endswith("-quiet")
    base = vmm.removesuffix("-quiet")
    params = QUIET_PARAMS if quiet else PARAMS
    if base == "floor":
        return [args.floor, "boot", args.kernel, args.initramfs, str(MEMORY_MIB), params], MARKER
    if base in ("qemu", "qemu10"):
        return qemu_command(args.qemu if base == "qemu" else args.qemu10, args.kernel, args.initramfs, params,
                            None), MARKER
    if base == "crosvm-jailed-all":
        # Every kind of device we have, each jailed (crosvm-launch's
        # default) and bound by the guest: a disk, the rng, a NIC on passt
        # (in passt's namespace), a userspace vsock and a virtio console.
        image = os.path.join(directory, "disk.img")
        with open(image, "wb") as out:
            out.truncate((BLOCK_MIB + 1) << 20)
        command = crosvm_command(args.launcher, args.kernel, args.net_initramfs,
                                 f"{QUIET_PARAMS} crosvm_bench.devices=1", image, sandbox=True)
        command[-1:-1] = ["--net", "passt", "--vsock", f"socket={os.path.join(directory, 'vm.vsock')}",
                          "--serial", "type=sink,hardware=virtio-console,num=1"]
        return in_namespace(PASST_NAMESPACE, command), DEVICES_READY
    # crosvm-rng: the sandboxed boot's own device (an rng) in the VMM, so that
    # the sandbox's row compares one machine jailed and not.
    return crosvm_command(args.launcher, args.kernel, args.initramfs, params, None,
                          sandbox=base not in ("crosvm", "crosvm-rng"), rng=base != "crosvm"), MARKER


def boot_once(vmm: str, args) -> dict:
    with tempfile.TemporaryDirectory(prefix="crosvm-bench-") as directory:
        return boot_in(vmm, args, directory)


def boot_in(vmm: str, args, directory: str) -> dict:
    command, marker = boot_command(vmm, args, directory)
    record("boot", vmm, command)
    guest = Guest(command, args.env)
    try:
        seconds = guest.wait_for(marker, BOOT_LIMIT * (2 if marker == DEVICES_READY else 1))
        if seconds is None:
            return {"failed": f"no marker (exit {guest.process.poll()}): {guest.tail()}"}
        if marker == DEVICES_READY and b"crosvm-bench: no " in guest.output:
            return {"failed": f"a device was missing: {guest.tail()}"}
        # Held still while it is measured: a guest that goes on to power
        # off would take its device processes with it halfway through.
        os.kill(guest.process.pid, signal.SIGSTOP)
        peak = peak_rss_kib(guest.process.pid)
        guest_ram = guest_ram_rss_kib(guest.process.pid)
        # A child may end between the listing and the reading (a helper
        # the VMM runs once, not a device): only those still there count.
        pids = device_processes(guest.process.pid)
        pss = [size for size in (device_pss_kib(pid) for pid in pids) if size is not None]
        devices_kib, counted = device_pages_kib(guest.process.pid, pids)
        return {"boot_s": seconds, "peak_rss_kib": peak, "guest_ram_kib": guest_ram,
                "overhead_kib": peak - guest_ram, "device_processes": counted,
                "device_kib": devices_kib, "device_pss_kib": sum(pss),
                "total_overhead_kib": peak - guest_ram + devices_kib}
    finally:
        guest.stop()


def start_backend(launcher: str, image: str, socket: str, env: dict) -> subprocess.Popen:
    backend = subprocess.Popen(record("block", "crosvm-vhost-user backend",
                                      [launcher, "device", "block", "--socket", socket, f"path={image}"]),
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + BOOT_LIMIT
    while not os.path.exists(socket) and backend.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    return backend


BLKBENCH_KEYS = ("seq_write_mib_s", "seq_read_mib_s", "rand_read_iops", "rand_write_iops",
                 "rand_read_qd32_iops", "rand_write_qd32_iops")


def blkbench_figures(output: bytes) -> dict | None:
    """blkbench's line as a dict, or None when it printed none."""
    found = re.search(rb"blkbench: (.*)", output)
    if not found:
        return None
    figures = {key.decode(): float(value) for key, value in re.findall(rb"(\w+)=([\d.]+)", found.group(1))}
    return figures if all(key in figures for key in BLKBENCH_KEYS) else None


def make_slow_disk() -> bool:
    """null_blk as SLOW_DISK, where this kernel has it and we may load it."""
    remove_slow_disk()
    loaded = subprocess.run(["modprobe", "null_blk", "nr_devices=1", "memory_backed=1", "irqmode=2",
                             "completion_nsec=1000000", "gb=1", "bs=4096"], capture_output=True)
    deadline = time.monotonic() + 10
    while loaded.returncode == 0 and not os.path.exists(SLOW_DISK) and time.monotonic() < deadline:
        time.sleep(0.05)
    return loaded.returncode == 0 and os.path.exists(SLOW_DISK)


def remove_slow_disk() -> None:
    subprocess.run(["rmmod", "null_blk"], capture_output=True)


def slow_block_once(vmm: str, args) -> dict:
    params = f"{PARAMS} crosvm_bench.block={BLOCK_MIB},{RANDOM_READS}"
    if vmm == "floor-slow":
        ran = subprocess.run(record("block-slow", vmm, [args.blkbench, SLOW_DISK, str(BLOCK_MIB), str(RANDOM_READS)]),
                             capture_output=True, timeout=BOOT_LIMIT * 3)
        figures = blkbench_figures(ran.stdout)
        if ran.returncode != 0 or not figures:
            return {"failed": f"blkbench on the host failed ({ran.returncode}): {ran.stderr[-500:]!r}"}
        return figures
    if vmm == "crosvm-slow":
        command = crosvm_command(args.launcher, args.kernel, args.initramfs, params, None)
        command[-1:-1] = ["--block", f"path={SLOW_DISK},direct=true"]
    else:
        command = qemu_command(args.qemu, args.kernel, args.initramfs, params, SLOW_DISK, direct=True)
    record("block-slow", vmm, command)
    guest = Guest(command, args.env)
    try:
        if guest.wait_for(DONE, BOOT_LIMIT * 3) is None:
            return {"failed": f"no result (exit {guest.process.poll()}): {guest.tail()}"}
        figures = blkbench_figures(guest.output)
        return figures if figures else {"failed": f"blkbench failed: {guest.tail()}"}
    finally:
        guest.stop()


def block_once(vmm: str, args) -> dict:
    with tempfile.TemporaryDirectory(prefix="crosvm-bench-") as directory:
        qcow2 = vmm.endswith("-qcow2")
        image = os.path.join(directory, "disk.qcow2" if qcow2 else "disk.img")
        if qcow2:
            # Empty, as qemu-img makes it: the guest's writes allocate.
            subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", image, f"{BLOCK_MIB + 1}M"], check=True)
        else:
            with open(image, "wb") as out:
                out.truncate((BLOCK_MIB + 1) << 20)
        if vmm == "floor":
            # The same I/O by a host program straight on the image, opened
            # as the VMMs open it (no O_DIRECT): what no VMM can beat.
            ran = subprocess.run(record("block", vmm, [args.blkbench, "--buffered", image, str(BLOCK_MIB),
                                                       str(RANDOM_READS)]),
                                 capture_output=True, timeout=BOOT_LIMIT * 3)
            figures = blkbench_figures(ran.stdout)
            if ran.returncode != 0 or not figures:
                return {"failed": f"blkbench on the host failed ({ran.returncode}): {ran.stderr[-500:]!r}"}
            return figures
        params = f"{PARAMS} crosvm_bench.block={BLOCK_MIB},{RANDOM_READS}"
        backend = None
        if vmm in ("crosvm", "crosvm-sandboxed", "crosvm-qcow2"):
            command = crosvm_command(args.launcher, args.kernel, args.initramfs, params, image,
                                     sandbox=vmm == "crosvm-sandboxed")
        elif vmm == "crosvm-vhost-user":
            socket = os.path.join(directory, "blk.sock")
            backend = start_backend(args.launcher, image, socket, args.env)
            command = crosvm_command(args.launcher, args.kernel, args.initramfs, params, None)
            command[-1:-1] = ["--vhost-user", f"type=block,socket={socket}"]
        else:
            command = qemu_command(args.qemu, args.kernel, args.initramfs, params, image,
                                   disk_format="qcow2" if qcow2 else "raw")
        record("block", vmm, command)
        guest = Guest(command, args.env)
        try:
            if guest.wait_for(DONE, BOOT_LIMIT * 3) is None:
                return {"failed": f"no result (exit {guest.process.poll()}): {guest.tail()}"}
            figures = blkbench_figures(guest.output)
            if not figures:
                return {"failed": f"blkbench failed: {guest.tail()}"}
            return figures
        finally:
            guest.stop()
            if backend:
                backend.kill()
                backend.wait()


def iperf3_mbit_s(namespace: str, host: str, seconds: float, reverse: bool) -> float:
    """What the receiving side counted, in Mbit/s."""
    command = ["iperf3", "-c", host, "-p", str(IPERF_PORT), "-t", str(seconds), "-J"] + (["-R"] if reverse else [])
    ran = subprocess.run(in_namespace(namespace, command), capture_output=True, text=True, timeout=seconds + 120)
    result = json.loads(ran.stdout) if ran.stdout.strip().startswith("{") else {"error": ran.stderr.strip()}
    if ran.returncode != 0 or "error" in result:
        raise RuntimeError(f"iperf3 {'-R ' if reverse else ''}failed: {result.get('error')}")
    return result["end"]["sum_received"]["bits_per_second"] / 1e6


def net_once(vmm: str, args) -> dict:
    passt = vmm == "crosvm-passt"
    namespace = PASST_NAMESPACE if passt else NET_NAMESPACE
    params = f"{PARAMS} crosvm_bench.net=" + ("dhcp" if passt else f"{GUEST_IP}/24")
    if vmm.startswith("qemu"):
        command = qemu_command(args.qemu, args.kernel, args.net_initramfs, params, None,
                               tap_vhost=vmm == "qemu-vhost-net")
    else:
        command = crosvm_command(args.launcher, args.kernel, args.net_initramfs, params, None)
        net = (f"passt,tcp-ports={IPERF_PORT}-{RR_PORT}" if passt else
               f"tap-name={TAP},mac={GUEST_MAC}" + (",vhost-net=true" if vmm == "crosvm-vhost-net" else ""))
        command[-1:-1] = ["--net", net]
    # The guest's address as the host reaches it: passt forwards the host's
    # own ports to the guest.
    target = "127.0.0.1" if passt else GUEST_IP
    guest = Guest(record("net", vmm, in_namespace(namespace, command)), args.env)
    try:
        if guest.wait_for(NET_READY, BOOT_LIMIT * 2) is None:
            return {"failed": f"the guest's network never came up (exit {guest.process.poll()}): {guest.tail()}"}
        try:
            received = iperf3_mbit_s(namespace, target, args.net_seconds, reverse=False)
            sent = iperf3_mbit_s(namespace, target, args.net_seconds, reverse=True)
            rr = subprocess.run(in_namespace(namespace, [args.netrr, "client", target, str(RR_PORT),
                                                         str(args.net_seconds)]),
                                capture_output=True, text=True, timeout=args.net_seconds + 120)
        except (RuntimeError, subprocess.TimeoutExpired) as error:
            return {"failed": f"console: {guest.tail()[-500:]}\n{error}"}  # the cause last: the log keeps the end
        found = re.search(r"transactions_per_s=([\d.]+) mean_us=([\d.]+)", rr.stdout)
        if rr.returncode != 0 or not found:
            return {"failed": f"console: {guest.tail()[-500:]}\nnetrr failed: {rr.stderr.strip()[-200:]}"}
        return {"host_to_guest_mbit_s": received, "guest_to_host_mbit_s": sent,
                "rr_per_s": float(found.group(1)), "rr_mean_us": float(found.group(2))}
    finally:
        guest.stop()


def vsock_once(vmm: str, args) -> dict:
    with tempfile.TemporaryDirectory(prefix="crosvm-bench-") as directory:
        params = f"{PARAMS} crosvm_bench.vsock=1"
        if vmm == "qemu-vhost-vsock":
            command = qemu_command(args.qemu, args.kernel, args.net_initramfs, params, None, vsock_cid=VSOCK_CID)
            target = f"vsock:{VSOCK_CID}"
        else:
            command = crosvm_command(args.launcher, args.kernel, args.net_initramfs, params, None,
                                     sandbox=vmm.endswith("-sandboxed"))
            if vmm == "crosvm-vhost-vsock":
                option, target = f"cid={VSOCK_CID}", f"vsock:{VSOCK_CID}"
            else:
                path = os.path.join(directory, "vm.vsock")
                option, target = f"socket={path}", f"unix:{path}"
            command[-1:-1] = ["--vsock", option]
        record("vsock", vmm, command)
        guest = Guest(command, args.env)
        try:
            if guest.wait_for(VSOCK_READY, BOOT_LIMIT * 2) is None:
                return {"failed": f"the guest's vsock never came up (exit {guest.process.poll()}): {guest.tail()}"}
            try:
                ran = subprocess.run([args.vsockbench, "client", target, str(VSOCK_PORT), str(VSOCK_MIB),
                                      str(args.net_seconds)], capture_output=True, text=True,
                                     timeout=args.net_seconds + 180)
            except subprocess.TimeoutExpired:
                return {"failed": f"console: {guest.tail()[-500:]}\nvsockbench timed out"}
            found = re.search(r"host_to_guest_mib_s=([\d.]+) guest_to_host_mib_s=([\d.]+) connect_echo_us=([\d.]+)",
                              ran.stdout)
            if ran.returncode != 0 or not found:
                return {"failed": f"console: {guest.tail()[-500:]}\nvsockbench failed: {ran.stderr.strip()[-200:]}"}
            return {"host_to_guest_mib_s": float(found.group(1)), "guest_to_host_mib_s": float(found.group(2)),
                    "connect_echo_us": float(found.group(3))}
        finally:
            guest.stop()


def measure(kind, vmm: str, args, failures: list) -> dict | None:
    for attempt in range(ATTEMPTS):
        result = kind(vmm, args)
        if "failed" not in result:
            return result
        failures.append({"vmm": vmm, "benchmark": kind.__name__, "why": result["failed"]})
        print(f"run_guests: {vmm} {kind.__name__} failed (attempt {attempt + 1}): "
              f"{result['failed'][-300:]}", file=sys.stderr, flush=True)
    return None


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--build", required=True)
    parser.add_argument("--kernel", required=True)
    parser.add_argument("--initramfs", required=True)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--net-initramfs", required=True)
    parser.add_argument("--netrr", required=True)
    parser.add_argument("--vsockbench", required=True)
    parser.add_argument("--blkbench", required=True)
    parser.add_argument("--net-seconds", type=float, default=10)
    parser.add_argument("--out", required=True)
    parser.add_argument("--only", default="",
                        help="VMM,VMM,...: measure only these rows' VMMs (a partial run, by hand; "
                             "bench/run always measures every one)")
    args = parser.parse_args()
    only = set(filter(None, args.only.split(",")))
    if only:
        unknown = only - set(BOOT_VMMS + ["crosvm-sandboxed-never", "crosvm-jailed-all"] + BLOCK_VMMS + SLOW_VMMS +
                             NET_VMMS + VSOCK_VMMS)
        if unknown:
            parser.error(f"--only: no VMM {', '.join(sorted(unknown))}")
    kernel = args.kernel  # as the report names it
    # Both VMMs, their libraries, the kernel and the initramfs from tmpfs
    # inside the nested runner, not over its uncached 9p (bench/staging.py).
    stage = Stage(enabled=bool(os.environ.get("NESTED_KVM")))
    args.launcher = stage.program(os.path.join(args.build, "launcher", "crosvm-launch"))
    args.qemu = stage.qemu(firmware="bios-microvm.bin")
    qemu10 = os.path.join(QEMU10_PREFIX, "usr", "bin", "qemu-system-x86_64")
    # With upstream's microvm firmware, qboot, from its own package (as
    # Debian 12 links bios-microvm.bin to it): Debian's QEMU 10 leaves
    # bios-microvm.bin to SeaBIOS's build, which printed nothing in 40 s
    # under the nested KVM.
    args.qemu10 = (stage.qemu(firmware="qboot.rom", prefix=QEMU10_PREFIX) + ["-bios", "qboot.rom"]
                   if os.path.exists(qemu10) else None)
    args.floor = stage.program(os.path.join(args.build, "bench", "bench-floor"))
    args.kernel, args.initramfs = stage.file(args.kernel), stage.file(args.initramfs)
    args.net_initramfs = stage.file(args.net_initramfs)
    args.netrr = stage.program(args.netrr)
    args.vsockbench = stage.program(args.vsockbench)
    args.blkbench = stage.program(args.blkbench)
    args.env = stage.environment()
    # The jailed devices' helper, staged beside the launcher's copy.
    args.env["CROSVM_DEVICE_HELPER"] = stage.program(os.path.join(args.build, "lib", "crosvm-device"), runpath=True)

    names = [*BOOT_VMMS, "crosvm-sandboxed-never", "crosvm-jailed-all", "crosvm-vhost-user", *BLOCK_QCOW2_VMMS,
             *SLOW_VMMS, *NET_VMMS, *VSOCK_VMMS]
    results = {name: {"boot": [], "block": [], "net": [], "vsock": []} for name in names}
    failures: list = []
    qemu_version = subprocess.run(["qemu-system-x86_64", "--version"], capture_output=True,
                                  text=True).stdout.splitlines()[0]
    qemu10_version = subprocess.run([qemu10, "--version"], capture_output=True,
                                    text=True).stdout.splitlines()[0] if args.qemu10 else None
    host_shmem = shmem_policy()
    settable = set_shmem_policy("advise")
    boot_vmms = ([vmm for vmm in BOOT_VMMS if args.qemu10 or not vmm.startswith("qemu10")] +
                 (["crosvm-sandboxed-never"] if settable else []) + ["crosvm-jailed-all"])
    if not args.qemu10:
        print(f"run_guests: no {qemu10} (tests/nested/run --install-emulator): no current QEMU",
              file=sys.stderr, flush=True)

    def chosen(names: list[str]) -> list[str]:
        return [name for name in names if not only or name in only]

    make_namespaces()
    slow_disk = make_slow_disk()
    try:
        for run in range(args.runs):
            # Each VMM takes each place in turn: in the nested machine a
            # VM's figure depends on its place in the group (a block VM
            # first after the boot group may write twice as fast, whatever
            # serves the disk), so a fixed order decides the ratio.
            for vmm in chosen(rotated(boot_vmms, run)):
                if settable:
                    set_shmem_policy("never" if vmm == "crosvm-sandboxed-never" else "advise")
                result = measure(boot_once, vmm, args, failures)
                if result:
                    results[vmm]["boot"].append(result)
            if settable:
                set_shmem_policy("advise")
            for vmm in chosen(rotated(BLOCK_VMMS, run)):
                result = measure(block_once, vmm, args, failures)
                if result:
                    results[vmm]["block"].append(result)
            for vmm in chosen(rotated(SLOW_VMMS, run)) if slow_disk else []:
                result = measure(slow_block_once, vmm, args, failures)
                if result:
                    results[vmm]["block"].append(result)
            for vmm in chosen(rotated(NET_VMMS, run)):
                result = measure(net_once, vmm, args, failures)
                if result:
                    results[vmm]["net"].append(result)
            for vmm in chosen(rotated(VSOCK_VMMS, run)):
                result = measure(vsock_once, vmm, args, failures)
                if result:
                    results[vmm]["vsock"].append(result)
            print(f"run_guests: run {run + 1} of {args.runs} done", file=sys.stderr, flush=True)
    finally:
        remove_namespaces()
        if slow_disk:
            remove_slow_disk()
        if settable:
            set_shmem_policy(host_shmem)
    shmem = ("advise (set for the run; the host's was " + host_shmem + ")") if settable else host_shmem
    with open(args.out, "w") as out:
        json.dump({"results": results, "failures": failures, "qemu_version": qemu_version,
                   "qemu10_version": qemu10_version, "quiet_params": QUIET_PARAMS,
                   "commands": {key: [re.sub(r"/tmp/crosvm-bench-\w+/", "$TMP/", word)
                                      for word in stage.unstaged(command)]
                                for key, command in COMMANDS.items()},
                   "params": PARAMS, "memory_mib": MEMORY_MIB, "shmem_enabled": shmem, "block_mib": BLOCK_MIB,
                   "random_reads": RANDOM_READS, "slow_disk": slow_disk, "net_seconds": args.net_seconds,
                   "vsock_mib": VSOCK_MIB, "kernel": kernel, "staged": stage.enabled, "build": args.build,
                   "cpu": cpu_model()}, out, indent=1)
    stage.close()
    return 0


def rotated(names: list[str], run: int) -> list[str]:
    """`names` starting at run's place: run 0 in the given order, run 1
    from the second, and so on."""
    start = run % len(names)
    return names[start:] + names[:start]


def cpu_model() -> str:
    with open("/proc/cpuinfo") as info:
        for line in info:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown"


if __name__ == "__main__":
    sys.exit(main())
