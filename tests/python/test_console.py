"""The consoles scripted as pexpect scripts a child: expect() with a pattern
or a list (the index returned; before, after and match), expect_exact(),
EOF and TIMEOUT raised or returned, sendline() and sendcontrol(), logs that
receive output live, interact() on a pseudo-terminal, several ports; and
the names of the errors. Most run against a VM whose console the test
writes itself, so each case is exact; the last boots a tiny guest."""
import io
import os
import pty
import threading
import time

import pytest

import crosvm
from conftest import needs_kvm

HANG_GUARD = 120  # seconds; a hang guard, not a timing check


class FakeBuffer:
    """The extension's output buffer: bytes the test appends."""

    def __init__(self):
        self.data = b""
        self.changed = threading.Condition()

    def append(self, data: bytes) -> None:
        with self.changed:
            self.data += data
            self.changed.notify_all()

    def contents(self, start=0):
        return self.data[start:]

    def size(self):
        return len(self.data)

    def wait_for_more(self, known, timeout):
        with self.changed:
            self.changed.wait_for(lambda: len(self.data) > known, timeout)
        return len(self.data)


class FakeNative:
    def __init__(self, ports):
        self.buffers = {port: FakeBuffer() for port in ports}
        self.typed = {port: b"" for port in ports}
        self.take = None  # how many bytes write_input takes at once (None: all)

    def output(self, virtio, number):
        return self.buffers[(virtio, number)]

    def write_input(self, virtio, number, data):
        taken = len(data) if self.take is None else min(self.take, len(data))
        self.typed[(virtio, number)] += data[:taken]
        return taken


class FakeVm:
    def __init__(self, ports=((False, 1),)):
        self._native = FakeNative(ports)
        self.state = crosvm.State.RUNNING
        self.exit_reason = None

    def stop(self, reason=crosvm.ExitReason.POWEROFF):
        self.exit_reason = reason
        self.state = crosvm.State.STOPPED
        for buffer in self._native.buffers.values():
            with buffer.changed:
                buffer.changed.notify_all()


def console(ports=((False, 1),)):
    vm = FakeVm(ports)
    return vm, crosvm.Serial(vm, *ports[0])


def prints(vm, text, port=(False, 1)):
    vm._native.buffers[port].append(text.encode() if isinstance(text, str) else text)


def wait_until(condition):
    """Polls `condition` until it holds; fails after HANG_GUARD."""
    deadline = time.monotonic() + HANG_GUARD
    while not condition():
        assert time.monotonic() < deadline
        time.sleep(0.01)


def later(seconds, action):
    timer = threading.Timer(seconds, action)
    timer.start()
    return timer


def test_expect_returns_the_index_and_sets_before_after_and_match():
    vm, serial = console()
    prints(vm, "booting\nlogin: ")
    assert serial.expect(r"login: ") == 0
    assert serial.before == "booting\n" and serial.after == "login: "
    assert serial.match.group(0) == "login: " and serial.match_index == 0
    prints(vm, "Password: incorrect\n# ")
    # Of several that match, the earliest in the text wins, whatever its place in the list.
    assert serial.expect([r"# ", r"incorrect", r"Pass(word)"]) == 2
    assert serial.before == "" and serial.match.group(1) == "word"
    assert serial.expect([r"# ", r"incorrect"]) == 1
    assert serial.before == ": "
    # A tie: the earlier in the list.
    prints(vm, "abc")
    assert serial.expect([r"ab", r"abc"]) == 0
    # Tuples and compiled patterns too; bytes patterns are text.
    import re
    prints(vm, "x=42;")
    assert serial.expect((re.compile(r"x=(\d+)"), b"never")) == 0 and serial.match.group(1) == "42"
    with pytest.raises(TypeError):
        serial.expect([42])
    with pytest.raises(ValueError):
        serial.expect([])


def test_expect_waits_for_what_comes_later():
    vm, serial = console()
    later(0.2, lambda: prints(vm, "ready\n"))
    assert serial.expect("ready", timeout=HANG_GUARD) == 0


