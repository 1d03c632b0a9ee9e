"""The configuration file (`hongbao.toml`): the ledger and the merchants, with their secrets.

```toml
[ledger]
url = "sqlite:///hongbao.db"          # relative to this file's folder; or postgresql+psycopg://…

[merchants.shop]
mch_id = "1900000109"
api_key_file = "secrets/api_key"      # or api_key = "…", or HONGBAO_MERCHANTS_SHOP_API_KEY
cert_pem = "apiclient_cert.pem"       # + key_pem; or p12 = "apiclient_cert.p12" (+ p12_password)
key_pem = "apiclient_key.pem"
appid = "wx2421b1c4370ec43b"
wecom_corpid = "ww8c1f9e0a3b5d7f24"    # WeCom red packets: the corp, and its 企业支付 secret
wecom_secret_file = "secrets/wecom_secret"   # or wecom_secret, or …_SHOP_WECOM_SECRET
rate_per_minute = 1800                # engine settings: see MerchantProfile
per_user_daily_amount = "1000.00"     # amounts in yuan, as strings
app_appids = ["wx0123456789abcdef"]   # rule mode: appids of the merchant's mobile apps

[rules.big_spender]                   # rule mode (满额送): see hongbao.engine.rules
merchant = "shop"
min_total_fee = 10000
amount = "1.88"
# …
```

It sits at engine level because it builds both API `Merchant`s and engine `MerchantProfile`s,
for the CLI and anything else above. Loading checks the whole document (types, unknown keys,
conflicting keys) without touching a secret; a merchant's key file, environment variables and
certificate are read only when that merchant is used, so one broken section never blocks the
others. Every problem is a `ConfigurationError` naming the file, the section and the key, and
no message ever shows a secret's value.

>>> config = load_config(Path("hongbao.toml"))  # doctest: +SKIP
>>> profile = config.profile("shop")  # doctest: +SKIP
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr

from hongbao.api import AmountRules, Merchant
from hongbao.api.models import DEFAULT_MAX_FEN, DEFAULT_MIN_FEN
from hongbao.defaults import CONFIG_ENV
from hongbao.engine.filemodes import warn_if_exposed
from hongbao.engine.rules import AppidKind, Rule, parse_rules
from hongbao.engine.settings import MerchantProfile, RunSettings
from hongbao.engine.states import LimitPolicy
from hongbao.errors import ConfigurationError
from hongbao.ledger import DEFAULT_LEDGER_URL
from hongbao.ledger.outbox import EVENT_TYPES
from hongbao.money import MoneyError, parse_yuan
from hongbao.wire.certs import ClientCertificate
from hongbao.wire.transport import DEFAULT_BASE_URL, Timeouts

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_CONFIG_FILE",
    "LEDGER_URL_ENV",
    "MERCHANT_KEYS",
    "HongbaoConfig",
    "MerchantSection",
    "WebhookEndpoint",
    "config_path",
    "load_config",
    "parse_config",
    "read_secret_file",
    "secret_env_name",
]

DEFAULT_CONFIG_FILE = Path("hongbao.toml")
"""The configuration file used when neither `--config` nor `HONGBAO_CONFIG` is given."""
LEDGER_URL_ENV = "HONGBAO_LEDGER_URL"
"""Overrides `[ledger] url` (the URL may carry a database password), as for `hongbao db`."""

_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SECRETS = ("api_key", "p12_password", "key_password", "wecom_secret")
_STRINGS = (
    "mch_id",
    "appid",
    "mini_appid",
    "base_url",
    "client_ip",
    "sub_mch_id",
    "msgappid",
    "consume_mch_id",
    "wecom_corpid",
)
_PATHS = ("cert_pem", "key_pem", "p12", "ca_bundle")
_STRING_LISTS = ("app_appids",)
_POSITIVE_INTS = ("rate_per_minute", "query_rate_per_minute", "concurrency")
_COUNTS = ("per_user_daily_count",)
_SECONDS = ("connect_timeout", "read_timeout", "lease_seconds")
_YUAN = ("per_user_daily_amount", "merchant_daily_amount", "min_amount", "max_amount")
_CHOICES: Mapping[str, tuple[str, ...]] = {
    "limit_policy": tuple(policy.value for policy in LimitPolicy)
}
# Engine settings: configuration key → MerchantProfile field (amounts are given in yuan).
_PROFILE_FIELDS = {
    "rate_per_minute": "rate_per_minute",
    "query_rate_per_minute": "query_rate_per_minute",
    "concurrency": "concurrency",
    "per_user_daily_count": "per_user_daily_count",
    "per_user_daily_amount": "per_user_daily_amount_fen",
    "merchant_daily_amount": "merchant_daily_amount_fen",
    "lease_seconds": "lease_seconds",
}

MERCHANT_KEYS: frozenset[str] = frozenset(
    {
        *_STRINGS,
        *_PATHS,
        *_POSITIVE_INTS,
        *_COUNTS,
        *_SECONDS,
        *_YUAN,
        *_CHOICES,
        *_STRING_LISTS,
        "scenes",
        *_SECRETS,
        *(f"{name}_file" for name in _SECRETS),
    }
)
"""Every key a `[merchants.NAME]` section may hold; any other is refused as a likely typo."""
_TOP_KEYS = frozenset({"api", "dashboard", "ledger", "merchants", "rules", "run", "webhooks"})
_RUN_KEYS = frozenset({"status_every", "pause_after"})
"""`[run]`: how the long-running commands behave (`RunSettings` fields of the same names)."""
_LEDGER_KEYS = frozenset({"url"})
_TOKEN_KEYS = frozenset({"token_file"})
_WEBHOOK_KEYS = frozenset({"url", "secret_file", "events"})


def config_path(explicit: Path | None, environ: Mapping[str, str] | None = None) -> Path:
    """The file to read: `--config`, else `$HONGBAO_CONFIG`, else `./hongbao.toml`."""
    if explicit is not None:
        return explicit
    env = os.environ if environ is None else environ
    return Path(env[CONFIG_ENV]) if env.get(CONFIG_ENV) else DEFAULT_CONFIG_FILE


def secret_env_name(merchant: str, key: str) -> str:
    """The environment variable that may hold a merchant's secret.

    >>> secret_env_name("shop-cn", "api_key")
    'HONGBAO_MERCHANTS_SHOP_CN_API_KEY'
    """
    return f"HONGBAO_MERCHANTS_{merchant.upper().replace('-', '_')}_{key.upper()}"


@dataclass(frozen=True, slots=True)
class MerchantSection:
    """One checked `[merchants.NAME]` section: plain values, secrets not yet read."""

    name: str
    values: Mapping[str, Any] = field(repr=False)  # may hold an inline api_key
    """Keys as given, type-checked; paths already resolved against the file's folder."""
    where: str = ""
    """How messages name the section: `FILE [merchants.NAME]`."""
    path: Path | None = None
    """The configuration file it was read from."""

    def get(self, key: str, default: Any = None) -> Any:
        """The value of `key`, or `default` when the section does not set it."""
        return self.values.get(key, default)


