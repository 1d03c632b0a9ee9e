"""`AnswerReader`: every answer the asyncio transport accepts, in any split, and what it refuses."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hongbao.wire.http11 import MAX_HEAD_BYTES, Answer, AnswerReader, ProtocolViolation
from hongbao.wire.limits import TooLarge

XML = b"<xml><return_code><![CDATA[SUCCESS]]></return_code></xml>"
LENGTH = b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: %d\r\n\r\n%s" % (
    len(XML),
    XML,
)
CHUNKED_PARTS = (b"<xml>", b"<return_code>SUCCESS</ret", b"urn_code></xml>")
CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    + b"%x\r\n%s\r\n" % (len(CHUNKED_PARTS[0]), CHUNKED_PARTS[0])
    + b"%X;name=value\r\n%s\r\n" % (len(CHUNKED_PARTS[1]), CHUNKED_PARTS[1])
    + b"%x\r\n%s\r\n" % (len(CHUNKED_PARTS[2]), CHUNKED_PARTS[2])
    + b"0\r\nX-Trailer: yes\r\n\r\n"
)
CHUNKED_BODY = b"".join(CHUNKED_PARTS)


def _read(data: bytes, limit: int = 4096, pieces: list[int] | None = None) -> Answer | None:
    reader = AnswerReader(limit)
    cuts = sorted({0, len(data), *(p % (len(data) + 1) for p in pieces or [])})
    answer = None
    for start, end in itertools.pairwise(cuts):
        assert answer is None, "bytes after the answer was complete"
        answer = reader.feed(data[start:end])
    return answer


@pytest.mark.parametrize(
    ("data", "status", "body"),
    [(LENGTH, 200, XML), (CHUNKED, 200, CHUNKED_BODY)],
    ids=["content-length", "chunked"],
)
def test_a_framed_answer_in_one_piece(data: bytes, status: int, body: bytes) -> None:
    assert _read(data) == Answer(status, body, reusable=True)


@given(st.lists(st.integers(min_value=0, max_value=400), max_size=12))
def test_any_split_of_the_bytes_reads_the_same_answer(cuts: list[int]) -> None:
    assert _read(LENGTH, pieces=cuts) == Answer(200, XML, reusable=True)
    assert _read(CHUNKED, pieces=cuts) == Answer(200, CHUNKED_BODY, reusable=True)


def test_an_incomplete_answer_is_not_an_answer_until_its_last_byte() -> None:
    reader = AnswerReader(4096)
    assert reader.feed(LENGTH[:-1]) is None
    assert reader.feed(LENGTH[-1:]) == Answer(200, XML, reusable=True)


def test_interim_answers_are_skipped() -> None:
    data = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 102 Processing\r\nA: b\r\n\r\n" + LENGTH
    assert _read(data) == Answer(200, XML, reusable=True)


@pytest.mark.parametrize(
    ("head", "reusable"),
    [
        (b"HTTP/1.1 200 OK\r\nConnection: close", False),
        (b"HTTP/1.1 200 OK\r\nConnection: Keep-Alive, Close", False),
        (b"HTTP/1.1 200 OK\r\nConnection: keep-alive", True),
        (b"HTTP/1.0 200 OK", False),
        (b"HTTP/1.1 200", True),  # the reason phrase is optional
    ],
)
def test_the_connection_is_reused_only_when_the_server_keeps_it(
    head: bytes, reusable: bool
) -> None:
    data = head + b"\r\nContent-Length: %d\r\n\r\n%s" % (len(XML), XML)
    assert _read(data) == Answer(200, XML, reusable=reusable)


def test_bytes_after_the_answer_make_the_connection_unusable() -> None:
    assert _read(LENGTH + b"HTTP/1.1 200 OK\r\n") == Answer(200, XML, reusable=False)


def test_an_answer_without_length_ends_with_the_connection() -> None:
    reader = AnswerReader(4096)
    assert reader.feed(b"HTTP/1.1 500 Internal Server Error\r\n\r\npartial ") is None
    assert reader.feed(b"text") is None
    assert reader.end() == Answer(500, b"partial text", reusable=False)


@pytest.mark.parametrize("status", [204, 304])
def test_answers_that_have_no_body_are_complete_after_the_head(status: int) -> None:
    assert _read(b"HTTP/1.1 %d X\r\n\r\n" % status) == Answer(status, b"", reusable=True)


@pytest.mark.parametrize(
    "data",
    [LENGTH[: len(LENGTH) // 2], LENGTH[:10], CHUNKED[:-5], b""],
    ids=["half-a-body", "half-a-head", "unfinished-chunks", "nothing"],
)
def test_a_connection_ending_before_a_framed_answer_is_complete_is_refused(data: bytes) -> None:
    reader = AnswerReader(4096)
    assert reader.feed(data) is None
    with pytest.raises(ProtocolViolation, match="before the answer was complete"):
        reader.end()


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"SSH-2.0-OpenSSH\r\n\r\n", "status line"),
        (b"HTTP/2 200\r\n\r\n", "status line"),
        (b"HTTP/1.1 2000 OK\r\n\r\n", "status line"),
        (b"HTTP/1.1 20x OK\r\n\r\n", "status line"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed header"),
        (b"HTTP/1.1 200 OK\r\nA: b\r\n folded\r\n\r\n", "malformed header"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "Transfer-Encoding"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY", "CRLF"),
        (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "switched protocols"),
        (b"HTTP/1.1 200 OK\r\nA: " + b"a" * MAX_HEAD_BYTES, "head larger"),
    ],
)
def test_what_is_not_plain_http11_is_refused_by_name(data: bytes, words: str) -> None:
    with pytest.raises(ProtocolViolation, match=words):
        AnswerReader(4096).feed(data)


def test_a_declared_length_over_the_limit_is_refused_before_reading() -> None:
    with pytest.raises(TooLarge):
        AnswerReader(100).feed(b"HTTP/1.1 200 OK\r\nContent-Length: 101\r\n\r\n")


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n65\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        + b"32\r\n" + b"a" * 50 + b"\r\n" + b"33\r\n",
        b"HTTP/1.1 200 OK\r\n\r\n" + b"a" * 101,
    ],
    ids=["one-chunk", "second-chunk", "until-eof"],
)  # fmt: skip
def test_a_body_growing_over_the_limit_is_refused_as_it_comes(data: bytes) -> None:
    with pytest.raises(TooLarge):
        AnswerReader(100).feed(data)


def test_a_body_of_exactly_the_limit_is_read() -> None:
    body = b"a" * 100
    data = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + body
    assert AnswerReader(100).feed(data) == Answer(200, body, reusable=True)
