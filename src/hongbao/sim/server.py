"""The simulator served over HTTPS with mutual TLS, on uvicorn (uvloop + httptools).

The server certificate comes from the simulator's CA, and so do the merchants' client
certificates; TLS requests a client certificate but never requires one, so that the application
can answer `CA_ERROR` as WeChat does (see `hongbao.sim.tls`).

Three ways to run it:

* `serve(sim, host, port)` blocks (the `hongbao sim serve` command);
* `SimServer(sim).start()` serves from a background thread of this process, so a test can reach
  the simulator's state directly while a client talks to it over the network;
* `SimServerProcess(data_dir).start()` runs `hongbao sim serve` in a child process, so that a load
  generator does not share its interpreter (and its GIL) with the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import uvicorn

from hongbao.defaults import SIM_PORT as DEFAULT_PORT
from hongbao.serving import ListeningServer
from hongbao.sim.app import Simulator, create_app
from hongbao.sim.tls import protocol_class, server_context

__all__ = ["CLI_COMMAND", "DEFAULT_PORT", "SimServer", "SimServerProcess", "ca_file", "serve"]

START_TIMEOUT = 10.0
"""Seconds `start()` waits for the server to listen."""
STOP_TIMEOUT = 10.0
"""Seconds `stop()` waits for the server to finish; in-flight requests get most of it."""
_GRACEFUL_SHUTDOWN = 3

CLI_COMMAND = [sys.executable, "-c", "from hongbao.cli.main import console; console()"]
"""How to run the `hongbao` command with this interpreter (no console script needed)."""

_WILDCARDS = {"0.0.0.0", "::", ""}  # noqa: S104 - recognised, never chosen by default


def _bind(host: str, port: int) -> socket.socket:
    """The listening socket, bound now so that port 0 resolves before the server starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    return sock


def _url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in _WILDCARDS else host
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(shown).version == 6:
            shown = f"[{shown}]"
    return f"https://{shown}:{port}"


def _config(sim: Simulator, host: str) -> uvicorn.Config:
    # The CA adds 127.0.0.1 and localhost; a wildcard address names no host to add.
    cert_pem, key_pem = sim.ca.issue_server_cert([] if host in _WILDCARDS else [host])
    context = server_context(cert_pem, key_pem, sim.ca.ca_pem)
    return uvicorn.Config(
        create_app(sim),
        loop="auto",  # uvloop wherever uvicorn[standard] installs it (not on Windows)
        http=protocol_class(context, cert_pem.decode("ascii")),
        lifespan="off",
        access_log=False,
        log_config=None,  # leave the host program's logging alone
        timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN,
    )


@contextlib.contextmanager
def ca_file(sim: Simulator) -> Iterator[Path]:
    """The simulator's CA certificate as a file: DIR/ca.pem, or a temporary copy (in memory)."""
    if sim.data_dir is not None:
        yield sim.data_dir / "ca.pem"
        return
    with tempfile.TemporaryDirectory(prefix="hongbao-sim-") as scratch:
        path = Path(scratch) / "ca.pem"
        path.write_bytes(sim.ca.ca_pem)
        yield path


def serve(
    sim: Simulator,
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    on_started: Callable[[str, Path], None] | None = None,
) -> None:
    """Serve `sim` until SIGINT/SIGTERM; `on_started(url, ca_file)` runs once it listens.

    >>> serve(Simulator(data_dir=Path("sim-data")), port=0, on_started=print)  # doctest: +SKIP
    """
    sock = _bind(host, port)
    url = _url(host, sock.getsockname()[1])
    try:
        with ca_file(sim) as ca_path:
            server = ListeningServer(
                _config(sim, host), lambda: on_started(url, ca_path) if on_started else None
            )
            server.run(sockets=[sock])
    finally:
        sock.close()


