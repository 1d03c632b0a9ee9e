"""dict ↔ `<xml>` bytes for WeChat Pay APIv2, parsed only under defusedxml's guards.

Strings go out in CDATA (a `]]>` inside is split so it can never close the section early),
integers bare. Parsing accepts CDATA or escaped text, an XML declaration, whitespace and a UTF-8
BOM; any encoding expat cannot decode (GBK, Big5, an unknown name) is an `XmlError`, like any
other malformed body; nested containers such as `hblist/hbinfo` always come back as a list of dicts.

>>> loads(dumps({"total_amount": 100, "send_name": "a]]>b"}))
{'total_amount': '100', 'send_name': 'a]]>b'}
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from xml.parsers.expat import ExpatError, ParserCreate, XMLParserType

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

__all__ = ["MAX_BODY_BYTES", "XmlDict", "XmlError", "dumps", "loads"]

MAX_BODY_BYTES = 256 * 1024
"""Bodies larger than this are refused unparsed (a red packet response is well under 4 KiB)."""

XmlDict = dict[str, "str | list[dict[str, str]]"]

_BOM = b"\xef\xbb\xbf"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Characters XML 1.0 cannot carry at all, not even in CDATA (lone surrogates cannot even be
# encoded as UTF-8).
_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")
# Names already checked against _NAME: the same few dozen recur in every request.
_valid_names: set[str] = set()


class XmlError(ValueError):
    """A body that is not a well-formed, safe `<xml>` document, or a value XML cannot carry."""


def _cdata_text(text: str) -> str:
    """`text` made safe inside one CDATA section."""
    if "]]>" in text:
        text = text.replace("]]>", "]]]]><![CDATA[>")
    if "\r" in text:
        # Parsers turn a raw CR (even in CDATA) into LF, so the server would sign other bytes
        # than ours; a character reference outside the CDATA survives as CR.
        text = text.replace("\r", "]]>&#13;<![CDATA[")
    return text


def dumps(params: Mapping[str, object]) -> bytes:
    """Serialise flat `params` (None and "" omitted) as a UTF-8 `<xml>` document."""
    parts = ["<xml>"]
    for name, value in params.items():
        if value is None or value == "":
            continue
        if name not in _valid_names:
            if not _NAME.fullmatch(name):
                raise XmlError(f"{name!r} is not a valid element name")
            _valid_names.add(name)
        if isinstance(value, str):
            if "]]>" in value or "\r" in value:
                value = _cdata_text(value)
            parts.append(f"<{name}><![CDATA[{value}]]></{name}>")
        elif isinstance(value, bool):
            raise XmlError(f"{name}: booleans have no WeChat Pay encoding")
        elif isinstance(value, int):
            parts.append(f"<{name}>{value}</{name}>")
        else:
            raise XmlError(f"{name}: expected str or int, got {type(value).__name__}")
    parts.append("</xml>")
    document = "".join(parts)
    # One search over the whole document is cheaper than one per value; names and markup are
    # plain ASCII, so a hit is always inside a value.
    if _ILLEGAL.search(document):
        for name, value in params.items():
            if isinstance(value, str) and _ILLEGAL.search(value):
                raise XmlError(f"{name} contains a control character that XML cannot carry")
        raise XmlError("the document contains a character that XML cannot carry")
    return document.encode("utf-8")


def loads(body: bytes, *, max_bytes: int = MAX_BODY_BYTES) -> XmlDict:
    """Parse a `<xml>` body into a dict of strings (nested containers as lists of dicts)."""
    if len(body) > max_bytes:
        raise XmlError(f"body of {len(body)} bytes exceeds the {max_bytes}-byte limit")
    if body.startswith(_BOM):
        body = body[len(_BOM) :]
    if not body.strip():
        raise XmlError("body is empty")
    expat = _guarded_parser()
    builder = _DictBuilder()
    expat.StartElementHandler = builder.start
    expat.EndElementHandler = builder.end
    expat.CharacterDataHandler = builder.data
    try:
        expat.Parse(body, True)
    except DefusedXmlException as exc:
        raise XmlError(f"refused unsafe XML: {type(exc).__name__}") from exc
    except ExpatError as exc:
        raise XmlError(f"malformed XML: {exc}") from exc
    except (ValueError, LookupError) as exc:
        # expat refuses multi-byte declared encodings (GBK, Big5, Shift_JIS…) with a bare
        # ValueError and unknown ones with LookupError: to every caller they are bad XML.
        raise XmlError(f"unsupported XML encoding: {exc}") from exc
    if builder.root != "xml":
        raise XmlError(f"root element must be <xml>, not <{builder.root}>")
    return builder.result


# defusedxml's guard handlers hold no state, so one parser lends them to every expat parser.
_GUARDS = DefusedXMLParser(forbid_dtd=True)


def _guarded_parser() -> XMLParserType:
    """A bare expat parser carrying defusedxml's guards: no DTD, no entity declaration, no
    external reference. It is defusedxml's own protection without ElementTree's pure-Python
    tree building, which doubled the cost of parsing a response."""
    expat = ParserCreate()
    expat.StartDoctypeDeclHandler = _GUARDS.defused_start_doctype_decl
    expat.EntityDeclHandler = _GUARDS.defused_entity_decl
    expat.UnparsedEntityDeclHandler = _GUARDS.defused_unparsed_entity_decl
    expat.ExternalEntityRefHandler = _GUARDS.defused_external_entity_ref_handler
    expat.buffer_text = True
    return expat


class _DictBuilder:
    """Expat callbacks that build `loads`' dict: depth 2 are fields or containers, depth 4 the
    fields of a container's records; a value is the text before its first child element."""

    __slots__ = ("capture", "depth", "record", "records", "result", "root", "text")

    def __init__(self) -> None:
        self.result: XmlDict = {}
        self.root = ""
        self.depth = 0
        self.text: list[str] = []
        self.capture = False
        self.records: list[dict[str, str]] | None = None
        self.record: dict[str, str] = {}

    def start(self, tag: str, _attrs: object) -> None:
        self.depth += 1
        depth = self.depth
        if depth == 2 or depth == 4:
            self.text.clear()
            self.capture = True
            if depth == 2:
                self.records = None
        else:
            self.capture = False
            if depth == 1:
                self.root = tag
            elif depth == 3:
                if self.records is None:
                    self.records = []
                self.record = {}
                self.records.append(self.record)

    def end(self, tag: str) -> None:
        depth = self.depth
        if depth == 2:
            records = self.records
            self.result[tag] = records if records is not None else "".join(self.text)
        elif depth == 4:
            self.record[tag] = "".join(self.text)
        self.capture = False
        self.depth = depth - 1

    def data(self, text: str) -> None:
        if self.capture:
            self.text.append(text)
