"""The `<xml>` codec: CDATA safety, the shapes WeChat and the Java SDK send, and hostile input."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hongbao.wire.xmlcodec import MAX_BODY_BYTES, XmlError, dumps, loads
from tests.spec_samples import GETHBINFO_RECEIVED

XML_TEXT = st.text(
    st.characters(
        exclude_categories=["Cs"],
        exclude_characters="\x00\x01\x02\x03\x04\x05\x06\x07\x08\x0b\x0c\x0e\x0f\x10\x11\x12"
        "\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f\ufffe\uffff",
    )
)


@pytest.mark.parametrize(
    "value",
    ["]]>", "a]]>", "]]>b", "a]]>b", "]]>]]>", "]]]]>>", "]]", "]>", "a]]]>b", "<![CDATA[x]]>"],
)
def test_cdata_terminator_round_trips_in_any_position(value: str) -> None:
    body = dumps({"remark": value, "after": "intact"})

    assert loads(body) == {"remark": value, "after": "intact"}


def test_strings_go_in_cdata_and_ints_bare() -> None:
    body = dumps({"send_name": "天虹&<百货>", "total_amount": 1000, "total_num": 0})

    assert (
        body
        == (
            "<xml><send_name><![CDATA[天虹&<百货>]]></send_name>"
            "<total_amount>1000</total_amount><total_num>0</total_num></xml>"
        ).encode()
    )


def test_none_and_empty_values_are_omitted() -> None:
    assert dumps({"a": None, "b": "", "c": "x"}) == b"<xml><c><![CDATA[x]]></c></xml>"


def test_carriage_returns_survive_the_round_trip() -> None:
    # A parser turns a raw CR into LF; the signature was computed over the CR.
    assert loads(dumps({"wishing": "a\rb\r\nc"})) == {"wishing": "a\rb\r\nc"}


@pytest.mark.parametrize("value", ["\x00", "a\x01b", "\x1f", "\x0b", "\ufffe", "\ud800"])
def test_characters_xml_cannot_carry_are_refused(value: str) -> None:
    with pytest.raises(XmlError, match="remark"):
        dumps({"remark": value})


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"1st": "x"}, "valid element name"),
        ({"a b": "x"}, "valid element name"),
        ({"<x>": "x"}, "valid element name"),
        ({"flag": True}, "booleans"),
        ({"amount": 1.5}, "float"),
        ({"items": ["a"]}, "list"),
    ],
)
def test_what_has_no_encoding_is_refused(params: dict[str, object], message: str) -> None:
    with pytest.raises(XmlError, match=message):
        dumps(params)


def test_live_gethbinfo_with_one_receipt_gives_a_list() -> None:
    parsed = loads(GETHBINFO_RECEIVED)

    assert parsed["status"] == "RECEIVED"
    assert parsed["total_amount"] == "100"
    assert parsed["hblist"] == [
        {
            "openid": "o3yHF0uHuckI3yE6lwWiFQBQdVDI",
            "amount": "100",
            "rcv_time": "2018-01-23 13:45:31",
        }
    ]


def test_several_receipts_keep_their_order() -> None:
    body = (
        b"<xml><hb_type>GROUP</hb_type><hblist>"
        b"<hbinfo><openid>a</openid><amount>1</amount></hbinfo>"
        b"<hbinfo><openid>b</openid><amount>2</amount><status>RECEIVED</status></hbinfo>"
        b"</hblist></xml>"
    )

    assert loads(body) == {
        "hb_type": "GROUP",
        "hblist": [
            {"openid": "a", "amount": "1"},
            {"openid": "b", "amount": "2", "status": "RECEIVED"},
        ],
    }


def test_java_sdk_style_declaration_indentation_and_escaped_text() -> None:
    body = (
        b'<?xml version="1.0" encoding="UTF-8" standalone="no"?>\n'
        b"<xml>\n"
        b"    <send_name>Tom &amp; Jerry &lt;shop&gt; &#22825;</send_name>\n"
        b"    <total_amount>100</total_amount>\n"
        b"    <empty></empty>\n"
        b"    <self_closed/>\n"
        b"</xml>\n"
    )

    assert loads(body) == {
        "send_name": "Tom & Jerry <shop> 天",
        "total_amount": "100",
        "empty": "",
        "self_closed": "",
    }


def test_utf8_bom_is_accepted() -> None:
    assert loads(b"\xef\xbb\xbf" + dumps({"a": "天"})) == {"a": "天"}


def test_whitespace_inside_values_is_kept() -> None:
    assert loads(b"<xml><a><![CDATA[ x \n]]></a><b> y </b></xml>") == {"a": " x \n", "b": " y "}


def test_unknown_fields_and_attributes_are_tolerated() -> None:
    assert loads(b'<xml><new_field lang="zh">v</new_field></xml>') == {"new_field": "v"}


@pytest.mark.parametrize(
    "body",
    [b"<root><a>1</a></root>", b"<XML><a>1</a></XML>", b"<hblist><hbinfo/></hblist>"],
)
def test_root_other_than_xml_is_refused(body: bytes) -> None:
    with pytest.raises(XmlError, match="root element must be <xml>"):
        loads(body)


@pytest.mark.parametrize(
    "body",
    [
        b"<xml><a>1</a>",
        b"<xml><a>1</b></xml>",
        b"<xml>1</xml><xml>2</xml>",
        b"not xml",
        b"<xml><a>&nbsp;</a></xml>",
        "<xml><a>天</a></xml>".encode("gbk"),
        b"<xml><a>1</a></xml>\x00",
    ],
)
def test_malformed_bodies_are_refused(body: bytes) -> None:
    with pytest.raises(XmlError):
        loads(body)


@pytest.mark.parametrize(
    "encoding", ["GBK", "GB2312", "Big5", "Shift_JIS", "EUC-KR", "UTF-32", "x-no-such-encoding"]
)
def test_an_encoding_expat_cannot_decode_is_malformed_xml(encoding: str) -> None:
    # expat raises a bare ValueError (multi-byte) or LookupError (unknown name) for these: every
    # caller catches XmlError only, so anything else escapes as a crash.
    body = f'<?xml version="1.0" encoding="{encoding}"?><xml><a>SUCCESS</a></xml>'.encode()
    with pytest.raises(XmlError, match="encoding"):
        loads(body)


@pytest.mark.parametrize("body", [b"", b"   \r\n\t", b"\xef\xbb\xbf", b"\xef\xbb\xbf \n"])
def test_empty_bodies_are_refused(body: bytes) -> None:
    with pytest.raises(XmlError, match="empty"):
        loads(body)


def test_oversize_body_is_refused_before_parsing() -> None:
    # Not even well-formed: the size check must answer first.
    with pytest.raises(XmlError, match="limit"):
        loads(b"<" * (MAX_BODY_BYTES + 1))
    with pytest.raises(XmlError, match="limit"):
        loads(dumps({"a": "x" * 100}), max_bytes=64)


def test_body_at_the_limit_is_parsed() -> None:
    body = dumps({"a": "x" * 1000})

    assert loads(body, max_bytes=len(body)) == {"a": "x" * 1000}


@pytest.mark.parametrize(
    "body",
    [
        # XXE: an external entity reading a local file.
        b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
        b"<xml><a>&xxe;</a></xml>",
        # External DTD.
        b'<!DOCTYPE xml SYSTEM "http://127.0.0.1:9/evil.dtd"><xml><a>1</a></xml>',
        # Billion laughs.
        b'<!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
        b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;">]>'
        b"<xml><a>&d;</a></xml>",
        # Any DTD at all, even a harmless one.
        b"<!DOCTYPE xml><xml><a>1</a></xml>",
        # Parameter entities.
        b'<!DOCTYPE xml [<!ENTITY % p SYSTEM "http://127.0.0.1:9/p">%p;]><xml/>',
    ],
    ids=["xxe", "external-dtd", "billion-laughs", "dtd", "parameter-entity"],
)
def test_dtds_and_entities_are_refused(body: bytes) -> None:
    with pytest.raises(XmlError):
        loads(body)


@given(
    st.dictionaries(
        st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,15}", fullmatch=True).filter(
            lambda name: name != "hblist"
        ),
        XML_TEXT.filter(bool),
        max_size=8,
    )
)
def test_property_any_text_round_trips(params: dict[str, str]) -> None:
    assert loads(dumps(params)) == params


@given(st.integers(min_value=-(10**15), max_value=10**15))
def test_property_ints_round_trip_as_their_decimal_string(value: int) -> None:
    assert loads(dumps({"total_amount": value})) == {"total_amount": str(value)}
