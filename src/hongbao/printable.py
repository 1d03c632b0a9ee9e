"""Text from outside shown, not obeyed: control characters escaped for logs and terminals.

A newline in a notification's `mch_id` would forge a log line; ESC, BEL or NUL in a line of a
campaign file would reach the terminal (an `ESC]0;…` sequence retitles it). `printable` writes
each such character as its Python escape (`\\n`, `\\x1b`, `\\u202e`): C0 and C1 controls, DEL,
the Unicode line and paragraph separators and the bidirectional overrides.

>>> printable("1900000109\\nINFO forged")
'1900000109\\\\nINFO forged'
"""

from __future__ import annotations

import re

__all__ = ["printable"]

_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escaped(match: re.Match[str]) -> str:
    return match.group().encode("unicode_escape").decode("ascii")


def printable(value: object) -> str:
    """`str(value)` with every control character written as its escape (pure, no I/O)."""
    text = str(value)
    if _UNSAFE.search(text) is None:
        return text
    return _UNSAFE.sub(_escaped, text)
