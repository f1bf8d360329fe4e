"""Copies what a benchmark runs into a temporary directory on tmpfs: the
programs, every shared library they load, the guest's kernel and
initramfs, QEMU's firmware.

Inside the nested runner the host's files arrive over 9p without a cache:
each run would read the 14 MiB kernel again and page in the VMM and its
libraries over it, which made up most of the set-up cost measured there,
and more of it for the VMM with more (or larger) files. Staged, both sides
start from memory, as they do from the page cache on a host. Where the
machine is not the nested one, Stage(enabled=False) hands the paths back
unchanged."""
import glob
import os
import re
import shutil
import subprocess
import tempfile

LDD_LINE = re.compile(r"=>\s+(/\S+)\s+\(0x")
QEMU_MODULES = "/usr/lib/x86_64-linux-gnu/qemu"


class Stage:
    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.root = tempfile.mkdtemp(prefix="crosvm-bench-stage-") if enabled else ""
        if enabled:
            # The jailed devices' helper is exec'd as nobody: the stage must
            # be open to others (mkdtemp makes it 0700).
            os.chmod(self.root, 0o755)
        self.lib = os.path.join(self.root, "lib")
        self.firmware = os.path.join(self.root, "firmware")
        self.qemu_modules = os.path.join(self.root, "qemu-modules")
        if enabled:
            os.makedirs(self.lib)
            os.makedirs(self.firmware)
        self._copied: dict[str, str] = {}
        # A staged firmware folder's -L, and the -L that QEMU needs unstaged.
        self._firmware_options: dict[str, list[str]] = {}

    def file(self, path: str) -> str:
        """The staged copy of `path` (one copy however often it is asked for)."""
        if not self.enabled:
            return path
        if path not in self._copied:
            target = os.path.join(self.root, f"{len(self._copied)}-{os.path.basename(path)}")
            shutil.copy2(os.path.realpath(path), target)
            self._copied[path] = target
        return self._copied[path]

    def program(self, path: str, runpath: bool = False) -> str:
        """A staged program (found on PATH too) with the libraries ldd lists
        for it in self.lib, which environment() puts first on the search path.
        `runpath`: a program started without that environment (the jailed
        devices' helper, exec'd with an empty one) gets self.lib as its
        RUNPATH instead, so that it maps the same library files as the VMM,
        as on a host, where their pages are shared, not each its own."""
        if not self.enabled:
            return path
        found = shutil.which(path) or path
        listing = subprocess.run(["ldd", found], capture_output=True, text=True).stdout
        for library in LDD_LINE.findall(listing):
            target = os.path.join(self.lib, os.path.basename(library))
            if not os.path.exists(target):
                shutil.copy2(os.path.realpath(library), target)
        staged = self.file(found)
        if runpath:
            subprocess.run(["patchelf", "--set-rpath", self.lib, staged], check=True)
        return staged

    def qemu(self, firmware: str, prefix: str = "/") -> list[str]:
        """QEMU staged: the program, then the options that make it load
        `firmware` from the stage. Debian builds its accelerators' code as
        modules, which a moved binary looks for beside itself; they are
        staged too, and environment() names their folder. `prefix`: where
        a QEMU other than the system's was unpacked (as tests/nested/run
        --install-emulator unpacks Debian's current one); its firmware is
        looked for in its own share/qemu, then share/seabios, as Debian's
        firmware path orders them. Unstaged, that QEMU gets the same -L."""
        program = os.path.join(prefix, "usr", "bin", "qemu-system-x86_64") if prefix != "/" else "qemu-system-x86_64"
        directories = [os.path.join(prefix, "usr", "share", name) for name in ("qemu", "seabios")]
        unstaged = [] if prefix == "/" else [option for directory in directories for option in ("-L", directory)]
        if not self.enabled:
            return [program] + unstaged
        command = [self.program(program)]
        staged_firmware = self.firmware if prefix == "/" else os.path.join(self.root, f"firmware-{len(self._copied)}")
        os.makedirs(staged_firmware, exist_ok=True)
        for directory in directories:
            if os.path.exists(os.path.join(directory, firmware)):
                shutil.copy2(os.path.realpath(os.path.join(directory, firmware)),
                             os.path.join(staged_firmware, firmware))
                command += ["-L", staged_firmware]
                self._firmware_options[staged_firmware] = unstaged
                break
        if prefix == "/":
            os.makedirs(self.qemu_modules, exist_ok=True)
            for module in glob.glob(os.path.join(QEMU_MODULES, "accel-*.so")):
                shutil.copy2(module, self.qemu_modules)
        return command

    def unstaged(self, command: list[str]) -> list[str]:
        """`command` as it reads without the stage: each staged copy by its
        original's path (also inside KEY=PATH words), QEMU's staged
        firmware folder by the -L that QEMU needs without it."""
        if not self.enabled:
            return list(command)
        words: list[str] = []
        skip = False
        for index, word in enumerate(command):
            if skip:
                skip = False
                continue
            if word == "-L" and index + 1 < len(command) and command[index + 1] in self._firmware_options:
                words += self._firmware_options[command[index + 1]]
                skip = True
                continue
            for original, copy in self._copied.items():
                word = word.replace(copy, original)
            words.append(word)
        return words

    def environment(self, base: dict | None = None) -> dict:
        env = dict(os.environ if base is None else base)
        if self.enabled:
            env["LD_LIBRARY_PATH"] = self.lib + (":" + env["LD_LIBRARY_PATH"] if env.get("LD_LIBRARY_PATH") else "")
            if os.path.isdir(self.qemu_modules):
                env["QEMU_MODULE_DIR"] = self.qemu_modules
        return env

    def close(self) -> None:
        if self.enabled:
            shutil.rmtree(self.root, ignore_errors=True)
