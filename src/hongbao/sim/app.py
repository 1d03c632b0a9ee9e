"""The simulator: one `Simulator` object (state, CA, faults) and its Starlette app.

The in-process entry (`Simulator.handle_wire`, a `hongbao.wire.local.LocalHandler`) and the
HTTP endpoints run the same `Simulator.process` over the same registry. Network faults differ
only in how they surface: in-process they become `hongbao.errors.TransportError` at once
(nothing sleeps); served, the endpoint really sleeps or drops the connection.

>>> from hongbao.wire.local import LocalTransport, PeerInfo
>>> sim = Simulator(seed=1)
>>> creds = sim.create_merchant()
>>> transport = LocalTransport(sim.handle_wire, PeerInfo(cert_der=creds.cert_der))
"""

from __future__ import annotations

import asyncio
import base64
import functools
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from hongbao.clock import Clock, FrozenClock
from hongbao.errors import TransportError
from hongbao.sim.ca import SimCA, der_of, fingerprint
from hongbao.sim.control import control_routes
from hongbao.sim.entities import QUERIES, Api, AppKind
from hongbao.sim.exceptions import InvalidStateError, SimError, injected_error
from hongbao.sim.faults import FaultAction, FaultTable
from hongbao.sim.notify import PaymentDesk
from hongbao.sim.persist import SqliteStore
from hongbao.sim.responses import error_body, handle_api, parse_request, post_only_body
from hongbao.sim.state import Caller, MerchantSettings, Registry, SimConfig
from hongbao.wire.local import PeerInfo
from hongbao.wire.transport import WireRequest, WireResponse
from hongbao.wire.xmlcodec import MAX_BODY_BYTES

__all__ = ["API_PREFIX", "Exchange", "MerchantCredentials", "Simulator", "create_app"]

API_PREFIX = "/mmpaymkttransfers/"
_DB_FILE = "sim.sqlite3"
_HANG_SECONDS = 3600.0
_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class MerchantCredentials:
    """What a new merchant gets: its numbers, key, appids and API certificate."""

    mch_id: str
    api_key: str = field(repr=False)
    appid: str
    mini_appid: str
    app_appid: str
    cert_pem: bytes = field(repr=False)
    key_pem: bytes = field(repr=False)
    p12: bytes = field(repr=False)
    wecom_appid: str | None = None
    """The WeCom corp's id (corpid), when the merchant was created with `wecom=True`."""
    wecom_secret: str | None = field(default=None, repr=False)
    """The corp's 企业支付 app secret, for `workwx_sign`."""
    wecom_agentid: int | None = None

    @property
    def cert_der(self) -> bytes:
        """The certificate as a TLS peer presents it (for `PeerInfo(cert_der=…)`)."""
        return der_of(self.cert_pem)

    def to_json(self) -> dict[str, Any]:
        """The control API's answer to `POST /__sim/merchants`."""
        doc: dict[str, Any] = {
            "mch_id": self.mch_id,
            "api_key": self.api_key,
            "appid": self.appid,
            "mini_appid": self.mini_appid,
            "app_appid": self.app_appid,
            "cert_pem": self.cert_pem.decode("ascii"),
            "key_pem": self.key_pem.decode("ascii"),
            "p12_base64": base64.b64encode(self.p12).decode("ascii"),
        }
        if self.wecom_appid is not None:
            doc["wecom_appid"] = doc["wecom_corpid"] = self.wecom_appid
            doc["wecom_secret"] = self.wecom_secret
            doc["wecom_agentid"] = self.wecom_agentid
        return doc


@dataclass(frozen=True, slots=True)
class Exchange:
    """The outcome of one API request: what to answer, and how a fault bends the delivery."""

    status: int
    body: bytes
    after: FaultAction | None = None
    """DELAY (answer late), HANG (no answer for `seconds`) or PAY_THEN_DROP (no answer at all)."""
    seconds: float = 0.0


