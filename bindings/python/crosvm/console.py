"""A VM's consoles, scripted as pexpect users script a child process:
expect() with a pattern or a list (its index returned; before, after and
match set), expect_exact(), send()/sendline()/sendcontrol(), EOF and
TIMEOUT as patterns, a logfile that receives everything live, and
interact() on a terminal."""
from __future__ import annotations

import codecs
import io
import os
import re
import select
import sys
import termios
import threading
import time
import tty
from typing import TYPE_CHECKING, Callable, List, Optional, Sequence, Tuple, Union

from ._crosvm import Error, WaitTimeoutError

if TYPE_CHECKING:
    from . import Vm


class EOF(Error):
    """The console will print no more: the VM stopped. As in pexpect, EOF
    in expect()'s pattern list is returned as its index instead of raised.
    `.output` holds all the console printed."""

    def __init__(self, message: str, output: str = ""):
        super().__init__(message)
        self.output = output


class ExpectTimeout(WaitTimeoutError):
    """expect() did not see its pattern in time: a crosvm.WaitTimeoutError,
    so also Python's own TimeoutError. As in pexpect, TIMEOUT in the pattern
    list is returned as its index instead of raised. The message ends with
    the tail of what the guest printed; `.output` holds all of it."""

    def __init__(self, message: str, output: str = ""):
        super().__init__(message)
        self.output = output


TIMEOUT = ExpectTimeout  # pexpect's name, for pattern lists and except clauses

Pattern = Union[str, bytes, "re.Pattern[str]", type]

# Terminal control sequences: CSI (ESC [ ... final byte), OSC (ESC ] ...
# BEL or ESC \) and the short escapes. Shells put them in their output (busybox
# ash asks for the cursor position with ESC [6n after each prompt), where
# they would stand between a pattern such as r"# $" and the end of the text.
_CONTROL_SEQUENCE = re.compile(
    r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[ -/]*[0-Z\\^-~])")
# The start of one that has not fully arrived yet: held back until it has.
_UNFINISHED_SEQUENCE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*|\][^\x07\x1b]*\x1b?|[ -/]*)\Z")
_LONGEST_HELD = 256  # an unterminated sequence longer than this is passed on as text


class _Transcript:
    """What a console printed, as text: decoded as UTF-8 as it arrives (a
    character split between two arrivals is not mangled) and without
    terminal control sequences. It only ever grows at the end, so positions
    in it stay valid. Safe to use from several threads."""

    def __init__(self, buffer):
        self._buffer = buffer
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._consumed = 0  # bytes of the buffer taken in so far
        self._held = ""     # an unfinished control sequence at the end
        self._text = ""
        self._lock = threading.Lock()

    def text(self) -> str:
        with self._lock:
            return self._update()

    def _update(self) -> str:
        data = self._buffer.contents(self._consumed)
        if data:
            self._consumed += len(data)
            pending = self._held + self._decoder.decode(data)
            unfinished = _UNFINISHED_SEQUENCE.search(pending)
            if unfinished and len(pending) - unfinished.start() <= _LONGEST_HELD:
                pending, self._held = pending[:unfinished.start()], pending[unfinished.start():]
            else:
                self._held = ""
            self._text += _CONTROL_SEQUENCE.sub("", pending)
        return self._text


def _wants_bytes(stream) -> bool:
    return isinstance(stream, (io.RawIOBase, io.BufferedIOBase)) or "b" in getattr(stream, "mode", "")


class _Log:
    """One log stream: bytes as they are, or text decoded as it comes."""

    def __init__(self, stream):
        self.stream = stream
        self.binary = _wants_bytes(stream)
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def write(self, data: bytes) -> None:
        self.stream.write(data if self.binary else self.decoder.decode(data))
        self.stream.flush()