class SimServer:
    """The simulator served from a background thread: real HTTPS on loopback, state at hand.

    >>> with SimServer() as server:  # doctest: +SKIP
    ...     httpx.get(f"{server.url}/__sim/ca.pem", verify=str(server.ca_path))
    """

    def __init__(
        self, sim: Simulator | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.sim = sim if sim is not None else Simulator()
        self.host = host
        self._requested_port = port
        self._sock: socket.socket | None = None
        self._server: ListeningServer | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._failure: BaseException | None = None
        self._ca_path: Path | None = None
        self._resources = contextlib.ExitStack()

    @property
    def port(self) -> int:
        """The port it listens on (known once started)."""
        if self._sock is None:
            raise RuntimeError("the server is not started")
        port: int = self._sock.getsockname()[1]
        return port

    @property
    def url(self) -> str:
        """The base URL, e.g. `https://127.0.0.1:40123`."""
        return _url(self.host, self.port)

    @property
    def ca_pem(self) -> bytes:
        """The simulator's CA certificate, which clients must trust."""
        return self.sim.ca.ca_pem

    @property
    def ca_path(self) -> Path:
        """A file holding `ca_pem`: DIR/ca.pem, or a temporary file while serving from memory."""
        if self._ca_path is None:
            raise RuntimeError("the server is not started")
        return self._ca_path

    def start(self) -> Self:
        """Start serving; returns once the server listens (or raises why it could not)."""
        if self._thread is not None:
            raise RuntimeError("the server is already started")
        self._sock = self._resources.enter_context(_bind(self.host, self._requested_port))
        self._ca_path = self._resources.enter_context(ca_file(self.sim))
        self._server = ListeningServer(_config(self.sim, self.host), self._started.set)
        self._thread = threading.Thread(target=self._run, name=f"sim-{self.port}", daemon=True)
        self._thread.start()
        if not self._started.wait(START_TIMEOUT) or self._failure is not None:
            self.stop()
            raise RuntimeError("the simulator server did not start") from self._failure
        return self

    def _run(self) -> None:
        assert self._server is not None
        assert self._sock is not None
        try:
            loop_factory = self._server.config.get_loop_factory()
            with asyncio.Runner(loop_factory=loop_factory) as runner:
                runner.run(self._server.serve(sockets=[self._sock]))
        except BaseException as exc:  # reported to the thread that called start()
            self._failure = exc
            self._started.set()

    def stop(self) -> None:
        """Stop serving: close idle connections, let in-flight requests end, join the thread."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT)
            if self._thread.is_alive() and self._server is not None:
                self._server.force_exit = True
                self._thread.join(STOP_TIMEOUT)
        self._resources.close()
        self._thread = self._server = None
        self._sock = self._ca_path = None
        self._started.clear()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self._sock is not None else "not started"
        return f"SimServer({where})"


class SimServerProcess:
    """`hongbao sim serve` in a child process, for load generators and other programs.

    Without `data_dir` the child keeps its state in memory and its CA in a temporary file.
    Unlike the command's default, its clock is frozen (`--frozen-clock`) unless `wall_clock`:
    tests move its time by hand; a load test of the FREQ_LIMIT window needs time to pass as it
    does for WeChat (`wall_clock=True`).

    >>> with SimServerProcess(Path("sim-data")) as server:  # doctest: +SKIP
    ...     print(server.url, server.ca_path)
    """

    def __init__(
        self,
        data_dir: Path | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        wall_clock: bool = False,
    ) -> None:
        self.data_dir = data_dir
        self.host = host
        self.wall_clock = wall_clock
        self._requested_port = port
        self._process: subprocess.Popen[str] | None = None
        self.url = ""
        self._ca_path: Path | None = None

    @property
    def port(self) -> int:
        """The port it listens on (known once started)."""
        return int(self.url.rsplit(":", 1)[1])

    @property
    def ca_path(self) -> Path:
        """The simulator's CA certificate file, as the child printed it."""
        if self._ca_path is None:
            raise RuntimeError("the server is not started")
        return self._ca_path

    @property
    def ca_pem(self) -> bytes:
        """The simulator's CA certificate, which clients must trust."""
        return self.ca_path.read_bytes()

    def start(self) -> Self:
        """Start the child; returns once it printed its URL and CA file (it then listens)."""
        command = [*CLI_COMMAND, "sim", "serve", "--host", self.host]
        command += ["--port", str(self._requested_port)]
        if self.data_dir is not None:
            command += ["--data", str(self.data_dir)]
        command.append("--wall-clock" if self.wall_clock else "--frozen-clock")
        self._process = subprocess.Popen(  # noqa: S603 - our own interpreter and arguments
            command, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"}
        )
        assert self._process.stdout is not None
        self.url, ca_file = _read_lines(self._process.stdout, 2, START_TIMEOUT)
        if not (self.url.startswith("https://") and ca_file):
            self.stop()
            raise RuntimeError("the simulator process did not start")
        self._ca_path = Path(ca_file)
        return self

    def stop(self) -> None:
        """Ask the child to stop (SIGTERM: it shuts down gracefully) and wait for it."""
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(STOP_TIMEOUT)
        if self._process.stdout is not None:
            self._process.stdout.close()
        self._process = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"SimServerProcess({self.url or 'not started'})"


def _read_lines(stream: IO[str], count: int, timeout: float) -> list[str]:
    """The first `count` lines of `stream`; missing ones are "" if they take over `timeout` s."""
    lines: list[str] = []

    def read() -> None:
        for _ in range(count):
            lines.append(stream.readline().strip())

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    return [*lines, *[""] * count][:count]