@dataclass(frozen=True)
class HongbaoConfig:
    """A loaded configuration: the ledger URL, the merchants and the rules by name."""

    path: Path
    ledger_url: str
    merchants: Mapping[str, MerchantSection]
    rules: Mapping[str, Rule] = field(default_factory=dict)
    """Rule mode's `[rules.NAME]`, checked (each names one of `merchants`)."""
    dashboard_token_file: Path | None = None
    """`[dashboard] token_file`: the file holding the dashboard's access token."""
    api_token_file: Path | None = None
    """`[api] token_file`: the HTTP API's bearer tokens, one per line (`hongbao serve`)."""
    webhooks: tuple[WebhookEndpoint, ...] = ()
    """`[[webhooks]]`: where `hongbao serve` delivers events."""
    run: RunSettings = field(default_factory=RunSettings)
    """`[run]`: how often long-running commands say what they wait for, and how long a campaign
    may fail to reach WeChat before it pauses."""
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ, repr=False)
    _built: dict[str, Merchant] = field(default_factory=dict, init=False, repr=False)

    def section(self, name: str | None) -> MerchantSection:
        """The section of merchant `name`; None picks the only one there is."""
        if name is None:
            if len(self.merchants) == 1:
                return next(iter(self.merchants.values()))
            if not self.merchants:
                raise ConfigurationError(f"{self.path}: no [merchants.NAME] section")
            raise ConfigurationError(
                f"{self.path} has several merchants ({', '.join(sorted(self.merchants))}): "
                "choose one with --merchant NAME"
            )
        if name not in self.merchants:
            known = ", ".join(sorted(self.merchants)) or "none"
            raise ConfigurationError(
                f"{self.path}: no merchant {name!r} (no [merchants.{name}] section; known: {known})"
            )
        return self.merchants[name]

    def merchant(self, name: str | None = None) -> Merchant:
        """The API `Merchant` of `name`: reads its key and certificate (once) and checks them."""
        section = self.section(name)
        if section.name not in self._built:
            self._built[section.name] = build_merchant(section, self.environ)
        return self._built[section.name]

    def appid_kinds(self, name: str | None = None) -> dict[str, AppidKind]:
        """What each appid of merchant `name` is: which red packet API pays its openids.

        `appid` is its Official Account, `mini_appid` its mini program, `app_appids` its
        mobile apps (whose payers cannot be given a red packet). Reads no secret.
        """
        section = self.section(name)
        kinds = {appid: AppidKind.APP for appid in section.get("app_appids", ())}
        if "mini_appid" in section.values:
            kinds[section.values["mini_appid"]] = AppidKind.MINI_PROGRAM
        if "appid" in section.values:
            kinds[section.values["appid"]] = AppidKind.OFFICIAL_ACCOUNT
        return kinds

    def profile(self, name: str | None = None) -> MerchantProfile:
        """The engine's `MerchantProfile` of `name`: its `Merchant` plus pacing, caps, policy.

        >>> config.profile("shop").rate_per_minute  # doctest: +SKIP
        1800
        """
        section = self.section(name)
        settings: dict[str, Any] = {
            field_name: section.values[key]
            for key, field_name in _PROFILE_FIELDS.items()
            if key in section.values
        }
        if "limit_policy" in section.values:
            settings["limit_policy"] = LimitPolicy(section.values["limit_policy"])
        merchant = self.merchant(section.name)
        try:
            return MerchantProfile(name=section.name, merchant=merchant, **settings)
        except ValueError as exc:
            raise ConfigurationError(f"{section.where}: {exc}") from None


