"""uvicorn's server for `hongbao rules serve`: it prints the notify URL once it listens.

In a module of its own so that the command line imports uvicorn only when the server starts.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
from collections.abc import Iterator

import typer
import uvicorn

__all__ = ["NotifyServer"]


class NotifyServer(uvicorn.Server):
    """uvicorn's server, printing the notify URL once the service runs and it listens."""

    def __init__(self, config: uvicorn.Config, url: str) -> None:
        super().__init__(config)
        self._url = url

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            typer.echo(self._url)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn re-raises SIGINT/SIGTERM after its shutdown, which would end the process with
        # the signal: here a signal only asks for the (graceful) stop, and the exit code is 0.
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
