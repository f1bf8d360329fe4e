"""The end-to-end suite boots Debian's cloud kernel with a busybox initramfs.
It needs a hardware-backed KVM: run it through tests/e2e/run-e2e, which uses
the nested runner on machines that have none."""
import glob
import os
import pathlib
import subprocess
import sys

import pytest

HERE = pathlib.Path(__file__).parent
sys.path.insert(0, str(HERE))
from console import LauncherSession  # noqa: E402

BUILD = pathlib.Path(os.environ.get("CROSVM_BUILD_DIR", HERE.parents[1] / "build"))


def hardware_kvm() -> bool:
    flags = pathlib.Path("/proc/cpuinfo").read_text()
    return os.path.exists("/dev/kvm") and (" vmx" in flags or " svm" in flags)


def pytest_collection_modifyitems(config, items):
    if not hardware_kvm():
        skip = pytest.mark.skip(reason="needs a hardware-backed KVM (run through tests/e2e/run-e2e)")
        for item in items:
            item.add_marker(skip)


def kernel_version(path: str) -> str:
    return os.path.basename(path)[len("vmlinuz-"):]


@pytest.fixture(scope="session")
def kernel() -> str:
    configured = os.environ.get("CROSVM_E2E_KERNEL")
    if configured:
        return configured
    kernels = sorted(glob.glob("/boot/vmlinuz-*-cloud-amd64"))
    if not kernels:
        pytest.skip("no Debian cloud kernel (apt-get install linux-image-cloud-amd64)")
    return kernels[-1]


@pytest.fixture(scope="session")
def initramfs(kernel) -> str:
    path = BUILD / "tests" / "e2e" / f"initramfs-{kernel_version(kernel)}.cpio.gz"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, str(HERE / "make_initramfs.py"), kernel_version(kernel),
                        str(path)], check=True)
    return str(path)


@pytest.fixture(scope="session")
def vmlinux(kernel) -> str:
    """The ELF vmlinux inside the bzImage (run-e2e extracts it beforehand)."""
    path = BUILD / "tests" / "e2e" / f"vmlinux-{kernel_version(kernel)}"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, str(HERE / "extract_vmlinux.py"), kernel, str(path)],
                       check=True)
    return str(path)


@pytest.fixture(scope="session")
def launcher() -> str:
    path = BUILD / "launcher" / "crosvm-launch"
    assert path.exists(), f"{path} is not built"
    return str(path)


@pytest.fixture
def boot(launcher, kernel, initramfs):
    """boot(*launcher_args, params=...) starts a guest and waits for its shell."""
    sessions = []

    def start(*args: str, params: str = "console=ttyS0 reboot=k", wait_for_shell: bool = True,
              image: str = kernel):
        session = LauncherSession([launcher, "run", "-i", initramfs, "-p", params, *args, image])
        sessions.append(session)
        if wait_for_shell:
            session.expect(r"crosvm-e2e: init reached")
            session.expect(r"guest# ")
        return session

    yield start
    for session in sessions:
        session.kill()
