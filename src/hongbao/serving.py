"""uvicorn's server as hongbao's own servers run it (the simulator, `hongbao serve`, `rules serve`).

Three changes to uvicorn's: a callback once it listens (to print the URL, or to tell the thread
that started it), a command's process freezing its start-up heap as it starts serving
(`hongbao.eventloop.freeze_heap`), and SIGINT/SIGTERM only ask for the graceful stop. uvicorn
re-raises the signal after its shutdown, which would end the process before the caller closes
its database, and with the signal's exit status rather than 0.
"""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
from collections.abc import Callable, Iterator

import uvicorn

from hongbao.eventloop import freeze_heap

__all__ = ["ListeningServer"]


class ListeningServer(uvicorn.Server):
    """uvicorn's server, telling `on_started` once it listens; a signal stops it gracefully."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], object]) -> None:
        super().__init__(config)
        self._on_started = on_started

    def run(self, sockets: list[socket.socket] | None = None) -> None:
        """Serve until stopped, in this process (after `freeze_heap`)."""
        freeze_heap()
        super().run(sockets)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            self._on_started()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
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
