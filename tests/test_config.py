"""The configuration file: what a valid one builds, and a clear error for every kind of mistake."""

from __future__ import annotations

import re
import textwrap
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from hongbao.engine.config import (
    CONFIG_ENV,
    LEDGER_URL_ENV,
    HongbaoConfig,
    config_path,
    load_config,
    read_secret_file,
    secret_env_name,
)
from hongbao.engine.states import LimitPolicy
from hongbao.errors import ConfigurationError
from hongbao.sim.ca import SimCA
from hongbao.wire.certs import ClientCertificate

MCH_ID = "1900000109"
KEY = "Yp3rT8kLw2Qz7Vn5Hc1Bx9Md4Fs6Ga0J"


@dataclass(frozen=True)
class Files:
    """A folder holding a merchant's key file and certificates, where the config is written."""

    folder: Path
    certificate: ClientCertificate

    def write(self, text: str, name: str = "hongbao.toml") -> Path:
        path = self.folder / name
        path.write_text(textwrap.dedent(text), "utf-8")
        return path

    def load(self, text: str, env: dict[str, str] | None = None) -> HongbaoConfig:
        return load_config(self.write(text), environ=env or {})


@pytest.fixture(scope="module")
def issued() -> tuple[bytes, bytes, bytes]:
    ca = SimCA.create()
    cert_pem, key_pem = ca.issue_client_cert(MCH_ID)
    return cert_pem, key_pem, ca.p12_for(cert_pem, key_pem)


@pytest.fixture
def files(tmp_path: Path, issued: tuple[bytes, bytes, bytes]) -> Files:
    cert_pem, key_pem, p12 = issued
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "apiclient_cert.pem").write_bytes(cert_pem)
    (tmp_path / "certs" / "apiclient_key.pem").write_bytes(key_pem)
    (tmp_path / "certs" / "apiclient_cert.p12").write_bytes(p12)
    (tmp_path / "api_key").write_text(KEY + "\n")
    (tmp_path / "ca.pem").write_bytes(cert_pem)  # any PEM certificate will do as a trust file
    return Files(tmp_path, ClientCertificate.from_pem(cert_pem, key_pem))


PEM_SHOP = """
[merchants.shop]
mch_id = "1900000109"
api_key_file = "api_key"
cert_pem = "certs/apiclient_cert.pem"
key_pem = "certs/apiclient_key.pem"
"""


def test_a_full_section_builds_the_merchant_with_paths_relative_to_the_file(files: Files) -> None:
    config = files.load(
        """
        [ledger]
        url = "sqlite:///data/ledger.db"

        [merchants.shop]
        mch_id = "1900000109"
        api_key_file = "api_key"
        cert_pem = "certs/apiclient_cert.pem"
        key_pem = "certs/apiclient_key.pem"
        appid = "wx2421b1c4370ec43b"
        mini_appid = "wxd27ebc41b85ce36d"
        base_url = "https://127.0.0.1:8443"
        ca_bundle = "ca.pem"
        connect_timeout = 2
        read_timeout = 7.5
        rate_per_minute = 600
        concurrency = 4
        per_user_daily_count = 3
        """
    )
    merchant = config.merchant("shop")
    assert merchant.mch_id == MCH_ID
    assert merchant.api_key.get_secret_value() == KEY  # the file's trailing newline is dropped
    assert merchant.appid == "wx2421b1c4370ec43b"
    assert merchant.mini_appid == "wxd27ebc41b85ce36d"
    assert merchant.base_url == "https://127.0.0.1:8443"
    assert merchant.ca_bundle == files.folder / "ca.pem"
    assert (merchant.timeouts.connect, merchant.timeouts.read) == (2.0, 7.5)
    assert merchant.certificate == files.certificate
    assert config.ledger_url == f"sqlite:///{files.folder / 'data' / 'ledger.db'}"
    section = config.section("shop")
    assert (section.get("rate_per_minute"), section.get("concurrency")) == (600, 4)
    assert section.get("per_user_daily_count") == 3


