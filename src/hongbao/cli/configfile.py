"""Writing a merchant into a configuration file, keeping everything else in it as it was.

`hongbao sim merchant create --config FILE` uses this to save a simulated merchant: the API key
and the certificate go into files next to FILE (key files 0600), and `[merchants.NAME]` points
at them. tomlkit edits the document in place, so comments, order and other sections survive.

>>> save_merchant(Path("hongbao.toml"), "sim", credentials)  # doctest: +SKIP
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import tomlkit
from tomlkit.exceptions import TOMLKitError
from tomlkit.items import Table

from hongbao.errors import ConfigurationError

__all__ = ["SavedFiles", "SimMerchant", "save_merchant"]

# Keys this writer owns in the section: any old value of them (or a rival way of giving the same
# thing, such as an inline key or a p12) is dropped so the section cannot contradict itself.
_REPLACED = (
    "mch_id",
    "appid",
    "mini_appid",
    "base_url",
    "ca_bundle",
    "api_key",
    "api_key_file",
    "cert_pem",
    "key_pem",
    "key_password",
    "key_password_file",
    "p12",
    "p12_password",
    "p12_password_file",
    "wecom_corpid",
    "wecom_secret",
    "wecom_secret_file",
)


_PRIVATE = 0o600
_PUBLIC = 0o644


@dataclass(frozen=True, slots=True)
class SimMerchant:
    """What a simulated merchant needs in a configuration."""

    mch_id: str
    appid: str
    mini_appid: str
    base_url: str
    ca_bundle: Path
    api_key: str = field(repr=False)
    cert_pem: bytes = field(repr=False)
    key_pem: bytes = field(repr=False)
    wecom_corpid: str | None = None
    wecom_secret: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class SavedFiles:
    """The files written."""

    config: Path
    api_key: Path
    cert_pem: Path
    key_pem: Path
    wecom_secret: Path | None = None


def save_merchant(config_file: Path, name: str, merchant: SimMerchant) -> SavedFiles:
    """Write `merchant`'s key and certificate next to `config_file` and its section into it."""
    folder = config_file.parent
    folder.mkdir(parents=True, exist_ok=True)
    document = _read(config_file)
    saved = SavedFiles(
        config=config_file,
        api_key=folder / f"{name}.api_key",
        cert_pem=folder / f"{name}.apiclient_cert.pem",
        key_pem=folder / f"{name}.apiclient_key.pem",
        wecom_secret=folder / f"{name}.wecom_secret" if merchant.wecom_secret else None,
    )
    _write(saved.api_key, merchant.api_key.encode("ascii") + b"\n", _PRIVATE)
    _write(saved.cert_pem, merchant.cert_pem, _PUBLIC)
    _write(saved.key_pem, merchant.key_pem, _PRIVATE)
    if saved.wecom_secret is not None and merchant.wecom_secret is not None:
        _write(saved.wecom_secret, merchant.wecom_secret.encode("ascii") + b"\n", _PRIVATE)
    merchants = document.get("merchants")
    if merchants is None:
        merchants = tomlkit.table(is_super_table=True)
        document["merchants"] = merchants
    elif not isinstance(merchants, Table):
        raise ConfigurationError(f"{config_file}: merchants must be tables ([merchants.NAME])")
    section = merchants.get(name)
    if not isinstance(section, Table):
        section = tomlkit.table()
        merchants[name] = section
    for key in _REPLACED:
        if key in section:
            del section[key]
    section["mch_id"] = merchant.mch_id
    section["appid"] = merchant.appid
    section["mini_appid"] = merchant.mini_appid
    section["base_url"] = merchant.base_url
    section["ca_bundle"] = _relative(merchant.ca_bundle, folder)
    section["api_key_file"] = saved.api_key.name
    section["cert_pem"] = saved.cert_pem.name
    section["key_pem"] = saved.key_pem.name
    if saved.wecom_secret is not None:
        section["wecom_corpid"] = merchant.wecom_corpid
        section["wecom_secret_file"] = saved.wecom_secret.name
    # An existing file keeps its mode: it may hold inline secrets its owner locked away.
    mode = config_file.stat().st_mode & 0o777 if config_file.exists() else _PUBLIC
    _write(config_file, tomlkit.dumps(document).encode("utf-8"), mode)
    return saved


def _read(config_file: Path) -> tomlkit.TOMLDocument:
    try:
        text = config_file.read_text("utf-8")
    except FileNotFoundError:
        return tomlkit.document()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read {config_file}: {exc}") from None
    try:
        return tomlkit.parse(text)
    except TOMLKitError as exc:
        raise ConfigurationError(f"{config_file} is not valid TOML (not changed): {exc}") from None


def _relative(path: Path, folder: Path) -> str:
    path = path.resolve()
    try:
        return str(path.relative_to(folder.resolve()))
    except ValueError:
        return str(path)


def _write(path: Path, data: bytes, mode: int) -> None:
    # Write a sibling, then rename: a crash never leaves a half-written key or configuration,
    # and a key file is 0600 from its first byte (mkstemp creates it so).
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        if mode != _PRIVATE:
            os.chmod(temp, mode)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
