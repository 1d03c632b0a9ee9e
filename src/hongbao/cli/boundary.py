"""Exit codes, and the one boundary that turns hongbao errors into a message and an exit code.

| code | meaning | for the money |
|---|---|---|
| 0 | done | as reported |
| 1 | usage or other error (bad option, unknown campaign…) | nothing sent by this command |
| 2 | configuration error (file, key, certificate, ledger URL) | nothing was sent |
| 3 | definitive refusal | NOT sent (refused, or rejected before issuing) |
| 4 | UNKNOWN outcome | MAY have been sent: query with the same bill number, or resend it |

A command that only asks (`query`, `track`, `reconcile`) sends no money: its errors exit 1 and
say what failed ("query failed: …"), never "not sent" or "outcome unknown".

>>> with guard(as_json=False):  # doctest: +SKIP
...     client.send_redpack(...)
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import typer
from typer.core import TyperGroup, TyperOption

from hongbao.errors import ConfigurationError, HongbaoError, OperationError, Outcome
from hongbao.printable import printable

__all__ = ["ExitCode", "FastHelpGroup", "Guard", "HongbaoGroup", "exit_code_for", "guard"]


class ExitCode(IntEnum):
    """The exit status of every `hongbao` command."""

    OK = 0
    ERROR = 1
    """Usage error (bad option or argument) or any other failure."""
    CONFIGURATION = 2
    """The configuration is wrong or incomplete; nothing was sent."""
    REFUSED = 3
    """Definitive: the money was NOT sent (refused or rejected)."""
    UNKNOWN = 4
    """The money MAY have been sent: query or resend with the same bill number."""


def exit_code_for(error: BaseException, *, sends: bool = True) -> ExitCode:
    """The exit code of an error (pure); `sends=False` for a command that sends no money."""
    if isinstance(error, OperationError):
        # An unknown campaign or payout, a step its state forbids, a template the API would
        # refuse: a usage error, and nothing was sent.
        return ExitCode.ERROR
    if isinstance(error, ConfigurationError):
        return ExitCode.CONFIGURATION
    if isinstance(error, HongbaoError):
        if not sends:
            return ExitCode.ERROR
        return ExitCode.UNKNOWN if error.outcome is Outcome.UNKNOWN else ExitCode.REFUSED
    return ExitCode.ERROR


_LABEL = {
    ExitCode.ERROR: "error",
    ExitCode.CONFIGURATION: "configuration error",
    ExitCode.REFUSED: "not sent",
    ExitCode.UNKNOWN: "OUTCOME UNKNOWN",
}


@dataclass
class Guard:
    """What the boundary may add to a message: the bill number at stake, once there is one."""

    as_json: bool
    mch_billno: str | None = None
    asks: str | None = None
    """What a command that sends nothing asks ("query"): its errors say that failed."""


@contextmanager
def guard(as_json: bool, *, asks: str | None = None) -> Iterator[Guard]:
    """Run a command body; a hongbao error ends it with a message and its exit code.

    `asks` names what a command that sends no money does ("query"): its errors then exit 1
    as "query failed: …", since they say nothing about any packet. With `as_json`, the error
    is also printed to stdout as `{"error", "outcome", "exit_code", "mch_billno"}` so that
    scripts need not parse stderr.
    """
    from sqlalchemy.exc import DBAPIError, SQLAlchemyError

    state = Guard(as_json, asks=asks)
    try:
        yield state
    except HongbaoError as exc:
        _exit(exc, str(exc).strip("'\""), state)
    except SQLAlchemyError as exc:
        cause = exc.orig if isinstance(exc, DBAPIError) else exc
        lines = str(cause).strip().splitlines()
        _exit(exc, f"ledger database: {lines[0] if lines else type(cause).__name__}", state)


def _exit(exc: BaseException, message: str, state: Guard) -> None:
    sends = state.asks is None
    code = exit_code_for(exc, sends=sends)
    bill = getattr(exc, "mch_billno", None) or state.mch_billno
    label = _LABEL[code]
    if not sends and code is ExitCode.ERROR:
        label = f"{state.asks} failed"
    # The message may quote a file, an answer or an argument: shown, never obeyed.
    typer.echo(f"{label}: {printable(message)}", err=True)
    if code is ExitCode.UNKNOWN and bill:
        typer.echo(
            f"The money may have been sent. Find out with `hongbao query {bill}`; resending "
            f"with --bill-no {bill} and the same parameters is safe (WeChat issues a bill "
            "number at most once). Never send it again under a new bill number.",
            err=True,
        )
    if state.as_json:
        document: dict[str, Any] = {
            "error": message,
            "outcome": _outcome(exc) if sends else None,
            "exit_code": int(code),
            "mch_billno": bill,
        }
        typer.echo(json.dumps(document, ensure_ascii=False))
    raise typer.Exit(int(code)) from None


def _outcome(exc: BaseException) -> str | None:
    if isinstance(exc, HongbaoError) and not isinstance(exc, ConfigurationError | OperationError):
        return exc.outcome.value
    return None


def _flags_without_type(option: TyperOption, ctx: Any) -> str | None:
    """A flag's `--help` line shows no value type: `--json` takes none, so `<bool>` misleads."""
    return None if option.is_flag else _option_type(option, ctx)


# typer (0.29) labels every option with its type in the rich help, flags with "<bool>"; its
# options are built inside typer, so the one place to change what they show is the class.
_option_type = TyperOption.display_type_rich
TyperOption.display_type_rich = _flags_without_type  # type: ignore[method-assign,assignment]


class FastHelpGroup(TyperGroup):
    """A command group whose `--help`, when not given, is not run through pydantic.

    typer (0.29) converts every option value that is not already a bool with a pydantic
    adapter, and a help flag left out is None: each group above `hongbao campaign create --help`
    would load pydantic only to pass None on. Defaulting the flag to False skips that.
    """

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)
        if option is not None:
            option.default = False
        return option


class HongbaoGroup(FastHelpGroup):
    """The root command group: a usage error exits 1, keeping 2 for configuration errors."""

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().make_context(*args, **kwargs)
        except Exception as exc:
            _usage_exits_1(exc)
            raise

    def invoke(self, *args: Any, **kwargs: Any) -> Any:
        # Subcommands parse their options inside this call: their usage errors pass here.
        try:
            return super().invoke(*args, **kwargs)
        except Exception as exc:
            _usage_exits_1(exc)
            raise


def _usage_exits_1(exc: Exception) -> None:
    # Matched by name: typer raises its vendored click's UsageError (newer releases) or
    # click's own (older ones); both carry the exit code click would use, 2.
    if any(cls.__name__ == "UsageError" for cls in type(exc).__mro__):
        setattr(exc, "exit_code", int(ExitCode.ERROR))  # noqa: B010
