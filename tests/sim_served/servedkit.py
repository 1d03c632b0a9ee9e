"""Plain HTTPS calls to the served simulator (httpx + ssl, not hongbao's client on purpose)."""

from __future__ import annotations

import itertools
import ssl
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from hongbao.clock import SystemClock
from hongbao.sim.app import MerchantCredentials, Simulator
from hongbao.sim.server import SimServer, SimServerProcess
from hongbao.wire import xmlcodec
from hongbao.wire.sign import sign

SEND = "/mmpaymkttransfers/sendredpack"
Served = SimServer | SimServerProcess
_serials = itertools.count(1)


@contextmanager
def wall_clock_server(seed: int) -> Iterator[SimServer]:
    """A simulator on the wall clock (its rate window must move), served over mutual TLS."""
    sim = Simulator(clock=SystemClock(), seed=seed)
    with SimServer(sim) as server:
        yield server
    sim.close()


def billno(mch_id: str) -> str:
    """A fresh bill number of `mch_id` (the simulator's clock says 2024-03-15)."""
    return f"{mch_id}20240315{next(_serials):010d}"


def send_body(
    creds: MerchantCredentials, openid: str, bill: str, *, client_ip: str = "192.168.0.1"
) -> bytes:
    """A correctly signed sendredpack of 10.00 yuan."""
    params = {
        "nonce_str": "5K8264ILTKCH16CQ2502SI8ZNMTM67VS",
        "mch_billno": bill,
        "mch_id": creds.mch_id,
        "wxappid": creds.appid,
        "send_name": "天虹百货",
        "re_openid": openid,
        "total_amount": "1000",
        "total_num": "1",
        "wishing": "感谢您参加猜灯谜活动",
        "client_ip": client_ip,
        "act_name": "猜灯谜抢红包活动",
        "remark": "猜越多得越多",
    }
    return xmlcodec.dumps({**params, "sign": sign(params, creds.api_key)})


def tls_context(server: Served, cert: tuple[bytes, bytes] | None = None) -> ssl.SSLContext:
    """Trusts the simulator's CA; presents `cert` (cert_pem, key_pem) when given."""
    context = ssl.create_default_context(cafile=str(server.ca_path))
    if cert is not None:
        with tempfile.TemporaryDirectory() as scratch:
            cert_file, key_file = Path(scratch) / "cert.pem", Path(scratch) / "key.pem"
            cert_file.write_bytes(cert[0])
            key_file.write_bytes(cert[1])
            context.load_cert_chain(cert_file, key_file)
    return context


def post(
    server: Served,
    body: bytes,
    *,
    cert: tuple[bytes, bytes] | None = None,
    path: str = SEND,
    source_ip: str | None = None,
) -> dict[str, Any]:
    """POST `body` over TLS (from `source_ip` if given); the answer's XML fields."""
    transport = httpx.HTTPTransport(verify=tls_context(server, cert), local_address=source_ip)
    with httpx.Client(transport=transport, timeout=10) as client:
        response = client.post(server.url + path, content=body)
    assert response.status_code == 200, response.text
    return dict(xmlcodec.loads(response.content))
