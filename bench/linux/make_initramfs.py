#!/usr/bin/python3
"""Builds the benchmark guest's initramfs: busybox-static, blkbench, the
virtio block modules of the kernel and init.sh as /init. With NETRR and
NET_OUTPUT also the network and vsock benchmarks': the same with
virtio_net, vsock's transport, virtio's rng and console, netrr, vsockbench
(found beside netrr), and
iperf3 with its libraries (kept out of the other one, whose size every
boot figure pays for). The same archives boot under libcrosvm and QEMU.

usage: make_initramfs.py KERNEL_VERSION BLKBENCH OUTPUT [NETRR NET_OUTPUT]
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "nested"))
import modules  # noqa: E402

MODULES = ["virtio_pci", "virtio_blk"]
# The network guest's also serves the boot with every device jailed
# (crosvm_bench.devices=1), whose guest binds each kind: rng and console too.
NET_MODULES = MODULES + ["virtio_net", "vmw_vsock_virtio_transport", "virtio_rng", "virtio_console"]


def build(kernel_version: str, blkbench: str, output: str, netrr: str | None = None,
          net_output: str | None = None) -> None:
    init = open(os.path.join(HERE, "init.sh"), "rb").read()
    files = {"bin/blkbench": (open(blkbench, "rb").read(), 0o755)}
    modules.write_busybox_initramfs(output, kernel_version, init, MODULES, files=files)
    if net_output:
        files["bin/netrr"] = (open(netrr, "rb").read(), 0o755)
        vsockbench = os.path.join(os.path.dirname(netrr), "vsockbench")
        files["bin/vsockbench"] = (open(vsockbench, "rb").read(), 0o755)
        files.update(modules.program_files("iperf3", "bin/iperf3"))
        modules.write_busybox_initramfs(net_output, kernel_version, init, NET_MODULES,
                                        directories=("tmp",), files=files)


if __name__ == "__main__":
    if len(sys.argv) not in (4, 6):
        sys.exit(__doc__)
    build(*sys.argv[1:])
