"""Finds a kernel's modules and their dependencies with modinfo, so an
initramfs can carry exactly what it loads, dependencies first; and writes
the busybox initramfs that the test and benchmark guests boot with."""
import lzma
import os
import shutil
import subprocess

import cpio  # beside this file: its folder is on the importer's path


def _modinfo_program() -> str:
    for candidate in (shutil.which("modinfo"), "/usr/sbin/modinfo", "/sbin/modinfo"):
        if candidate and os.path.exists(candidate):
            return candidate
    raise RuntimeError("modinfo not found: apt-get install kmod")


def _modinfo(kernel_version: str, field: str, module: str) -> str:
    modinfo = _modinfo_program()
    result = subprocess.run([modinfo, "-k", kernel_version, "-F", field, module],
                            capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else ""


def resolve(kernel_version: str, wanted: list[str]) -> list[tuple[str, str]]:
    """Returns [(name, path)] in load order. Built-in modules are skipped."""
    order: list[tuple[str, str]] = []
    seen: set[str] = set()

    def add(name: str) -> None:
        if name in seen:
            return
        seen.add(name)
        for dependency in filter(None, _modinfo(kernel_version, "depends", name).split(",")):
            add(dependency)
        path = _modinfo(kernel_version, "filename", name)
        if path.startswith("/") and os.path.exists(path):
            order.append((name.replace("-", "_"), path))

    for module in wanted:
        add(module)
    return order


def program_files(program: str, as_name: str) -> dict:
    """A dynamically linked host program for an initramfs, as
    write_busybox_initramfs's `files`: the program as `as_name` and every
    shared library ldd names (the loader included) at its own path."""
    path = shutil.which(program)
    if path is None:
        raise RuntimeError(f"{program} not found: apt-get install {program}")
    listed = subprocess.run(["ldd", path], capture_output=True, text=True, check=True).stdout
    files = {as_name: (open(path, "rb").read(), 0o755)}
    for line in listed.splitlines():
        words = line.split()
        library = words[2] if len(words) >= 3 and words[1] == "=>" else words[0] if words else ""
        if library.startswith("/"):
            files[library.lstrip("/")] = (open(library, "rb").read(), 0o755)
    return files


def read_module(path: str) -> bytes:
    if path.endswith(".xz"):
        return lzma.decompress(open(path, "rb").read())
    if path.endswith(".zst"):
        return subprocess.run(["zstd", "-qdc", path], check=True, capture_output=True).stdout
    return open(path, "rb").read()


def write_busybox_initramfs(output: str, kernel_version: str, init: bytes, wanted: list[str],
                            directories: tuple[str, ...] = (), files: dict | None = None) -> None:
    """Writes a gzipped initramfs for a guest of Debian's kernel: busybox-static
    as /bin/busybox and /bin/sh, `init` as /init, the modules in `wanted` that
    the kernel has as modules (with their dependencies) under /modules with
    /modules/order listing them in loading order, `directories` and `files`
    ({path: (bytes, mode)}). Atomic: a reader never sees half an archive."""
    archive = cpio.CpioWriter()
    for directory in ("bin", "dev", "proc", "sys", "modules", *directories):
        archive.directory(directory)
    archive.file("bin/busybox", open("/bin/busybox", "rb").read(), 0o755)
    archive.symlink("bin/sh", "busybox")
    for path, (data, mode) in (files or {}).items():
        archive.file(path, data, mode)
    archive.file("init", init, 0o755)
    loaded = resolve(kernel_version, wanted)
    for name, path in loaded:
        archive.file(f"modules/{name}.ko", read_module(path))
    archive.file("modules/order", "".join(f"{name}\n" for name, _ in loaded).encode())
    temporary = output + ".tmp"
    with open(temporary, "wb") as out:
        out.write(archive.gzipped())
    os.replace(temporary, output)