def load_config(path: Path, environ: Mapping[str, str] | None = None) -> HongbaoConfig:
    """Read and check `path`; secrets and certificates are read later, per merchant.

    >>> config = load_config(Path("hongbao.toml"))  # doctest: +SKIP
    """
    env = os.environ if environ is None else environ
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        raise ConfigurationError(
            f"configuration file {path} does not exist: give --config FILE or set {CONFIG_ENV} "
            "(`hongbao sim merchant create --config FILE` writes one for the simulator)"
        ) from None
    except OSError as exc:
        raise ConfigurationError(f"cannot read {path}: {exc.strerror or exc}") from None
    try:
        document = tomllib.loads(text.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigurationError(f"{path} is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        # tomllib names the line and column, never the offending text: no secret can leak.
        raise ConfigurationError(f"{path} is not valid TOML: {exc}") from None
    return parse_config(document, path, env)


def parse_config(
    document: Mapping[str, Any], path: Path, environ: Mapping[str, str] | None = None
) -> HongbaoConfig:
    """Check a parsed TOML document that was read from `path` (pure: no file is opened)."""
    env = os.environ if environ is None else environ
    _only(document, _TOP_KEYS, f"{path}", "top level")
    base = path.parent
    ledger = document.get("ledger", {})
    if not isinstance(ledger, dict):
        raise ConfigurationError(f"{path}: ledger must be a table ([ledger])")
    _only(ledger, _LEDGER_KEYS, f"{path} [ledger]", "[ledger]")
    url = env.get(LEDGER_URL_ENV) or ledger.get("url", DEFAULT_LEDGER_URL)
    if not isinstance(url, str) or not url:
        raise ConfigurationError(f"{path} [ledger] url: must be a database URL string")
    merchants = document.get("merchants", {})
    if not isinstance(merchants, dict):
        raise ConfigurationError(f"{path}: merchants must be tables ([merchants.NAME])")
    sections: dict[str, MerchantSection] = {}
    prefixes: dict[str, str] = {}
    for name, raw in merchants.items():
        where = f"{path} [merchants.{name}]"
        if not _NAME.fullmatch(name):
            raise ConfigurationError(
                f"{where}: a merchant name may hold only letters, digits, '-' and '_'"
            )
        prefix = secret_env_name(name, "")
        if prefix in prefixes:
            raise ConfigurationError(
                f"{where}: clashes with [merchants.{prefixes[prefix]}]: both read their secrets "
                f"from {prefix}*"
            )
        prefixes[prefix] = name
        if not isinstance(raw, dict):
            raise ConfigurationError(f"{where}: must be a table of settings")
        sections[name] = MerchantSection(name, _check_section(raw, where, base), where, path)
    rules = parse_rules(document.get("rules", {}), merchants=set(sections), where=str(path))
    return HongbaoConfig(
        path=path,
        ledger_url=_ledger_url(url, base),
        merchants=sections,
        rules=rules,
        dashboard_token_file=_token_file(document.get("dashboard", {}), path, "dashboard"),
        api_token_file=_token_file(document.get("api", {}), path, "api"),
        webhooks=_webhooks(document.get("webhooks", []), path),
        run=_run_settings(document.get("run", {}), path),
        environ=env,
    )


def _run_settings(run: object, path: Path) -> RunSettings:
    if not isinstance(run, dict):
        raise ConfigurationError(f"{path}: run must be a table ([run])")
    _only(run, _RUN_KEYS, f"{path} [run]", "[run]")
    for key, value in run.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigurationError(f"{path} [run] {key}: must be a positive number of seconds")
    defaults = RunSettings()
    return RunSettings(
        status_every=float(run.get("status_every", defaults.status_every)),
        pause_after=float(run.get("pause_after", defaults.pause_after)),
    )


def _token_file(table: object, path: Path, name: str) -> Path | None:
    if not isinstance(table, dict):
        raise ConfigurationError(f"{path}: {name} must be a table ([{name}])")
    _only(table, _TOKEN_KEYS, f"{path} [{name}]", f"[{name}]")
    token_file = table.get("token_file")
    if token_file is None:
        return None
    if not isinstance(token_file, str) or not token_file:
        raise ConfigurationError(f"{path} [{name}] token_file: must be a file path string")
    # Relative to the configuration, like every other path in it.
    return path.parent / token_file


@dataclass(frozen=True)
class WebhookEndpoint:
    """One `[[webhooks]]` entry: where to POST events, the signing secret's file, which events."""

    url: str
    secret_file: Path
    events: frozenset[str]
    where: str

    def secret(self) -> str:
        """The signing secret (read from its file each time it is asked for)."""
        secret = read_secret_file(self.secret_file, f"{self.where} secret_file")
        if len(secret) < _MIN_WEBHOOK_SECRET:
            raise ConfigurationError(
                f"{self.where} secret_file: the secret must be at least {_MIN_WEBHOOK_SECRET} "
                "characters"
            )
        return secret


_MIN_WEBHOOK_SECRET = 16


def _webhooks(raw: object, path: Path) -> tuple[WebhookEndpoint, ...]:
    if not isinstance(raw, list):
        raise ConfigurationError(f"{path}: webhooks must be an array of tables ([[webhooks]])")
    endpoints: list[WebhookEndpoint] = []
    for number, entry in enumerate(raw, 1):
        where = f"{path} [[webhooks]] #{number}"
        if not isinstance(entry, dict):
            raise ConfigurationError(f"{where}: must be a table")
        _only(entry, _WEBHOOK_KEYS, where, "[[webhooks]]")
        url = entry.get("url")
        if not isinstance(url, str) or not url.startswith(("https://", "http://")):
            raise ConfigurationError(f"{where} url: must be an http:// or https:// URL")
        secret_file = entry.get("secret_file")
        if not isinstance(secret_file, str) or not secret_file:
            raise ConfigurationError(f"{where} secret_file: must be a file path string")
        events = entry.get("events", list(EVENT_TYPES))
        if not isinstance(events, list) or not events:
            raise ConfigurationError(f"{where} events: must be a non-empty list of event types")
        unknown = sorted({str(event) for event in events} - set(EVENT_TYPES))
        if unknown:
            raise ConfigurationError(
                f"{where} events: unknown event {unknown[0]!r} (known: {', '.join(EVENT_TYPES)})"
            )
        if any(other.url == url for other in endpoints):
            raise ConfigurationError(f"{where} url: {url} is configured twice")
        endpoints.append(WebhookEndpoint(url, path.parent / secret_file, frozenset(events), where))
    return tuple(endpoints)


def _ledger_url(url: str, base: Path) -> str:
    # A relative SQLite file sits next to the configuration, like every other relative path.
    prefix = "sqlite:///"
    if url.startswith(prefix):
        database = url[len(prefix) :]
        if database and not database.startswith(("/", "file:", ":memory:")):
            return prefix + str(base / database)
    return url


def _only(table: Mapping[str, Any], allowed: frozenset[str], where: str, what: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise ConfigurationError(
            f"{where}: unknown key {unknown[0]!r} in {what} (allowed: {', '.join(sorted(allowed))})"
        )


def _check_section(raw: Mapping[str, Any], where: str, base: Path) -> dict[str, Any]:
    _only(raw, MERCHANT_KEYS, where, "a merchant section")
    values: dict[str, Any] = {}
    for key, value in raw.items():
        values[key] = _check_value(key, value, where, base)
    if "mch_id" not in values:
        raise ConfigurationError(f"{where} mch_id: missing (the merchant number, as a string)")
    for secret in _SECRETS:
        if secret in values and f"{secret}_file" in values:
            raise ConfigurationError(
                f"{where}: both {secret} and {secret}_file are set; keep one "
                f"({secret}_file is preferred: the secret stays out of this file)"
            )
    has_pem = "cert_pem" in values or "key_pem" in values
    if has_pem and "p12" in values:
        raise ConfigurationError(f"{where}: give cert_pem + key_pem or p12, not both")
    if has_pem and not ("cert_pem" in values and "key_pem" in values):
        missing = "key_pem" if "cert_pem" in values else "cert_pem"
        raise ConfigurationError(f"{where} {missing}: missing (cert_pem and key_pem go together)")
    if not has_pem and "p12" not in values:
        raise ConfigurationError(
            f"{where}: no API certificate: give cert_pem + key_pem (apiclient_cert.pem, "
            "apiclient_key.pem) or p12 (apiclient_cert.p12)"
        )
    if "p12" not in values and ("p12_password" in values or "p12_password_file" in values):
        raise ConfigurationError(f"{where} p12_password: set, but there is no p12")
    if "p12" in values and ("key_password" in values or "key_password_file" in values):
        raise ConfigurationError(f"{where} key_password: for key_pem only; a p12 has p12_password")
    if "scenes" in values or "min_amount" in values or "max_amount" in values:
        values["limits"] = _amount_rules(values, where)
    return values


def _check_value(key: str, value: Any, where: str, base: Path) -> Any:
    here = f"{where} {key}"
    if key in _STRINGS or key in _SECRETS:
        if not isinstance(value, str):
            hint = f' (quote it: {key} = "{value}")' if key == "mch_id" else ""
            shown = "" if key in _SECRETS else hint
            raise ConfigurationError(f"{here}: must be a string, not {_kind(value)}{shown}")
        return value
    if key in _STRING_LISTS:
        valid = isinstance(value, list) and all(isinstance(item, str) and item for item in value)
        if not valid or len(set(value)) != len(value):
            raise ConfigurationError(f"{here}: must be a list of distinct appids (strings)")
        return tuple(value)
    if key in _PATHS or key.endswith("_file"):
        if not isinstance(value, str) or not value:
            raise ConfigurationError(f"{here}: must be a file path (a string), not {_kind(value)}")
        return base / Path(value).expanduser()
    if key in _POSITIVE_INTS or key in _COUNTS:
        low = 1 if key in _POSITIVE_INTS else 0
        if type(value) is not int or value < low:
            raise ConfigurationError(f"{here}: must be a whole number >= {low}, not {value!r}")
        return value
    if key in _SECONDS:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigurationError(f"{here}: must be a number of seconds, not {_kind(value)}")
        if not (value > 0 and math.isfinite(value)):
            raise ConfigurationError(f"{here}: must be a positive number of seconds")
        return float(value)
    if key in _YUAN:
        return _fen(value, here)
    if key in _CHOICES:
        if value not in _CHOICES[key]:
            raise ConfigurationError(f"{here}: must be one of {', '.join(_CHOICES[key])}")
        return value
    # scenes: PRODUCT_n = ["min", "max"] in yuan
    if not isinstance(value, dict):
        example = '{ PRODUCT_1 = ["0.30", "4999.00"] }'
        raise ConfigurationError(f"{here}: must be a table such as {example}")
    scenes: dict[str, tuple[int, int]] = {}
    for scene, bounds in value.items():
        if not (isinstance(bounds, list) and len(bounds) == 2):
            raise ConfigurationError(
                f'{here}.{scene}: must be [min, max] in yuan, e.g. ["0.30", "4999.00"]'
            )
        scenes[scene] = (_fen(bounds[0], f"{here}.{scene}"), _fen(bounds[1], f"{here}.{scene}"))
    return scenes


def _fen(value: Any, here: str) -> int:
    if not isinstance(value, str):
        raise ConfigurationError(
            f'{here}: must be an amount in yuan as a string (e.g. "1.50"), not {_kind(value)}'
        )
    try:
        return parse_yuan(value)
    except MoneyError as exc:
        raise ConfigurationError(f"{here}: {exc}") from None


def _amount_rules(values: Mapping[str, Any], where: str) -> AmountRules:
    try:
        return AmountRules(
            min_fen=values.get("min_amount", DEFAULT_MIN_FEN),
            max_fen=values.get("max_amount", DEFAULT_MAX_FEN),
            scenes=values.get("scenes", {}),
        )
    except ConfigurationError as exc:
        raise ConfigurationError(f"{where} scenes/min_amount/max_amount: {exc}") from None


def _kind(value: Any) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string"}
    for kind, name in names.items():
        if type(value) is kind:
            return name
    return "a table" if isinstance(value, dict) else "a list" if isinstance(value, list) else "?"


# --- building a Merchant: the only part that reads secrets and certificates ----------------


def _secret(section: MerchantSection, key: str, environ: Mapping[str, str]) -> str | None:
    """The secret `key` from the file, its `_file`, or its environment variable (one only)."""
    env_name = secret_env_name(section.name, key)
    sources = [
        source
        for source, present in (
            (key, key in section.values),
            (f"{key}_file", f"{key}_file" in section.values),
            (env_name, bool(environ.get(env_name))),
        )
        if present
    ]
    if len(sources) > 1:
        raise ConfigurationError(
            f"{section.where} {key}: given twice ({' and '.join(sources)}); keep one source"
        )
    if not sources:
        return None
    if sources[0] == env_name:
        return environ[env_name]
    if sources[0] == key:
        # Inline in the configuration: the configuration file itself is the secret's file.
        if section.path is not None:
            warn_if_exposed(section.path, f"{section.where} {key}")
        value: str = section.values[key]
        return value
    return read_secret_file(section.values[f"{key}_file"], f"{section.where} {key}_file")


def read_secret_file(path: Path, where: str) -> str:
    """The secret a file holds, without the trailing newline an editor adds.

    Errors name `where` (the setting or option) and the file, never its content.
    """
    try:
        secret = path.read_text("utf-8").strip()
    except FileNotFoundError:
        raise ConfigurationError(f"{where}: {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ConfigurationError(f"{where}: cannot read {path}: {reason}") from None
    warn_if_exposed(path, where)
    return secret


def _existing(section: MerchantSection, key: str) -> Path:
    path: Path = section.values[key]
    if not path.exists():
        raise ConfigurationError(f"{section.where} {key}: {path} does not exist")
    return path


def build_merchant(section: MerchantSection, environ: Mapping[str, str]) -> Merchant:
    """The `Merchant` of a section: reads its secrets and certificate and checks them all."""
    api_key = _secret(section, "api_key", environ)
    if api_key is None:
        raise ConfigurationError(
            f"{section.where} api_key: missing: set api_key_file (preferred), api_key, or "
            f"the environment variable {secret_env_name(section.name, 'api_key')}"
        )
    options: dict[str, Any] = {
        name: section.values[name]
        for name in (
            "appid",
            "mini_appid",
            "client_ip",
            "sub_mch_id",
            "msgappid",
            "consume_mch_id",
            "wecom_corpid",
        )
        if name in section.values
    }
    wecom_secret = _secret(section, "wecom_secret", environ)
    if wecom_secret is not None:
        options["wecom_secret"] = SecretStr(wecom_secret)
    options["base_url"] = section.get("base_url", DEFAULT_BASE_URL)
    if "limits" in section.values:
        options["limits"] = section.values["limits"]
    if "ca_bundle" in section.values:
        options["ca_bundle"] = _existing(section, "ca_bundle")
    defaults = Timeouts()
    try:
        options["timeouts"] = Timeouts(
            connect=section.get("connect_timeout", defaults.connect),
            read=section.get("read_timeout", defaults.read),
        )
    except ValueError as exc:
        raise ConfigurationError(f"{section.where} connect_timeout/read_timeout: {exc}") from None
    mch_id: str = section.values["mch_id"]
    key = "p12" if "p12" in section.values else "cert_pem"
    try:
        if key == "p12":
            password = _secret(section, "p12_password", environ)
            p12_file = _existing(section, "p12")
            warn_if_exposed(p12_file, f"{section.where} p12")
            certificate = ClientCertificate.from_p12(
                p12_file, mch_id if password is None else password
            )
        else:
            cert_file = _existing(section, "cert_pem")
            key_file = _existing(section, "key_pem")
            warn_if_exposed(key_file, f"{section.where} key_pem")
            certificate = ClientCertificate.from_pem_files(
                cert_file, key_file, _secret(section, "key_password", environ)
            )
    except ConfigurationError as exc:
        if str(exc).startswith(section.where):
            raise
        if key == "cert_pem" and "key file " in str(exc):
            key = "key_pem"  # the certificate was read; its key file is the one at fault
        hint = ""
        if "is encrypted" in str(exc):
            hint = f" (key_password_file, or {secret_env_name(section.name, 'key_password')})"
        raise ConfigurationError(f"{section.where} {key}: {exc}{hint}") from None
    try:
        return Merchant(
            mch_id=mch_id, api_key=SecretStr(api_key), certificate=certificate, **options
        )
    except ConfigurationError as exc:
        raise ConfigurationError(f"{section.where}: {exc}") from None
