#!/usr/bin/python3
"""Extracts the ELF vmlinux that a bzImage carries, so that the end-to-end
tests can boot the same kernel both ways.

The boot protocol (2.08+) gives the compressed payload's place in the setup
header (payload_offset at 0x248, payload_length at 0x24c, counted from the
start of the protected-mode code); the payload's magic names its format.
The kernel appends the decompressed size as 4 bytes, which the stream
decoders must not see.

usage: extract_vmlinux.py BZIMAGE OUTPUT
"""
import gzip
import lzma
import os
import struct
import subprocess
import sys

SETUP_SECTS = 0x1f1
PAYLOAD = 0x248
SECTOR = 512


def payload(image: bytes) -> bytes:
    if len(image) < 0x250 or image[0x202:0x206] != b"HdrS":
        raise ValueError("not a bzImage (no HdrS signature)")
    setup_sectors = image[SETUP_SECTS] or 4
    offset, length = struct.unpack_from("<II", image, PAYLOAD)
    start = (setup_sectors + 1) * SECTOR + offset
    if length == 0 or start + length > len(image):
        raise ValueError("the payload lies outside the image (boot protocol older than 2.08?)")
    return image[start:start + length]


def run_decoder(command: list[str], data: bytes) -> bytes:
    return subprocess.run(command, input=data, capture_output=True, check=True).stdout


def decompress(data: bytes) -> bytes:
    if data.startswith(b"\x1f\x8b"):
        return gzip.decompress(data)
    if data.startswith(b"\xfd7zXZ\x00"):
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data)
    if data.startswith(b"\x02\x21\x4c\x18"):  # LZ4 legacy frame, as the kernel writes it
        return run_decoder(["lz4", "-dc"], data[:-4])
    if data.startswith(b"\x28\xb5\x2f\xfd"):
        return run_decoder(["zstd", "-dc"], data[:-4])
    raise ValueError(f"unknown payload compression (magic {data[:4].hex()})")


def extract(bzimage: str, output: str) -> None:
    with open(bzimage, "rb") as source:
        vmlinux = decompress(payload(source.read()))
    if not vmlinux.startswith(b"\x7fELF"):
        raise ValueError("the payload did not decompress to an ELF file")
    temporary = output + ".tmp"
    with open(temporary, "wb") as out:
        out.write(vmlinux)
    os.replace(temporary, output)


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    extract(sys.argv[1], sys.argv[2])
