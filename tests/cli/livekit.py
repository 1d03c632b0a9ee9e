"""Running `hongbao …` in a child process, its output read from a pipe or from a terminal (a
pty), for the tests of what long-running commands say while they wait."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import termios
import time
from dataclasses import dataclass, field
from pathlib import Path

import tomlkit

from hongbao.sim.server import CLI_COMMAND

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")


def configure(config: Path, *, run: dict[str, float], **merchant: object) -> None:
    """Set `[run]` keys and `[merchants.shop]` keys in the configuration file."""
    document = tomlkit.parse(config.read_text())
    document["run"] = run
    document["merchants"]["shop"].update(merchant)
    config.write_text(tomlkit.dumps(document))


def child_env() -> dict[str, str]:
    """The environment of a child `hongbao`: this interpreter's, without HONGBAO_ settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HONGBAO_")}
    env["COLUMNS"] = "400"
    return env


@dataclass
class Child:
    """A `hongbao` child process whose stdout and stderr are collected as one text."""

    process: subprocess.Popen[bytes]
    reader: int
    chunks: list[bytes] = field(default_factory=list)

    @property
    def output(self) -> str:
        """Everything printed so far, terminal escapes removed."""
        return _ANSI.sub("", b"".join(self.chunks).decode("utf-8", "replace"))

    def pump(self, seconds: float = 0.1) -> None:
        """Collect what was printed within `seconds`."""
        ready, _, _ = select.select([self.reader], [], [], seconds)
        if ready:
            try:
                chunk = os.read(self.reader, 65536)
            except OSError:  # a pty's reader fails once the child closed it
                chunk = b""
            if chunk:
                self.chunks.append(chunk)

    def wait_for(self, seen: str, timeout: float = 60) -> None:
        """Collect output until `seen` appears in it (fails after `timeout` s)."""
        deadline = time.monotonic() + timeout
        while seen not in self.output:
            assert self.process.poll() is None or self._more(), f"ended first:\n{self.output}"
            assert time.monotonic() < deadline, f"never saw {seen!r}:\n{self.output}"
            self.pump()

    def wait_for_times(self, seen: str, times: int, timeout: float = 60) -> None:
        """Collect output until `seen` appears in it `times` times (fails after `timeout` s)."""
        deadline = time.monotonic() + timeout
        while self.output.count(seen) < times:
            assert self.process.poll() is None or self._more(), f"ended first:\n{self.output}"
            assert time.monotonic() < deadline, (
                f"saw {seen!r} fewer than {times} times:\n{self.output}"
            )
            self.pump()

    def _more(self) -> bool:
        before = len(self.chunks)
        self.pump(0.2)
        return len(self.chunks) > before

    def interrupt(self) -> None:
        """Ctrl-C: SIGINT to the child."""
        self.process.send_signal(signal.SIGINT)

    def finish(self, timeout: float = 60) -> int:
        """Collect the rest of the output; the exit status."""
        deadline = time.monotonic() + timeout
        while self.process.poll() is None:
            assert time.monotonic() < deadline, f"still running:\n{self.output}"
            self.pump()
        while self._more():
            pass
        os.close(self.reader)
        return self.process.returncode


def spawn(*args: str, terminal: bool) -> Child:
    """`hongbao ARGS…` with stdout and stderr on a pipe, or on a 400-column terminal."""
    if terminal:
        reader, writer = pty.openpty()
        fcntl.ioctl(writer, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 400, 0, 0))
    else:
        reader, writer = os.pipe()
    process = subprocess.Popen(
        [*CLI_COMMAND, *args],
        stdin=subprocess.DEVNULL,
        stdout=writer,
        stderr=writer,
        env=child_env(),
    )
    os.close(writer)
    return Child(process, reader)
