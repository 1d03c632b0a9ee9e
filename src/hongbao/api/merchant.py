"""`Merchant`: everything hongbao needs to send red packets for one merchant account.

The API key and the WeCom payment secret are held as `pydantic.SecretStr`s: they never show in a
repr, a log or an error.

>>> merchant = Merchant(mch_id="1900000109", api_key=SecretStr("k" * 32), appid="wx2421b1c4")
>>> "k" * 32 in repr(merchant)
False
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import SecretStr

from hongbao.api.models import DEFAULT_RULES, AmountRules, check_ipv4, check_text
from hongbao.errors import ConfigurationError, ValidationError
from hongbao.wire.certs import ClientCertificate
from hongbao.wire.failover import AUTO_BACKUP, AutoBackup
from hongbao.wire.retry import RetryPolicy
from hongbao.wire.transport import DEFAULT_BASE_URL, Timeouts

__all__ = ["DEFAULT_CLIENT_IP", "Merchant"]

DEFAULT_CLIENT_IP = "127.0.0.1"
"""`client_ip` when none is configured. WeChat only requires a well-formed IPv4 here and checks
its IP whitelist against the connection's address (docs/protocol.md §3.2, §12 item 11); set your
server's egress address to be exact. Detecting it would mean network I/O when a config object is
built."""

_DEFAULT_TIMEOUTS = Timeouts()
_DEFAULT_RETRY = RetryPolicy()
_MCH_ID = re.compile(r"[0-9]{1,32}")
_API_KEY = re.compile(r"[\x21-\x7e]{32}")
_WECOM_SECRET = re.compile(r"[\x21-\x7e]{1,128}")


@dataclass(frozen=True, slots=True, kw_only=True)
class Merchant:
    """A merchant account: number, APIv2 key, appids, client certificate, endpoints and limits.

    Several merchants can be used in one process, each through its own `Client` (own
    certificate, own connection pool). In service-provider mode, `mch_id` is the provider's
    number, `sub_mch_id` the sub-merchant's and `msgappid` the appid that notifies the user.

    >>> merchant = Merchant.from_p12(  # doctest: +SKIP
    ...     "apiclient_cert.p12", mch_id="1900000109", api_key=key, appid="wx2421b1c4370ec43b"
    ... )
    """

    mch_id: str
    api_key: SecretStr = field(repr=False)
    """The 32-character APIv2 key; a plain str is accepted and wrapped."""
    appid: str | None = None
    """The Official Account appid: `wxappid` of normal and fission packets, gethbinfo's `appid`."""
    mini_appid: str | None = None
    """The mini program's appid, for mini-program packets and `wx.sendBizRedPacket`."""
    certificate: ClientCertificate | None = None
    """The merchant API certificate; required unless a transport is given to the client."""
    base_url: str = DEFAULT_BASE_URL
    backup_url: str | AutoBackup | None = AUTO_BACKUP
    """Where to fail over; by default WeChat's backup host, and only for WeChat's primary."""
    ca_bundle: str | os.PathLike[str] | None = None
    """Trust only these CAs for the server (a file or directory); default: the system store."""
    timeouts: Timeouts = _DEFAULT_TIMEOUTS
    client_ip: str = DEFAULT_CLIENT_IP
    limits: AmountRules = DEFAULT_RULES
    """The amounts and scenes this merchant may send (configured in its merchant platform)."""
    sub_mch_id: str | None = None
    msgappid: str | None = None
    consume_mch_id: str | None = None
    """SP mode: the merchant whose balance pays (default: the sub-merchant)."""
    retry: RetryPolicy = _DEFAULT_RETRY
    """In-call retries of transient failures, always with identical bytes."""
    wecom_corpid: str | None = None
    """The WeCom corp's id (企业ID): `wxappid` of WeCom red packets, their query's `appid`."""
    wecom_secret: SecretStr | None = field(default=None, repr=False)
    """The secret of the WeCom corp's built-in 企业支付 app, for `workwx_sign`
    (docs/protocol.md §15.3); a plain str is accepted and wrapped."""

    def __post_init__(self) -> None:
        key = self.api_key
        if isinstance(key, str):  # accepted for convenience, stored wrapped
            key = SecretStr(key)
            object.__setattr__(self, "api_key", key)
        if not isinstance(key, SecretStr) or not _API_KEY.fullmatch(key.get_secret_value()):
            raise ConfigurationError(
                "api_key must be the 32-character APIv2 key from the merchant platform "
                "(printable ASCII, no spaces)"
            )
        secret = self.wecom_secret
        if isinstance(secret, str):
            secret = SecretStr(secret)
            object.__setattr__(self, "wecom_secret", secret)
        if secret is not None and (
            not isinstance(secret, SecretStr)
            or not _WECOM_SECRET.fullmatch(secret.get_secret_value())
        ):
            raise ConfigurationError(
                "wecom_secret must be the WeCom payment secret from the WeCom admin console "
                "(printable ASCII, no spaces, at most 128 characters)"
            )
        if not _MCH_ID.fullmatch(self.mch_id):
            raise ConfigurationError(f"mch_id {self.mch_id!r} must be the merchant number (digits)")
        for name in (
            "appid",
            "mini_appid",
            "sub_mch_id",
            "msgappid",
            "consume_mch_id",
            "wecom_corpid",
        ):
            _check_optional_text(name, getattr(self, name))
        try:
            check_ipv4(self.client_ip)
        except ValidationError as exc:
            raise ConfigurationError(str(exc)) from None
        if (self.sub_mch_id is None) != (self.msgappid is None):
            raise ConfigurationError("SP mode needs both sub_mch_id and msgappid (or neither)")
        if self.consume_mch_id is not None and self.sub_mch_id is None:
            raise ConfigurationError("consume_mch_id is only meaningful in SP mode (sub_mch_id)")
        for name in ("base_url", "backup_url"):
            url = getattr(self, name)
            if isinstance(url, str) and not url.startswith("https://"):
                raise ConfigurationError(f"{name} {url!r} must be an https:// URL")

    @classmethod
    def from_pem_files(
        cls,
        cert_path: str | os.PathLike[str],
        key_path: str | os.PathLike[str],
        *,
        mch_id: str,
        api_key: str | SecretStr,
        key_password: str | None = None,
        **options: Any,
    ) -> Merchant:
        """With the certificate from `apiclient_cert.pem` + `apiclient_key.pem`.

        >>> Merchant.from_pem_files(  # doctest: +SKIP
        ...     "apiclient_cert.pem", "apiclient_key.pem", mch_id="1900000109", api_key=key
        ... )
        """
        certificate = ClientCertificate.from_pem_files(cert_path, key_path, key_password)
        return cls(mch_id=mch_id, api_key=_secret(api_key), certificate=certificate, **options)

    @classmethod
    def from_p12(
        cls,
        p12: bytes | str | os.PathLike[str],
        *,
        mch_id: str,
        api_key: str | SecretStr,
        password: str | None = None,
        **options: Any,
    ) -> Merchant:
        """With the certificate from `apiclient_cert.p12` (a path or its bytes); the password
        defaults to `mch_id`, as WeChat issues it.

        >>> Merchant.from_p12(  # doctest: +SKIP
        ...     "apiclient_cert.p12", mch_id="1900000109", api_key=key
        ... )
        """
        certificate = ClientCertificate.from_p12(p12, mch_id if password is None else password)
        return cls(mch_id=mch_id, api_key=_secret(api_key), certificate=certificate, **options)


def _secret(api_key: str | SecretStr) -> SecretStr:
    return api_key if isinstance(api_key, SecretStr) else SecretStr(api_key)


def _check_optional_text(name: str, value: str | None) -> None:
    if value is None:
        return
    try:
        check_text(name, value, 32)
    except ValidationError as exc:
        raise ConfigurationError(str(exc)) from None
