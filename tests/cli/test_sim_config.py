"""`hongbao sim merchant create --config`: a working configuration for a simulated merchant,
written without disturbing what the file already held."""

from __future__ import annotations

import json
import stat
import textwrap
import tomllib
from pathlib import Path

import pytest

from hongbao.engine.config import load_config
from hongbao.sim.server import SimServer
from hongbao.wire.certs import ClientCertificate
from tests.cli.conftest import run

pytestmark = pytest.mark.served


def _create(server: SimServer, config: Path, name: str) -> dict[str, str]:
    result = run(
        "sim", "merchant", "create", "--sim", server.url, "--ca", str(server.ca_path),
        "--name", name, "--config", str(config), "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    created: dict[str, str] = json.loads(result.stdout)
    return created


def test_a_new_file_holds_the_section_and_the_secrets_beside_it(
    server: SimServer, tmp_path: Path
) -> None:
    config = tmp_path / "conf" / "hongbao.toml"
    created = _create(server, config, "shop")
    section = tomllib.loads(config.read_text())["merchants"]["shop"]
    assert section["mch_id"] == created["mch_id"]
    assert section["appid"] == created["appid"]
    assert section["mini_appid"] == created["mini_appid"]
    assert section["base_url"] == server.url
    assert Path(section["ca_bundle"]).read_bytes() == server.ca_pem
    assert "api_key" not in section  # the key lives in a file, not in the configuration
    folder = config.parent
    assert (folder / section["api_key_file"]).read_text().strip() == created["api_key"]
    for key in ("api_key_file", "key_pem"):
        assert stat.S_IMODE((folder / section[key]).stat().st_mode) == 0o600
    assert created["api_key"] not in config.read_text()
    merchant = load_config(config, environ={}).merchant("shop")
    expected = ClientCertificate.from_pem(created["cert_pem"].encode(), created["key_pem"].encode())
    assert merchant.certificate == expected
    assert merchant.api_key.get_secret_value() == created["api_key"]


def test_an_existing_file_keeps_its_other_content(server: SimServer, tmp_path: Path) -> None:
    config = tmp_path / "hongbao.toml"
    config.write_text(
        textwrap.dedent(
            """\
            # production settings, do not lose this comment
            [ledger]
            url = "sqlite:///prod.db"

            [merchants.live]
            mch_id = "1900000109"
            p12 = "apiclient_cert.p12"

            [merchants.shop]
            mch_id = "1"
            api_key = "an-old-inline-key"
            p12 = "old.p12"
            rate_per_minute = 600  # our own pace
            """
        )
    )
    created = _create(server, config, "shop")
    text = config.read_text()
    assert "# production settings, do not lose this comment" in text
    assert "# our own pace" in text
    document = tomllib.loads(text)
    assert document["ledger"] == {"url": "sqlite:///prod.db"}
    assert document["merchants"]["live"] == {"mch_id": "1900000109", "p12": "apiclient_cert.p12"}
    shop = document["merchants"]["shop"]
    assert shop["mch_id"] == created["mch_id"]
    assert shop["rate_per_minute"] == 600
    assert "api_key" not in shop  # rival sources of the same setting are dropped
    assert "p12" not in shop
    assert load_config(config, environ={}).profile("shop").rate_per_minute == 600


def test_a_second_merchant_is_added_next_to_the_first(server: SimServer, tmp_path: Path) -> None:
    config = tmp_path / "hongbao.toml"
    first = _create(server, config, "a")
    second = _create(server, config, "b")
    loaded = load_config(config, environ={})
    assert loaded.merchant("a").mch_id == first["mch_id"]
    assert loaded.merchant("b").mch_id == second["mch_id"]


def test_an_unreadable_file_is_left_alone(server: SimServer, tmp_path: Path) -> None:
    config = tmp_path / "hongbao.toml"
    config.write_text("[merchants\n")
    result = run(
        "sim", "merchant", "create", "--sim", server.url, "--ca", str(server.ca_path),
        "--name", "shop", "--config", str(config),
    )  # fmt: skip
    assert result.exit_code == 1
    assert "not valid TOML" in result.stderr
    assert config.read_text() == "[merchants\n"