def test_engine_settings_build_the_merchant_profile(files: Files) -> None:
    config = files.load(
        PEM_SHOP
        + """
        rate_per_minute = 600
        query_rate_per_minute = 300
        concurrency = 4
        per_user_daily_count = 3
        per_user_daily_amount = "50.00"
        merchant_daily_amount = "20000"
        lease_seconds = 90
        limit_policy = "fail"
        """
    )
    profile = config.profile("shop")
    assert profile.name == "shop"
    assert profile.merchant is config.merchant("shop")
    assert (profile.rate_per_minute, profile.query_rate_per_minute) == (600, 300)
    assert profile.concurrency == 4
    assert (profile.per_user_daily_count, profile.per_user_daily_amount_fen) == (3, 5000)
    assert profile.merchant_daily_amount_fen == 2_000_000
    assert profile.lease_seconds == 90.0
    assert profile.limit_policy is LimitPolicy.FAIL


def test_engine_settings_default_to_wechats_limits(files: Files) -> None:
    profile = files.load(PEM_SHOP).profile(None)
    assert (profile.rate_per_minute, profile.concurrency) == (1800, 16)
    assert (profile.per_user_daily_count, profile.per_user_daily_amount_fen) == (10, 100_000)
    assert profile.limit_policy is LimitPolicy.DEFER


def test_the_only_merchant_is_chosen_without_a_name(files: Files) -> None:
    config = files.load(PEM_SHOP)
    assert config.merchant(None).mch_id == MCH_ID


def test_defaults_without_ledger_section(files: Files) -> None:
    config = files.load(PEM_SHOP)
    assert config.ledger_url == f"sqlite:///{files.folder / 'hongbao.db'}"
    merchant = config.merchant("shop")
    assert merchant.base_url == "https://api.mch.weixin.qq.com"
    assert (merchant.timeouts.connect, merchant.timeouts.read) == (5.0, 10.0)


def test_ledger_url_from_the_environment_wins(files: Files) -> None:
    url = "postgresql+psycopg://hongbao@db.internal/hongbao"
    config = files.load(PEM_SHOP + '\n[ledger]\nurl = "sqlite:///x.db"\n', {LEDGER_URL_ENV: url})
    assert config.ledger_url == url


def test_the_dashboard_token_file_is_relative_to_the_configuration(files: Files) -> None:
    assert files.load(PEM_SHOP).dashboard_token_file is None
    config = files.load(PEM_SHOP + '\n[dashboard]\ntoken_file = "secrets/dashboard"\n')
    assert config.dashboard_token_file == files.folder / "secrets" / "dashboard"


def test_p12_opens_with_the_mch_id_as_default_password(files: Files) -> None:
    config = files.load(
        """
        [merchants.shop]
        mch_id = "1900000109"
        api_key_file = "api_key"
        p12 = "certs/apiclient_cert.p12"
        """
    )
    assert config.merchant("shop").certificate == files.certificate


def test_api_key_from_the_environment(files: Files) -> None:
    env = {"HONGBAO_MERCHANTS_SHOP_CN_API_KEY": KEY}
    config = files.load(
        """
        [merchants.shop-cn]
        mch_id = "1900000109"
        p12 = "certs/apiclient_cert.p12"
        """,
        env,
    )
    assert config.merchant("shop-cn").api_key.get_secret_value() == KEY


def test_secret_env_names() -> None:
    assert secret_env_name("shop-cn", "api_key") == "HONGBAO_MERCHANTS_SHOP_CN_API_KEY"
    assert secret_env_name("prod", "p12_password") == "HONGBAO_MERCHANTS_PROD_P12_PASSWORD"


def test_config_path_precedence(tmp_path: Path) -> None:
    explicit = tmp_path / "a.toml"
    assert config_path(explicit, {CONFIG_ENV: "b.toml"}) == explicit
    assert config_path(None, {CONFIG_ENV: "b.toml"}) == Path("b.toml")
    assert config_path(None, {}) == Path("hongbao.toml")


