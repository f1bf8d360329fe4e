#!/usr/bin/python3
"""Builds the end-to-end test guest's initramfs: busybox-static, the kernel
modules the tests need (with their dependencies), guest-init.sh as /init,
the vsock tool the build made beside OUTPUT (bin/vsock-io) and the host's
mke2fs with its libraries; with
NET_OUTPUT also the networking tests' one, the same with iperf3 and its
libraries (8 MB that every other boot need not unpack).

usage: make_initramfs.py KERNEL_VERSION OUTPUT [NET_OUTPUT]
"""
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "nested"))
import modules  # noqa: E402

# Drivers for the devices the VMM offers; missing ones are skipped (built in).
GUEST_MODULES = ["virtio_pci", "virtio_blk", "virtio_console", "virtio-rng", "virtio_net",
                 "vmw_vsock_virtio_transport", "virtio_balloon", "ext4", "pvpanic-mmio", "virtiofs",
                 # the ACPI power button as an input device, for busybox's acpid
                 "button", "evdev"]


def guest_tools(output: str) -> dict:
    """The guest programs meson built in OUTPUT's directory (build/tests/e2e)."""
    path = os.path.join(os.path.dirname(os.path.abspath(output)), "vsock-io")
    if not os.path.exists(path):
        sys.exit(f"make_initramfs.py: {path} is not built (meson compile -C BUILD)")
    # e2fsprogs' mke2fs, under a name busybox's own (ext2 only) does not
    # shadow: the qcow2 test has the guest make an ext4.
    return {"bin/vsock-io": (open(path, "rb").read(), 0o755), **modules.program_files("mke2fs", "bin/mke2fs.e2fsprogs")}


def build(kernel_version: str, output: str, net_output: str | None = None) -> None:
    init = open(os.path.join(HERE, "guest-init.sh"), "rb").read()
    tools = guest_tools(output)
    modules.write_busybox_initramfs(output, kernel_version, init, GUEST_MODULES,
                                    directories=("tmp", "mnt"), files=tools)
    if net_output:
        modules.write_busybox_initramfs(net_output, kernel_version, init, GUEST_MODULES,
                                        directories=("tmp", "mnt"),
                                        files={**tools, **modules.program_files("iperf3", "bin/iperf3")})


if __name__ == "__main__":
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    build(*sys.argv[1:])
