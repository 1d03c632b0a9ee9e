"""The campaign input file: one openid per line, or CSV `openid[,amount]`, read as a stream.

Blank lines and lines starting with `#` are ignored, and so is a first line `openid` or
`openid,amount` (a CSV header). An amount is in yuan with at most two decimals ("1", "1.5",
"1.50"); a line without one takes the campaign template's amount. Every other line is either an
`Entry` or a `BadLine` naming its number and what is wrong, and reading goes on after it:
an openid must be 1 to 32 characters of `[A-Za-z0-9_-]` (spec: String(32); real ones are 28),
an openid may appear once, a line must be UTF-8.

Memory stays flat in the file's length except for the set of openids seen, kept as bytes
(~90 bytes each): a 1,000,000-line file fits well under 200 MB.

>>> [item.line_no for item in parse_lines([b"openid,amount", b"oA1,1.50", b"# note", b"oA1"])]
[2, 4]
"""

from __future__ import annotations

import csv
import hashlib
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from hongbao.errors import ConfigurationError
from hongbao.money import MoneyError, parse_yuan

__all__ = [
    "MAX_LINE_BYTES",
    "OPENID_PATTERN",
    "BadLine",
    "CampaignFile",
    "Entry",
    "open_campaign_file",
    "parse_lines",
]

OPENID_PATTERN = re.compile(r"[A-Za-z0-9_-]{1,32}")
"""What an openid may look like (spec String(32); WeChat's are 28 URL-safe base64 characters)."""

MAX_LINE_BYTES = 1024
"""Longer lines are refused unread: no valid line comes near this."""

_BOM = b"\xef\xbb\xbf"
_SHOWN = 80


@dataclass(frozen=True, slots=True)
class Entry:
    """A good line: who gets a packet, and how much (None: the template's amount)."""

    line_no: int
    openid: str
    amount_fen: int | None


@dataclass(frozen=True, slots=True)
class BadLine:
    """A refused line, its number (1-based) and why."""

    line_no: int
    reason: str
    text: str


def _shown(text: str) -> str:
    return text if len(text) <= _SHOWN else text[: _SHOWN - 1] + "…"


def _fields(text: str) -> list[str]:
    if '"' in text:
        return next(csv.reader([text]))
    return text.split(",")


def _is_header(fields: list[str]) -> bool:
    names = [f.strip().lower() for f in fields]
    return names == ["openid"] or names == ["openid", "amount"]


def parse_lines(lines: Iterable[bytes]) -> Iterator[Entry | BadLine]:
    """Parse raw lines (newlines optional) into entries and bad lines, in file order."""
    seen: set[bytes] = set()
    header_possible = True
    for line_no, raw in enumerate(lines, start=1):
        if line_no == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM) :]
        raw = raw.rstrip(b"\r\n")
        if len(raw) > MAX_LINE_BYTES:
            yield BadLine(line_no, f"line longer than {MAX_LINE_BYTES} bytes", _shown(repr(raw)))
            header_possible = False
            continue
        try:
            text = raw.decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            reason = f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})"
            yield BadLine(line_no, reason, _shown(repr(raw)))
            header_possible = False
            continue
        if not text or text.startswith("#"):
            continue
        fields = _fields(text)
        if header_possible:
            header_possible = False
            if _is_header(fields):
                continue
        result = _entry(line_no, text, fields)
        if isinstance(result, Entry):
            key = result.openid.encode("ascii")
            if key in seen:
                result = BadLine(line_no, "duplicate openid (already on an earlier line)", text)
            else:
                seen.add(key)
        yield result


def _entry(line_no: int, text: str, fields: list[str]) -> Entry | BadLine:
    if len(fields) > 2:
        return BadLine(line_no, f"expected openid[,amount], got {len(fields)} fields", _shown(text))
    openid = fields[0].strip()
    if not OPENID_PATTERN.fullmatch(openid):
        why = "empty" if not openid else "not 1-32 characters of A-Z a-z 0-9 _ -"
        return BadLine(line_no, f"malformed openid: {why}", _shown(text))
    amount_text = fields[1].strip() if len(fields) == 2 else ""
    if not amount_text:
        return Entry(line_no, openid, None)
    try:
        amount = parse_yuan(amount_text)
    except MoneyError as exc:
        return BadLine(line_no, str(exc), _shown(text))
    if amount <= 0:
        return BadLine(line_no, "amount must be more than 0", _shown(text))
    return Entry(line_no, openid, amount)


def open_campaign_file(path: Path) -> BinaryIO:
    """`path` opened for reading bytes; a `ConfigurationError` saying why it cannot be."""
    try:
        return path.open("rb")
    except FileNotFoundError:
        raise ConfigurationError(f"campaign file {str(path)!r} does not exist") from None
    except IsADirectoryError:
        raise ConfigurationError(f"campaign file {str(path)!r} is a directory") from None
    except PermissionError:
        raise ConfigurationError(f"campaign file {str(path)!r} is not readable") from None


class CampaignFile:
    """A campaign input file read as a stream, with its SHA-256 and line counts.

    >>> source = CampaignFile("users.csv")
    >>> for item in source: ...
    >>> source.digest, source.good, source.bad
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.lines = 0
        self.good = 0
        self.bad = 0
        self._sha = hashlib.sha256()

    @property
    def digest(self) -> str:
        """SHA-256 (hex) of the bytes read so far: the whole file once iteration ends."""
        return self._sha.hexdigest()

    def __iter__(self) -> Iterator[Entry | BadLine]:
        with open_campaign_file(self.path) as handle:
            for item in parse_lines(self._physical_lines(handle)):
                if isinstance(item, Entry):
                    self.good += 1
                else:
                    self.bad += 1
                yield item

    def _physical_lines(self, handle: BinaryIO) -> Iterator[bytes]:
        # readline with a limit: a file without newlines must not be read into memory at once.
        while chunk := handle.readline(MAX_LINE_BYTES + 1):
            self._sha.update(chunk)
            self.lines += 1
            if len(chunk) > MAX_LINE_BYTES and not chunk.endswith(b"\n"):
                # The parser refuses the line by its length; its rest is not worth reading.
                self._skip_rest_of_line(handle)
            yield chunk

    def _skip_rest_of_line(self, handle: BinaryIO) -> None:
        while rest := handle.readline(MAX_LINE_BYTES + 1):
            self._sha.update(rest)
            if rest.endswith(b"\n"):
                return