class Simulator:
    """The simulated WeChat Pay red packet server: registry, CA and faults in one object."""

    def __init__(
        self,
        clock: Clock | None = None,
        data_dir: Path | None = None,
        seed: int | None = None,
        *,
        config: SimConfig | None = None,
    ) -> None:
        self.data_dir = data_dir
        self._store: SqliteStore | None = None
        snapshot = None
        if data_dir is not None:
            self.ca = SimCA.load_or_create(data_dir)
            self._store = SqliteStore(data_dir / _DB_FILE)
            snapshot = self._store.load()
            if clock is None:
                # A frozen clock resumes where the last run left it: time never runs backwards.
                saved = self._store.saved_now()
                clock = FrozenClock(saved) if saved is not None else FrozenClock()
        else:
            self.ca = SimCA.create()
        self.clock: Clock = clock if clock is not None else FrozenClock()
        self.faults = FaultTable()
        self.state = Registry(
            self.clock,
            config=config,
            seed=seed,
            store=self._store,
            cert_check=self.ca.check_client_cert,
            snapshot=snapshot,
        )
        self.payments = PaymentDesk(self.state, self.clock, seed)
        """Customers' payments and the notifications owed for them (`POST /__sim/pay`)."""

    def __repr__(self) -> str:
        return f"Simulator(clock={self.clock!r}, state={self.state!r})"

    def close(self) -> None:
        """Close the database, if any."""
        if self._store is not None:
            self._store.close()

    # ------------------------------------------------------------------ control, in Python

    def create_merchant(
        self,
        settings: MerchantSettings | None = None,
        *,
        mch_id: str | None = None,
        api_key: str | None = None,
        wecom: bool = False,
    ) -> MerchantCredentials:
        """A new merchant with a fresh API certificate and its appids."""
        issued: dict[str, tuple[bytes, bytes]] = {}

        def certify(new_id: str) -> str:
            issued[new_id] = self.ca.issue_client_cert(new_id)
            return fingerprint(issued[new_id][0])

        merchant, appids = self.state.create_merchant(
            settings or MerchantSettings(),
            mch_id=mch_id,
            api_key=api_key,
            wecom=wecom,
            certify=certify,
        )
        cert_pem, key_pem = issued[merchant.mch_id]
        corp = self.state.corp(appids[AppKind.WECOM]) if AppKind.WECOM in appids else None
        return MerchantCredentials(
            mch_id=merchant.mch_id,
            api_key=merchant.api_key,
            appid=appids[AppKind.OFFICIAL],
            mini_appid=appids[AppKind.MINI],
            app_appid=appids[AppKind.APP],
            wecom_appid=appids.get(AppKind.WECOM),
            wecom_secret=corp.secret if corp is not None else None,
            wecom_agentid=min(corp.agents) if corp is not None else None,
            cert_pem=cert_pem,
            key_pem=key_pem,
            p12=self.ca.p12_for(cert_pem, key_pem),
        )

    def add_users(self, appid: str, count: int) -> list[str]:
        """`count` new users (openids) under `appid`."""
        return self.state.add_users(appid, count)

    def move_clock(
        self, *, advance_seconds: float | None = None, now: datetime | None = None
    ) -> int:
        """Move a frozen clock forward and run every due transition; returns how many ran."""
        if not isinstance(self.clock, FrozenClock):
            raise InvalidStateError("the simulator runs on the wall clock, which cannot be moved")
        if advance_seconds is not None:
            self.clock.advance(advance_seconds)
        if now is not None:
            self.clock.set(now)
        return self.state.run_due()

    def reset(self) -> None:
        """Forget all merchants, users, records, payments and faults (the CA stays)."""
        self.faults.clear()
        self.payments.reset()
        self.state.reset()

    # ------------------------------------------------------------------ the API endpoints

    def process(self, api: Api, method: str, body: bytes, caller: Caller) -> Exchange:
        """One request to an API endpoint, faults included: the dispatch shared by both modes."""
        if method != "POST":
            return Exchange(200, post_only_body())
        try:
            return self._process(api, body, caller)
        except Exception:  # a bug must not leak a stack trace to the caller
            _log.exception("simulator failed on %s", api.value)
            return Exchange(200, error_body(api, injected_error(api, "SYSTEMERROR")))

    def _process(self, api: Api, body: bytes, caller: Caller) -> Exchange:
        fault = self.faults.draw(api.value)
        if fault is None:
            return Exchange(200, handle_api(self.state, api, body, caller))
        action = fault.action
        if action is FaultAction.ERROR:
            assert fault.err_code is not None
            try:
                params: dict[str, str] | None = parse_request(body)
            except SimError:
                params = None
            return Exchange(200, error_body(api, injected_error(api, fault.err_code), params))
        if action is FaultAction.HTTP_STATUS:
            assert fault.status is not None
            return Exchange(fault.status, f"simulated HTTP {fault.status}\n".encode())
        if action is FaultAction.HANG:
            seconds = fault.seconds or _HANG_SECONDS
            return Exchange(504, b"simulated hang\n", after=action, seconds=seconds)
        processing = None
        if action is FaultAction.PROCESSING and api not in QUERIES:
            processing = (
                timedelta(seconds=fault.seconds)
                if fault.seconds
                else self.state.config.processing_delay
            )
        answer = handle_api(self.state, api, body, caller, processing=processing)
        if action in (FaultAction.DELAY, FaultAction.PAY_THEN_DROP):
            return Exchange(200, answer, after=action, seconds=fault.seconds or 0.0)
        return Exchange(200, answer)

    def handle_wire(self, request: WireRequest, peer: PeerInfo) -> WireResponse:
        """The in-process entry (a `LocalHandler`): network faults become `TransportError`."""
        api = _api_of(request.path)
        if api is None:
            return WireResponse(404, b"not found\n", url=request.path)
        exchange = self.process(api, "POST", request.body, Caller(peer.ip, peer.cert_der))
        if exchange.after is FaultAction.PAY_THEN_DROP:
            raise TransportError("connection dropped after the request was processed")
        if exchange.after is FaultAction.HANG:
            raise TransportError("read timed out: the server did not answer")
        if exchange.after is FaultAction.DELAY and exchange.seconds >= peer.read_timeout:
            raise TransportError(
                f"read timed out after {peer.read_timeout:g} s (the answer took "
                f"{exchange.seconds:g} s)"
            )
        return WireResponse(exchange.status, exchange.body, url=request.path)


