#!/usr/bin/python3
"""Builds the end-to-end test guest's initramfs: busybox-static, the kernel
modules the tests need (with their dependencies) and guest-init.sh as /init.

usage: make_initramfs.py KERNEL_VERSION OUTPUT
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "nested"))
import cpio  # noqa: E402
import modules  # noqa: E402

# Drivers for the devices the VMM offers; missing ones are skipped (built in).
GUEST_MODULES = ["virtio_pci", "virtio_blk", "virtio_console", "virtio-rng", "virtio_net",
                 "vmw_vsock_virtio_transport", "virtio_balloon", "ext4", "pvpanic-mmio"]


def build(kernel_version: str, output: str) -> None:
    archive = cpio.CpioWriter()
    for directory in ("bin", "dev", "proc", "sys", "tmp", "mnt", "modules"):
        archive.directory(directory)
    archive.file("bin/busybox", open("/bin/busybox", "rb").read(), 0o755)
    archive.symlink("bin/sh", "busybox")
    archive.file("init", open(os.path.join(HERE, "guest-init.sh"), "rb").read(), 0o755)
    loaded = modules.resolve(kernel_version, GUEST_MODULES)
    for name, path in loaded:
        archive.file(f"modules/{name}.ko", modules.read_module(path))
    archive.file("modules/order", "".join(f"{name}\n" for name, _ in loaded).encode())
    temporary = output + ".tmp"
    with open(temporary, "wb") as out:
        out.write(archive.gzipped())
    os.replace(temporary, output)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    build(sys.argv[1], sys.argv[2])
