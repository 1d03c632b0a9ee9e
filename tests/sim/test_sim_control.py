"""The JSON control API under /__sim/: the shapes other tools rely on."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from urllib.parse import quote

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import pkcs12
from starlette.testclient import TestClient

from hongbao.sim.app import Simulator, create_app
from hongbao.wire import xmlcodec
from hongbao.wire.sign import sign
from tests.sim.simkit import with_tls


@pytest.fixture
def client(sim: Simulator) -> Iterator[TestClient]:
    with TestClient(create_app(sim)) as test_client:
        yield test_client


def _merchant(client: TestClient, **settings: object) -> dict[str, str]:
    response = client.post("/__sim/merchants", json=settings)
    assert response.status_code == 201, response.text
    return dict(response.json())


def _send(
    sim: Simulator, merchant: dict[str, str], api: str, params: dict[str, str]
) -> dict[str, str]:
    app = with_tls(create_app(sim), merchant["cert_pem"].encode())
    body = xmlcodec.dumps({**params, "sign": sign(params, merchant["api_key"])})
    with TestClient(app) as client:
        response = client.post(f"/mmpaymkttransfers/{api}", content=body)
    return {k: v for k, v in xmlcodec.loads(response.content).items() if isinstance(v, str)}


def _params(merchant: dict[str, str], openid: str, billno: str, **extra: str) -> dict[str, str]:
    return {
        "nonce_str": "n1",
        "mch_billno": billno,
        "mch_id": merchant["mch_id"],
        "wxappid": merchant["appid"],
        "send_name": "Acme",
        "re_openid": openid,
        "total_amount": "100",
        "total_num": "1",
        "wishing": "Thanks",
        "client_ip": "127.0.0.1",
        "act_name": "Promo",
        "remark": "Enjoy",
        **extra,
    }


def test_create_merchant_answers_the_contract_shape(client: TestClient) -> None:
    merchant = _merchant(client, balance_fen=5000, rate_per_minute=10)
    assert set(merchant) == {
        "mch_id", "api_key", "appid", "mini_appid", "app_appid", "cert_pem", "key_pem", "p12_base64"
    }  # fmt: skip
    assert len(merchant["api_key"]) == 32
    cert = x509.load_pem_x509_certificate(merchant["cert_pem"].encode())
    assert cert.subject.rfc4514_string().startswith(f"CN={merchant['mch_id']}")
    p12 = base64.b64decode(merchant["p12_base64"])
    key, p12_cert, _ = pkcs12.load_key_and_certificates(p12, merchant["mch_id"].encode())
    assert key is not None
    assert p12_cert == cert
    view = client.get(f"/__sim/merchants/{merchant['mch_id']}").json()
    assert (view["balance_fen"], view["rate_per_minute"]) == (5000, 10)
    assert view["appids"] == {
        merchant["appid"]: "MP",
        merchant["mini_appid"]: "MINI",
        merchant["app_appid"]: "APP",
    }
    assert "api_key" not in view


def test_wecom_corp_id_on_request(client: TestClient) -> None:
    merchant = _merchant(client, wecom=True)
    assert merchant["wecom_appid"].startswith("ww")


@pytest.mark.parametrize("mch_id", ["１９００", "١٩٠٠", "²"])
def test_a_chosen_mch_id_must_be_ascii_digits(client: TestClient, mch_id: str) -> None:
    answer = client.post("/__sim/merchants", json={"mch_id": mch_id})
    assert answer.status_code == 400
    assert "digits" in answer.json()["error"]


def test_ids_are_deterministic_with_a_seed() -> None:
    def first_ids() -> tuple[str, str]:
        with TestClient(create_app(Simulator(seed=99))) as client:
            merchant = _merchant(client)
        return merchant["mch_id"], merchant["appid"]

    assert first_ids() == first_ids()


def test_patch_changes_balance_limits_scenes_whitelist_and_switches(client: TestClient) -> None:
    mch_id = _merchant(client)["mch_id"]
    response = client.patch(
        f"/__sim/merchants/{mch_id}",
        json={
            "balance_fen": 42,
            "per_user_count": 3,
            "scenes": {"PRODUCT_2": [30, 499900]},
            "ip_whitelist": ["127.0.0.1"],
            "api_enabled": False,
            "legacy_day_cap": 10000,
        },
    )
    assert response.status_code == 200
    view = response.json()
    assert (view["balance_fen"], view["per_user_count"], view["legacy_day_cap"]) == (42, 3, 10000)
    assert view["scenes"] == {"PRODUCT_2": [30, 499900]}
    assert (view["ip_whitelist"], view["api_enabled"]) == (["127.0.0.1"], False)


def test_users_are_created_and_blocked(sim: Simulator, client: TestClient) -> None:
    merchant = _merchant(client)
    openids = client.post("/__sim/users", json={"appid": merchant["appid"], "count": 2}).json()[
        "openids"
    ]
    assert len(set(openids)) == 2
    blocked = client.patch(f"/__sim/users/{openids[0]}", json={"blocked": True})
    assert blocked.json() == {"openid": openids[0], "blocked": True, "appids": [merchant["appid"]]}
    answer = _send(sim, merchant, "sendredpack", _params(merchant, openids[0], "B1"))
    assert answer["err_code"] == "NO_AUTH"


def test_open_and_ledger(sim: Simulator, client: TestClient) -> None:
    merchant = _merchant(client, balance_fen=1000)
    openid = client.post("/__sim/users", json={"appid": merchant["appid"], "count": 1}).json()[
        "openids"
    ][0]
    sent = _send(sim, merchant, "sendredpack", _params(merchant, openid, "B1"))
    assert sent["result_code"] == "SUCCESS"
    opened = client.post("/__sim/open", json={"mch_id": merchant["mch_id"], "mch_billno": "B1"})
    assert opened.json() == {
        "mch_billno": "B1",
        "status": "RECEIVED",
        "openid": openid,
        "amount": 100,
        "rcv_time": "2024-03-15 10:00:00",
    }
    again = client.post("/__sim/open", json={"mch_id": merchant["mch_id"], "mch_billno": "B1"})
    assert again.status_code == 409
    ledger = client.get("/__sim/ledger", params={"mch_id": merchant["mch_id"]}).json()
    assert ledger == {
        "balance_fen": 900,
        "records": [
            {
                "mch_billno": "B1",
                "api": "sendredpack",
                "re_openid": openid,
                "total_amount": 100,
                "total_num": 1,
                "status": "RECEIVED",
                "detail_id": sent["send_listid"],
                "send_time": "2024-03-15 10:00:00",
            }
        ],
    }


def test_fission_open_claims_one_share_per_call(sim: Simulator, client: TestClient) -> None:
    merchant = _merchant(client)
    users = client.post("/__sim/users", json={"appid": merchant["appid"], "count": 2}).json()[
        "openids"
    ]
    params = _params(
        merchant, users[0], "G1", total_amount="600", total_num="3", amt_type="ALL_RAND"
    )
    assert _send(sim, merchant, "sendgroupredpack", params)["result_code"] == "SUCCESS"
    claims = [
        client.post(
            "/__sim/open", json={"mch_id": merchant["mch_id"], "mch_billno": "G1", **who}
        ).json()
        for who in ({}, {"openid": users[1]}, {})
    ]
    assert [c["openid"] for c in claims[:2]] == users
    assert [c["status"] for c in claims] == ["SENT", "SENT", "RECEIVED"]
    assert sum(c["amount"] for c in claims) == 600


def test_miniprogram_open_checks_pay_sign(sim: Simulator, client: TestClient) -> None:
    merchant = _merchant(client)
    openid = client.post("/__sim/users", json={"appid": merchant["mini_appid"], "count": 1}).json()[
        "openids"
    ][0]
    params = _params(
        merchant, openid, "M1", wxappid=merchant["mini_appid"], notify_way="MINI_PROGRAM_JSAPI"
    )
    del params["client_ip"]
    sent = _send(sim, merchant, "sendminiprogramhb", params)
    fields = {
        "appId": merchant["mini_appid"],
        "timeStamp": "1710468000",
        "nonceStr": "abc",
        "package": quote(sent["package"], safe=""),
    }
    wrong = {**fields, "signType": "MD5", "paySign": sign(fields, "0" * 32)}
    assert client.post("/__sim/miniprogram/open", json=wrong).json() == {
        "retcode": -1,
        "retmsg": "签名失败",
    }
    right = {**fields, "signType": "MD5", "paySign": sign(fields, merchant["api_key"])}
    assert client.post("/__sim/miniprogram/open", json=right).json() == {
        "retcode": 0,
        "retmsg": "ok",
    }


def test_clock_moves_and_runs_due_transitions(sim: Simulator, client: TestClient) -> None:
    merchant = _merchant(client, balance_fen=1000)
    openid = client.post("/__sim/users", json={"appid": merchant["appid"], "count": 1}).json()[
        "openids"
    ][0]
    _send(sim, merchant, "sendredpack", _params(merchant, openid, "B1"))
    moved = client.post("/__sim/clock", json={"advance_seconds": 86400}).json()
    assert moved == {"now": "2024-03-16T10:00:00+08:00", "transitions": 1}
    moved = client.post("/__sim/clock", json={"now": "2024-03-16T11:00:00"}).json()
    assert moved == {"now": "2024-03-16T11:00:00+08:00", "transitions": 1}
    assert (
        client.get("/__sim/ledger", params={"mch_id": merchant["mch_id"]}).json()["balance_fen"]
        == 1000
    )
    assert client.get("/__sim/clock").json()["now"] == "2024-03-16T11:00:00+08:00"


def test_wall_clock_mode_refuses_to_move() -> None:
    from hongbao.clock import SystemClock

    with TestClient(create_app(Simulator(clock=SystemClock()))) as client:
        response = client.post("/__sim/clock", json={"advance_seconds": 1})
    assert response.status_code == 409


def test_faults_are_armed_listed_and_cleared(client: TestClient) -> None:
    armed = client.post(
        "/__sim/faults", json={"endpoint": "*", "action": "pay_then_drop", "count": 2}
    )
    assert armed.status_code == 201
    assert armed.json() == {
        "id": 1,
        "endpoint": "*",
        "action": "pay_then_drop",
        "probability": 1.0,
        "count": 2,
    }
    assert [f["id"] for f in client.get("/__sim/faults").json()["faults"]] == [1]
    assert client.delete("/__sim/faults").json() == {"cleared": 1}
    assert client.get("/__sim/faults").json() == {"faults": []}


def test_reset_forgets_everything_but_the_ca(sim: Simulator, client: TestClient) -> None:
    ca = client.get("/__sim/ca.pem")
    merchant = _merchant(client)
    client.post("/__sim/faults", json={"action": "hang"})
    assert client.post("/__sim/reset").json() == {"ok": True}
    assert client.get(f"/__sim/merchants/{merchant['mch_id']}").status_code == 404
    assert client.get("/__sim/faults").json() == {"faults": []}
    assert client.get("/__sim/ca.pem").content == ca.content == sim.ca.ca_pem
    assert ca.text.startswith("-----BEGIN CERTIFICATE-----")
