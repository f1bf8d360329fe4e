#!/usr/bin/python3
"""Builds the end-to-end test guest's initramfs: busybox-static, the kernel
modules the tests need (with their dependencies) and guest-init.sh as /init.

usage: make_initramfs.py KERNEL_VERSION OUTPUT
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "nested"))
import modules  # noqa: E402

# Drivers for the devices the VMM offers; missing ones are skipped (built in).
GUEST_MODULES = ["virtio_pci", "virtio_blk", "virtio_console", "virtio-rng", "virtio_net",
                 "vmw_vsock_virtio_transport", "virtio_balloon", "ext4", "pvpanic-mmio", "virtiofs"]


def build(kernel_version: str, output: str) -> None:
    init = open(os.path.join(HERE, "guest-init.sh"), "rb").read()
    modules.write_busybox_initramfs(output, kernel_version, init, GUEST_MODULES,
                                    directories=("tmp", "mnt"))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    build(sys.argv[1], sys.argv[2])
