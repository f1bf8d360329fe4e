"""Finds a kernel's modules and their dependencies with modinfo, so an
initramfs can carry exactly what it loads, dependencies first."""
import lzma
import os
import shutil
import subprocess


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


def read_module(path: str) -> bytes:
    if path.endswith(".xz"):
        return lzma.decompress(open(path, "rb").read())
    if path.endswith(".zst"):
        return subprocess.run(["zstd", "-qdc", path], check=True, capture_output=True).stdout
    return open(path, "rb").read()
