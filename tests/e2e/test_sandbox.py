"""The sandbox with Debian's kernel: a jailed device that breaks its seccomp
policy ends the VM as crosvm's does (exit 33, one line naming the device
and the signal), and no device process is left behind."""
import pathlib

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
