#!/usr/bin/python3
"""harness.py: boot a Linux guest with libcrosvm's Python bindings, wait for
its shell, then run `uname -r` over a vsock command channel and check the
answer. Needs no root: the vsock is the library's userspace one.

    examples/harness.py KERNEL INITRD [--expect VERSION] [--prompt REGEX] [--agent COMMAND]

VERSION defaults to what the kernel's file name says (vmlinuz-VERSION). The
initramfs must start a shell on the serial console, and have a program that
serves a shell on vsock port 1024: COMMAND starts it in the background
(default: socat's; the tests' initramfs has `vsock-io serve 1024 sh`). Each
command is one connection: its text in, its output back until the shell
exits. Exit status 0 when the guest answered as expected. From a build tree,
run it with PYTHONPATH=BUILD/bindings/python (docs/python.md)."""
import argparse
import os
import re
import socket
import sys
import tempfile

import crosvm

COMMAND_PORT = 1024


def run_over_vsock(vm: crosvm.Vm, command: str, timeout: float) -> str:
    """`command` run by the guest's shell behind the vsock agent: its
    output, once the shell exited (the end of the connection)."""
    with vm.vsock.connect(COMMAND_PORT, timeout=timeout) as channel:  # waits for the agent to listen
        channel.settimeout(timeout)
        channel.sendall(command.encode() + b"\n")
        channel.shutdown(socket.SHUT_WR)  # the shell's end of input: it exits after the command
        return b"".join(iter(lambda: channel.recv(65536), b"")).decode(errors="replace")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kernel")
    parser.add_argument("initrd")
    parser.add_argument("--expect", help="the release uname -r must print")
    parser.add_argument("--prompt", default=r"[#$] $", help="the shell prompt (a regular expression)")
    parser.add_argument("--agent", default=f"socat VSOCK-LISTEN:{COMMAND_PORT},fork,reuseaddr EXEC:/bin/sh,stderr",
                        help="the guest's command that serves a shell on vsock port 1024")
    parser.add_argument("--memory", type=int, default=512, help="guest memory in MiB")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for each step")
    args = parser.parse_args()
    expected = args.expect or re.sub(r"^vmlinu[xz]-", "", os.path.basename(args.kernel))

    with tempfile.TemporaryDirectory(prefix="harness-") as directory:
        config = crosvm.VmConfig(kernel=args.kernel, initrd=args.initrd, memory_mib=args.memory,
                                 params="console=ttyS0 reboot=k panic=-1",
                                 devices=[("vsock", f"socket={directory}/vm.vsock")])
        with crosvm.Vm(config) as vm:
            vm.start()
            prompt = re.compile(args.prompt, re.MULTILINE)
            # The shell, or the two ways a boot goes wrong, whichever comes first.
            seen = vm.serial.expect([prompt, r"Kernel panic[^\n]*", crosvm.EOF], timeout=args.timeout)
            if seen != 0:
                why = vm.serial.after if seen == 1 else f"the VM stopped ({vm.exit_reason.name.lower()})"
                print(f"harness: no shell: {why}; the guest printed last:\n{vm.serial.output[-2000:]}",
                      file=sys.stderr)
                return 1
            # The console starts the agent; every command after it goes over vsock.
            vm.serial.sendline(f"{args.agent} >/dev/null 2>&1 &")
            try:
                answer = run_over_vsock(vm, "uname -r", args.timeout).strip()
            except (OSError, crosvm.Error) as error:
                print(f"harness: no answer over vsock: {error}; the guest printed last:\n"
                      f"{vm.serial.output[-2000:]}", file=sys.stderr)
                return 1
            print(f"the guest runs Linux {answer} (asked over vsock)")
            vm.serial.sendline("poweroff -f")
            reason = vm.wait(timeout=args.timeout)
            print(f"the guest stopped: {reason.name.lower() if reason else 'no (still running)'}")
    if answer != expected:
        print(f"harness: expected {expected!r}, the guest said {answer!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
