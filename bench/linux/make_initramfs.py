#!/usr/bin/python3
"""Builds the benchmark guest's initramfs: busybox-static, blkbench, the
virtio block modules of the kernel and init.sh as /init. The same archive
boots under libcrosvm and under QEMU.

usage: make_initramfs.py KERNEL_VERSION BLKBENCH OUTPUT
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tests", "nested"))
import modules  # noqa: E402

MODULES = ["virtio_pci", "virtio_blk"]


def build(kernel_version: str, blkbench: str, output: str) -> None:
    init = open(os.path.join(HERE, "init.sh"), "rb").read()
    modules.write_busybox_initramfs(output, kernel_version, init, MODULES,
                                    files={"bin/blkbench": (open(blkbench, "rb").read(), 0o755)})


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    build(*sys.argv[1:])
