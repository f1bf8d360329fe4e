"""Booting Debian's cloud kernel to its /init, and how the VM ends."""
import time


def test_boots_to_init_and_reboot_exits_32(boot):
    guest = boot()
    assert guest.run("echo $((40 + 2))").strip() == "42"
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


def test_the_guest_clock_starts_at_the_hosts_time(boot):
    guest = boot()
    guest_time = int(guest.run("date -u +%s").strip())
    # The CMOS RTC gave the kernel its time: no 1970 here. Minutes of slack
    # cover the nested machine's slow boot.
    assert abs(guest_time - time.time()) < 600
    guest.send("reboot -f\n")
    assert guest.wait() == 32


def test_the_serial_console_is_interrupt_driven(boot):
    guest = boot()
    line = guest.run("grep ttyS0 /proc/interrupts")
    # "  4:   196   XT-PIC   ttyS0": the UART's interrupts were delivered.
    assert int(line.split()[1]) > 0, line
    guest.send("reboot -f\n")
    assert guest.wait() == 32


def test_a_long_kernel_command_line_reaches_the_guest(boot):
    marker = "crosvm.marker=" + "x" * 200
    guest = boot(params=f"console=ttyS0 reboot=k {marker}")
    assert marker in guest.run("cat /proc/cmdline")
    guest.send("reboot -f\n")
    assert guest.wait() == 32
