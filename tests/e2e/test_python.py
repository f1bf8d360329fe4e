"""Debian's kernel driven from Python: examples/harness.py and
examples/guest_service.py themselves, and a test that scripts a guest
through the crosvm package (expect with a list, a live log, pause, resume,
a disk, a second console, vsock both ways, poweroff as EOF)."""
import io
import os
import pathlib
import socket
import subprocess
import sys
import time

import pytest

from conftest import (BUILD, KERNEL_STARTS_INIT, NESTED, NESTED_BOOT_ATTEMPTS, NESTED_BOOT_LIMIT,
                      record_retry)
from test_net import NOBODY, host_namespace, unprivileged_dir  # noqa: F401 (fixtures)

SOURCE = pathlib.Path(__file__).parents[2]
PYTHONPATH = str(BUILD / "bindings" / "python")
sys.path.insert(0, PYTHONPATH)
crosvm = pytest.importorskip("crosvm", reason="the Python bindings were not built (pybind11-dev)")

INIT_REACHED = "crosvm-e2e: init reached"
HANG_GUARD = 240


def test_the_harness_example_asks_uname_over_vsock_without_root(request, kernel, initramfs,
                                                                 unprivileged_dir):  # noqa: F811
    """examples/harness.py, run by nobody: the console for the prompt, the
    userspace vsock for its command."""
    command = [*NOBODY, sys.executable, str(SOURCE / "examples" / "harness.py"), kernel, initramfs,
               "--prompt", r"guest# $", "--memory", "256", "--agent", "vsock-io serve 1024 sh",
               "--timeout", str(NESTED_BOOT_LIMIT if NESTED else HANG_GUARD)]
    env = dict(os.environ, PYTHONPATH=PYTHONPATH)
    for attempt in range(NESTED_BOOT_ATTEMPTS if NESTED else 1):
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=4 * HANG_GUARD)
        said = result.stdout + result.stderr  # a timeout's message carries the console's tail
        if result.returncode == 0 or not NESTED or INIT_REACHED in said or KERNEL_STARTS_INIT in said:
            break
        # The nested machine's known failure before the kernel starts /init (conftest.py).
        what = "crashed (triple fault)" if "the VM stopped (crash)" in result.stderr else "hung"
        record_retry(request.node.nodeid, what, result.stderr[-3000:] or "(nothing on stderr)")
    assert result.returncode == 0, result.stdout + result.stderr
    version = os.path.basename(kernel).removeprefix("vmlinuz-")
    assert f"the guest runs Linux {version} (asked over vsock)" in result.stdout
    assert "the guest stopped: poweroff" in result.stdout


def boot(request, config):
    """Starts a VM from `config` and waits for its shell, retrying (nested
    only) a boot that hangs or crashes before its kernel starts /init, as
    the launcher fixture does."""
    for attempt in range(NESTED_BOOT_ATTEMPTS if NESTED else 1):
        vm = crosvm.Vm(config)
        vm.start()
        try:
            vm.serial.expect(INIT_REACHED, timeout=NESTED_BOOT_LIMIT if NESTED else HANG_GUARD)
            break
        except (crosvm.ExpectTimeout, crosvm.EOF) as failure:
            reason = vm.exit_reason  # NONE: still running, that is hung
            init_started = KERNEL_STARTS_INIT in vm.serial.output
            vm.close()
            if (not NESTED or attempt + 1 == NESTED_BOOT_ATTEMPTS or init_started
                    or reason not in (crosvm.ExitReason.NONE, crosvm.ExitReason.CRASH)):
                raise
            record_retry(request.node.nodeid,
                         "crashed (triple fault)" if reason == crosvm.ExitReason.CRASH else "hung",
                         f"{failure}\nexit: {vm.exit_message}\nlog:\n{vm.log[-2000:]}")
    vm.serial.expect(r"guest# ", timeout=HANG_GUARD)
    return vm


def run(vm, command):
    vm.serial.send(f'echo "@@$((6*7))@@"; {command}; echo "@@$((6*6))@@"\n')
    vm.serial.expect(r"(?s)@@42@@\r?\n(.*?)@@36@@", timeout=HANG_GUARD)
    return vm.serial.match.group(1).replace("\r\n", "\n")


