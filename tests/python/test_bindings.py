"""The crosvm Python package as a test harness uses it: configuration
errors as exceptions named for their codes, serial expect/send, pause and
resume, stop, two VMs at once, the control socket, and the C example."""
import json
import os
import subprocess
import threading
import time

import pytest

import crosvm
from conftest import BUILD, needs_kvm

HANG_GUARD = 120  # seconds; a hang guard, not a timing check


def test_errors_are_named_for_their_codes(tmp_path):
    assert issubclass(crosvm.KernelError, crosvm.Error)
    assert issubclass(crosvm.ExpectTimeout, crosvm.WaitTimeoutError)
    assert issubclass(crosvm.ExpectTimeout, TimeoutError) and issubclass(crosvm.WaitTimeoutError, TimeoutError)
    assert issubclass(crosvm.ExpectTimeout, crosvm.Error) and crosvm.TIMEOUT is crosvm.ExpectTimeout
    assert issubclass(crosvm.EOF, crosvm.Error) and not issubclass(crosvm.EOF, TimeoutError)
    # Nothing of ours is named like a builtin: `from crosvm import *` shadows none.
    import builtins
    assert not set(crosvm.__all__) & set(dir(builtins))
    assert all(hasattr(crosvm, name) for name in crosvm.__all__)
    with pytest.raises(crosvm.IoError) as missing:
        crosvm.Vm(crosvm.VmConfig(kernel=tmp_path / "nope"))
    assert missing.value.code == -8 and missing.value.name == "CROSVM_ERROR_IO"
    assert "cannot open kernel" in str(missing.value) and "nope" in str(missing.value)

    not_a_kernel = tmp_path / "notes.txt"
    not_a_kernel.write_text("hello\n" * 200)
    with pytest.raises(crosvm.KernelError, match="not a Linux kernel") as wrong:
        crosvm.Vm(crosvm.VmConfig(kernel=not_a_kernel))
    assert wrong.value.code == -4 and wrong.value.name == "CROSVM_ERROR_KERNEL"


@pytest.mark.parametrize("options, error, words", [
    ({"memory_mib": 0}, crosvm.GuestMemoryError, "0"),
    ({"vcpus": 0}, crosvm.VcpuError, "at least one vCPU"),
    ({"memory_mib": -5}, crosvm.InvalidArgumentError, "memory_mib"),
    ({"vcpus": "two"}, crosvm.InvalidArgumentError, "vcpus"),
    ({"vcpus": 2**32}, crosvm.InvalidArgumentError, "at most"),
    ({"memory_mib": 2**64}, crosvm.InvalidArgumentError, "at most"),
    ({"console": "usb"}, crosvm.InvalidArgumentError, "console"),
    ({"log_level": "loud"}, crosvm.InvalidArgumentError, "log_level"),
    ({"devices": [("floppy", "path=a")]}, crosvm.InvalidArgumentError,
     r"unknown device kind 'floppy' \(known: block, serial, vhost-user, rng, net, vsock\)"),
    ({"devices": [("net", "mac=52:54:00:00:00:01")]}, crosvm.InvalidArgumentError,
     "net: needs exactly one of tap-name=, tap-fd=, host-ip= and passt"),
    ({"devices": [("block", "path=a,size=3")]}, crosvm.InvalidArgumentError, "block: unknown key 'size'"),
    ({"devices": ["block"]}, crosvm.InvalidArgumentError, r"\(kind, options\) pair"),
    ({"disks": [crosvm.Disk("a.img", num_queues=17)]}, crosvm.InvalidArgumentError,
     "block: num-queues must be 1 to 16, not '17'"),
    ({"disks": [crosvm.Disk("a.img", block_size=1000)]}, crosvm.InvalidArgumentError, "block-size must be"),
    ({"disks": [crosvm.Disk("a.img", num_queues="2")]}, crosvm.InvalidArgumentError, "num_queues must be an integer"),
    ({"syslog_tag": "two words"}, crosvm.InvalidArgumentError, "syslog tag"),
])
def test_configuration_is_validated(options, error, words):
    config = crosvm.VmConfig(**options)
    with pytest.raises(error, match=words):
        config._build()


def test_a_disk_takes_crosvms_block_keys(tmp_path):
    image = tmp_path / "a,b.img"  # a comma in the path survives the block list
    image.write_bytes(b"\0" * 65536)
    disk = crosvm.Disk(image, read_only=False, id="serial-1", sparse=False, lock=False, direct=True,
                       block_size=4096, num_queues=2, allow_backing=True)
    assert disk._keys() == "sparse=false,lock=false,direct=true,allow-backing=true,block-size=4096,num-queues=2"
    crosvm.VmConfig(disks=[disk])._build()  # the library took the list
    assert crosvm.Disk(image)._keys() == ""  # the defaults go through add_disk, as before


