"""HTTP/1.1 answers read as their bytes arrive: the pure half of the asyncio transport.

`AnswerReader` is fed the bytes of one answer in whatever pieces the network delivers and
returns the `Answer` once it is complete: its status, its body and whether the connection may
carry another request. It accepts only what a red packet answer needs and refuses the rest with
`ProtocolViolation`, which the transport turns into an unknown outcome (the request had left):

* a status line `HTTP/1.x NNN reason`, header lines `name: value` ending in CRLF, a head of at
  most `MAX_HEAD_BYTES`; 1xx interim answers are skipped;
* a body framed by `Content-Length`, by `Transfer-Encoding: chunked`, or by the end of the
  connection; any other transfer coding is refused rather than guessed at;
* at most `limit` body bytes (`TooLarge`, declared or read), so a flood is never held in memory.

>>> reader = AnswerReader(limit=1024)
>>> reader.feed(b"HTTP/1.1 200 OK\\r\\nContent-Length: 5\\r\\n\\r\\n<xm")
>>> reader.feed(b"l>")
Answer(status=200, body=b'<xml>', reusable=True)
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, auto

from hongbao.wire.limits import TooLarge, check_declared

__all__ = ["MAX_HEAD_BYTES", "Answer", "AnswerReader", "ProtocolViolation"]

MAX_HEAD_BYTES = 64 * 1024
"""The most a status line and headers may take (a red packet answer's are a few hundred bytes)."""

_MAX_CHUNK_LINE = 1024


class ProtocolViolation(Exception):
    """An answer that is not the HTTP/1.1 this reader accepts (after the request left)."""


@dataclass(frozen=True, slots=True)
class Answer:
    """A complete answer."""

    status: int
    body: bytes
    reusable: bool
    """True when the connection may carry the next request (HTTP/1.1, framed, not closed)."""


class _Stage(Enum):
    HEAD = auto()
    LENGTH = auto()
    CHUNK_SIZE = auto()
    CHUNK_DATA = auto()
    TRAILERS = auto()
    UNTIL_EOF = auto()


@dataclass(slots=True)
class _Head:
    status: int
    keep_alive: bool
    length: int | None
    chunked: bool


def _parse_head(head: bytes) -> _Head:
    lines = head.split(b"\r\n")
    version, _, rest = lines[0].partition(b" ")
    code = rest[:3]
    if version not in (b"HTTP/1.1", b"HTTP/1.0") or not (code.isdigit() and len(code) == 3):
        raise ProtocolViolation(f"not an HTTP/1.1 status line: {lines[0][:80]!r}")
    if rest[3:4] not in (b"", b" "):
        raise ProtocolViolation(f"not an HTTP/1.1 status line: {lines[0][:80]!r}")
    lengths: set[bytes] = set()
    codings: list[bytes] = []
    connection: list[bytes] = []
    for line in lines[1:]:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip() or line[:1] in (b" ", b"\t"):
            raise ProtocolViolation(f"malformed header line: {line[:80]!r}")
        name, value = name.lower(), value.strip()
        if name == b"content-length":
            lengths.add(value)
        elif name == b"transfer-encoding":
            codings += [c.strip().lower() for c in value.split(b",") if c.strip()]
        elif name == b"connection":
            connection += [c.strip().lower() for c in value.split(b",")]
    length: int | None = None
    if lengths:
        if len(lengths) > 1 or not all(v.isdigit() for v in lengths):
            raise ProtocolViolation(f"unusable Content-Length: {sorted(lengths)!r}")
        length = int(lengths.pop())
    if codings and codings != [b"chunked"]:
        raise ProtocolViolation(f"unsupported Transfer-Encoding: {b', '.join(codings)!r}")
    keep_alive = version == b"HTTP/1.1" and b"close" not in connection
    return _Head(int(code), keep_alive, length, chunked=bool(codings))


class AnswerReader:
    """Reads one answer of at most `limit` body bytes; `feed` it, then `end` if the peer closes."""

    __slots__ = ("_buffer", "_head", "_left", "_limit", "_parts", "_size", "_stage")

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._buffer = bytearray()
        self._stage = _Stage.HEAD
        self._head: _Head | None = None
        self._parts: list[bytes] = []
        self._size = 0
        self._left = 0

    def feed(self, data: bytes) -> Answer | None:
        """Take the next bytes; the answer once complete, else None. Raises on a bad answer."""
        self._buffer += data
        while True:
            stage = self._stage
            if stage is _Stage.HEAD:
                if not self._read_head():
                    return None
            elif stage is _Stage.LENGTH:
                if not self._take(self._left):
                    return None
                return self._done()
            elif stage is _Stage.CHUNK_SIZE:
                if not self._read_chunk_size():
                    return None
            elif stage is _Stage.CHUNK_DATA:
                if not self._read_chunk_data():
                    return None
            elif stage is _Stage.TRAILERS:
                if not self._read_trailers():
                    return None
                return self._done()
            else:
                self._take(len(self._buffer))
                return None

    def end(self) -> Answer:
        """The peer closed the connection: the answer, if that is how its body ends."""
        if self._stage is _Stage.UNTIL_EOF:
            assert self._head is not None
            return Answer(self._head.status, b"".join(self._parts), reusable=False)
        raise ProtocolViolation("the connection ended before the answer was complete")

    def _read_head(self) -> bool:
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self._buffer) > MAX_HEAD_BYTES:
                raise ProtocolViolation(f"answer head larger than {MAX_HEAD_BYTES} bytes")
            return False
        if end > MAX_HEAD_BYTES:
            raise ProtocolViolation(f"answer head larger than {MAX_HEAD_BYTES} bytes")
        head = _parse_head(bytes(self._buffer[:end]))
        del self._buffer[: end + 4]
        if 100 <= head.status < 200:
            if head.status == 101:
                raise ProtocolViolation("the server switched protocols")
            return True  # an interim answer: the real one follows
        self._head = head
        if head.chunked:
            self._stage = _Stage.CHUNK_SIZE
        elif head.length is not None:
            check_declared(head.length, self._limit)
            self._stage, self._left = _Stage.LENGTH, head.length
        elif head.status in (204, 304):
            self._stage, self._left = _Stage.LENGTH, 0
        else:
            head.keep_alive = False
            self._stage = _Stage.UNTIL_EOF
        return True

    def _take(self, count: int) -> bool:
        """Move up to `count` buffered bytes into the body; True once `count` were there."""
        piece = bytes(self._buffer[:count])
        del self._buffer[:count]
        self._size += len(piece)
        if self._size > self._limit:
            raise TooLarge(self._limit)
        self._parts.append(piece)
        self._left = count - len(piece)
        return self._left == 0

    def _line(self) -> bytes | None:
        end = self._buffer.find(b"\r\n")
        if end < 0:
            if len(self._buffer) > _MAX_CHUNK_LINE:
                raise ProtocolViolation("chunk line too long")
            return None
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 2]
        return line

    def _read_chunk_size(self) -> bool:
        line = self._line()
        if line is None:
            return False
        size = line.partition(b";")[0].strip()
        if not size or len(size) > 16 or size.strip(b"0123456789abcdefABCDEF"):
            raise ProtocolViolation(f"bad chunk size line: {line[:40]!r}")
        self._left = int(size, 16)
        if self._size + self._left > self._limit:
            raise TooLarge(self._limit)
        self._stage = _Stage.CHUNK_DATA if self._left else _Stage.TRAILERS
        return True

    def _read_chunk_data(self) -> bool:
        if self._left and not self._take(self._left):
            return False
        if len(self._buffer) < 2:
            return False
        if self._buffer[:2] != b"\r\n":
            raise ProtocolViolation("chunk not followed by CRLF")
        del self._buffer[:2]
        self._stage = _Stage.CHUNK_SIZE
        return True

    def _read_trailers(self) -> bool:
        while (line := self._line()) is not None:
            if not line:
                return True
        return False

    def _done(self) -> Answer:
        head = self._head
        assert head is not None
        # Bytes after the answer were never asked for: the connection is not trusted again.
        reusable = head.keep_alive and not self._buffer
        return Answer(head.status, b"".join(self._parts), reusable)
