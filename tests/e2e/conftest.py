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
from console import ExpectTimeout, LauncherSession  # noqa: E402

BUILD = pathlib.Path(os.environ.get("CROSVM_BUILD_DIR", HERE.parents[1] / "build"))

# Inside tests/nested/run (QEMU's software AMD-V underneath), a Linux guest
# now and then hangs in its kernel's boot with its vCPU spinning, or
# triple-faults at a different point each time: the emulator hands it an
# instruction pointer that is not its own (docs/testing.md). Until the
# kernel starts /init (it says "Run /init as init process") the VMM has
# only answered the UART, CMOS, PIT, ACPI and PCI configuration space, and
# no device has touched guest memory. There, and only for a boot that hangs
# or crashes before that line, the boot is tried again (NESTED_BOOT_ATTEMPTS
# boots in all) and every retry is recorded and printed. Once /init runs,
# the virtio drivers load and talk to our devices: nothing after that line
# is ever retried. A boot takes 20-30 s there; two minutes means it hung.
KERNEL_STARTS_INIT = "Run /init as init process"
TRIPLE_FAULT = "crashed: triple fault"  # what crosvm-launch says of one"
NESTED = bool(os.environ.get("NESTED_KVM"))
NESTED_BOOT_LIMIT = 120
NESTED_BOOT_ATTEMPTS = 4
CRASH_EXIT = 33


def record_retry(nodeid: str, what: str, detail: str) -> None:
    """Says that a boot is tried again, and keeps what the failed one left
    (the console's tail, the VMM's report with the registers) in
    CROSVM_E2E_RESULTS.retries, which nested_e2e.py prints at the end."""
    print(f"\nretrying a boot that {what} before /init in {nodeid}: {detail.splitlines()[0]}",
          file=sys.stderr)
    path = os.environ.get("CROSVM_E2E_RESULTS")
    if path:
        with open(path, "a") as results:
            results.write(f"retried {what.split()[0]} {nodeid}\n")  # hung|crashed
        with open(path + ".retries", "a") as details:
            details.write(f"==== {nodeid}: the boot {what}\n{detail.strip()}\n")


def hardware_kvm() -> bool:
    flags = pathlib.Path("/proc/cpuinfo").read_text()
    return os.path.exists("/dev/kvm") and (" vmx" in flags or " svm" in flags)


def pytest_collection_modifyitems(config, items):
    if not hardware_kvm():
        skip = pytest.mark.skip(reason="needs a hardware-backed KVM (run through tests/e2e/run-e2e)")
        for item in items:
            item.add_marker(skip)


def pytest_runtest_logreport(report):
    """With CROSVM_E2E_RESULTS set, appends "OUTCOME NODEID" as each test
    ends, at once, so that a driver outside a machine that dies mid-run
    knows which tests finished (tests/e2e/nested_e2e.py)."""
    path = os.environ.get("CROSVM_E2E_RESULTS")
    if not path or not (report.when == "call" or report.outcome != "passed"):
        return
    with open(path, "a") as results:
        results.write(f"{report.outcome} {report.nodeid}\n")
        if NESTED and report.failed and TRIPLE_FAULT in report.longreprtext:
            # The nested emulator's fault can strike after /init too: the
            # driver runs such a test once more in a fresh machine.
            results.write(f"triplefault {report.nodeid}\n")
        results.flush()
        os.fsync(results.fileno())


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
def net_initramfs(kernel, initramfs) -> str:
    """The same with iperf3 (the networking tests' guest)."""
    path = BUILD / "tests" / "e2e" / f"initramfs-net-{kernel_version(kernel)}.cpio.gz"
    if not path.exists():
        subprocess.run([sys.executable, str(HERE / "make_initramfs.py"), kernel_version(kernel),
                        initramfs, str(path)], check=True)
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
def boot(request, launcher, kernel, initramfs):
    """boot(*launcher_args, params=...) starts a guest and waits for its shell."""
    sessions = []

    def start(*args: str, params: str = "console=ttyS0 reboot=k", wait_for_shell: bool = True,
              image: str = kernel, kernel_log: pathlib.Path | None = None,
              command: list[str] | None = None, prepare=None):
        """kernel_log: where the guest's kernel console goes when it is not
        the launcher's stdout (a --serial type=file port). command: another
        VMM's command line (QEMU), booting the same kernel and initramfs.
        prepare: called before each boot, a retried one too (it starts the
        device processes a VMM connects to, which serve one VMM each)."""
        if command is None:
            # A module that runs its tests both ways (a sandbox_mode fixture)
            # gets --disable-sandbox for its in-the-VMM half.
            mode = request.getfixturevalue("sandbox_mode") if "sandbox_mode" in request.fixturenames else None
            flags = ["--disable-sandbox"] if mode == "in-the-vmm" else []
            # --extended-status: the tests tell a reset (32), a crash (33)
            # and a panic (34) from a power-off (0), as crosvm's users do.
            command = [launcher, "--extended-status", "run", "-i", initramfs, "-p", params, *flags, *args, image]
        if prepare:
            prepare()
        session = LauncherSession(command)
        sessions.append(session)
        if not wait_for_shell:
            return session
        if NESTED:
            for attempt in range(NESTED_BOOT_ATTEMPTS):
                try:
                    session.expect(r"crosvm-e2e: init reached", timeout=NESTED_BOOT_LIMIT)
                    break
                except ExpectTimeout as failure:
                    code = session.process.poll()
                    kernel_output = (kernel_log.read_text(errors="replace") if kernel_log
                                     else session.output)
                    if (code not in (None, CRASH_EXIT) or KERNEL_STARTS_INIT in kernel_output
                            or attempt + 1 == NESTED_BOOT_ATTEMPTS):
                        raise
                    # Hung or crashed before the kernel started /init: the
                    # nested machine's known failure. Once more, said so.
                    what = "hung" if code is None else "crashed (triple fault)"
                    record_retry(request.node.nodeid, what, str(failure))
                    session.kill()
                    if prepare:
                        prepare()
                    session = LauncherSession(command)
                    sessions.append(session)
        else:
            session.expect(r"crosvm-e2e: init reached")
        session.expect(r"guest# ")
        return session

    yield start
    for session in sessions:
        session.kill()