@pytest.mark.parametrize("vsock", ["vhost-vsock", "userspace"])
def test_a_python_harness_scripts_a_linux_guest(request, kernel, initramfs, tmp_path, vsock):
    """The harness's vsock calls are the same on the kernel's vsock and on
    the userspace one (a Unix socket, no root needed)."""
    image = tmp_path / "disk.img"
    image.write_bytes(b"crosvm" + b"\0" * (1 << 20))
    cid = 2000 + os.getpid() % 100000
    vsock_socket = str(tmp_path / "vm.vsock")
    log = io.StringIO()
    config = crosvm.VmConfig(kernel=kernel, initrd=initramfs, memory_mib=256, vcpus=2,
                             params="console=ttyS0 reboot=k", disks=[image], virtio_consoles=[1],
                             devices=[("vsock", f"cid={cid}" if vsock == "vhost-vsock"
                                       else f"cid={cid},socket={vsock_socket}")])
    with boot(request, config) as vm:
        vm.serial.logfile_read = log
        assert run(vm, "grep -c ^processor /proc/cpuinfo").strip() == "2"
        assert run(vm, "head -c 6 /dev/vda").strip() == "crosvm"
        # A bare path is read-only, as crosvm-launch's -d.
        vm.serial.sendline("echo x > /dev/vda; echo status=$?")
        assert vm.serial.expect([r"status=0", r"status=[1-9]", crosvm.EOF], timeout=HANG_GUARD) == 1
        assert image.read_bytes()[:6] == b"crosvm"
        # The second console, hvc0, scripted on its own.
        hvc0 = vm.port(1, virtio=True)
        assert hvc0.name == "hvc0"
        run(vm, "echo on-the-virtio-console > /dev/hvc0")
        assert hvc0.expect_exact(["on-the-serial-console", "on-the-virtio-console"], timeout=HANG_GUARD) == 1
        # vsock: the host connects to a guest listener...
        assert vm.vsock.cid == cid
        assert vm.vsock.socket_path == (None if vsock == "vhost-vsock" else vsock_socket)
        run(vm, "vsock-io echo 7000 1 >/tmp/echo.out 2>&1 & :")
        message = os.urandom(64 << 10)
        with vm.vsock.connect(7000, timeout=HANG_GUARD) as connection:
            connection.sendall(message)
            connection.shutdown(socket.SHUT_WR)
            echoed = b"".join(iter(lambda: connection.recv(1 << 16), b""))
        assert echoed == message
        # ...and the guest connects to the host (CID 2).
        with vm.vsock.listen(6000) as listener:
            run(vm, "echo hello-host | vsock-io connect 2 6000 >/tmp/reply 2>&1 & :")
            connection, _ = listener.accept(timeout=HANG_GUARD)
            with connection:
                assert b"".join(iter(lambda: connection.recv(4096), b"")) == b"hello-host\n"
                connection.sendall(b"hello-guest\n")
        assert run(vm, "wait; cat /tmp/reply /tmp/echo.out").strip() == "hello-guest\nechoed 1"
        vm.pause()
        assert vm.state == crosvm.State.PAUSED
        held = len(vm.serial.output)
        time.sleep(1)
        assert len(vm.serial.output) == held
        vm.resume()
        assert run(vm, "echo back").strip() == "back"
        vm.serial.sendline("poweroff -f")
        assert vm.serial.expect([r"guest# never", crosvm.EOF], timeout=HANG_GUARD) == 1
        assert vm.wait(timeout=HANG_GUARD) == crosvm.ExitReason.POWEROFF
    assert "@@42@@" in log.getvalue() and "back" in log.getvalue()  # the log saw the session live


def test_the_guest_service_example_reaches_a_guest_web_server_over_passt_without_root(
        request, kernel, initramfs, host_namespace, unprivileged_dir):
    """examples/guest_service.py, run by nobody in a network namespace that
    stands for a host (test_net.py): the page comes back through the
    forwarded port."""
    command = ["ip", "netns", "exec", host_namespace, *NOBODY, sys.executable,
               str(SOURCE / "examples" / "guest_service.py"), kernel, initramfs, "--prompt", r"guest# $",
               "--timeout", str(NESTED_BOOT_LIMIT if NESTED else HANG_GUARD)]
    env = dict(os.environ, PYTHONPATH=PYTHONPATH)
    for attempt in range(NESTED_BOOT_ATTEMPTS if NESTED else 1):
        result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=4 * HANG_GUARD)
        said = result.stdout + result.stderr
        if result.returncode == 0 or not NESTED or INIT_REACHED in said or KERNEL_STARTS_INIT in said:
            break
        what = "crashed (triple fault)" if "the VM stopped (crash)" in result.stderr else "hung"
        record_retry(request.node.nodeid, what, result.stderr[-3000:] or "(nothing on stderr)")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "the guest has 10.0.2.15 from passt's DHCP" in result.stdout
    assert "the guest's web server said: hello from the guest" in result.stdout
    assert "passt" not in result.stderr, result.stderr