def test_scenes_and_amount_range_become_the_merchants_limits(files: Files) -> None:
    config = files.load(
        PEM_SHOP
        + """
        min_amount = "1.00"
        max_amount = "50"
        scenes = { PRODUCT_1 = ["0.30", "4999.00"] }
        """
    )
    limits = config.merchant("shop").limits
    assert (limits.min_fen, limits.max_fen) == (100, 5000)
    assert dict(limits.scenes) == {"PRODUCT_1": (30, 499900)}


def test_a_broken_section_does_not_block_the_others(files: Files) -> None:
    config = files.load(
        PEM_SHOP
        + """
        [merchants.broken]
        mch_id = "1900000110"
        api_key_file = "missing"
        p12 = "nowhere.p12"
        """
    )
    assert config.merchant("shop").mch_id == MCH_ID
    with pytest.raises(ConfigurationError, match=r"\[merchants\.broken\] api_key_file"):
        config.merchant("broken")


# --- errors: each names the file, the section and the key -----------------------------------

CASES = {
    "missing mch_id": (
        """
        [merchants.shop]
        api_key_file = "api_key"
        p12 = "certs/apiclient_cert.p12"
        """,
        ["[merchants.shop] mch_id", "missing"],
    ),
    "mch_id not a string": (
        PEM_SHOP.replace('"1900000109"', "1900000109"),
        ["[merchants.shop] mch_id", "must be a string", 'mch_id = "1900000109"'],
    ),
    "unknown key": (PEM_SHOP + "rate_per_minut = 10\n", ["[merchants.shop]", "'rate_per_minut'"]),
    "unknown top-level table": ("[ledgr]\nurl = 'x'\n", ["'ledgr'"]),
    "token inline in [dashboard]": (
        PEM_SHOP + '[dashboard]\ntoken = "0123456789abcdef"\n',
        ["[dashboard]", "unknown key 'token'", "token_file"],
    ),
    "api_key and api_key_file": (
        PEM_SHOP + 'api_key = "x"\n',
        ["[merchants.shop]", "both api_key and api_key_file"],
    ),
    "pem and p12": (
        PEM_SHOP + 'p12 = "certs/apiclient_cert.p12"\n',
        ["[merchants.shop]", "not both"],
    ),
    "cert without key": (
        """
        [merchants.shop]
        mch_id = "1900000109"
        api_key_file = "api_key"
        cert_pem = "certs/apiclient_cert.pem"
        """,
        ["[merchants.shop] key_pem", "missing"],
    ),
    "no certificate": (
        '[merchants.shop]\nmch_id = "1900000109"\napi_key_file = "api_key"\n',
        ["[merchants.shop]", "no API certificate"],
    ),
    "rate not a number": (
        PEM_SHOP + 'rate_per_minute = "fast"\n',
        ["[merchants.shop] rate_per_minute", "whole number"],
    ),
    "concurrency zero": (
        PEM_SHOP + "concurrency = 0\n",
        ["[merchants.shop] concurrency", ">= 1"],
    ),
    "negative timeout": (
        PEM_SHOP + "read_timeout = -1\n",
        ["[merchants.shop] read_timeout", "positive"],
    ),
    "amount with three decimals": (
        PEM_SHOP + 'per_user_daily_amount = "1.005"\n',
        ["[merchants.shop] per_user_daily_amount", "'1.005'"],
    ),
    "amount as a float": (
        PEM_SHOP + "per_user_daily_amount = 1000.0\n",
        ["[merchants.shop] per_user_daily_amount", "as a string"],
    ),
    "unknown limit policy": (
        PEM_SHOP + 'limit_policy = "skip"\n',
        ["[merchants.shop] limit_policy", "defer, fail"],
    ),
    "bad name": ('[merchants."my shop"]\nmch_id = "1"\n', ["[merchants.my shop]", "letters"]),
    "invalid TOML": ("[merchants.shop\nmch_id = 1\n", ["is not valid TOML", "line 1"]),
}