def test_expect_exact_matches_plain_strings():
    vm, serial = console()
    prints(vm, "cost: $5 (approx.) done")
    assert serial.expect_exact(["(approx.)", "$5"]) == 1
    assert serial.match == "$5" and serial.before == "cost: " and serial.after == "$5"
    assert serial.expect_exact("(approx.)") == 0 and serial.before == " "
    with pytest.raises(TypeError):
        serial.expect_exact([""])


def test_a_timeout_is_raised_as_pythons_timeout_error_or_returned_when_listed():
    vm, serial = console()
    prints(vm, "prompt> ")
    with pytest.raises(TimeoutError) as raised:
        serial.expect("never", timeout=0.2)
    assert isinstance(raised.value, crosvm.ExpectTimeout) and isinstance(raised.value, crosvm.TIMEOUT)
    assert isinstance(raised.value, crosvm.WaitTimeoutError) and isinstance(raised.value, crosvm.Error)
    assert "'never' did not appear: not within 0.2 s" in str(raised.value) and "prompt> " in str(raised.value)
    assert raised.value.output == "prompt> "
    # Listed, TIMEOUT is the answer; nothing is consumed, as in pexpect.
    assert serial.expect(["never", crosvm.TIMEOUT], timeout=0.2) == 1
    assert serial.before == "prompt> " and serial.after is crosvm.TIMEOUT and serial.match is crosvm.TIMEOUT
    assert serial.expect("prompt") == 0
    with pytest.raises(ValueError):
        serial.expect("x", timeout=float("nan"))


def test_the_end_of_the_vm_is_eof_raised_or_returned_when_listed():
    vm, serial = console()
    prints(vm, "Power down.\n")
    later(0.2, vm.stop)
    assert serial.expect(["login:", crosvm.EOF], timeout=None) == 1
    assert serial.before == "Power down.\n" and serial.after is crosvm.EOF and serial.match is crosvm.EOF
    with pytest.raises(crosvm.EOF, match=r"the VM stopped \(poweroff\)") as raised:
        serial.expect("login:")
    assert not isinstance(raised.value, TimeoutError) and raised.value.output == "Power down.\n"
    # What was printed before the end still matches after it.
    vm2, serial2 = console()
    prints(vm2, "last words")
    vm2.stop()
    assert serial2.expect_exact(["words", crosvm.EOF]) == 0
    assert serial2.expect_exact(["words", crosvm.EOF]) == 1


def test_sendline_and_sendcontrol_type_what_pexpect_types():
    vm, serial = console()
    assert serial.sendline("ls -l") == 6
    assert serial.sendline() == 1
    assert serial.sendcontrol("c") == 1 and serial.sendcontrol("[") == 1 and serial.sendcontrol("?") == 1
    assert serial.sendeof() == 1
    assert vm._native.typed[(False, 1)] == b"ls -l\n\n\x03\x1b\x7f\x04"
    with pytest.raises(ValueError):
        serial.sendcontrol("ab")
    # A full input buffer is waited for, a piece at a time.
    vm._native.take = 3
    assert serial.send("0123456789") == 10
    assert vm._native.typed[(False, 1)].endswith(b"0123456789")


def test_a_logfile_receives_the_output_as_it_arrives_and_what_is_sent():
    vm, serial = console()
    prints(vm, "before the log\n")
    both, received, sent, raw = io.StringIO(), io.StringIO(), io.StringIO(), io.BytesIO()
    serial.logfile = both
    wait_until(lambda: "before the log" in both.getvalue())  # the pump has copied it: logfile_read comes later
    serial.logfile_read = received  # still gets what was printed before it
    serial.logfile_send = sent
    prints(vm, "caf\xc3".encode("latin-1") + b"")  # half a UTF-8 character...
    prints(vm, b"\xa9 \x1b[1mbold\x1b[0m\n")     # ...then the rest, and a colour
    serial.sendline("typed")
    wait_until(lambda: "bold" in received.getvalue())  # no expect() called: the log is live
    assert received.getvalue() == "before the log\ncaf\u00e9 \x1b[1mbold\x1b[0m\n"
    assert sent.getvalue() == "typed\n"
    assert "typed\n" in both.getvalue() and "bold" in both.getvalue()
    serial.logfile_read = raw  # a binary stream gets the bytes
    prints(vm, b"\xff\n")
    vm.stop()
    serial._pump.join(HANG_GUARD)
    assert not serial._pump.is_alive()  # it ends with the VM
    assert raw.getvalue() == b"\xff\n"
    assert serial.logfile is both and serial.logfile_read is raw and serial.logfile_send is sent