class Serial:
    """One of the guest's consoles (a serial port or a virtio console): what
    it printed, and a keyboard, scripted as pexpect scripts a child.

    What it printed is text: UTF-8 decoded, with terminal control sequences
    (colours, cursor movement, a shell's cursor-position query) taken out,
    so that `expect(r"# $")` matches a prompt whatever the shell sends
    after it. `raw_output` has the bytes as they came. expect() searches
    what arrived since the previous match, as pexpect does; read() returns
    what arrived since the previous read().
    """

    def __init__(self, vm: "Vm", virtio: bool, number: int = 1):
        self._vm = vm
        self._virtio = virtio
        self._number = number
        self._buffer = vm._native.output(virtio, number)
        self._transcript = _Transcript(self._buffer)
        self._match_position = 0
        self._read_position = 0
        self.before = ""    # what came between the previous match and this one
        self.after: Union[str, type, None] = None   # what matched (EOF or TIMEOUT when those did)
        self.match = None   # the re.Match, the exact string, or EOF / TIMEOUT
        self.match_index: Optional[int] = None
        self._log_lock = threading.Lock()
        self._logs = {"logfile": None, "logfile_read": None, "logfile_send": None}
        self._logged = 0    # bytes of the output the logs have had
        self._pump: Optional[threading.Thread] = None

    @property
    def name(self) -> str:
        """The guest's name for it: "ttyS0" for serial port 1, "hvc0" for
        virtio console 1."""
        return f"{'hvc' if self._virtio else 'ttyS'}{self._number - 1}"

    def __repr__(self) -> str:
        return f"<crosvm.Serial {self.name}>"

    # ---- what the guest printed -------------------------------------------

    @property
    def output(self) -> str:
        """Everything the guest printed so far, as text."""
        return self._transcript.text()

    @property
    def raw_output(self) -> bytes:
        """Everything the guest printed so far, byte for byte."""
        return self._buffer.contents(0)

    def read(self) -> str:
        """What arrived since the previous read(), as text."""
        text = self._transcript.text()
        new, self._read_position = text[self._read_position:], len(text)
        return new

    # ---- logs ---------------------------------------------------------------

    def _log_property(name: str, doc: str):  # noqa: N805 (a property factory)
        def get(self):
            log = self._logs[name]
            return log.stream if log else None

        def set_(self, stream):
            with self._log_lock:
                log = _Log(stream) if stream is not None else None
                # A log where there was none first gets what the other logs
                # already had (the pump gives it the rest); one that
                # replaces another takes over where that one stopped.
                if log is not None and self._logs[name] is None and name != "logfile_send" and self._logged:
                    log.write(self._buffer.contents(0)[:self._logged])
                self._logs[name] = log
            if name != "logfile_send":
                self._start_pump()
        return property(get, set_, doc=doc)

    logfile = _log_property("logfile", "A stream that receives everything the guest prints, as it arrives "
                            "(not only while expect() waits), and everything sent; text or binary. "
                            "sys.stdout shows the console live. A log set where there was none also "
                            "gets what was printed before it; one that replaces another goes on "
                            "where that one stopped.")
    logfile_read = _log_property("logfile_read", "Like logfile, for what the guest prints only.")
    logfile_send = _log_property("logfile_send", "Like logfile, for what is sent only.")
    del _log_property

    def _start_pump(self) -> None:
        with self._log_lock:
            if self._pump is not None and self._pump.is_alive():
                return
            self._pump = threading.Thread(target=self._run_pump, name=f"crosvm-log-{self.name}", daemon=True)
            self._pump.start()

    def _run_pump(self) -> None:
        """Copies the output to the logs as it arrives, until the VM has
        stopped and everything it printed was copied."""
        from . import State
        while True:
            stopped = self._vm.state == State.STOPPED
            known = self._buffer.size()
            self._copy_to_logs(known)
            if stopped:
                return
            self._buffer.wait_for_more(known, 0.5)

    def _copy_to_logs(self, upto: int) -> None:
        with self._log_lock:
            if upto <= self._logged:
                return
            data = self._buffer.contents(self._logged)[:upto - self._logged]
            self._logged += len(data)
            for name in ("logfile", "logfile_read"):
                if self._logs[name]:
                    self._logs[name].write(data)

    def _log_sent(self, data: bytes) -> None:
        with self._log_lock:
            for name in ("logfile", "logfile_send"):
                if self._logs[name]:
                    self._logs[name].write(data)

    # ---- the keyboard -------------------------------------------------------

    def send(self, text: Union[str, bytes], timeout: float = 30.0) -> int:
        """Types `text` (str is UTF-8 encoded) into the console, waiting
        while the port's input buffer is full; returns how many bytes."""
        data = text.encode() if isinstance(text, str) else bytes(text)
        self._log_sent(data)
        total = len(data)
        deadline = time.monotonic() + timeout
        while data:
            taken = self._vm._native.write_input(self._virtio, self._number, data)
            data = data[taken:]
            if data:
                if time.monotonic() > deadline:
                    raise ExpectTimeout(f"the guest did not take {len(data)} bytes of input in {timeout:g} s")
                time.sleep(0.01)
        return total

    def sendline(self, text: Union[str, bytes] = "", timeout: float = 30.0) -> int:
        """send(text) and a line end ("\\n"); returns how many bytes."""
        return self.send((text.encode() if isinstance(text, str) else bytes(text)) + b"\n", timeout)

    def sendcontrol(self, char: str) -> int:
        """Types Ctrl-`char` (sendcontrol("c") is ^C)."""
        if len(char) != 1 or not 0x20 <= ord(char) < 0x7f:
            raise ValueError(f"sendcontrol takes one printable ASCII character, not {char!r}")
        return self.send(bytes([0x7f if char == "?" else ord(char) & 0x1f]))

    def sendeof(self) -> int:
        """Types ^D, what a terminal's line discipline reads as end of input."""
        return self.send(b"\x04")

    # ---- expect -------------------------------------------------------------

    def expect(self, pattern: Union[Pattern, Sequence[Pattern]], timeout: Optional[float] = 60.0) -> int:
        """Waits until a pattern matches what the guest printed since the
        previous match, and returns its index in the list (0 for a single
        pattern). A pattern is a regular expression (str or compiled), EOF
        or TIMEOUT. Of several that match, the one that matches first in
        the text wins (the earlier in the list on a tie). Sets `before`
        (the text up to the match), `after` (the matched text) and `match`
        (the re.Match). Raises EOF when the VM stops first and
        ExpectTimeout after `timeout` seconds (None: no limit), unless the
        list holds EOF or TIMEOUT, whose index is returned instead."""
        patterns = self._pattern_list(pattern)
        searchers: List[Tuple[int, object]] = []
        for index, item in enumerate(patterns):
            if item is EOF or item is TIMEOUT:
                continue
            if isinstance(item, bytes):
                item = item.decode()
            if isinstance(item, str):
                item = re.compile(item)
            if not isinstance(item, re.Pattern):
                raise TypeError(f"a pattern is a str, bytes, compiled regular expression, EOF or TIMEOUT, not {item!r}")
            searchers.append((index, item))

        def find(text: str, start: int):
            best = None
            for index, regex in searchers:
                found = regex.search(text, start)
                if found and (best is None or found.start() < best[1].start()):
                    best = (index, found)
            return None if best is None else (best[0], best[1].start(), best[1].end(), best[1])
        return self._expect(patterns, find, timeout)

    def expect_exact(self, pattern: Union[str, bytes, type, Sequence[Union[str, bytes, type]]],
                     timeout: Optional[float] = 60.0) -> int:
        """expect() with plain strings instead of regular expressions
        (EOF and TIMEOUT as there); `match` is the string that matched."""
        patterns = self._pattern_list(pattern)
        strings: List[Tuple[int, str]] = []
        for index, item in enumerate(patterns):
            if item is EOF or item is TIMEOUT:
                continue
            if isinstance(item, bytes):
                item = item.decode()
            if not isinstance(item, str) or not item:
                raise TypeError(f"expect_exact takes non-empty strings, EOF or TIMEOUT, not {item!r}")
            strings.append((index, item))

        def find(text: str, start: int):
            best = None
            for index, string in strings:
                at = text.find(string, start)
                if at >= 0 and (best is None or at < best[1]):
                    best = (index, at, at + len(string), string)
            return best
        return self._expect(patterns, find, timeout)

    @staticmethod
    def _pattern_list(pattern) -> list:
        patterns = list(pattern) if isinstance(pattern, (list, tuple)) else [pattern]
        if not patterns:
            raise ValueError("expect needs at least one pattern")
        return patterns

    def _expect(self, patterns: list, find: Callable, timeout: Optional[float]) -> int:
        from . import State
        if timeout is None:
            timeout = float("inf")
        if timeout != timeout or timeout < 0:
            raise ValueError(f"timeout must be a number >= 0 or None, not {timeout!r}")
        deadline = time.monotonic() + timeout
        while True:
            # Looked at before the output: a stopped VM prints no more, so
            # what is searched below is all there will ever be.
            stopped = self._vm.state == State.STOPPED
            known = self._buffer.size()
            text = self._transcript.text()
            found = find(text, self._match_position)
            if found:
                index, start, end, match = found
                self.before, self.after, self.match = text[self._match_position:start], text[start:end], match
                self.match_index = index
                self._match_position = end
                return index
            remaining = deadline - time.monotonic()
            if stopped or remaining <= 0:
                special = EOF if stopped else TIMEOUT
                self.before, self.after, self.match = text[self._match_position:], special, special
                if stopped:
                    self._match_position = len(text)
                if special in patterns:
                    self.match_index = patterns.index(special)
                    return self.match_index
                self.match_index = None
                wanted = ", ".join(repr(getattr(p, "pattern", p)) if p not in (EOF, TIMEOUT) else p.__name__
                                   for p in patterns)
                why = (f"the VM stopped ({self._vm.exit_reason.name.lower()})" if stopped
                       else f"not within {timeout:g} s")
                raise special(f"{wanted} did not appear: {why}; the guest printed last:\n{text[-2000:]}", text)
            self._buffer.wait_for_more(known, min(remaining, 0.5))

    # ---- a person at the console ------------------------------------------

    def interact(self, escape_character: Optional[str] = "\x1d", input_fd: Optional[int] = None,
                 output_fd: Optional[int] = None) -> None:
        """Gives the console to a person: what they type goes to the guest
        byte for byte (the terminal in raw mode, so ^C reaches the guest)
        and what the guest prints appears as it comes, until they type
        `escape_character` (^], as in pexpect and telnet) or the VM stops.
        It first shows what no expect() has consumed yet. `input_fd` and
        `output_fd` default to stdin and stdout."""
        from . import State
        input_fd = sys.stdin.fileno() if input_fd is None else input_fd
        output_fd = sys.stdout.fileno() if output_fd is None else output_fd
        escape = escape_character.encode() if escape_character else None
        saved = termios.tcgetattr(input_fd) if os.isatty(input_fd) else None
        shown = self._buffer.size()
        # What no expect() consumed yet (the prompt the person answers), as
        # pexpect shows its buffer; then the output as it comes.
        pending = self._transcript.text()[self._match_position:].encode()
        while pending:
            pending = pending[os.write(output_fd, pending):]
        if saved is not None:
            tty.setraw(input_fd)
        try:
            while True:
                stopped = self._vm.state == State.STOPPED
                size = self._buffer.size()
                if size > shown:
                    data = self._buffer.contents(shown)[:size - shown]
                    shown += len(data)
                    self._copy_to_logs(shown)
                    while data:
                        data = data[os.write(output_fd, data):]
                if stopped:
                    return
                ready, _, _ = select.select([input_fd], [], [], 0.05)
                if not ready:
                    continue
                typed = os.read(input_fd, 4096)
                if not typed:
                    return  # the input ended
                if escape and escape in typed:
                    before = typed[:typed.index(escape)]
                    if before:
                        self.send(before)
                    return
                self.send(typed)
        finally:
            if saved is not None:
                termios.tcsetattr(input_fd, termios.TCSADRAIN, saved)
