#!/usr/bin/python3
"""harness.py: boot a Linux guest with libcrosvm's Python bindings, wait for
its shell, run `uname -r` and check the answer.

    examples/harness.py KERNEL INITRD [--expect VERSION] [--prompt REGEX]

VERSION defaults to what the kernel's file name says (vmlinuz-VERSION). The
initramfs must start a shell on the serial console. Exit status 0 when the
guest answered as expected. From a build tree, run it with
PYTHONPATH=BUILD/bindings/python (docs/python.md)."""
import argparse
import os
import re
import sys

import crosvm


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kernel")
    parser.add_argument("initrd")
    parser.add_argument("--expect", help="the release uname -r must print")
    parser.add_argument("--prompt", default=r"[#$] $", help="the shell prompt (a regular expression)")
    parser.add_argument("--memory", type=int, default=512, help="guest memory in MiB")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for each step")
    args = parser.parse_args()
    expected = args.expect or re.sub(r"^vmlinu[xz]-", "", os.path.basename(args.kernel))

    config = crosvm.VmConfig(kernel=args.kernel, initrd=args.initrd, memory_mib=args.memory,
                             params="console=ttyS0 reboot=k panic=-1")
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
        # Markers the shell computes, so the echo of what we type never matches.
        vm.serial.sendline('echo "@@$((6*7))@@"; uname -r; echo "@@$((6*6))@@"')
        vm.serial.expect(r"@@42@@\r?\n(.*?)\r?\n@@36@@", timeout=args.timeout)
        answer = vm.serial.match.group(1).strip()
        print(f"the guest runs Linux {answer}")
        vm.serial.sendline("poweroff -f")
        reason = vm.wait(timeout=args.timeout)
        print(f"the guest stopped: {reason.name.lower() if reason else 'no (still running)'}")
    if answer != expected:
        print(f"harness: expected {expected!r}, the guest said {answer!r}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
