"""The sandbox with Debian's kernel: a jailed device that breaks its seccomp
policy ends the VM as crosvm's does (exit 33, one line naming the device
and the signal), a jailed disk grows under the guest, and no device
process is left behind."""
import json
import pathlib

from test_control import control, grow_disk_under_the_guest

HANG_GUARD = 120  # a guard against hangs, never a timing check
CRASH_EXIT = 33


def device_processes() -> list[int]:
    pids = []
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == "crosvm-device":
                    pids.append(int(entry.name))
            except OSError:
                pass  # gone meanwhile
    return pids


def test_a_disk_whose_policy_lacks_its_write_syscall_ends_the_vm_when_the_guest_writes(boot, tmp_path):
    image = tmp_path / "data.img"
    image.write_bytes(b"sector zero" + bytes(1024 * 1024 - 11))
    guest = boot("--sandbox", "--jail", "seccomp-deny=pwritev", "--rwdisk", str(image))
    assert len(device_processes()) == 2  # the disk and the rng, while the VM runs
    # The guest's reads go through; its first write reaches the device
    # process as pwritev, which its policy no longer allows.
    assert guest.run("head -c 11 /dev/vda; echo") == "sector zero\n"
    guest.send("echo data | dd of=/dev/vda bs=512 count=1 conv=fsync\n")
    assert guest.wait(timeout=HANG_GUARD) == CRASH_EXIT, guest.errors
    assert "virtio-blk 0" in guest.errors and "killed by signal 31 (SIGSYS)" in guest.errors, guest.errors
    assert device_processes() == []
    assert image.read_bytes()[:11] == b"sector zero"  # nothing was written


def test_a_jailed_disk_grows_under_the_guest_and_status_names_each_jail(boot, launcher, tmp_path):
    sock = str(tmp_path / "vm.sock")
    disk = tmp_path / "grow.img"
    disk.write_bytes(b"\0" * (4 << 20))
    guest = boot("--sandbox", "-s", sock, "--rwdisk", str(disk))
    status = json.loads(control(launcher, "status", sock).stdout)["status"]
    jailed = {int(line.split("jailed: pid ")[1].rstrip(")")) for line in status["devices"] if "jailed: pid " in line}
    assert jailed == set(device_processes()) and len(jailed) == 2, status["devices"]
    # The device process resizes the image; the guest hears of it through
    # vhost-user's backend channel and the transport's config interrupt.
    grow_disk_under_the_guest(launcher, guest, sock, disk)
    assert control(launcher, "stop", sock).returncode == 0
    assert guest.wait(timeout=HANG_GUARD) == 0, guest.errors
    assert device_processes() == []
