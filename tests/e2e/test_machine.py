"""The machine a Debian guest sees: CPUs, interrupt controllers, ACPI, clocks,
memory, and how it ends (power-off, reset, panic)."""
import re
import subprocess
import time


def test_acpi_and_the_clocks_are_used_without_errors_and_poweroff_exits_0(boot):
    guest = boot()
    # Only the ACPI lines cross the serial console: every check below reads
    # those, and the whole log is tens of kilobytes at nested-KVM speed.
    log = guest.run("dmesg | grep ACPI")
    assert "ACPI: FACP" in log and "ACPI: DSDT" in log and "ACPI: APIC" in log, log
    # Linux words ACPI trouble as "ACPI Error", "ACPI BIOS Error (bug)",
    # "ACPI Warning", "ACPI Exception" or a failure; "PCI: Using host bridge
    # windows from ACPI; if necessary, use "pci=nocrs" and report a bug" is
    # the line every machine with a _CRS prints, not one of them.
    problems = [line for line in log.splitlines()
                if "ACPI" in line and re.search(r"\b(error|warning|exception)\b|\(bug\)|fail", line, re.I)]
    assert not problems, "\n".join(problems)
    assert "ACPI: PCI Root Bridge [PCI0]" in log
    assert guest.run("cat /sys/devices/system/clocksource/clocksource0/current_clocksource").strip() \
        == "kvm-clock"
    rtc = int(guest.run("cat /sys/class/rtc/rtc0/since_epoch").strip())
    assert abs(rtc - time.time()) < 600  # minutes of slack for the nested machine's pace
    guest.send("poweroff -f\n")
    assert guest.wait() == 0, guest.errors
    assert "powered off" in guest.errors


def test_a_kernel_panic_exits_34(boot):
    guest = boot()
    assert "pvpanic" in guest.run("ls /sys/bus/platform/drivers")
    guest.send("echo c > /proc/sysrq-trigger\n")
    assert guest.wait() == 34, guest.errors
    assert "panicked" in guest.errors


def memory_total_kib(guest) -> int:
    meminfo = guest.run("cat /proc/meminfo")
    return int(re.search(r"MemTotal:\s+(\d+) kB", meminfo).group(1))


def test_a_5_gib_guest_with_2_vcpus_sees_its_memory_both_cpus_and_an_io_apic(boot):
    guest = boot("-c", "2", "-m", "5120")
    assert guest.run("nproc").strip() == "2"
    interrupts = guest.run("cat /proc/interrupts")
    assert "IO-APIC" in interrupts, interrupts
    assert re.search(r"^\s*CPU0\s+CPU1", interrupts, re.M), interrupts
    total = memory_total_kib(guest)
    # MemTotal excludes the kernel's own reservations: within 5% of 5 GiB.
    assert 0.95 * 5 * 1024 * 1024 < total <= 5 * 1024 * 1024, total
    guest.send("poweroff -f\n")
    assert guest.wait() == 0


def test_a_96_mib_guest_boots(boot):
    # The smallest guest Debian's cloud kernel runs in: it decompresses at
    # 16 MiB and needs 51 MiB there (init_size), and its ELF form, which runs
    # in place, fills 62 MiB and then runs out of memory in a 64 MiB guest.
    # A 64 MiB VM itself is checked by the tiny-guest tests.
    guest = boot("-m", "96")
    # MemTotal leaves out the kernel image and its reservations (~34 MiB).
    assert 48 * 1024 < memory_total_kib(guest) <= 96 * 1024
    guest.send("poweroff -f\n")
    assert guest.wait() == 0


def test_a_kernel_too_big_for_the_guest_is_refused_with_what_it_needs(launcher, kernel, initramfs):
    result = subprocess.run([launcher, "run", "-m", "64", "-i", initramfs, kernel],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "too small for this kernel" in lines[0], result.stderr
    assert re.search(r"needs RAM up to \d+ MiB", lines[0])