def _api_of(path: str) -> Api | None:
    path = path.split("?", 1)[0]
    if not path.startswith(API_PREFIX):
        return None
    try:
        return Api(path[len(API_PREFIX) :])
    except ValueError:
        return None


@functools.lru_cache(maxsize=1024)
def _der_of_pem(pem: str) -> bytes:
    # A merchant presents the same certificate on every call: convert it once.
    try:
        return der_of(pem)
    except ValueError:
        return b"\x00"  # present but unreadable: judged as a foreign certificate


def _peer_cert(scope: Scope) -> bytes | None:
    tls = scope.get("extensions", {}).get("tls") or {}
    chain = tls.get("client_cert_chain") or []
    return _der_of_pem(chain[0]) if chain else None


class _ApiEndpoint:
    """The ASGI app of one API endpoint (raw ASGI, so it can also *not* answer)."""

    def __init__(self, sim: Simulator, api: Api) -> None:
        self.sim = sim
        self.api = api

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = await _read_body(receive, MAX_BODY_BYTES + 1)
        client = scope.get("client")
        caller = Caller(ip=client[0] if client else "", cert_der=_peer_cert(scope))
        exchange = self.sim.process(self.api, scope["method"], body, caller)
        if exchange.after is FaultAction.PAY_THEN_DROP:
            connection = scope.get("extensions", {}).get("hongbao.connection") or {}
            abort = connection.get("abort")
            if abort is None:
                # No way to close the socket from here: fail so that no response is produced.
                raise ConnectionAbortedError("pay_then_drop: dropping the response")
            abort()
            return
        if exchange.after in (FaultAction.HANG, FaultAction.DELAY):
            await asyncio.sleep(exchange.seconds)
        content_type = b"text/xml; charset=utf-8" if exchange.status == 200 else b"text/plain"
        await send(
            {
                "type": "http.response.start",
                "status": exchange.status,
                "headers": [
                    (b"content-type", content_type),
                    (b"content-length", str(len(exchange.body)).encode("ascii")),
                ],
            }
        )
        await send({"type": "http.response.body", "body": exchange.body})


async def _read_body(receive: Receive, limit: int) -> bytes:
    """The request body, cut at `limit` bytes (enough to know it is too large)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunk = message.get("body", b"")
        chunks.append(chunk)
        size += len(chunk)
        if size >= limit or not message.get("more_body", False):
            break
    return b"".join(chunks)[:limit]


def create_app(sim: Simulator) -> Starlette:
    """The Starlette app: the endpoints under `/mmpaymkttransfers/` and `/__sim/*`.

    >>> app = create_app(Simulator())
    """
    routes: list[BaseRoute] = [
        Route(f"{API_PREFIX}{api.value}", _ApiEndpoint(sim, api), name=api.value) for api in Api
    ]
    routes.extend(control_routes(sim))
    return Starlette(routes=routes)
