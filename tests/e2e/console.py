"""Drives crosvm-launch like a person at its console: start it, wait for
text, type commands, check what comes back, wait for it to end."""
import os
import re
import subprocess
import threading
import time

# Nested KVM is slow (a boot to the shell takes 20-30 s there); this only
# guards against hangs, and is short enough that a hung guest costs a few
# minutes of the suite, not the whole CI budget.
DEFAULT_TIMEOUT = 240


class ExpectTimeout(AssertionError):
    pass


class LauncherSession:
    def __init__(self, command: list[str]):
        self.command = command
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE)
        self._output = bytearray()
        self._errors = bytearray()
        self._position = 0
        self._changed = threading.Condition()
        self._readers = [threading.Thread(target=self._pump, args=(stream, buffer), daemon=True)
                         for stream, buffer in ((self.process.stdout, self._output),
                                                (self.process.stderr, self._errors))]
        for reader in self._readers:
            reader.start()

    def _pump(self, stream, buffer: bytearray) -> None:
        while chunk := stream.read1(4096):
            with self._changed:
                buffer.extend(chunk)
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def output(self) -> str:
        with self._changed:
            return self._output.decode(errors="replace")

    @property
    def errors(self) -> str:
        with self._changed:
            return self._errors.decode(errors="replace")

    def expect(self, pattern: str, timeout: float = DEFAULT_TIMEOUT) -> re.Match:
        """Waits for `pattern` in the output after the previous match."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                text = self._output.decode(errors="replace")
                match = regex.search(text, self._position)
                if match:
                    self._position = match.end()
                    return match
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.process.poll() is not None and not self._readers_alive()):
                    tail = text[-2000:]
                    raise ExpectTimeout(f"{pattern!r} did not appear (exit {self.process.poll()});"
                                        f" console tail:\n{tail}\nstderr:\n{self.errors[-2000:]}"
                                        f"\n{self.diagnose()}")
                self._changed.wait(min(remaining, 1.0))

    def diagnose(self) -> str:
        """What each of the VMM's threads is doing, for a test that timed out."""
        lines = ["VMM threads (name, state, wait channel, syscall):"]
        try:
            for task in sorted(os.listdir(f"/proc/{self.process.pid}/task")):
                base = f"/proc/{self.process.pid}/task/{task}"
                fields = []
                for name in ("comm", "wchan", "syscall"):
                    try:
                        with open(f"{base}/{name}") as item:
                            fields.append(item.read().strip())
                    except OSError as error:
                        fields.append(f"({error.strerror})")
                with open(f"{base}/stat") as item:
                    stat = item.read().rsplit(")", 1)[1].split()
                lines.append(f"  {fields[0]}: state {stat[0]} utime {stat[11]} wchan {fields[1]} "
                             f"syscall {fields[2]}")
        except OSError as error:
            lines.append(f"  ({error.strerror})")
        return "\n".join(lines)

    def _readers_alive(self) -> bool:
        return any(reader.is_alive() for reader in self._readers)

    def send(self, text: str) -> None:
        self.process.stdin.write(text.encode())
        self.process.stdin.flush()

    def run(self, shell_command: str, timeout: float = DEFAULT_TIMEOUT) -> str:
        """Runs a command in the guest shell and returns its output. The
        markers around it are computed by the guest, so the echo of what we
        typed (which the shell may wrap or redraw) never matches them."""
        self.send(f"echo \"@@start-$((6*7))@@\"; {shell_command}; echo \"@@done-$((6*7))-$?@@\"\n")
        start = self.expect(r"@@start-42@@\r?\n", timeout)
        text_start = start.end()
        done = self.expect(r"@@done-42-(\d+)@@", timeout)
        return self.output[text_start:done.start()].replace("\r\n", "\n")

    def wait(self, timeout: float = DEFAULT_TIMEOUT) -> int:
        code = self.process.wait(timeout)
        for reader in self._readers:
            reader.join(5)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
