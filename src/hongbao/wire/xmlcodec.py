"""dict ↔ `<xml>` bytes for WeChat Pay APIv2, parsed only with defusedxml.

Strings go out in CDATA (a `]]>` inside is split so it can never close the section early),
integers bare. Parsing accepts CDATA or escaped text, an XML declaration, whitespace and a UTF-8
BOM; nested containers such as `hblist/hbinfo` always come back as a list of dicts.

>>> loads(dumps({"total_amount": 100, "send_name": "a]]>b"}))
{'total_amount': '100', 'send_name': 'a]]>b'}
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as safe_et
from defusedxml import DefusedXmlException

__all__ = ["MAX_BODY_BYTES", "XmlDict", "XmlError", "dumps", "loads"]

MAX_BODY_BYTES = 256 * 1024
"""Bodies larger than this are refused unparsed (a red packet response is well under 4 KiB)."""

XmlDict = dict[str, "str | list[dict[str, str]]"]

_BOM = b"\xef\xbb\xbf"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Characters XML 1.0 cannot carry at all, not even in CDATA.
_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


class XmlError(ValueError):
    """A body that is not a well-formed, safe `<xml>` document, or a value XML cannot carry."""


def _cdata(text: str) -> str:
    return "<![CDATA[" + text.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def dumps(params: Mapping[str, object]) -> bytes:
    """Serialise flat `params` (None and "" omitted) as a UTF-8 `<xml>` document."""
    parts = ["<xml>"]
    for name, value in params.items():
        if value is None or value == "":
            continue
        if not _NAME.fullmatch(name):
            raise XmlError(f"{name!r} is not a valid element name")
        if isinstance(value, bool):
            raise XmlError(f"{name}: booleans have no WeChat Pay encoding")
        if isinstance(value, int):
            parts.append(f"<{name}>{value}</{name}>")
            continue
        if not isinstance(value, str):
            raise XmlError(f"{name}: expected str or int, got {type(value).__name__}")
        if _ILLEGAL.search(value):
            raise XmlError(f"{name} contains a control character that XML cannot carry")
        parts.append(f"<{name}>{_cdata(value)}</{name}>")
    parts.append("</xml>")
    return "".join(parts).encode("utf-8")


def _records(container: Element) -> list[dict[str, str]]:
    return [{field.tag: field.text or "" for field in item} for item in container]


def loads(body: bytes, *, max_bytes: int = MAX_BODY_BYTES) -> XmlDict:
    """Parse a `<xml>` body into a dict of strings (nested containers as lists of dicts)."""
    if len(body) > max_bytes:
        raise XmlError(f"body of {len(body)} bytes exceeds the {max_bytes}-byte limit")
    if body.startswith(_BOM):
        body = body[len(_BOM) :]
    if not body.strip():
        raise XmlError("body is empty")
    try:
        root = safe_et.fromstring(body, forbid_dtd=True)
    except DefusedXmlException as exc:
        raise XmlError(f"refused unsafe XML: {type(exc).__name__}") from exc
    except ParseError as exc:
        raise XmlError(f"malformed XML: {exc}") from exc
    if root.tag != "xml":
        raise XmlError(f"root element must be <xml>, not <{root.tag}>")
    result: XmlDict = {}
    for child in root:
        if len(child):
            result[child.tag] = _records(child)
        else:
            result[child.tag] = child.text or ""
    return result
