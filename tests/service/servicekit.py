"""Helpers of the HTTP service's tests: a served simulator's merchant in a configuration file
(with tokens and webhooks), `hongbao serve` as a real process, and a webhook receiver."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from hongbao.ledger import upgrade
from hongbao.sim.server import CLI_COMMAND, SimServer
from hongbao.sim.state import MerchantSettings

ROOT = Path(__file__).resolve().parents[2]
MERCHANT = "shop"
TOKEN = "tok_" + "a1b2c3d4" * 4
SECRET = "whsec_" + "0f1e2d3c" * 4
AUTH = {"Authorization": f"Bearer {TOKEN}"}
PACKET: dict[str, Any] = {
    "send_name": "天虹百货",
    "wishing": "感谢您的好评",
    "act_name": "好评返现",
    "remark": "谢谢",
}


@dataclass(frozen=True)
class Merchant:
    """A simulated merchant and the configuration file that names it."""

    server: SimServer
    config: Path
    mch_id: str
    appid: str
    users: list[str]


def write_config(
    server: SimServer,
    tmp: Path,
    ledger_url: str,
    *,
    users: int = 5,
    tokens: bool = True,
    webhooks: list[str] | None = None,
    rate_per_minute: int = 120_000,
    read_timeout: float = 1.5,
) -> Merchant:
    """A new merchant of `server` in `tmp/hongbao.toml` over `ledger_url` (migrated)."""
    creds = server.sim.create_merchant(
        MerchantSettings(balance_fen=10**9, rate_per_minute=10**6, query_rate_per_minute=10**6)
    )
    (tmp / "cert.pem").write_bytes(creds.cert_pem)
    (tmp / "key.pem").write_bytes(creds.key_pem)
    text = f"""[ledger]
url = "{ledger_url}"

[merchants.{MERCHANT}]
mch_id = "{creds.mch_id}"
api_key = "{creds.api_key}"
appid = "{creds.appid}"
mini_appid = "{creds.mini_appid}"
cert_pem = "cert.pem"
key_pem = "key.pem"
base_url = "{server.url}"
ca_bundle = "{server.ca_path}"
connect_timeout = 1.0
read_timeout = {read_timeout}
rate_per_minute = {rate_per_minute}
query_rate_per_minute = 100000
lease_seconds = 5.0
"""
    if tokens:
        (tmp / "api_tokens").write_text(f"# the API's tokens\n{TOKEN}\n", encoding="utf-8")
        (tmp / "api_tokens").chmod(0o600)
        text += '\n[api]\ntoken_file = "api_tokens"\n'
    for url in webhooks or []:
        (tmp / "webhook_secret").write_text(SECRET + "\n", encoding="utf-8")
        (tmp / "webhook_secret").chmod(0o600)
        text += f'\n[[webhooks]]\nurl = "{url}"\nsecret_file = "webhook_secret"\n'
    config = tmp / "hongbao.toml"
    config.write_text(text, encoding="utf-8")
    upgrade(ledger_url)
    openids = server.sim.add_users(creds.appid, users)
    return Merchant(server, config, creds.mch_id, creds.appid, openids)


@dataclass
class Served:
    """A `hongbao serve` process and its URL."""

    process: subprocess.Popen[str]
    url: str
    log: Path

    def kill(self) -> None:
        """SIGKILL: no graceful anything."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> int:
        """SIGTERM, and the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=30)


@contextlib.contextmanager
def serving(
    config: Path, log: Path, *extra: str, env: dict[str, str] | None = None
) -> Iterator[Served]:
    """`hongbao serve -c CONFIG --port 0 …` until the block ends (then SIGTERM)."""
    command = [*CLI_COMMAND, "serve", "-c", str(config), "--port", "0", *extra]
    out = log.open("a", encoding="utf-8")
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=out, text=True,
        env={**os.environ, **(env or {})},
    )  # fmt: skip
    assert process.stdout is not None
    line = process.stdout.readline()
    found = re.search(r"on (https?://\S+) ", line)
    if found is None:
        process.kill()
        raise AssertionError(f"hongbao serve did not start: {line!r}; log: {log.read_text()}")
    served = Served(process, found.group(1), log)
    try:
        yield served
    finally:
        if process.poll() is None:
            served.stop()
        out.close()


@dataclass
class Receiver:
    """A webhook receiver on loopback: answers `fail_first` deliveries with 500, then 200."""

    fail_first: int = 0
    received: list[tuple[bytes, str | None]] = field(default_factory=list)
    answered: list[int] = field(default_factory=list)
    cut: int = 0
    """Deliveries whose body was cut short (answered 400, so sent again)."""
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def events(self) -> list[dict[str, Any]]:
        """The bodies of the deliveries answered 200, parsed."""
        with self.lock:
            pairs = list(zip(self.received, self.answered, strict=True))
        return [json.loads(body) for (body, _), status in pairs if status == 200]


@contextlib.contextmanager
def receiving(fail_first: int = 0) -> Iterator[Receiver]:
    """A `Receiver` serving on a free loopback port until the block ends."""
    receiver = Receiver(fail_first)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            with receiver.lock:
                whole = len(receiver.received) - receiver.cut
                status = 500 if whole < receiver.fail_first else 200
                if len(body) < length:
                    # The sender died in the middle of the body (a SIGKILL): not a delivery,
                    # and not one of the deliveries the receiver was told to fail.
                    status = 400
                    receiver.cut += 1
                receiver.received.append((body, self.headers.get("Hongbao-Signature")))
                receiver.answered.append(status)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


def wait_for(check: Any, timeout: float = 30.0, every: float = 0.1) -> Any:
    """Poll `check()` until it returns something truthy (returned), or fail."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout} s: last {value!r}")
        time.sleep(every)
