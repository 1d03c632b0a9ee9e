"""Malformed input of every kind gets the spec's error, never a 500 or a stack trace."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from starlette.testclient import TestClient

from hongbao.sim.app import create_app
from hongbao.wire.sign import sign
from tests.sim.simkit import Shop, expect, parse, signed_body, with_tls

XML_ERROR = "输入xml参数格式错误"

BAD_BODIES = {
    "empty": b"",
    "whitespace": b"  \n ",
    "not xml": b"mch_id=1900000109&sign=x",
    "json": b'{"mch_id": "1900000109"}',
    "unclosed": b"<xml><mch_id>1900000109</mch_id>",
    "wrong root": b"<request><mch_id>1900000109</mch_id></request>",
    "nested element": b"<xml><mch_id><a>1</a></mch_id></xml>",
    "entity expansion": (
        b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]><xml><mch_id>&b;</mch_id></xml>'
    ),
    "external entity": (
        b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b"<xml><mch_id>&x;</mch_id></xml>"
    ),
    "invalid utf-8": b"<xml><send_name>\xff\xfe</send_name></xml>",
    "gbk declared": b'<?xml version="1.0" encoding="GBK"?><xml><mch_id>1900000109</mch_id></xml>',
    "big5 declared": b'<?xml version="1.0" encoding="Big5"?><xml><mch_id>1</mch_id></xml>',
    "unknown encoding": b'<?xml version="1.0" encoding="x-nope"?><xml><mch_id>1</mch_id></xml>',
    "huge": b"<xml><remark>" + b"a" * 300_000 + b"</remark></xml>",
}


@pytest.mark.parametrize("name", sorted(BAD_BODIES))
def test_bad_bodies_in_process_give_xml_error(shop: Shop, name: str) -> None:
    answer = parse(shop.post("sendredpack", BAD_BODIES[name]))
    expect(answer, "XML_ERROR", XML_ERROR, return_code="FAIL")


@pytest.fixture
def client(shop: Shop) -> Iterator[TestClient]:
    app = with_tls(create_app(shop.sim), shop.creds.cert_pem)
    with TestClient(app, raise_server_exceptions=True) as test_client:
        yield test_client


@pytest.mark.parametrize("name", sorted(BAD_BODIES))
@pytest.mark.parametrize("api", ["sendredpack", "gethbinfo"])
def test_bad_bodies_over_http_give_xml_error(client: TestClient, name: str, api: str) -> None:
    response = client.post(f"/mmpaymkttransfers/{api}", content=BAD_BODIES[name])
    assert response.status_code == 200
    assert "<err_code><![CDATA[XML_ERROR]]></err_code>" in response.text
    assert "Traceback" not in response.text


def test_java_sdk_style_escaped_text_with_declaration_is_accepted(shop: Shop) -> None:
    params = shop.send_params(send_name="A&B <店>")
    lines = ['<?xml version="1.0" encoding="UTF-8" standalone="no"?>', "<xml>"]
    for name, value in {**params, "sign": sign(params, shop.creds.api_key)}.items():
        escaped = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        lines.append(f"    <{name}>{escaped}</{name}>")
    lines.append("</xml>\n")
    answer = parse(shop.post("sendredpack", "\n".join(lines).encode()))
    assert answer["result_code"] == "SUCCESS", answer


def test_a_utf8_bom_is_accepted(shop: Shop) -> None:
    body = b"\xef\xbb\xbf" + signed_body(shop.send_params(), shop.creds.api_key)
    assert parse(shop.post("sendredpack", body))["result_code"] == "SUCCESS"


def test_wrong_types_are_param_errors(shop: Shop) -> None:
    expect(shop.send(total_amount="abc"), "PARAM_ERROR", "红包金额参数错误")
    expect(shop.send(total_num="1.0"), "PARAM_ERROR", "参数错误:total_num必须等于1")


def test_unknown_merchant_is_a_param_error(shop: Shop) -> None:
    answer = shop.call("sendredpack", shop.send_params(mch_id="1234567890"))
    expect(answer, "PARAM_ERROR", "找不到对应的商户号")


def test_unknown_api_path_is_a_404(shop: Shop, client: TestClient) -> None:
    assert shop.post("refund", b"<xml/>").status == 404
    assert client.post("/mmpaymkttransfers/refund", content=b"<xml/>").status_code == 404


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        (b"{not json", "request body is not valid JSON"),
        (b"[1, 2]", "request body must be a JSON object"),
        (b"\xff\xfe", "request body is not valid JSON"),
        (b'{"balance_fen": "lots"}', "balance_fen must be an integer"),
        (b'{"balance_fen": true}', "balance_fen must be an integer"),
        (b'{"balance_fen": -1}', "balance_fen must not be negative"),
        (b'{"balance": 1}', "unknown field(s) ['balance']"),
        (b'{"ip_whitelist": ["nope"]}', "is not an IP address"),
        (b'{"scenes": {"PRODUCT_9": [100, 200]}}', "is not one of PRODUCT_1..PRODUCT_8"),
        (b'{"scenes": {"PRODUCT_1": [10, 200]}}', "range must satisfy"),
        (b'{"scenes": {"PRODUCT_1": 5}}', "must be [min_fen, max_fen]"),
    ],
)
def test_control_api_bad_input_is_a_400_with_a_clear_message(
    client: TestClient, body: bytes, complaint: str
) -> None:
    response = client.post("/__sim/merchants", content=body)
    assert response.status_code == 400
    assert complaint in response.json()["error"]


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("post", "/__sim/users", b'{"count": 1}'),
        ("post", "/__sim/users", b'{"appid": 7}'),
        ("post", "/__sim/open", b"{}"),
        ("post", "/__sim/clock", b"{}"),
        ("post", "/__sim/clock", b'{"advance_seconds": -5}'),
        ("post", "/__sim/clock", b'{"now": "yesterday"}'),
        ("post", "/__sim/clock", b'{"now": "2020-01-01T00:00:00+08:00"}'),
        ("post", "/__sim/faults", b'{"action": "explode"}'),
        ("post", "/__sim/miniprogram/open", b"nope"),
        ("patch", "/__sim/users/ox", b"{}"),
        ("get", "/__sim/ledger", b""),
    ],
)
def test_other_control_routes_answer_400_on_bad_input(
    client: TestClient, method: str, path: str, body: bytes
) -> None:
    response = client.request(method.upper(), path, content=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]


def test_control_api_unknown_objects_are_404(client: TestClient) -> None:
    assert client.get("/__sim/merchants/1999999999").status_code == 404
    assert client.get("/__sim/ledger", params={"mch_id": "1999999999"}).status_code == 404
    assert client.post("/__sim/users", json={"appid": "wxnope", "count": 1}).status_code == 404
    answer = client.post("/__sim/open", json={"mch_id": "1", "mch_billno": "2"})
    assert answer.status_code == 404
    assert "no record" in answer.json()["error"]
