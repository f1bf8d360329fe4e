#!/usr/bin/python3
"""guest_service.py: reach a service in a guest over user-mode networking,
without root: the guest's NIC goes through passt (started by libcrosvm),
gets its address by DHCP, serves a page with busybox's httpd, and this
script fetches it through a forwarded host port on 127.0.0.1.

    examples/guest_service.py KERNEL INITRD [--port 2222] [--prompt REGEX]

The initramfs must start a busybox shell on the serial console, and passt
must be installed (apt install passt). Exit status 0 when the page came
back. From a build tree, run it with PYTHONPATH=BUILD/bindings/python
(docs/python.md)."""
import argparse
import re
import sys
import time
import urllib.request

import crosvm

# The guest's DHCP client hook: address, MTU and default route from the lease.
DHCP_HOOK = ("printf '%s\\n' '#!/bin/sh' '[ \"$1\" = bound ] || exit 0' "
             "'ip addr add $ip/$mask dev $interface' '[ -n \"$mtu\" ] && ip link set $interface mtu $mtu' "
             "'ip route add default via $router' > /tmp/dhcp.sh && chmod +x /tmp/dhcp.sh")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kernel")
    parser.add_argument("initrd")
    parser.add_argument("--port", type=int, default=2222, help="the host port forwarded to the guest's port 80")
    parser.add_argument("--prompt", default=r"[#$] $", help="the shell prompt (a regular expression)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds to wait for each step")
    parser.add_argument("--sandbox", action="store_true", help="run the NIC jailed (needs crosvm-device)")
    args = parser.parse_args()

    config = crosvm.VmConfig(kernel=args.kernel, initrd=args.initrd, memory_mib=256,
                             params="console=ttyS0 reboot=k panic=-1", sandbox=args.sandbox,
                             devices=[("net", f"passt,tcp-ports={args.port}:80")])
    with crosvm.Vm(config) as vm:
        vm.start()
        prompt = re.compile(args.prompt, re.MULTILINE)
        vm.serial.expect(prompt, timeout=args.timeout)
        # The shell prints a marker it computes, so the echo of what we type
        # never matches.
        vm.serial.send(DHCP_HOOK + " && ip link set eth0 up && "
                       "udhcpc -i eth0 -n -q -f -O mtu -s /tmp/dhcp.sh >/dev/null 2>&1 && "
                       "mkdir -p /tmp/www && echo 'hello from the guest' > /tmp/www/index.html && "
                       "httpd -p 80 -h /tmp/www && echo \"@@$((6*7))@@ $(ip -4 -o addr show dev eth0 | awk '{print $4}')\"\n")
        vm.serial.expect(r"@@42@@ ([0-9.]+)/", timeout=args.timeout)
        address = vm.serial.match.group(1)
        print(f"the guest has {address} from passt's DHCP")
        page = None
        deadline = time.monotonic() + args.timeout
        while page is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{args.port}/", timeout=30) as response:
                    page = response.read().decode().strip()
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        print(f"the guest's web server said: {page}")
        vm.serial.send("poweroff -f\n")
        vm.wait(timeout=args.timeout)
    return 0 if page == "hello from the guest" else 1


if __name__ == "__main__":
    sys.exit(main())
