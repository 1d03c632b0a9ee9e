"""Runs the commands of one document in order, in one working directory, as a reader would.

Each command runs in `bash` with the environment and directory the previous one left (`export`
carries over). Commands that serve (`hongbao sim serve`, `dashboard`, `rules serve`, `worker`,
`serve`) run in the background until the document ends, whether or not the doc puts `&` after
them; the next command waits until their port answers. At the end each is stopped with SIGTERM
and must end by it (exit 0, or killed by the signal), not crash.

The session rewrites what a reader fills in (CONTRIBUTING.md lists it): documented ports become
free ones, `/home/me/project` the working directory, the example PostgreSQL URL a fresh test
database, and placeholders (`APPID`, `MCH_ID`, `OPENID`, `ID`, `BILL`) what earlier commands
printed or the configuration holds.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import signal
import socket
import subprocess
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import tomlkit

from tests.docs.blocks import Command

__all__ = ["Ran", "Session", "output_matches"]

# The commands that serve, and the default port of each that listens (click's own default).
SERVERS: dict[tuple[str, ...], int | None] = {
    ("sim", "serve"): 8443,
    ("dashboard",): 8000,
    ("rules", "serve"): 8000,
    ("serve",): 8080,
    ("worker",): None,
}
DOCUMENTED_PORTS = (8443, 8000, 8080)
COMMAND_SECONDS = 180
EXAMPLE_POSTGRES = re.compile(r"postgresql\+psycopg://[^\s'\"]*@db\.internal/hongbao")
_OPENID = re.compile(r"(?<![\w-])o[A-Za-z0-9_-]{27}(?![\w-])")
_BILL = re.compile(r"(?<!\d)\d{28}(?!\d)")
_PLACEHOLDER = re.compile(r"\b(APPID|MCH_ID|CORPID|OPENID|ID|BILL)\b")
_RUNNER = """set -o pipefail
. "$DOCS_STATE/env.sh"
cd "$(cat "$DOCS_STATE/cwd")" || exit 99
. "$DOCS_STATE/command.sh"
__docs_rc=$?
export -p > "$DOCS_STATE/env.sh"
pwd > "$DOCS_STATE/cwd"
exit $__docs_rc
"""


@dataclass(frozen=True)
class Ran:
    """What one command did."""

    command: str
    exit_code: int
    stdout: str
    stderr: str


@dataclass
class _Server:
    command: str
    key: tuple[str, ...]
    process: subprocess.Popen[bytes]
    out: Path
    err: Path


@dataclass
class Session:
    """One document's shell: its working directory, environment, servers and what they printed."""

    workdir: Path
    env: dict[str, str]
    postgres: Callable[[], str] | None = None
    """A fresh PostgreSQL URL for the example one, when the document names it."""
    ports: dict[int, int] = field(default_factory=dict)
    servers: list[_Server] = field(default_factory=list)
    seen: dict[str, str] = field(default_factory=dict)
    _groups: list[int] = field(default_factory=list)
    _count: int = 0

    def __post_init__(self) -> None:
        self.state = self.workdir / ".docs-test"
        self.state.mkdir(exist_ok=True)
        exports = "".join(
            f"export {name}={shlex.quote(value)}\n" for name, value in self.env.items()
        )
        (self.state / "env.sh").write_text(exports)
        (self.state / "cwd").write_text(str(self.workdir))
        (self.state / "runner.sh").write_text(_RUNNER)
        for port in DOCUMENTED_PORTS:
            self.ports[port] = _free_port()

    # -- rewriting ---------------------------------------------------------------------------

    def rewrite(self, text: str) -> str:
        """`text` (a command or its expected output) as it reads in this session."""
        for documented, free in self.ports.items():
            text = re.sub(rf"(?<=:){documented}\b|(?<=--port ){documented}\b", str(free), text)
        text = text.replace("/home/me/project", str(self.workdir))
        if EXAMPLE_POSTGRES.search(text):
            if self.postgres is None:
                raise AssertionError("the example PostgreSQL URL, but no PostgreSQL for it")
            url = self.seen.setdefault("postgres", self.postgres())
            text = EXAMPLE_POSTGRES.sub(url, text)
        return _PLACEHOLDER.sub(lambda m: self._placeholder(m[1]), text)

    def _placeholder(self, name: str) -> str:
        if name in self.seen:
            return self.seen[name]
        if name in ("APPID", "MCH_ID"):
            config = tomllib.loads((self._cwd() / "hongbao.toml").read_text())
            merchant = next(iter(config["merchants"].values()))
            return str(merchant["appid" if name == "APPID" else "mch_id"])
        if name == "OPENID" and (self._cwd() / "openids.csv").exists():
            return (self._cwd() / "openids.csv").read_text().split()[0].split(",")[0]
        raise AssertionError(f"placeholder {name}: no earlier command printed one")

    def configure(self, toml: str) -> None:
        """Put a TOML block of the doc into the working directory's `hongbao.toml`."""
        path = self._cwd() / "hongbao.toml"
        document = tomlkit.parse(path.read_text()) if path.exists() else tomlkit.document()
        for key, value in tomlkit.parse(self.rewrite(toml)).items():
            document[key] = value
        path.write_text(tomlkit.dumps(document))

    def _remember(self, command: str, stdout: str) -> None:
        for name, key in (("APPID", "appid"), ("MCH_ID", "mch_id"), ("CORPID", "wecom_corpid")):
            if found := re.search(rf"^\s*\"?{key}\"?[\s:]+\"?(\w+)", stdout, re.M):
                self.seen[name] = found[1]
        if openids := _OPENID.findall(stdout):
            self.seen["OPENID"] = openids[-1]
        if bills := _BILL.findall(stdout):
            self.seen["BILL"] = bills[-1]
        if "campaign create" in command and (ids := re.findall(r"^\s*(\d+)\s*$", stdout, re.M)):
            self.seen["ID"] = ids[-1]

    # -- running -----------------------------------------------------------------------------

    def run(self, command: Command) -> Ran:
        """Run one command (a server in the background) and return what it did."""
        text = self.rewrite(command.text)
        key = _server_key(text)
        if key is not None:
            return self._serve(text, key, command.expected_output)
        self._count += 1
        (self.state / "command.sh").write_text(text + "\n")
        out, err = self.state / f"{self._count}.out", self.state / f"{self._count}.err"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            process = subprocess.Popen(
                ["bash", "--noprofile", "--norc", str(self.state / "runner.sh")],
                cwd=self.workdir,
                env={**self.env, "DOCS_STATE": str(self.state)},
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,
            )
            self._groups.append(process.pid)
            try:
                code = process.wait(COMMAND_SECONDS)
            except subprocess.TimeoutExpired:
                _kill_group(process.pid)
                process.wait()
                code = -1
        ran = Ran(text, code, out.read_text(errors="replace"), err.read_text(errors="replace"))
        self._remember(text, ran.stdout)
        return ran

    def _serve(self, text: str, key: tuple[str, ...], expected: str | None) -> Ran:
        for old in [s for s in self.servers if s.key == key]:
            self._stop(old)  # a second dashboard replaces the first
            self.servers.remove(old)
        text = re.sub(r"\s*&\s*(#.*)?$", "", text.strip())
        text = re.sub(r"\s+#[^'\"]*$", "", text)
        default = SERVERS[key]
        if default is not None and "--port" not in text:
            text += f" --port {self.ports[default]}"
        port = _port_of(text)
        self._count += 1
        out, err = self.state / f"{self._count}.out", self.state / f"{self._count}.err"
        script = re.sub(r"(^|\s)hongbao(?=\s)", r"\1exec hongbao", text, count=1)
        (self.state / f"serve-{self._count}.sh").write_text(
            f'. "$DOCS_STATE/env.sh"\ncd "$(cat "$DOCS_STATE/cwd")"\n{script}\n'
        )
        process = subprocess.Popen(
            ["bash", "--noprofile", "--norc", str(self.state / f"serve-{self._count}.sh")],
            cwd=self.workdir,
            env={**self.env, "DOCS_STATE": str(self.state)},
            stdin=subprocess.DEVNULL,
            stdout=out.open("wb"),
            stderr=err.open("wb"),
            start_new_session=True,
        )
        server = _Server(text, key, process, out, err)
        self.servers.append(server)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and process.poll() is None:
            if (port is None or _listening(port)) and (
                expected is None or output_matches(self.rewrite(expected), out.read_text())
            ):
                break
            time.sleep(0.1)
        code = process.poll()
        stdout, stderr = out.read_text(errors="replace"), err.read_text(errors="replace")
        self._remember(text, stdout)
        # A server that still runs "succeeded" so far; one that ended reports its status.
        return Ran(text, 0 if code is None else code or 1, stdout, stderr)

    def close(self) -> list[str]:
        """Stop the servers (SIGTERM) and what commands left running; say which servers failed."""
        faults: list[str] = []
        for server in self.servers:
            code = self._stop(server)
            if code not in (0, -signal.SIGTERM):  # stopped as asked, by itself or by the signal
                faults.append(
                    f"`{server.command}` exited {code} on SIGTERM: "
                    f"{server.err.read_text(errors='replace')[-2000:]}"
                )
        self.servers.clear()
        for group in self._groups:
            _kill_group(group)
        return faults

    def _stop(self, server: _Server) -> int | None:
        if server.process.poll() is None:
            os.killpg(server.process.pid, signal.SIGTERM)
            try:
                server.process.wait(30)
            except subprocess.TimeoutExpired:
                _kill_group(server.process.pid)
                server.process.wait()
                return None
        return server.process.returncode

    def _cwd(self) -> Path:
        return Path((self.state / "cwd").read_text().strip())


def output_matches(expected: str, actual: str) -> bool:
    """Whether `actual` reads as the doc shows: `…` stands for anything, any number for a
    number, and line breaks and spaces may differ."""
    parts: list[str] = []
    for token in re.split(r"(…|\.\.\.|\d+|\s+)", expected.strip()):
        if token in ("…", "..."):
            parts.append(".*?")
        elif token.isdigit():
            parts.append(r"\d+")
        elif token.isspace():
            parts.append(r"\s*")
        elif token:
            parts.append(re.escape(token))
    return re.fullmatch("".join(parts), actual.strip(), re.DOTALL) is not None


def _server_key(text: str) -> tuple[str, ...] | None:
    try:
        words = shlex.split(text, comments=True)
    except ValueError:
        return None
    while words and re.match(r"^\w+=", words[0]):
        words.pop(0)
    if not words or words[0] != "hongbao":
        return None
    arguments = [w for w in words[1:] if not w.startswith("-")]
    for key in SERVERS:
        if tuple(arguments[: len(key)]) == key:
            return key
    return None


def _port_of(text: str) -> int | None:
    found = re.search(r"--port[ =](\d+)", text)
    return int(found[1]) if found else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
