"""crosvm-launch as a user at a shell meets it: its exit codes, its one-line
errors for bad input, its serial options and signals."""
import datetime
import fcntl
import pty
import select
import os
import pathlib
import re
import shutil
import signal
import socket
import struct
import subprocess
import termios
import time

import pytest

from conftest import needs_kvm

TIMEOUT = 120  # a hang guard, not a timing check


def run(launcher, *args, stdin=subprocess.DEVNULL):
    return subprocess.run([launcher, *args], stdin=stdin, capture_output=True, text=True,
                          timeout=TIMEOUT)


def assert_one_line_error(result, *fragments, code=1):
    """code: 1 for a set-up error, 35 for a command line that cannot be
    used (crosvm's exit statuses)."""
    assert result.returncode == code, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("crosvm-launch: error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@needs_kvm
def test_no_kernel_boots_the_demo_guest_and_exits_0(launcher):
    result = run(launcher, "run")
    assert result.returncode == 0, result.stderr
    assert "Hello from the libcrosvm demo guest!" in result.stdout
    assert "have 256 MiB of RAM" in result.stdout


@needs_kvm
def test_a_reader_that_leaves_costs_the_output_not_the_vm(launcher):
    # `crosvm-launch run ... | tee log`, and tee dies: the guest's next
    # output must not kill the VMM with SIGPIPE.
    reader, writer = os.pipe()
    os.close(reader)
    try:
        process = subprocess.run([launcher, "run"], stdin=subprocess.DEVNULL, stdout=writer,
                                 stderr=subprocess.PIPE, text=True, timeout=TIMEOUT)
    finally:
        os.close(writer)
    assert process.returncode == 0, (process.returncode, process.stderr)


@needs_kvm
def test_devices_are_jailed_by_default_and_a_missing_helper_is_one_line(launcher, tmp_path):
    # As crosvm: sandboxed unless --disable-sandbox.
    result = run(launcher, "run", "--rwdisk", str(make_disk(tmp_path)), "--log-level", "debug")
    assert result.returncode == 0, result.stderr
    assert "Hello from the libcrosvm demo guest!" in result.stdout
    assert "device process" in result.stderr and "started" in result.stderr, result.stderr
    without = {**os.environ, "CROSVM_DEVICE_HELPER": str(tmp_path / "no-helper")}
    missing = subprocess.run([launcher, "run"], stdin=subprocess.DEVNULL, capture_output=True,
                             text=True, timeout=TIMEOUT, env=without)
    assert_one_line_error(missing, "no-helper", "CROSVM_DEVICE_HELPER", "--disable-sandbox")
    unsandboxed = subprocess.run([launcher, "run", "--disable-sandbox"], stdin=subprocess.DEVNULL,
                                 capture_output=True, text=True, timeout=TIMEOUT, env=without)
    assert unsandboxed.returncode == 0, unsandboxed.stderr


def make_disk(tmp_path):
    image = tmp_path / "disk.img"
    image.write_bytes(b"\0" * 65536)
    return image


@needs_kvm
def test_demo_flag_takes_memory_option(launcher):
    result = run(launcher, "run", "--demo", "-m", "128")
    assert result.returncode == 0, result.stderr
    assert "have 128 MiB of RAM" in result.stdout


@needs_kvm
def test_reset_exits_32_with_extended_status_and_0_without(launcher, guest_program):
    # crosvm's exit statuses: how the VM ended only with --extended-status.
    result = run(launcher, "--extended-status", "run", guest_program("i8042_reset"))
    assert result.returncode == 32, result.stderr
    result = run(launcher, "run", guest_program("i8042_reset"))
    assert result.returncode == 0, result.stderr


@needs_kvm
def test_triple_fault_exits_33_and_logs_registers(launcher, guest_program):
    result = run(launcher, "--extended-status", "run", guest_program("triple_fault"))
    assert result.returncode == 33, result.stderr
    assert "triple fault" in result.stderr
    assert "rip=" in result.stderr
    # Without it, 0 as crosvm's; the log still says why.
    result = run(launcher, "--log-level", "error", "run", guest_program("triple_fault"))
    assert result.returncode == 0, result.stderr
    assert "triple fault" in result.stderr


@needs_kvm
def test_log_level_off_and_name(launcher, guest_program):
    result = run(launcher, "--log-level", "off", "run", "--name", "vm-under-test", guest_program("triple_fault"))
    assert result.returncode == 0 and result.stderr == "", result.stderr
    process = subprocess.Popen([launcher, "run", "--name", "a-very-long-vm-name", guest_program("ticker")],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + TIMEOUT
        while pathlib.Path(f"/proc/{process.pid}/comm").read_text().strip() != "a-very-long-vm-":  # 15 bytes
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(TIMEOUT) == 0


@needs_kvm
def test_stdin_reaches_the_guest_console(launcher, guest_program):
    result = subprocess.run([launcher, "run", guest_program("serial_echo")], input="from stdin\n",
                            capture_output=True, text=True, timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    assert "echo: from stdin" in result.stdout


@needs_kvm
def test_serial_to_a_file(launcher, tmp_path):
    output = tmp_path / "console.log"
    result = run(launcher, "run", "--demo", "--serial", f"type=file,path={output},num=1")
    assert result.returncode == 0, result.stderr
    assert "demo guest" in output.read_text()
    assert "demo guest" not in result.stdout


@needs_kvm
def test_out_timestamp_stamps_each_line_in_utc(launcher, tmp_path):
    output = tmp_path / "console.log"
    before = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    result = run(launcher, "run", "--demo", "--serial", f"type=file,path={output},num=1,out-timestamp=true")
    after = datetime.datetime.now(datetime.timezone.utc).replace(tzinfo=None)
    assert result.returncode == 0, result.stderr
    lines = output.read_text().splitlines()
    assert any("demo guest" in line for line in lines)
    for line in lines:
        found = re.match(r"\[ (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)\.(\d{9}) \]: ", line)
        assert found, line
        stamp = datetime.datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S")
        assert before.replace(microsecond=0) <= stamp <= after, line


def receive_datagrams(sock, until):
    """Datagrams from `sock` until one contains `until` (or the guard)."""
    received = []
    deadline = time.monotonic() + TIMEOUT
    sock.settimeout(1)
    while time.monotonic() < deadline and not any(until in line for line in received):
        try:
            received.append(sock.recv(4096).decode(errors="replace"))
        except socket.timeout:
            continue
    return received


@needs_kvm
def test_serial_type_unix_sends_a_datagram_per_line_to_a_socket_that_comes_late(launcher, tmp_path):
    # crosvm's type=unix: its reader (ChromeOS's vmlog_forwarder) may start
    # after the VMM, which waits for the socket to appear.
    path = tmp_path / "log.sock"
    process = subprocess.Popen([launcher, "run", "--demo", "--serial", f"type=unix,path={path},num=1"],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(0.5)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(str(path))
            lines = receive_datagrams(sock, "demo guest")
            stdout, stderr = process.communicate(timeout=TIMEOUT)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    assert any("demo guest" in line for line in lines), lines
    assert all("\n" not in line for line in lines), lines  # a line per datagram, without its end
    assert "demo guest" not in stdout


@needs_kvm
def test_serial_type_unix_stream_carries_output_and_input(launcher, guest_program, tmp_path):
    path = tmp_path / "console.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(str(path))
        server.listen(1)
        process = subprocess.Popen(
            [launcher, "run", guest_program("serial_echo"), "--serial",
             f"type=unix-stream,path={path},num=1,input-unix-stream"],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            server.settimeout(TIMEOUT)
            connection, _ = server.accept()
            with connection, connection.makefile("rw") as console:
                assert console.readline() == "ready\n"
                console.write("over the socket\n")
                console.flush()
                assert console.readline().startswith("echo: over the socket")
            _, stderr = process.communicate(timeout=TIMEOUT)
        finally:
            process.kill()
    assert process.returncode == 0, stderr


@needs_kvm
def test_serial_type_syslog_sends_each_line_to_dev_log(launcher, tmp_path):
    # The host's /dev/log is the test's own: bound there when there is none
    # (the nested machine has no syslog), or mounted over it in a mount
    # namespace of the launcher's.
    if os.geteuid() != 0:
        pytest.skip("needs root, to stand in for the host's /dev/log")
    ours = tmp_path / "log.sock"
    command = [launcher, "--syslog-tag", "vm-under-test", "run", "--demo", "--serial", "type=syslog,num=1"]
    bound_dev_log = not os.path.lexists("/dev/log")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        if bound_dev_log:
            sock.bind("/dev/log")
        else:
            sock.bind(str(ours))
            command = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
                       f'mount --bind {ours} /dev/log && exec "$@"', "sh", *command]
        try:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True)
            try:
                lines = receive_datagrams(sock, "demo guest")
                stdout, stderr = process.communicate(timeout=TIMEOUT)
            finally:
                process.kill()
        finally:
            if bound_dev_log:
                os.unlink("/dev/log")
    assert process.returncode == 0, stderr
    assert lines, stderr
    # As glibc's syslog() sends it: user.info, local time, tag[pid] (crosvm's --syslog-tag).
    header = re.compile(r"<14>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d vm-under-test\[\d+\]: ")
    for line in lines:
        assert header.match(line), line
    assert any("demo guest" in line for line in lines), lines
    assert "demo guest" not in stdout


@needs_kvm
def test_debugcon_prints_what_the_guest_writes_to_port_0x402(launcher, guest_program, tmp_path):
    output = tmp_path / "debugcon.log"
    result = run(launcher, "run", guest_program("debugcon"), "--serial",
                 f"hardware=debugcon,type=file,path={output},out-timestamp")
    assert result.returncode == 0, result.stderr
    assert "debugcon probe: 0x00000000000000e9" in result.stdout  # COM1, the default console
    assert re.fullmatch(r"\[ [-\d]+ [:\d]+\.\d{9} \]: hello through the debug port\n", output.read_text())

    # Elsewhere, port 0x402 is nobody's (it reads 0xff) and the guest stays quiet.
    result = run(launcher, "run", guest_program("debugcon"), "--serial",
                 f"hardware=debugcon,type=file,path={output},debugcon_port=0xe9")
    assert result.returncode == 0, result.stderr
    assert "debugcon probe: 0x00000000000000ff" in result.stdout


@needs_kvm
def test_a_debugcon_on_a_port_of_the_machine_is_refused_naming_it(launcher, tmp_path):
    result = run(launcher, "run", "--demo", "--serial", "hardware=debugcon,type=sink,debugcon-port=0x3f8")
    assert_one_line_error(result, "debugcon 1", "serial 1", "0x3f8")


@needs_kvm
def test_sigterm_stops_the_vm_in_order(launcher, guest_program):
    process = subprocess.Popen([launcher, "run", guest_program("serial_echo")],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline() == "ready\n"
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=TIMEOUT)
    finally:
        process.kill()
    assert process.returncode == 0, stderr
    assert "stopping the VM" in stderr


@needs_kvm
def test_a_second_signal_ends_a_stop_that_cannot_finish(launcher, guest_program, tmp_path):
    # The guest floods its console and nobody reads crosvm-launch's stdout:
    # once the pipe is full the vCPU waits on it, as on a slow UART, and an
    # orderly stop cannot finish. A second signal must still end the process.
    stderr_path = tmp_path / "stderr"
    with open(stderr_path, "w") as stderr:
        process = subprocess.Popen([launcher, "run", guest_program("flood")],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr)
    try:
        deadline = time.monotonic() + TIMEOUT
        # Full: what the pipe holds has not changed for a second (its size
        # depends on the host's limits).
        queued, since = -1, time.monotonic()
        while queued <= 0 or time.monotonic() - since < 1:
            assert process.poll() is None and time.monotonic() < deadline, stderr_path.read_text()
            now = queued_bytes(process.stdout)
            if now != queued:
                queued, since = now, time.monotonic()
            time.sleep(0.05)
        process.send_signal(signal.SIGTERM)
        while "stopping the VM" not in stderr_path.read_text():
            assert time.monotonic() < deadline, stderr_path.read_text()
            time.sleep(0.05)
        time.sleep(0.5)
        assert process.poll() is None, "the stop finished although stdout was never read"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=TIMEOUT) == 1
    finally:
        process.kill()
        process.stdout.close()
    assert "again: exiting without waiting for the VM" in stderr_path.read_text()


def queued_bytes(pipe) -> int:
    """How many bytes wait unread in a pipe."""
    return struct.unpack("i", fcntl.ioctl(pipe.fileno(), termios.FIONREAD, b"\0\0\0\0"))[0]


def test_missing_kernel(launcher):
    assert_one_line_error(run(launcher, "run", "/nonexistent/bzImage"),
                          "/nonexistent/bzImage", "No such file")


def test_empty_kernel(launcher, tmp_path):
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert_one_line_error(run(launcher, "run", str(empty)), "empty")


def test_non_kernel_file(launcher, tmp_path):
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho not a kernel\n" * 100)
    assert_one_line_error(run(launcher, "run", str(script)), "not a Linux kernel")


@needs_kvm  # the kernel is parsed after /dev/kvm is opened
def test_truncated_kernel(launcher, tmp_path):
    kernels = sorted(pathlib.Path("/boot").glob("vmlinuz-*"))
    if not kernels or not os.access(kernels[-1], os.R_OK):
        pytest.skip("no readable kernel in /boot to truncate")
    truncated = tmp_path / "truncated"
    truncated.write_bytes(kernels[-1].read_bytes()[:64 * 1024])
    assert_one_line_error(run(launcher, "run", str(truncated)), "truncated")


def test_directory_as_kernel(launcher, tmp_path):
    assert_one_line_error(run(launcher, "run", str(tmp_path)), "not a regular file")


@needs_kvm
def test_missing_initrd(launcher, guest_program):
    assert_one_line_error(run(launcher, "run", "-i", "/nonexistent/initrd", guest_program("hello")),
                          "initrd", "/nonexistent/initrd")


def test_zero_memory(launcher):
    assert_one_line_error(run(launcher, "run", "--demo", "-m", "0"), "memory size is 0")


@needs_kvm
def test_memory_beyond_the_address_space(launcher):
    assert_one_line_error(run(launcher, "run", "--demo", "-m", "999999999999"), "does not fit")


def test_zero_vcpus(launcher):
    assert_one_line_error(run(launcher, "run", "--demo", "-c", "0"), "vCPU")


@needs_kvm
def test_more_vcpus_than_kvm_allows(launcher):
    assert_one_line_error(run(launcher, "run", "--demo", "-c", "100000"), "at most")


def test_bad_option(launcher):
    assert_one_line_error(run(launcher, "run", "--frobnicate"), "--frobnicate", code=35)


def test_bad_number(launcher):
    assert_one_line_error(run(launcher, "run", "-m", "12x"), "'12x'", code=35)


def test_bad_device_lists_get_the_librarys_one_line(launcher):
    # --block and --serial go through the library's parser (the one
    # crosvm_config_add_device and Python use), which names kind and key.
    assert_one_line_error(run(launcher, "run", "--demo", "--block", "path=x.img,size=3"),
                          "block: unknown key 'size' (known: path, ro, root, id, allow-backing, sparse, lock, block-size, num-queues, direct)",
                          code=35)
    assert_one_line_error(run(launcher, "run", "--demo", "--serial", "num=7"), "serial: num must be 1 to 4", code=35)
    assert_one_line_error(run(launcher, "run", "--demo", "--serial", "type=sink", "--rwdisk", "a.img",
                              "--rwroot", "b.img", "--root", "c.img"), "only one disk can be the root")


def test_a_nic_needs_one_source(launcher):
    assert_one_line_error(run(launcher, "run", "--demo", "--net", "mac=52:54:00:00:00:01"),
                          "net: needs exactly one of tap-name=, tap-fd=, host-ip= and passt", code=35)


@needs_kvm
def test_a_tap_fd_that_is_no_tap_is_one_line_jailed_or_not(launcher):
    # The VMM opens (here: checks) the TAP before any device process exists.
    for flags in ([], ["--disable-sandbox"]):
        assert_one_line_error(run(launcher, "run", "--demo", "--log-level", "error", *flags, "--net", "tap-fd=2"),
                              "net: tap-fd=2 is not a TAP")


@needs_kvm
def test_passt_that_is_not_installed_is_one_line(launcher):
    assert_one_line_error(run(launcher, "run", "--demo", "--log-level", "error", "--net",
                              "passt,passt-path=/nonexistent/passt"),
                          "user-mode networking needs passt: /nonexistent/passt", "apt install passt")


def test_a_vsock_needs_a_cid_that_is_not_reserved(launcher):
    assert_one_line_error(run(launcher, "run", "--demo", "--vsock", "device=/dev/vhost-vsock"),
                          "vsock: needs cid=N", code=35)
    for cid in ("0", "1", "2", "4294967295"):
        assert_one_line_error(run(launcher, "run", "--demo", "--vsock", f"cid={cid}"),
                              f"vsock: CID {cid} is reserved", code=35)


@needs_kvm
def test_a_missing_vhost_vsock_is_one_line_jailed_or_not(launcher, tmp_path):
    for flags in ([], ["--disable-sandbox"]):
        assert_one_line_error(run(launcher, "run", "--demo", "--log-level", "error", *flags, "--vsock",
                                  f"cid=3,device={tmp_path}/vhost-vsock"),
                              f"vsock: {tmp_path}/vhost-vsock is missing", "modprobe vhost_vsock")


def test_unknown_command(launcher):
    assert_one_line_error(run(launcher, "explode"), "explode", code=35)


def test_no_dev_kvm(launcher):
    unshare = shutil.which("unshare")
    if os.geteuid() != 0 or unshare is None:
        pytest.skip("needs root and unshare to hide /dev/kvm")
    # A private mount namespace whose /dev is an empty tmpfs: no /dev/kvm.
    result = subprocess.run(
        [unshare, "--mount", "sh", "-c", f"mount -t tmpfs none /dev && exec {launcher} run --demo"],
        capture_output=True, text=True, timeout=TIMEOUT)
    if "mount:" in result.stderr:
        pytest.skip(f"cannot make a mount namespace here: {result.stderr.strip()}")
    assert_one_line_error(result, "/dev/kvm does not exist")


def test_version(launcher):
    result = run(launcher, "version")
    assert result.returncode == 0
    assert result.stdout.startswith("crosvm-launch ")


def test_help(launcher):
    result = run(launcher, "run", "--help")
    assert result.returncode == 0
    assert "--mem" in result.stdout
    # Each device kind of the library's, with its keys, and the exit codes after them.
    for line in ("  --block LIST\n", "  --serial LIST\n", "\n      hardware ", "  --vhost-user LIST\n",
                 "\n      max-queue-size the largest", "  --rng LIST\n", "exit status, as crosvm's:"):
        assert line in result.stdout


def test_device_serves_only_what_it_knows_with_one_line_each(launcher, tmp_path):
    usage = run(launcher, "device", "--help")
    assert usage.returncode == 0 and "--socket PATH" in usage.stdout
    for args, message in (
            (["device", "gpu", "--socket", str(tmp_path / "s")], "cannot serve a device of kind 'gpu' (known: block, rng, net, vsock)"),
            (["device", "block", "--socket", str(tmp_path / "s"), f"path={tmp_path / 'missing.img'}"], "missing.img"),
            (["device", "block", "--socket", str(tmp_path / "s"), "path=x,size=3"], "block: unknown key 'size'"),
            (["device", "rng"], "one of --socket PATH or --fd N")):
        assert_one_line_error(run(launcher, *args), message, code=35 if args == ["device", "rng"] else 1)
        assert not (tmp_path / "s").exists()


def test_create_qcow2_makes_an_image_qemu_img_checks_clean(launcher, tmp_path):
    image = tmp_path / "new.qcow2"
    result = run(launcher, "create_qcow2", str(image), "2G")
    assert result.returncode == 0 and result.stderr == "", result
    checked = subprocess.run(["qemu-img", "check", str(image)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout
    info = subprocess.run(["qemu-img", "info", str(image)], capture_output=True, text=True, check=True).stdout
    assert "virtual size: 2 GiB" in info and "compat: 1.1" in info, info
    # crosvm's spelling of the backing file, relative to the image.
    (tmp_path / "base.raw").write_bytes(b"\0" * (1 << 20))
    overlay = tmp_path / "overlay.qcow2"
    result = run(launcher, "create_qcow2", str(overlay), "--backing-file", "base.raw")
    assert result.returncode == 0, result
    info = subprocess.run(["qemu-img", "info", str(overlay)], capture_output=True, text=True, check=True).stdout
    assert "virtual size: 1 MiB" in info and "backing file: base.raw" in info, info

    assert_one_line_error(run(launcher, "create_qcow2", str(image), "1G"), "create_qcow2", "File exists")
    assert_one_line_error(run(launcher, "create_qcow2", str(tmp_path / "a.qcow2")), "give a SIZE or --backing-file", code=35)
    assert_one_line_error(run(launcher, "create_qcow2", str(tmp_path / "b.qcow2"), "1G", "--backing-file",
                              "base.raw"), "SIZE and --backing-file together", code=35)
    assert_one_line_error(run(launcher, "create_qcow2", str(tmp_path / "c.qcow2"), "lots"), "SIZE must be", code=35)
    assert not (tmp_path / "a.qcow2").exists() and not (tmp_path / "c.qcow2").exists()


class Terminal:
    """crosvm-launch run on a pseudo-terminal, as a user at a shell runs it."""

    def __init__(self, launcher, program):
        self.controller, follower = pty.openpty()
        # The guest's output and the log share the terminal, as at a shell: the
        # log's info lines (one lands as the guest powers off) would cut into
        # the guest's line this test reads, so only errors are logged. What
        # the escapes print is the launcher's own, not the log's.
        self.process = subprocess.Popen([launcher, "--log-level", "error", "run", program], stdin=follower,
                                        stdout=follower, stderr=follower, start_new_session=True)
        os.close(follower)
        self.output = b""

    def type(self, keys):
        os.write(self.controller, keys)

    def expect(self, text):
        deadline = time.monotonic() + TIMEOUT
        while text not in self.output:
            if not self.read_more():
                assert self.process.poll() is None, self.output  # it ended without saying it
            assert time.monotonic() < deadline, self.output

    def read_more(self):
        """Whether anything more came (the terminal reads EIO once the launcher is gone)."""
        if select.select([self.controller], [], [], 0.1)[0]:
            try:
                self.output += os.read(self.controller, 4096)
                return True
            except OSError:
                pass
        return False

    def finish(self):
        code = self.process.wait(TIMEOUT)
        os.close(self.controller)
        return code


@needs_kvm
def test_console_escapes_on_a_terminal(launcher, guest_program):
    """QEMU's Ctrl-A escapes: Ctrl-C reaches the guest, Ctrl-A a sends a
    Ctrl-A, Ctrl-A c reports the state, Ctrl-A x leaves."""
    echo = Terminal(launcher, guest_program("serial_echo"))
    echo.expect(b"ready")
    echo.type(b"\x01c")
    echo.expect(b"crosvm-launch: the VM is running (Ctrl-A h: help)")
    echo.type(b"\x01h")
    echo.expect(b"Ctrl-A x  stop the VM and exit")
    echo.type(b"a\x03b\x01ac\x01\x01d\x01zz\n")  # Ctrl-A z: an unknown escape, dropped
    echo.expect(b"echo: a\x03b\x01c\x01dz")
    assert echo.finish() == 0  # the guest powered off after its echo

    ticker = Terminal(launcher, guest_program("ticker"))
    ticker.expect(b"tick")
    ticker.type(b"\x03")  # the guest's, not a signal to us
    ticks = ticker.output.count(b"tick")
    deadline = time.monotonic() + TIMEOUT
    while ticker.output.count(b"tick") < ticks + 2:  # it goes on
        assert time.monotonic() < deadline and ticker.process.poll() is None, ticker.output
        ticker.read_more()
    assert ticker.process.poll() is None
    ticker.type(b"\x01x")
    ticker.expect(b"crosvm-launch: Ctrl-A x: stopping the VM")
    assert ticker.finish() == 0


@needs_kvm
def test_serial_input_from_a_file_and_a_fifo(launcher, guest_program, tmp_path):
    """crosvm's --serial input=PATH: the port reads a file, or a FIFO whose
    writer comes later (opening it does not wait, and the VM's stdin is not read)."""
    keys = tmp_path / "keys"
    keys.write_text("from a file\n")
    result = run(launcher, "run", "--serial", f"type=stdout,console,input={keys}", guest_program("serial_echo"),
                 stdin=subprocess.PIPE)
    assert result.returncode == 0, result.stderr
    assert "echo: from a file" in result.stdout

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    process = subprocess.Popen([launcher, "run", "--serial", f"type=stdout,console,input={fifo}",
                                guest_program("serial_echo")], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "ready\n"
    with open(fifo, "w") as writer:
        writer.write("through a fifo\n")
    out, err = process.communicate(timeout=TIMEOUT)
    assert process.returncode == 0, err
    assert "echo: through a fifo" in out

    assert_one_line_error(run(launcher, "run", "--serial", f"input={tmp_path / 'missing'}", guest_program("hello")),
                          "serial 1: cannot open its input", "missing")
