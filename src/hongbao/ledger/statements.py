"""Prepared statements of the dispatchers' hot path: claim, charge, take, compare-and-set.

Each is built once, with bind parameters, and cached by its shape. The hot ones run as
`Prepared` (one execution) or `ManyRows` (an executemany): compiled once per dialect (and per
length of their IN lists) and run on the DBAPI cursor of the transaction's connection, with
each value through its own type's bind or result processor and nothing else. SQLAlchemy's
per-call work (cache keys, execution contexts, result wrapping: some 50-100 µs a statement)
costs several times what SQLite spends on these statements, and a commit round runs a dozen of
them. Driver errors come out as SQLAlchemy's own (`DBAPIError` and its subclasses), as from
`Connection.execute`, so transactions retry and fail as they always did. The store fills the
parameters; no statement here commits.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from operator import itemgetter
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Dialect,
    and_,
    bindparam,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.expression import ReturnsRows, UpdateBase

from hongbao.ledger.outbox import payout_outbox_rows
from hongbao.ledger.records import Origin, Scope
from hongbao.ledger.rows import PAYOUT_COLUMNS, dialect_insert
from hongbao.ledger.schema import (
    UTCDateTime,
    campaigns,
    daily_counters,
    payout_events,
    payouts,
    webhook_outbox,
)
from hongbao.ledger.states import CLAIMABLE, CampaignState, PayoutState

__all__ = [
    "BRIEF_COLUMNS",
    "INSERT_EVENTS",
    "INSERT_OUTBOX",
    "INSERT_PAYOUTS",
    "INSERT_PAYOUT_IDS",
    "LATEST",
    "ManyRows",
    "Prepared",
    "cas_update",
    "charge_budget",
    "charge_counters",
    "claim_candidates",
    "in_scope",
    "insert_events",
    "latest_by_keys",
    "lock_payouts",
    "savepoint",
    "scope_clause",
    "scope_params",
    "scope_shape",
    "take_payouts",
]

BRIEF_COLUMNS = (
    payouts.c.id,
    payouts.c.state,
    payouts.c.attempts,
    payouts.c.counted_day,
    payouts.c.campaign_id,
    payouts.c.mch_id,
    payouts.c.re_openid,
    payouts.c.total_amount,
)
"""What claiming and transitions read of a payout they change (not its parameters)."""


class ManyRows:
    """A statement run for many rows as one DBAPI executemany, compiled once per dialect.

    Each value goes through its parameter's own bind processor, and nothing else happens per
    row: SQLAlchemy's per-row parameter handling costs as much as SQLite's own work, and the
    hot path runs these for every payout. `build(dialect_name)` makes the statement; rows are
    mappings of its parameter names (an INSERT's are its column names). Both drivers (sqlite3,
    psycopg) report the rows an executemany changed, summed, as its row count.
    """

    def __init__(self, build: Callable[[str], UpdateBase]) -> None:
        self.build = build
        self._compiled: dict[tuple[str, str, tuple[str, ...]], _Plan] = {}

    def run(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> int:
        """Execute once for each row; returns how many rows the executions changed in all."""
        if not rows:
            return 0
        plan = self._compile(conn.dialect, tuple(rows[0]))
        cursor = _execute(conn, plan.sql, plan.params(rows), many=True)
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def _compile(self, dialect: Dialect, keys: tuple[str, ...]) -> _Plan:
        cache_key = (dialect.name, str(dialect.paramstyle), keys)
        found = self._compiled.get(cache_key)
        if found is None:
            compiled = self.build(dialect.name).compile(dialect=dialect, column_keys=list(keys))
            order = compiled.positiontup
            binds = []
            for name in order if order is not None else compiled.binds:
                bind = compiled.binds[name]
                process = bind.type.dialect_impl(dialect).bind_processor(dialect)
                binds.append((name, process, _MISSING if bind.required else bind.effective_value))
            found = self._compiled[cache_key] = _Plan(str(compiled), order is not None, binds)
        return found


_MISSING = object()


class _Plan:
    """A compiled statement and how to turn rows into its DBAPI parameters.

    When every row names every parameter (the usual case), the values are picked in C with
    `itemgetter`, and each bind processor runs once per distinct value object in a row (a
    batch's rows share their timestamps).
    """

    def __init__(self, sql: str, positional: bool, binds: list[tuple[str, Any, Any]]) -> None:
        self.sql = sql
        self.positional = positional
        self.binds = binds
        self.names = [name for name, _, _ in binds]
        self.processors = [(i, process) for i, (_, process, _) in enumerate(binds) if process]

    def params(self, rows: Sequence[Mapping[str, Any]]) -> list[Any]:
        if not set(self.names).issubset(rows[0]):
            return [self._slow(row) for row in rows]
        pick = itemgetter(*self.names)
        single = len(self.names) == 1
        last: dict[int, tuple[Any, Any]] = {}
        params: list[Any] = []
        for row in rows:
            picked = (pick(row),) if single else pick(row)
            if not self.processors:
                params.append(
                    picked if self.positional else dict(zip(self.names, picked, strict=True))
                )
                continue
            values = list(picked)
            for i, process in self.processors:
                value = values[i]
                seen = last.get(i)
                if seen is None or seen[0] is not value:
                    seen = last[i] = (value, process(value))
                values[i] = seen[1]
            params.append(
                tuple(values) if self.positional else dict(zip(self.names, values, strict=True))
            )
        return params

    def _slow(self, row: Mapping[str, Any]) -> Any:
        values = []
        for name, process, default in self.binds:
            value = row.get(name, default)
            if value is _MISSING:
                raise KeyError(f"no value for parameter {name!r}")
            values.append(value if process is None else process(value))
        return tuple(values) if self.positional else dict(zip(self.names, values, strict=True))


def _execute(conn: Connection, sql: str, params: Any, *, many: bool = False) -> Any:
    """Run `sql` on a DBAPI cursor of `conn`'s connection, inside its transaction.

    A driver error is raised as SQLAlchemy's `DBAPIError` (its subclass for the error), as
    `Connection.execute` would raise it.
    """
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        if many:
            cursor.executemany(sql, params)
        else:
            cursor.execute(sql, params)
    except BaseException as exc:
        cursor.close()
        dialect = conn.dialect
        error = dialect.loaded_dbapi.Error
        if isinstance(exc, error):
            raise DBAPIError.instance(
                sql, params, exc, error, dialect=dialect, ismulti=many
            ) from exc
        raise
    return cursor


_SAVEPOINT = "hongbao_savepoint"


@contextmanager
def savepoint(conn: Connection) -> Iterator[None]:
    """A savepoint of the transaction on `conn`: released on success, rolled back on an error.

    The same SQL as `conn.begin_nested()`, without SQLAlchemy compiling it on every call.
    """
    _execute(conn, f"SAVEPOINT {_SAVEPOINT}", ()).close()
    try:
        yield
    except BaseException:
        _execute(conn, f"ROLLBACK TO SAVEPOINT {_SAVEPOINT}", ()).close()
        _execute(conn, f"RELEASE SAVEPOINT {_SAVEPOINT}", ()).close()
        raise
    _execute(conn, f"RELEASE SAVEPOINT {_SAVEPOINT}", ()).close()


class _Slot:
    """Stands for a parameter (or one item of an IN list) while a plan is made."""

    __slots__ = ("index", "name")

    def __init__(self, name: str, index: int | None) -> None:
        self.name = name
        self.index = index


class Prepared:
    """A statement run once per call on the DBAPI cursor; see the module docstring.

    `rows` returns its result rows as tuples of processed values, in the order of its
    columns; `count` the rows it changed. Parameters are given by name; an IN list
    (`bindparam(..., expanding=True)`) as a list, each length compiled once.
    """

    def __init__(self, stmt: Any) -> None:
        self.stmt = stmt
        self._compiled: dict[tuple[str, str], Any] = {}
        self._plans: dict[tuple[str, str, tuple[int, ...]], _OnePlan] = {}

    def rows(self, conn: Connection, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Execute and fetch every row (processed, like `Connection.execute` would)."""
        plan = self._plan(conn.dialect, params)
        cursor = _execute(conn, plan.sql, plan.bind(params))
        try:
            rows = cursor.fetchall()
        finally:
            cursor.close()
        return plan.convert(rows)

    def count(self, conn: Connection, params: Mapping[str, Any]) -> int:
        """Execute; the number of rows the statement changed."""
        plan = self._plan(conn.dialect, params)
        cursor = _execute(conn, plan.sql, plan.bind(params))
        try:
            return int(cursor.rowcount)
        finally:
            cursor.close()

    def _plan(self, dialect: Dialect, params: Mapping[str, Any]) -> _OnePlan:
        base = (dialect.name, str(dialect.paramstyle))
        compiled = self._compiled.get(base)
        if compiled is None:
            compiled = self._compiled[base] = self.stmt.compile(dialect=dialect)
        expanding = [
            name for name, bind in compiled.binds.items() if bind.expanding and bind.required
        ]
        key = (*base, tuple(len(params[name]) for name in expanding))
        found = self._plans.get(key)
        if found is None:
            found = self._plans[key] = _OnePlan(self.stmt, compiled, dialect, params)
        return found


class _OnePlan:
    """A `Prepared` statement for one dialect and one length of each IN list."""

    def __init__(
        self, stmt: Any, compiled: Any, dialect: Dialect, params: Mapping[str, Any]
    ) -> None:
        slots: dict[str, Any] = {}
        for name, bind in compiled.binds.items():
            if bind.expanding and bind.required:
                slots[name] = [_Slot(name, i) for i in range(len(params[name]))]
            elif bind.required:
                slots[name] = _Slot(name, None)
        expanded = compiled.construct_expanded_state(slots)
        self.sql: str = expanded.statement
        self.positional = expanded.positiontup is not None
        names = expanded.positiontup if self.positional else list(expanded.parameters)
        self.names = list(names)
        processors = {
            name: bind.type.dialect_impl(dialect).bind_processor(dialect)
            for name, bind in compiled.binds.items()
        }
        # Each parameter: (name, index in its IN list or None, processor), or a constant.
        self.sources: list[tuple[str, int | None, Any] | tuple[None, Any, None]] = []
        for name in self.names:
            value = expanded.parameters[name]
            if isinstance(value, _Slot):
                self.sources.append((value.name, value.index, processors[value.name]))
            else:
                # An item of a constant IN list is named after its list: `state_1_2`.
                process = processors.get(name, processors.get(name.rpartition("_")[0]))
                self.sources.append((None, process(value) if process else value, None))
        columns = stmt.exported_columns if isinstance(stmt, ReturnsRows) else ()
        self.results = [
            (i, process)
            for i, column in enumerate(columns)
            if (process := column.type.dialect_impl(dialect).result_processor(dialect, None))
        ]

    def bind(self, params: Mapping[str, Any]) -> Any:
        values = []
        for name, index, process in self.sources:
            if name is None:
                values.append(index)  # a constant, already processed
                continue
            value = params[name] if index is None else params[name][index]
            values.append(process(value) if process is not None else value)
        return tuple(values) if self.positional else dict(zip(self.names, values, strict=True))

    def convert(self, rows: Sequence[Any]) -> list[tuple[Any, ...]]:
        if not self.results:
            return [tuple(row) for row in rows]
        converted = []
        for row in rows:
            values = list(row)
            for i, process in self.results:
                values[i] = process(values[i])
            converted.append(tuple(values))
        return converted


INSERT_EVENTS = ManyRows(lambda _: payout_events.insert())
"""Audit events, one row each: write them with `insert_events`, which adds their outbox rows."""

INSERT_OUTBOX = ManyRows(lambda _: webhook_outbox.insert())
"""Webhook outbox rows (`hongbao.ledger.outbox`)."""


def insert_events(conn: Connection, events: Sequence[Mapping[str, Any]]) -> None:
    """Append audit events, and the webhook outbox rows of those that report a state change,
    in the caller's transaction: the one way payout events are written."""
    INSERT_EVENTS.run(conn, events)
    INSERT_OUTBOX.run(conn, payout_outbox_rows(events))


INSERT_PAYOUT_IDS = insert(payouts).returning(payouts.c.id, sort_by_parameter_order=True)
"""New payouts that must all be new (a rule's), returning their ids in the rows' order."""

INSERT_PAYOUTS = ManyRows(
    lambda dialect: dialect_insert(dialect, payouts).on_conflict_do_nothing(
        index_elements=["natural_key", "generation"]
    )
)
"""New payouts; a natural key already recorded is left alone (the row count says which)."""


ScopeShape = tuple[bool, bool, bool, Origin | None]
"""Which parts of a `Scope` are set: merchant, ids, campaign, and the origin."""


def in_scope(scope: Scope) -> tuple[ColumnElement[bool], dict[str, Any]]:
    """The one WHERE clause of the payouts in `scope`, and the values of its parameters.

    The clause depends only on the scope's shape (see `scope_clause`); the values are
    `:mch_id`, `:ids` and `:campaign_id`, as the scope sets them.
    """
    return scope_clause(scope_shape(scope)), scope_params(scope)


def scope_params(scope: Scope) -> dict[str, Any]:
    """The values of a scope's bind parameters."""
    return {
        "mch_id": scope.mch_id,
        "ids": sorted(scope.payout_ids or ()),
        "campaign_id": scope.campaign_id,
    }


def scope_shape(scope: Scope) -> ScopeShape:
    """Which parts of `scope` are set: the key of its cached clause and statements."""
    return (
        scope.mch_id is not None,
        scope.payout_ids is not None,
        scope.campaign_id is not None,
        scope.origin,
    )


@functools.cache
def scope_clause(shape: ScopeShape) -> ColumnElement[bool]:
    """The condition of a scope's shape, with bind parameters for its values."""
    by_mch, by_ids, by_campaign, origin = shape
    c = payouts.c
    conditions: list[ColumnElement[bool]] = []
    if by_mch:
        conditions.append(c.mch_id == bindparam("mch_id"))
    if by_ids:
        conditions.append(c.id.in_(bindparam("ids", expanding=True)))
    if by_campaign:
        conditions.append(c.campaign_id == bindparam("campaign_id"))
    elif origin is Origin.CAMPAIGN:
        conditions.append(c.campaign_id.is_not(None))
    elif origin is not None:
        # A range, not LIKE: both databases walk the natural key's unique index for it.
        prefix = origin.key_prefix
        conditions += [
            c.campaign_id.is_(None),
            c.natural_key >= prefix,
            c.natural_key < prefix[:-1] + chr(ord(prefix[-1]) + 1),
        ]
    return and_(*conditions)


@functools.cache
def claim_candidates(state: PayoutState, shape: ScopeShape) -> Prepared:
    """Due payouts in `state` of a scope's shape, by id, `LIMIT :limit`, locked (`SKIP LOCKED`
    on PostgreSQL).

    Parameters: `:now`, `:limit`, and those of `in_scope`. One state per query: with
    `state = ?` SQLite walks the (campaign_id, state) index in id order and stops after
    `limit` rows, where `state IN (…)` would sort every candidate row first.
    """
    assert state in CLAIMABLE
    conditions = [
        payouts.c.state == state.value,
        or_(
            payouts.c.next_attempt_at.is_(None),
            payouts.c.next_attempt_at <= bindparam("now", type_=UTCDateTime()),
        ),
        or_(payouts.c.campaign_id.is_(None), campaigns.c.state == CampaignState.RUNNING.value),
        scope_clause(shape),
    ]
    return Prepared(
        select(*BRIEF_COLUMNS)
        .select_from(payouts.outerjoin(campaigns, payouts.c.campaign_id == campaigns.c.id))
        .where(*conditions)
        .order_by(payouts.c.id)
        .limit(bindparam("limit"))
        .with_for_update(of=payouts, skip_locked=True)
    )


@functools.cache
def charge_budget() -> Prepared:
    """`committed_fen += :amount` of campaign `:campaign_id`, only within its budget."""
    c = campaigns.c
    amount = bindparam("amount", type_=c.committed_fen.type)
    return Prepared(
        update(campaigns)
        .where(
            c.id == bindparam("campaign_id"),
            or_(c.budget_fen.is_(None), c.committed_fen + amount <= c.budget_fen),
        )
        .values(committed_fen=c.committed_fen + amount)
    )


@functools.cache
def charge_counters(*, max_count: bool, max_amount: bool) -> ManyRows:
    """Add rows (mch_id, openid, day, count, amount_fen) to the daily counters within the caps.

    Caps as `max_count` / `max_amount` in each row; a refused row changes nothing, so the row
    count falls short of the rows by the refused ones.
    """

    def build(dialect: str) -> UpdateBase:
        c = daily_counters.c
        stmt = dialect_insert(dialect, daily_counters)
        added = stmt.excluded
        limits = []
        if max_count:
            limits.append(c.count + added["count"] <= bindparam("max_count"))
        if max_amount:
            limits.append(c.amount_fen + added.amount_fen <= bindparam("max_amount"))
        upsert: UpdateBase = stmt.on_conflict_do_update(
            index_elements=["mch_id", "openid", "day"],
            set_={"count": c.count + added["count"], "amount_fen": c.amount_fen + added.amount_fen},
            where=and_(*limits) if limits else None,
        )
        return upsert

    return ManyRows(build)


@functools.cache
def take_payouts() -> Prepared:
    """Claimable payouts `:ids` to SENDING under a lease; RETURNING the whole rows
    (`PAYOUT_COLUMNS`, for `payout_from_values`).

    Parameters: `:ids`, `:now`, `:lease_until`, `:holder`, `:day`.
    """
    now = bindparam("now", type_=UTCDateTime())
    return Prepared(
        update(payouts)
        .where(
            payouts.c.id.in_(bindparam("ids", expanding=True)),
            payouts.c.state.in_([state.value for state in CLAIMABLE]),
        )
        .values(
            state=PayoutState.SENDING.value,
            reason=None,
            lease_until=bindparam("lease_until", type_=UTCDateTime()),
            lease_holder=bindparam("holder"),
            claimed_at=now,
            attempts=payouts.c.attempts + 1,
            counted_day=bindparam("day", type_=payouts.c.counted_day.type),
            next_attempt_at=None,
            updated_at=now,
        )
        .returning(*PAYOUT_COLUMNS)
    )


_SUCCESSOR = payouts.alias("successor")
LATEST = ~select(_SUCCESSOR.c.id).where(_SUCCESSOR.c.previous_payout_id == payouts.c.id).exists()
"""Payouts that are the latest bill of their intent (no re-issue follows them)."""


@functools.cache
def latest_by_keys() -> Prepared:
    """The latest bill of each intent among `:keys` (natural keys) that is recorded; the whole
    rows (`PAYOUT_COLUMNS`, for `payout_from_values`).

    What recording a payout on demand reads back, and what a replay reads first: once per
    request of `hongbao serve`, where building the query each time cost more than running it.
    """
    return Prepared(
        select(*PAYOUT_COLUMNS).where(
            payouts.c.natural_key.in_(bindparam("keys", expanding=True)), LATEST
        )
    )


@functools.cache
def lock_payouts() -> Prepared:
    """The brief rows of payouts `:ids`, locked in id order (`FOR UPDATE` on PostgreSQL)."""
    return Prepared(
        select(*BRIEF_COLUMNS)
        .where(payouts.c.id.in_(bindparam("ids", expanding=True)))
        .order_by(payouts.c.id)
        .with_for_update()
    )


@functools.cache
def cas_update(columns: tuple[str, ...]) -> ManyRows:
    """`UPDATE payouts SET <columns> WHERE id = :_id AND state = :_from`, for many rows."""
    stmt = (
        update(payouts)
        .where(payouts.c.id == bindparam("_id"), payouts.c.state == bindparam("_from"))
        .values({name: bindparam(name, type_=payouts.c[name].type) for name in columns})
    )
    return ManyRows(lambda _: stmt)