def test_control_request_reports_bad_requests_and_missing_sockets(tmp_path):
    with pytest.raises(crosvm.ProtocolError, match='unknown request "launch"'):
        crosvm.control_request(tmp_path / "vm.sock", "launch")
    with pytest.raises(crosvm.IoError, match="cannot connect"):
        crosvm.control_request(tmp_path / "vm.sock", "status")


def test_create_qcow2_makes_an_image_a_disk_can_use(tmp_path):
    image = tmp_path / "new.qcow2"
    crosvm.create_qcow2(image, 64 << 20)
    checked = subprocess.run(["qemu-img", "check", str(image)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout
    assert "virtual size: 64 MiB" in subprocess.run(["qemu-img", "info", str(image)], capture_output=True,
                                                    text=True, check=True).stdout
    with pytest.raises(crosvm.IoError, match="File exists"):
        crosvm.create_qcow2(image, 64 << 20)
    with pytest.raises(crosvm.InvalidArgumentError, match="needs a size"):
        crosvm.create_qcow2(tmp_path / "none.qcow2")
    (tmp_path / "base.raw").write_bytes(bytes(1 << 20))
    crosvm.create_qcow2(tmp_path / "overlay.qcow2", backing_file="base.raw")
    assert "backing file: base.raw" in subprocess.run(["qemu-img", "info", str(tmp_path / "overlay.qcow2")],
                                                      capture_output=True, text=True, check=True).stdout


@needs_kvm
def test_the_demo_guest_greets_and_powers_off():
    with crosvm.Vm(crosvm.VmConfig(memory_mib=128)) as vm:
        assert vm.state == crosvm.State.CREATED
        vm.start()
        assert vm.serial.expect(r"have (\d+) MiB of RAM", timeout=HANG_GUARD) == 0
        assert vm.serial.match.group(1) == "128"
        assert vm.wait(timeout=HANG_GUARD) == crosvm.ExitReason.POWEROFF
        assert vm.state == crosvm.State.STOPPED
        assert "powered off" in vm.exit_message
        assert "Hello from the libcrosvm demo guest!" in vm.serial.output


@needs_kvm
def test_send_and_expect_talk_to_the_guest(guest_program):
    with crosvm.Vm(crosvm.VmConfig(kernel=guest_program("serial_echo"), memory_mib=64)) as vm:
        vm.start()
        vm.serial.expect("ready", timeout=HANG_GUARD)
        vm.serial.send("hi there\n")
        vm.serial.expect(r"echo: (.*)\n", timeout=HANG_GUARD)
        assert vm.serial.match.group(1) == "hi there"
        assert vm.wait(timeout=HANG_GUARD) == crosvm.ExitReason.POWEROFF
        assert vm.serial.read().endswith("echo: hi there\n")
        assert vm.serial.read() == ""


@needs_kvm
def test_expect_sees_a_prompt_through_the_terminal_control_sequences_after_it(guest_program):
    with crosvm.Vm(crosvm.VmConfig(kernel=guest_program("shell_prompt"), memory_mib=64)) as vm:
        vm.start()
        vm.serial.expect(r"guest# $", timeout=HANG_GUARD)
        vm.serial.send("uname -r\n")
        vm.serial.expect(r"ran: (.*)\r\n", timeout=HANG_GUARD)
        assert vm.serial.match.group(1) == "uname -r"
        assert vm.wait(timeout=HANG_GUARD) == crosvm.ExitReason.POWEROFF
        assert vm.serial.output == "guest# \r\nran: uname -r\r\n"
        assert vm.serial.raw_output.startswith(b"\x1b[1;32mguest\x1b[0m# \x1b[6n")


class FakeOutput:
    """An output buffer whose bytes the test hands over piece by piece."""

    def __init__(self):
        self.data = b""

    def contents(self, start=0):
        return self.data[start:]


@pytest.mark.parametrize("pieces, text", [
    ([b"guest# \x1b[6n"], "guest# "),
    ([b"guest# \x1b", b"[", b"6", b"n"], "guest# "),           # a query split in transit
    ([b"\xc3", b"\xa9t\xc3\xa9"], "\u00e9t\u00e9"),                # UTF-8 split in transit
    ([b"\x1b]0;title\x07ok \x1b(Bx\x1b[1;31mred\x1b[0m"], "ok xred"),  # OSC, charset, colours
    ([b"half \x1b[1;3"], "half "),                             # held until it ends
    ([b"\x1b]" + b"x" * 300], "\x1b]" + "x" * 300),              # never ends: passed on
    ([b"\xff plain"], "\ufffd plain"),                           # not UTF-8: replaced
])
def test_the_transcript_is_text_without_control_sequences(pieces, text):
    buffer = FakeOutput()
    transcript = crosvm._Transcript(buffer)
    seen = []
    for piece in pieces:
        buffer.data += piece
        seen.append(transcript.text())
    assert seen[-1] == text
    assert all(later.startswith(earlier) for earlier, later in zip(seen, seen[1:]))


@needs_kvm
def test_expect_times_out_with_the_tail_of_the_output(guest_program):
    with crosvm.Vm(crosvm.VmConfig(kernel=guest_program("serial_echo"), memory_mib=64)) as vm:
        vm.start()
        vm.serial.expect("ready", timeout=HANG_GUARD)  # however slow the machine
        with pytest.raises(crosvm.ExpectTimeout) as timeout:
            vm.serial.expect("never printed", timeout=1)
        assert "ready" in str(timeout.value)
        assert "not within 1 s" in str(timeout.value)


@needs_kvm
def test_expect_fails_at_once_when_the_vm_stops(guest_program):
    with crosvm.Vm(crosvm.VmConfig(kernel=guest_program("hello"), memory_mib=64)) as vm:
        vm.start()
        with pytest.raises(crosvm.EOF, match=r"the VM stopped \(poweroff\)"):
            vm.serial.expect("never printed", timeout=HANG_GUARD)


def ticks(vm):
    return vm.serial.output.count("tick")


def wait_for_ticks(vm, more=2):
    start = ticks(vm)
    deadline = time.monotonic() + HANG_GUARD
    while ticks(vm) < start + more:
        assert time.monotonic() < deadline, "the guest made no progress"
        time.sleep(0.02)


@needs_kvm
def test_pause_holds_the_guest_and_resume_releases_it(guest_program):
    with crosvm.Vm(crosvm.VmConfig(kernel=guest_program("ticker"), memory_mib=64)) as vm:
        vm.start()
        wait_for_ticks(vm)
        vm.pause()
        assert vm.state == crosvm.State.PAUSED
        held = ticks(vm)
        time.sleep(0.3)
        assert ticks(vm) == held
        vm.resume()
        wait_for_ticks(vm)
        assert vm.stop() == crosvm.ExitReason.STOPPED
        with pytest.raises(crosvm.StateError):
            vm.resume()


@needs_kvm
def test_timeouts_that_are_not_numbers_are_refused_and_infinity_waits(guest_program):
    with crosvm.Vm(crosvm.VmConfig(kernel=guest_program("hello"), memory_mib=64)) as vm:
        vm.start()
        with pytest.raises(ValueError, match="NaN"):
            vm.wait(float("nan"))
        with pytest.raises(ValueError, match=">= 0"):
            vm.wait(-1)
        assert vm.wait(float("inf")) == crosvm.ExitReason.POWEROFF


@needs_kvm
def test_closing_a_vm_that_another_thread_waits_for_ends_the_wait_first(guest_program):
    vm = crosvm.Vm(crosvm.VmConfig(kernel=guest_program("ticker"), memory_mib=64))
    vm.start()
    wait_for_ticks(vm)
    waited = []
    waiter = threading.Thread(target=lambda: waited.append(vm.wait()))
    waiter.start()
    time.sleep(0.2)  # the waiter is inside crosvm_vm_wait, without the GIL
    vm.close()       # must not free the VM under it
    waiter.join(HANG_GUARD)
    assert not waiter.is_alive()
    assert waited == [crosvm.ExitReason.STOPPED]
    with pytest.raises(crosvm.StateError, match="closed"):
        vm.wait()


@needs_kvm
def test_leaving_the_block_stops_and_frees_a_running_vm(guest_program):
    with pytest.raises(RuntimeError, match="the test failed"):
        with crosvm.Vm(crosvm.VmConfig(kernel=guest_program("ticker"), memory_mib=64)) as vm:
            vm.start()
            wait_for_ticks(vm)
            raise RuntimeError("the test failed")
    with pytest.raises(crosvm.StateError, match="closed"):
        vm.start()
    assert vm.state == crosvm.State.STOPPED


@needs_kvm
def test_wait_releases_the_gil_and_two_vms_run_at_once(guest_program):
    ticker = crosvm.Vm(crosvm.VmConfig(kernel=guest_program("ticker"), memory_mib=64))
    hello = crosvm.Vm(crosvm.VmConfig(kernel=guest_program("hello"), memory_mib=64))
    with ticker, hello:
        ticker.start()
        waiter = threading.Thread(target=ticker.wait)  # blocks until the stop below
        waiter.start()
        hello.start()
        assert hello.wait(timeout=HANG_GUARD) == crosvm.ExitReason.POWEROFF
        wait_for_ticks(ticker)  # this thread ran Python while another waited
        assert ticker.wait(timeout=0) is None
        ticker.request_stop()
        waiter.join(HANG_GUARD)
        assert not waiter.is_alive()
        assert ticker.exit_reason == crosvm.ExitReason.STOPPED
        assert hello.serial.output == "hello from a tiny guest\n"


@needs_kvm
def test_the_control_socket_from_python(guest_program, tmp_path):
    config = crosvm.VmConfig(kernel=guest_program("ticker"), memory_mib=64, control_socket=tmp_path)
    with crosvm.Vm(config) as vm:
        assert vm.control_socket == str(tmp_path / f"crosvm-{os.getpid()}.sock")
        vm.start()
        status = crosvm.control_request(vm.control_socket, "status")
        assert status["status"]["state"] == "running"
        crosvm.control_request(vm.control_socket, "suspend")
        assert vm.state == crosvm.State.PAUSED
        with pytest.raises(crosvm.InvalidArgumentError, match="no disk 0"):
            crosvm.control_request(vm.control_socket, {"request": "disk_resize", "disk": 0, "size": 512})
        # crosvm's dialect: its VmRequest names, its answers.
        assert crosvm.control_request(vm.control_socket, "ResumeVcpus") == "Ok"
        assert vm.state == crosvm.State.RUNNING
        # crosvm's refusals carry a reason and no code: StateError, "the VM refused".
        with pytest.raises(crosvm.StateError, match="no disk 0"):
            crosvm.control_request(vm.control_socket,
                                   {"DiskCommand": {"disk_index": 0, "command": {"Resize": {"new_size": 512}}}})
        with pytest.raises(crosvm.ProtocolError, match="os error 95"):
            crosvm.control_request(vm.control_socket, "Sleepbtn")
        # This guest has no ACPI: the press is taken and goes unheard.
        vm.power_button()
        assert crosvm.control_request(vm.control_socket, "Powerbtn") == "Ok"
        assert "the guest does not listen to it" in vm.log
        crosvm.control_request(vm.control_socket, "stop")
        assert vm.wait(timeout=HANG_GUARD) == crosvm.ExitReason.STOPPED
        with pytest.raises(crosvm.StateError, match="stopping"):
            vm.power_button()
    assert not (tmp_path / f"crosvm-{os.getpid()}.sock").exists()


def test_the_device_kinds_are_the_librarys():
    kinds = crosvm.device_kinds()
    assert list(kinds) == ["block", "serial", "vhost-user", "rng", "net", "vsock"]
    assert "ro " in kinds["block"] and "hardware " in kinds["serial"] and "socket " in kinds["vhost-user"]


@needs_kvm
def test_devices_named_as_text_and_the_rng_by_default(guest_program, tmp_path):
    # The same defaults as crosvm-launch and the C ABI: an rng unless rng=False.
    image = tmp_path / "a,disk.img"
    image.write_bytes(b"\0" * 4096)
    config = crosvm.VmConfig(kernel=guest_program("ticker"), memory_mib=64, control_socket=tmp_path,
                             devices=[("block", f'path="{image}",ro=true,id=py'), ("serial", "type=sink,num=2")])
    with crosvm.Vm(config) as vm:
        vm.start()
        status = crosvm.control_request(vm.control_socket, "status")["status"]
        assert [(d["path"], d["read_only"]) for d in status["disks"]] == [(str(image), True)]
        assert "rng (virtio-rng)" in status["devices"]
        assert any(d.startswith("serial2 ") for d in status["devices"]), status["devices"]
        crosvm.control_request(vm.control_socket, "stop")
        assert vm.wait(timeout=HANG_GUARD) == crosvm.ExitReason.STOPPED
    # An rng named as a device replaces the default one, rng=False or not.
    config.devices = [("rng", "")]
    with crosvm.Vm(config) as vm:
        vm.start()
        status = crosvm.control_request(vm.control_socket, "status")["status"]
        assert [d for d in status["devices"] if "virtio-rng" in d] == ["rng (virtio-rng)"]
        crosvm.control_request(vm.control_socket, "stop")
        assert vm.wait(timeout=HANG_GUARD) == crosvm.ExitReason.STOPPED
    config.devices = []
    config.rng = False
    with crosvm.Vm(config) as vm:
        vm.start()
        status = crosvm.control_request(vm.control_socket, "status")["status"]
        assert "rng (virtio-rng)" not in status["devices"]
        crosvm.control_request(vm.control_socket, "stop")
        assert vm.wait(timeout=HANG_GUARD) == crosvm.ExitReason.STOPPED


@needs_kvm
def test_a_device_served_from_python_over_vhost_user(guest_program, tmp_path):
    socket = tmp_path / "rng.sock"
    served = []
    server = threading.Thread(target=lambda: served.append(crosvm.serve_device("rng", "", socket)))
    server.start()
    deadline = time.monotonic() + HANG_GUARD
    while not socket.exists():  # it appears once the server listens
        assert time.monotonic() < deadline and server.is_alive()
        time.sleep(0.01)
    config = crosvm.VmConfig(kernel=guest_program("ticker"), memory_mib=64, control_socket=tmp_path,
                             rng=False, devices=[("vhost-user", f"type=rng,socket={socket}")])
    with crosvm.Vm(config) as vm:
        vm.start()
        status = crosvm.control_request(vm.control_socket, "status")["status"]
        assert f"vhost-user0 (rng, {socket}): not started" in status["devices"]
        crosvm.control_request(vm.control_socket, "stop")
        assert vm.wait(timeout=HANG_GUARD) == crosvm.ExitReason.STOPPED
    # The VM going is the end of the session, not an error.
    server.join(HANG_GUARD)
    assert served == [None] and not socket.exists()
    with pytest.raises(crosvm.InvalidArgumentError, match="cannot serve a device of kind 'gpu'"):
        crosvm.serve_device("gpu", "", socket)


@needs_kvm
def test_a_sandboxed_vm_runs_its_disk_and_rng_in_jailed_processes(guest_program, tmp_path):
    image = tmp_path / "disk.img"
    image.write_bytes(b"\0" * 4096)
    config = crosvm.VmConfig(kernel=guest_program("ticker"), memory_mib=64, control_socket=tmp_path,
                             disks=[crosvm.Disk(image, read_only=False)], sandbox=True, sandbox_helper=BUILD / "lib" / "crosvm-device")
    with crosvm.Vm(config) as vm:
        vm.start()
        status = crosvm.control_request(vm.control_socket, "status")["status"]
        jailed = [d for d in status["devices"] if "jailed: pid " in d]
        assert len(jailed) == 2, status["devices"]  # the disk and the rng
        assert status["disks"][0]["path"] == str(image) and status["disks"][0]["size"] == 4096
        for line in jailed:
            pid = line.split("jailed: pid ")[1].rstrip(")")
            with open(f"/proc/{pid}/status") as task:
                assert "\nSeccomp:\t2\n" in task.read()
        # A jailed disk is resized by its device process, told over its
        # control channel; its own rules answer a bad size.
        crosvm.control_request(vm.control_socket, {"request": "disk_resize", "disk": 0, "size": 8192})
        assert image.stat().st_size == 8192
        status = crosvm.control_request(vm.control_socket, "status")["status"]
        assert status["disks"][0]["size"] == 8192
        with pytest.raises(crosvm.InvalidArgumentError, match="shrinking"):
            crosvm.control_request(vm.control_socket, {"request": "disk_resize", "disk": 0, "size": 4096})
        with pytest.raises(crosvm.InvalidArgumentError, match="512-byte sectors"):
            crosvm.control_request(vm.control_socket, {"request": "disk_resize", "disk": 0, "size": 8193})
        assert image.stat().st_size == 8192
        crosvm.control_request(vm.control_socket, "stop")
        assert vm.wait(timeout=HANG_GUARD) == crosvm.ExitReason.STOPPED
    # A helper that is not there: the VM is not built, and the error names it.
    config.sandbox_helper = tmp_path / "no-such-helper"
    with pytest.raises(crosvm.DeviceError, match="no-such-helper"):
        crosvm.Vm(config)


@needs_kvm
def test_a_disk_id_too_long_is_refused_when_the_vm_is_built(tmp_path):
    image = tmp_path / "disk.img"
    image.write_bytes(b"\0" * 4096)
    with pytest.raises(crosvm.Error, match="20"):
        crosvm.Vm(crosvm.VmConfig(disks=[crosvm.Disk(image, id="a" * 21)]))


@needs_kvm
def test_the_embed_example_boots_the_demo_guest():
    result = subprocess.run([str(BUILD / "examples" / "embed")], capture_output=True, text=True,
                            timeout=HANG_GUARD)
    assert result.returncode == 0, result.stderr
    assert "Hello from the libcrosvm demo guest!" in result.stdout
    assert "the VM stopped: the guest powered off" in result.stderr