@pytest.mark.parametrize(("text", "fragments"), list(CASES.values()), ids=list(CASES))
def test_load_errors_name_file_section_and_key(
    files: Files, text: str, fragments: list[str]
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        files.load(text)
    message = str(caught.value)
    assert str(files.folder / "hongbao.toml") in message
    for fragment in fragments:
        assert fragment in message


BUILD_CASES = {
    "missing certificate file": (
        PEM_SHOP.replace("certs/apiclient_cert.pem", "certs/gone.pem"),
        {},
        ["[merchants.shop] cert_pem", "gone.pem", "does not exist"],
    ),
    "missing key file": (
        PEM_SHOP.replace('"api_key"', '"no_such_key"'),
        {},
        ["[merchants.shop] api_key_file", "no_such_key", "does not exist"],
    ),
    "no api key at all": (
        PEM_SHOP.replace('api_key_file = "api_key"\n', ""),
        {},
        ["[merchants.shop] api_key", "HONGBAO_MERCHANTS_SHOP_API_KEY"],
    ),
    "key in file and environment": (
        PEM_SHOP,
        {"HONGBAO_MERCHANTS_SHOP_API_KEY": KEY},
        ["[merchants.shop] api_key", "given twice"],
    ),
    "bad p12 password": (
        """
        [merchants.shop]
        mch_id = "1900000109"
        api_key_file = "api_key"
        p12 = "certs/apiclient_cert.p12"
        p12_password = "not-it"
        """,
        {},
        ["[merchants.shop] p12", "wrong password"],
    ),
    "missing ca bundle": (
        PEM_SHOP + 'ca_bundle = "nope.pem"\n',
        {},
        ["[merchants.shop] ca_bundle", "nope.pem"],
    ),
    "plain http base_url": (
        PEM_SHOP + 'base_url = "http://example.com"\n',
        {},
        ["[merchants.shop]", "https://"],
    ),
}


@pytest.mark.parametrize(
    ("text", "env", "fragments"), list(BUILD_CASES.values()), ids=list(BUILD_CASES)
)
def test_merchant_errors_name_file_section_and_key(
    files: Files, text: str, env: dict[str, str], fragments: list[str]
) -> None:
    config = files.load(text, env)
    with pytest.raises(ConfigurationError) as caught:
        config.merchant("shop")
    message = str(caught.value)
    assert str(files.folder / "hongbao.toml") in message
    for fragment in fragments:
        assert fragment in message


def test_a_garbage_key_file_is_reported_under_key_pem_not_cert_pem(files: Files) -> None:
    (files.folder / "certs" / "apiclient_key.pem").write_text("not a key\n")
    config = files.load(PEM_SHOP)
    with pytest.raises(ConfigurationError) as caught:
        config.merchant("shop")
    message = str(caught.value)
    assert "[merchants.shop] key_pem:" in message
    assert "cert_pem" not in message


def test_missing_file_says_how_to_name_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="--config FILE or set HONGBAO_CONFIG"):
        load_config(tmp_path / "absent.toml", environ={})


def test_several_merchants_need_a_name(files: Files) -> None:
    config = files.load(PEM_SHOP + PEM_SHOP.replace("shop", "other"))
    with pytest.raises(ConfigurationError, match=r"several merchants \(other, shop\)"):
        config.merchant(None)
    with pytest.raises(ConfigurationError, match=r"no merchant 'nope'.*known: other, shop"):
        config.merchant("nope")


def test_secrets_never_appear_in_errors(files: Files) -> None:
    short_key = "S3cr3tButTooShort"
    (files.folder / "api_key").write_text(short_key)
    inline = "AnotherS3cretValue"
    bad_type = files.write(
        PEM_SHOP.replace('api_key_file = "api_key"', "api_key = 12345678"), "typed.toml"
    )
    messages = []
    with pytest.raises(ConfigurationError) as caught:
        files.load(PEM_SHOP).merchant("shop")
    messages.append(str(caught.value))
    inline_text = PEM_SHOP.replace('api_key_file = "api_key"', f'api_key = "{inline}"')
    inline_config = files.load(inline_text)
    assert inline not in repr(inline_config)
    with pytest.raises(ConfigurationError) as caught:
        inline_config.merchant("shop")
    messages.append(str(caught.value))
    with pytest.raises(ConfigurationError) as caught:
        load_config(bad_type, environ={})
    messages.append(str(caught.value))
    assert "32-character" in messages[0]
    assert "[merchants.shop]" in messages[0]
    for message in messages:
        assert short_key not in message
        assert inline not in message
        assert "12345678" not in message
    (files.folder / "api_key").write_text(KEY)
    config = files.load(PEM_SHOP)
    assert KEY not in repr(config.merchant("shop"))
    assert KEY not in repr(config)


