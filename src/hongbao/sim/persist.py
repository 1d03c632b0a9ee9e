"""Keeping the simulator's state in SQLite across restarts (`Simulator(data_dir=…)`).

Write-through: after every action the registry hands over only the rows it changed, written in
one transaction — one JSON document per merchant, appid, user and record. The database runs in
WAL mode with `synchronous=NORMAL`: a power cut may lose the last few actions, which is fine for
a simulator (the payout ledger itself uses FULL) and keeps a send's write well under 0.1 ms.
Counters and rate windows are not stored: the daily counters are recomputed from the records on
load, and the 60-second windows start empty after a restart.

>>> import tempfile
>>> store = SqliteStore(Path(tempfile.mkdtemp()) / "sim.sqlite3")
>>> store.load().merchants
[]
"""

from __future__ import annotations

import json
import os
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Any

from hongbao.sim.entities import Api, AppId, AppKind, Limits, Merchant, Record, Share, Status, User
from hongbao.sim.state import Changes, Snapshot

__all__ = ["SqliteStore"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS merchants (mch_id TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS appids (appid TEXT PRIMARY KEY, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS users (appid TEXT, openid TEXT, doc TEXT NOT NULL,
                                  PRIMARY KEY (appid, openid));
CREATE TABLE IF NOT EXISTS records (mch_id TEXT, mch_billno TEXT, doc TEXT NOT NULL,
                                    PRIMARY KEY (mch_id, mch_billno));
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse_time(value: Any) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _merchant_doc(m: Merchant) -> dict[str, Any]:
    limits = m.limits
    return {
        "api_key": m.api_key,
        "cert_fingerprint": m.cert_fingerprint,
        "balance_fen": m.balance_fen,
        "limits": [
            limits.rate_per_minute,
            limits.query_rate_per_minute,
            limits.per_user_count,
            limits.per_user_amount,
            limits.merchant_amount,
            limits.legacy_minute_cap,
            limits.legacy_day_cap,
        ],
        "ip_whitelist": m.ip_whitelist,
        "scenes": m.scenes,
        "switches": [m.product_enabled, m.api_enabled, m.restricted, m.sign_responses],
        "sub_mch_ids": m.sub_mch_ids,
    }


def _merchant(mch_id: str, doc: dict[str, Any]) -> Merchant:
    product, api, restricted, signed = doc["switches"]
    return Merchant(
        mch_id=mch_id,
        api_key=doc["api_key"],
        cert_fingerprint=doc["cert_fingerprint"],
        balance_fen=doc["balance_fen"],
        limits=Limits(*doc["limits"]),
        ip_whitelist=list(doc["ip_whitelist"]),
        scenes={name: (low, high) for name, (low, high) in doc["scenes"].items()},
        product_enabled=product,
        api_enabled=api,
        restricted=restricted,
        sign_responses=signed,
        sub_mch_ids=list(doc["sub_mch_ids"]),
    )


def _record_doc(r: Record) -> dict[str, Any]:
    return {
        "api": r.api.value,
        "detail_id": r.detail_id,
        "wxappid": r.wxappid,
        "re_openid": r.re_openid,
        "total_amount": r.total_amount,
        "total_num": r.total_num,
        "payer_mch_id": r.payer_mch_id,
        "send_time": _time(r.send_time),
        "status": r.status.value,
        "sub_mch_id": r.sub_mch_id,
        "msgappid": r.msgappid,
        "send_name": r.send_name,
        "wishing": r.wishing,
        "act_name": r.act_name,
        "remark": r.remark,
        "reason": r.reason,
        "processing": r.processing,
        "issued_at": _time(r.issued_at),
        "due_at": _time(r.due_at),
        "refund_time": _time(r.refund_time),
        "refund_amount": r.refund_amount,
        "shares": [[s.amount, s.openid, _time(s.rcv_time)] for s in r.shares],
        "package": r.package,
        "sender": [r.sender_name, r.agentid, r.sender_header_media_id],
    }


def _record(mch_id: str, mch_billno: str, doc: dict[str, Any]) -> Record:
    send_time = _parse_time(doc["send_time"])
    assert send_time is not None
    sender = doc.get("sender") or [None, None, None]
    return Record(
        mch_id=mch_id,
        mch_billno=mch_billno,
        api=Api(doc["api"]),
        detail_id=doc["detail_id"],
        wxappid=doc["wxappid"],
        re_openid=doc["re_openid"],
        total_amount=doc["total_amount"],
        total_num=doc["total_num"],
        payer_mch_id=doc["payer_mch_id"],
        send_time=send_time,
        status=Status(doc["status"]),
        sub_mch_id=doc["sub_mch_id"],
        msgappid=doc["msgappid"],
        send_name=doc["send_name"],
        wishing=doc["wishing"],
        act_name=doc["act_name"],
        remark=doc["remark"],
        reason=doc["reason"],
        processing=doc["processing"],
        issued_at=_parse_time(doc["issued_at"]),
        due_at=_parse_time(doc["due_at"]),
        refund_time=_parse_time(doc["refund_time"]),
        refund_amount=doc["refund_amount"],
        shares=[Share(amount, openid, _parse_time(rcv)) for amount, openid, rcv in doc["shares"]],
        package=doc["package"],
        # Records written before WeCom packets existed have no sender.
        sender_name=sender[0],
        agentid=sender[1],
        sender_header_media_id=sender[2],
    )


def _appid_doc(a: AppId) -> dict[str, Any]:
    doc: dict[str, Any] = {"kind": a.kind.value, "mch_id": a.mch_id}
    if a.kind is AppKind.WECOM:
        doc["corp"] = [
            a.secret,
            {str(agentid): secret for agentid, secret in a.agents.items()},
            a.bound,
            a.agent_secret_accepted,
        ]
    return doc


def _appid(appid: str, doc: dict[str, Any]) -> AppId:
    app = AppId(appid=appid, kind=AppKind(doc["kind"]), mch_id=doc["mch_id"])
    if "corp" in doc:
        secret, agents, bound, accepted = doc["corp"]
        app.secret = secret
        app.agents = {int(agentid): own for agentid, own in agents.items()}
        app.bound = bound
        app.agent_secret_accepted = accepted
    return app


def _dumps(doc: dict[str, Any]) -> str:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"))


def _private(path: Path) -> None:
    """Create `path` 0600, or make an existing one so: it holds every merchant's API key.

    SQLite gives its -wal and -shm files the database file's mode.
    """
    os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
    if os.name == "posix":
        for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            if file.exists():
                os.chmod(file, 0o600)


class SqliteStore:
    """The registry's `Store` on one SQLite file."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        _private(path)
        # One connection shared by every thread: the registry's lock serialises all use of it.
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self._saved_now: datetime | None = None

    def __repr__(self) -> str:
        return f"SqliteStore({str(self.path)!r})"

    def load(self) -> Snapshot:
        """Everything stored so far."""
        db = self._db
        return Snapshot(
            merchants=[
                _merchant(mch_id, json.loads(doc))
                for mch_id, doc in db.execute("SELECT mch_id, doc FROM merchants")
            ],
            appids=[
                _appid(appid, json.loads(doc))
                for appid, doc in db.execute("SELECT appid, doc FROM appids")
            ],
            users=[
                User(appid=appid, openid=openid, risk_blocked=json.loads(doc)["risk_blocked"])
                for appid, openid, doc in db.execute("SELECT appid, openid, doc FROM users")
            ],
            records=[
                _record(mch_id, billno, json.loads(doc))
                for mch_id, billno, doc in db.execute("SELECT mch_id, mch_billno, doc FROM records")
            ],
        )

    def saved_now(self) -> datetime | None:
        """The simulated time of the last write (so a restarted frozen clock resumes there)."""
        row = self._db.execute("SELECT value FROM meta WHERE name = 'now'").fetchone()
        return _parse_time(row[0]) if row else None

    def save(self, changes: Changes) -> None:
        """Write the changed rows in one transaction."""
        db = self._db
        db.execute("BEGIN")
        try:
            if changes.merchants:
                db.executemany(
                    "INSERT OR REPLACE INTO merchants VALUES (?, ?)",
                    [(m.mch_id, _dumps(_merchant_doc(m))) for m in changes.merchants],
                )
            if changes.appids:
                db.executemany(
                    "INSERT OR REPLACE INTO appids VALUES (?, ?)",
                    [(a.appid, _dumps(_appid_doc(a))) for a in changes.appids],
                )
            if changes.users:
                db.executemany(
                    "INSERT OR REPLACE INTO users VALUES (?, ?, ?)",
                    [
                        (u.appid, u.openid, _dumps({"risk_blocked": u.risk_blocked}))
                        for u in changes.users
                    ],
                )
            if changes.records:
                db.executemany(
                    "INSERT OR REPLACE INTO records VALUES (?, ?, ?)",
                    [(r.mch_id, r.mch_billno, _dumps(_record_doc(r))) for r in changes.records],
                )
            if changes.now != self._saved_now:
                now = changes.now.isoformat()
                db.execute("INSERT OR REPLACE INTO meta VALUES ('now', ?)", (now,))
            db.execute("COMMIT")
            self._saved_now = changes.now
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def clear(self) -> None:
        """Delete every row."""
        db = self._db
        db.execute("BEGIN")
        for table in ("merchants", "appids", "users", "records", "meta"):
            db.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed table names
        db.execute("COMMIT")
        self._saved_now = None

    def close(self) -> None:
        """Close the database."""
        self._db.close()
