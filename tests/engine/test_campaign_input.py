"""Reading a campaign input file: good lines, bad lines with reasons, and the file's digest."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hongbao.engine.campaign_input import (
    MAX_LINE_BYTES,
    BadLine,
    CampaignFile,
    Entry,
    parse_lines,
)
from hongbao.errors import ConfigurationError
from hongbao.money import format_yuan

OPENID = "oxTWIuGaIt6gTKsQRLau2M0yL16E"


def _parse(*lines: bytes) -> list[Entry | BadLine]:
    return list(parse_lines(lines))


def _bad(items: list[Entry | BadLine]) -> dict[int, str]:
    return {item.line_no: item.reason for item in items if isinstance(item, BadLine)}


def test_one_openid_per_line_skipping_blanks_and_comments() -> None:
    items = _parse(b"# spring campaign\n", b"oA\n", b"\n", b"   \n", b"  oB  \r\n", b"#oC\n")
    assert items == [Entry(2, "oA", None), Entry(5, "oB", None)]


def test_csv_with_a_header_and_amounts_in_yuan() -> None:
    items = _parse(b"openid,amount", b"oA,1.50", b"oB,2", b"oC,", b'"oD","0.30"')
    assert items == [
        Entry(2, "oA", 150),
        Entry(3, "oB", 200),
        Entry(4, "oC", None),
        Entry(5, "oD", 30),
    ]


def test_a_header_is_only_recognised_on_the_first_line() -> None:
    assert _parse(b"OpenID") == []
    assert _parse(b"oA", b"openid") == [Entry(1, "oA", None), Entry(2, "openid", None)]


def test_a_utf8_bom_and_crlf_endings_are_tolerated() -> None:
    assert _parse(b"\xef\xbb\xbfoA\r\n", b"oB\r\n") == [Entry(1, "oA", None), Entry(2, "oB", None)]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"o" * 33, "malformed openid"),
        (b"oA B", "malformed openid"),
        (b"o\xe7\xba\xa2\xe5\x8c\x85", "malformed openid"),  # 红包: UTF-8, but not an openid
        (b",1.00", "malformed openid: empty"),
        (b"oA,1.005", "not a valid yuan amount"),
        (b"oA,-1", "not a valid yuan amount"),
        (b"oA,1e3", "not a valid yuan amount"),
        (b"oA,0.00", "more than 0"),
        (b"oA,1.00,extra", "3 fields"),
        (b"oA\xff\xfe", "not valid UTF-8 (byte 0xff at column 3)"),
        (b"o" * (MAX_LINE_BYTES + 1), "longer than"),
    ],
)
def test_a_bad_line_names_its_number_and_reason_and_reading_goes_on(
    line: bytes, reason: str
) -> None:
    items = _parse(b"oFirst", line, b"oLast,1")
    assert _bad(items) == {2: _bad(items)[2]}
    assert reason in _bad(items)[2]
    assert [i for i in items if isinstance(i, Entry)] == [
        Entry(1, "oFirst", None),
        Entry(3, "oLast", 100),
    ]


def test_an_openid_counts_once() -> None:
    items = _parse(OPENID.encode(), b"oB", f"{OPENID},5".encode())
    assert items[:2] == [Entry(1, OPENID, None), Entry(2, "oB", None)]
    assert "duplicate" in _bad(items)[3]


@given(
    st.lists(
        st.tuples(
            st.from_regex(r"[A-Za-z0-9_-]{1,32}", fullmatch=True),
            st.none() | st.integers(1, 499_900),
            st.sampled_from([None, b"", b"# note", b"   "]),
        ),
        max_size=40,
        unique_by=lambda row: row[0],
    )
)
def test_every_well_formed_row_comes_back_on_its_line(
    rows: list[tuple[str, int | None, bytes | None]],
) -> None:
    lines: list[bytes] = []
    expected = []
    for openid, amount, filler in rows:
        if not lines and amount is None and openid.lower() == "openid":
            continue  # a first line "openid" is the CSV header
        row = openid if amount is None else f"{openid},{format_yuan(amount)}"
        lines.append(row.encode() + b"\n")
        expected.append(Entry(len(lines), openid, amount))
        if filler is not None:
            lines.append(filler + b"\n")
    assert list(parse_lines(lines)) == expected


@given(st.lists(st.binary(max_size=60), max_size=30))
def test_any_bytes_give_one_verdict_per_content_line_and_never_raise(lines: list[bytes]) -> None:
    clean = [line.replace(b"\n", b"").replace(b"\r", b"") for line in lines]
    items = list(parse_lines(clean))
    line_numbers = [item.line_no for item in items]
    assert line_numbers == sorted(set(line_numbers))
    assert all(1 <= n <= len(clean) for n in line_numbers)


def test_a_file_is_read_with_its_digest_and_counts(tmp_path: Path) -> None:
    path = tmp_path / "users.csv"
    content = b"openid,amount\noA,1.00\n" + b"x" * 5000 + b"\noB\noA\n"
    path.write_bytes(content)
    source = CampaignFile(path)
    items = list(source)
    assert [i for i in items if isinstance(i, Entry)] == [Entry(2, "oA", 100), Entry(4, "oB", None)]
    assert sorted(_bad(items)) == [3, 5]
    assert "longer than" in _bad(items)[3]
    assert (source.lines, source.good, source.bad) == (5, 2, 2)
    assert source.digest == hashlib.sha256(content).hexdigest()


def test_a_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        list(CampaignFile(tmp_path / "missing.txt"))
    with pytest.raises(ConfigurationError, match="directory"):
        list(CampaignFile(tmp_path))
