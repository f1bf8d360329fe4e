"""The machine a Debian guest sees: CPUs, interrupt controllers, ACPI, clocks,
memory, and how it ends (power-off, reset, panic)."""
import re
import time


def test_poweroff_exits_0(boot):
    guest = boot()
    guest.send("poweroff -f\n")
    assert guest.wait() == 0, guest.errors
    assert "powered off" in guest.errors


def test_two_vcpus_and_an_io_apic(boot):
    guest = boot("-c", "2")
    assert guest.run("nproc").strip() == "2"
    interrupts = guest.run("cat /proc/interrupts")
    assert "IO-APIC" in interrupts, interrupts
    assert re.search(r"^\s*CPU0\s+CPU1", interrupts, re.M), interrupts
    guest.send("poweroff -f\n")
    assert guest.wait() == 0


def test_acpi_is_used_without_errors(boot):
    guest = boot()
    log = guest.run("dmesg")
    assert "ACPI: FACP" in log and "ACPI: DSDT" in log and "ACPI: APIC" in log, log
    problems = [line for line in log.splitlines()
                if "ACPI" in line and re.search(r"error|bug|warning|fail", line, re.I)]
    assert not problems, "\n".join(problems)
    assert "ACPI: PCI Root Bridge [PCI0]" in log
    guest.send("poweroff -f\n")
    assert guest.wait() == 0


def test_the_guest_uses_kvm_clock_and_the_rtc_agrees_with_the_host(boot):
    guest = boot()
    assert guest.run("cat /sys/devices/system/clocksource/clocksource0/current_clocksource").strip() \
        == "kvm-clock"
    rtc = int(guest.run("cat /sys/class/rtc/rtc0/since_epoch").strip())
    assert abs(rtc - time.time()) < 600  # minutes of slack for the nested machine's pace
    guest.send("poweroff -f\n")
    assert guest.wait() == 0


def test_a_kernel_panic_exits_34(boot):
    guest = boot()
    assert "pvpanic" in guest.run("ls /sys/bus/platform/drivers")
    guest.send("echo c > /proc/sysrq-trigger\n")
    assert guest.wait() == 34, guest.errors
    assert "panicked" in guest.errors


def memory_total_kib(guest) -> int:
    meminfo = guest.run("cat /proc/meminfo")
    return int(re.search(r"MemTotal:\s+(\d+) kB", meminfo).group(1))


def test_a_5_gib_guest_with_2_vcpus_sees_its_memory(boot):
    guest = boot("-c", "2", "-m", "5120")
    assert guest.run("nproc").strip() == "2"
    total = memory_total_kib(guest)
    # MemTotal excludes the kernel's own reservations: within 5% of 5 GiB.
    assert 0.95 * 5 * 1024 * 1024 < total <= 5 * 1024 * 1024, total
    guest.send("poweroff -f\n")
    assert guest.wait() == 0


def test_a_64_mib_guest_boots(boot):
    guest = boot("-m", "64")
    assert memory_total_kib(guest) > 32 * 1024
    guest.send("poweroff -f\n")
    assert guest.wait() == 0