@pytest.fixture
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test sees the once-per-file warnings anew."""
    from hongbao.engine import filemodes

    monkeypatch.setattr(filemodes, "_warned", set())


def _exposure_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "open to other users" in r.getMessage()]


@pytest.mark.usefixtures("fresh_warnings")
def test_a_readable_api_key_file_is_warned_about_once_naming_the_fix(
    files: Files, caplog: pytest.LogCaptureFixture
) -> None:
    key_file = files.folder / "api_key"
    for path in (key_file, files.folder / "certs" / "apiclient_key.pem"):
        path.chmod(0o600)
    key_file.chmod(0o644)
    config = files.load(PEM_SHOP)
    config.merchant("shop")
    config.merchant("shop")
    [warning] = _exposure_warnings(caplog)
    assert "api_key_file" in warning
    assert f"chmod 600 {key_file}" in warning
    assert "0644" in warning
    assert KEY not in caplog.text


@pytest.mark.usefixtures("fresh_warnings")
def test_an_inline_api_key_in_a_world_readable_configuration_is_warned_about(
    files: Files, caplog: pytest.LogCaptureFixture
) -> None:
    (files.folder / "certs" / "apiclient_key.pem").chmod(0o600)
    text = PEM_SHOP.replace('api_key_file = "api_key"', f'api_key = "{KEY}"')
    config = files.load(text)
    (files.folder / "hongbao.toml").chmod(0o666)
    config.merchant("shop")
    [warning] = _exposure_warnings(caplog)
    assert "[merchants.shop] api_key" in warning
    assert str(files.folder / "hongbao.toml") in warning
    assert KEY not in caplog.text


@pytest.mark.usefixtures("fresh_warnings")
def test_secret_files_at_0600_are_not_warned_about(
    files: Files, caplog: pytest.LogCaptureFixture
) -> None:
    for path in (files.folder / "api_key", files.folder / "certs" / "apiclient_key.pem"):
        path.chmod(0o600)
    files.load(PEM_SHOP).merchant("shop")
    assert _exposure_warnings(caplog) == []


@pytest.mark.usefixtures("fresh_warnings")
def test_a_readable_dashboard_token_file_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    token = tmp_path / "token"
    token.write_text("s3cret-dashboard-token-0123456789\n")
    token.chmod(0o644)
    assert read_secret_file(token, "the dashboard's token file").startswith("s3cret")
    [warning] = _exposure_warnings(caplog)
    assert "the dashboard's token file" in warning
    assert "s3cret" not in warning


# -- [api] and [[webhooks]] (hongbao serve) ---------------------------------------------------


def _served(tmp_path: Path, extra: str) -> Any:
    from hongbao.engine.config import parse_config

    return parse_config(tomllib.loads(extra), tmp_path / "hongbao.toml", environ={})


def test_the_api_tokens_and_webhooks_are_read_relative_to_the_file(tmp_path: Path) -> None:
    config = _served(
        tmp_path,
        '[api]\ntoken_file = "tokens"\n\n[[webhooks]]\nurl = "https://b.example/h"\n'
        'secret_file = "s"\nevents = ["payout.sent"]\n\n[[webhooks]]\nurl = "http://127.0.0.1:9/h"\n'
        'secret_file = "s2"\n',
    )
    assert config.api_token_file == tmp_path / "tokens"
    first, second = config.webhooks
    assert (first.url, first.secret_file, first.events) == (
        "https://b.example/h", tmp_path / "s", frozenset({"payout.sent"})
    )
    assert "campaign.paused" in second.events  # every event by default


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        ('[api]\ntokens = "x"\n', "unknown key 'tokens' in [api]"),
        ('[[webhooks]]\nurl = "ftp://x"\nsecret_file = "s"\n', "#1 url: must be an http"),
        ('[[webhooks]]\nurl = "https://x"\n', "#1 secret_file: must be a file path"),
        ('[[webhooks]]\nurl = "https://x"\nsecret_file = "s"\nevents = ["payout.paid"]\n',
         "unknown event 'payout.paid'"),
        ('[[webhooks]]\nurl = "https://x"\nsecret_file = "s"\n'
         '[[webhooks]]\nurl = "https://x"\nsecret_file = "t"\n',
         "#2 url: https://x is configured twice"),
        ('webhooks = "https://x"\n', "webhooks must be an array of tables"),
    ],
)
def test_a_wrong_api_or_webhook_setting_is_named(tmp_path: Path, extra: str, says: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(says)):
        _served(tmp_path, extra)


def test_a_short_webhook_secret_or_token_is_refused_without_showing_it(tmp_path: Path) -> None:
    from hongbao.service.auth import load_tokens

    (tmp_path / "s").write_text("short-secret\n")
    (tmp_path / "s").chmod(0o600)
    (tmp_path / "tokens").write_text("# tokens\n" + "t" * 16 + "\nshort-token\n")
    (tmp_path / "tokens").chmod(0o600)
    config = _served(tmp_path, '[[webhooks]]\nurl = "https://x"\nsecret_file = "s"\n')

    with pytest.raises(ConfigurationError, match="at least 16 characters") as secret:
        config.webhooks[0].secret()
    with pytest.raises(ConfigurationError, match=r"token #2 .* shorter than 16") as token:
        load_tokens(tmp_path / "tokens")
    assert "short-secret" not in str(secret.value)
    assert "short-token" not in str(token.value)


WECOM_SECRET = "9WcQe2rTy7uIo0pAs5dFg8hJk3lZx6cVb1nMq4wEr7t"


def test_the_wecom_corp_and_its_secret_file(files: Files) -> None:
    secret_file = files.folder / "wecom_secret"
    secret_file.write_text(WECOM_SECRET + "\n")
    secret_file.chmod(0o600)
    config = files.load(
        PEM_SHOP + 'wecom_corpid = "ww8c1f9e0a3b5d7f24"\nwecom_secret_file = "wecom_secret"\n'
    )
    merchant = config.merchant("shop")
    assert merchant.wecom_corpid == "ww8c1f9e0a3b5d7f24"
    assert merchant.wecom_secret is not None
    assert merchant.wecom_secret.get_secret_value() == WECOM_SECRET
    assert WECOM_SECRET not in repr(merchant)
    assert WECOM_SECRET not in repr(config)


def test_the_wecom_secret_from_the_environment(files: Files) -> None:
    env = {"HONGBAO_MERCHANTS_SHOP_WECOM_SECRET": WECOM_SECRET}
    merchant = files.load(PEM_SHOP + 'wecom_corpid = "ww8c1f9e0a3b5d7f24"\n', env).merchant("shop")
    assert merchant.wecom_secret is not None
    assert merchant.wecom_secret.get_secret_value() == WECOM_SECRET
    assert files.load(PEM_SHOP).merchant("shop").wecom_secret is None


def test_wecom_secret_errors_name_the_key_never_the_value(files: Files) -> None:
    both = PEM_SHOP + f'wecom_secret = "{WECOM_SECRET}"\nwecom_secret_file = "x"\n'
    with pytest.raises(ConfigurationError, match="both wecom_secret and wecom_secret_file"):
        files.load(both)
    bad = "has a space " + WECOM_SECRET
    with pytest.raises(ConfigurationError, match="wecom_secret") as caught:
        files.load(PEM_SHOP + f'wecom_secret = "{bad}"\n').merchant("shop")
    assert bad not in str(caught.value)
    with pytest.raises(ConfigurationError, match="wecom_secret") as caught:
        files.load(PEM_SHOP + "wecom_secret = 43\n")
    assert "43" not in str(caught.value).split("wecom_secret", 1)[1]