def test_interact_relays_a_terminal_until_the_escape_character():
    vm, serial = console()
    primary, secondary = pty.openpty()
    reader, writer = os.pipe()
    try:
        prints(vm, "guest# ")
        done = threading.Thread(target=serial.interact, kwargs={"input_fd": secondary, "output_fd": writer})
        done.start()
        # Once the terminal is raw: ^C goes to the guest, not to the line discipline.
        later(0.3, lambda: os.write(primary, b"ls\x03\r"))
        later(0.6, lambda: os.write(primary, b"pwd\x1dignored"))
        done.join(HANG_GUARD)
        assert not done.is_alive()
        assert vm._native.typed[(False, 1)] == b"ls\x03\rpwd"
        assert os.read(reader, 100) == b"guest# "
        # The terminal's mode is back as it was (cooked: echo and canonical).
        import termios
        assert termios.tcgetattr(secondary)[3] & termios.ICANON
    finally:
        for fd in (primary, secondary, reader, writer):
            os.close(fd)


def test_every_console_is_scriptable_by_its_own_name():
    vm = FakeVm(((False, 1), (False, 2), (True, 1)))
    serials = [crosvm.Serial(vm, *port) for port in ((False, 1), (False, 2), (True, 1))]
    assert [serial.name for serial in serials] == ["ttyS0", "ttyS1", "hvc0"]
    prints(vm, "on two", port=(False, 2))
    prints(vm, "on hvc0", port=(True, 1))
    assert serials[1].expect("two", timeout=1) == 0
    assert serials[2].expect(["two", "hvc0"], timeout=1) == 1
    assert serials[0].expect(["two", crosvm.TIMEOUT], timeout=0.1) == 1
    serials[1].sendline("x")
    assert vm._native.typed[(False, 2)] == b"x\n" and vm._native.typed[(False, 1)] == b""


def test_console_numbers_and_bare_disks_are_checked_and_read_only():
    for bad in ({"serial_ports": [5]}, {"virtio_consoles": [0]}, {"serial_ports": [1]},
                {"console": "virtio", "virtio_consoles": [1]}, {"serial_ports": [True]}):
        with pytest.raises(crosvm.InvalidArgumentError):
            crosvm.VmConfig(**bad)._ports()
    assert crosvm.VmConfig(serial_ports=[2, 4], virtio_consoles=[1])._ports() == [
        (False, 1), (False, 2), (False, 4), (True, 1)]
    assert crosvm.Disk("golden.img").read_only
    assert not crosvm.Disk("scratch.img", read_only=False).read_only


@needs_kvm
def test_a_tiny_guest_scripted_with_a_list_a_log_and_eof(guest_program, tmp_path):
    log = io.StringIO()
    config = crosvm.VmConfig(kernel=guest_program("serial_echo"), memory_mib=64, serial_ports=[2])
    with crosvm.Vm(config) as vm:
        assert [port.name for port in vm.ports] == ["ttyS0", "ttyS1"] and vm.port(2).name == "ttyS1"
        with pytest.raises(crosvm.InvalidArgumentError, match="known: ttyS0, ttyS1"):
            vm.port(3)
        vm.serial.logfile_read = log
        vm.start()
        assert vm.serial.expect(["panic", "ready"], timeout=HANG_GUARD) == 1
        vm.serial.sendline("hi there")
        assert vm.serial.expect([r"echo: (.*)\n", crosvm.EOF], timeout=HANG_GUARD) == 0
        assert vm.serial.match.group(1) == "hi there"
        assert vm.serial.expect([crosvm.EOF, crosvm.TIMEOUT], timeout=HANG_GUARD) == 0
        assert vm.exit_reason == crosvm.ExitReason.POWEROFF
        with pytest.raises(crosvm.StateError, match="no vsock device"):
            vm.vsock.cid
    assert "ready\n" in log.getvalue() and "echo: hi there\n" in log.getvalue()
