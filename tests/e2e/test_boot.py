"""Booting Debian's cloud kernel to its /init, and how the VM ends."""
import time


def test_a_debian_kernel_boots_to_its_shell_and_reboot_exits_32(boot):
    # One boot checks what every plain boot shows (each boot under the
    # nested emulator costs a minute and a chance of its own failure).
    marker = "crosvm.marker=" + "x" * 200
    guest = boot(params=f"console=ttyS0 reboot=k {marker}")
    assert guest.run("echo $((40 + 2))").strip() == "42"
    # A long command line reaches the guest whole.
    assert marker in guest.run("cat /proc/cmdline")
    # The CMOS RTC gave the kernel its time: no 1970 here. Minutes of slack
    # cover the nested machine's slow boot.
    guest_time = int(guest.run("date -u +%s").strip())
    assert abs(guest_time - time.time()) < 600
    # "  4:   196   XT-PIC   ttyS0": the UART's interrupts were delivered.
    line = guest.run("grep ttyS0 /proc/interrupts")
    assert int(line.split()[1]) > 0, line
    guest.send("reboot -f\n")
    assert guest.wait() == 32, guest.errors
    assert "the guest reset" in guest.errors


def test_the_same_kernel_boots_as_an_elf_vmlinux(boot, vmlinux):
    with open(vmlinux, "rb") as image:
        assert image.read(4) == b"\x7fELF"
    guest = boot(image=vmlinux)
    assert guest.run("uname -r").strip() in vmlinux
    guest.send("reboot -f\n")
    assert guest.wait() == 32, guest.errors
