"""What `Client` and `AsyncClient` share: everything but the I/O.

A call is prepared once — parameters checked, `nonce_str` drawn, signed, serialised — before the
retry loop, so every attempt sends byte-identical bytes (same nonce, same signature, same bill
number). Each answer is read into a result or a `Failure`; `Attempts` decides whether to resend.

`send_params` builds a send call's checked wire parameters (with its `nonce_str`) without
sending, so a ledger can record them first; `_frozen_call` signs such recorded parameters again,
unchanged, so a resend after a crash is byte-identical to the first attempt.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Generic, NamedTuple, TypeVar

from pydantic import ValidationError as PydanticValidationError

from hongbao.api.codes import ADVICE_CONNECT, ADVICE_RESPONSE, ADVICE_TRANSPORT, classify
from hongbao.api.jsapi import jsapi_params
from hongbao.api.merchant import Merchant
from hongbao.api.models import (
    ApiRequest,
    QueryRedpackRequest,
    QueryWorkwxRedpackRequest,
    RedpackInfo,
    SendGroupRedpackRequest,
    SendMiniProgramRedpackRequest,
    SendRedpackRequest,
    SendResult,
    SendWorkwxRedpackRequest,
    WorkwxRedpackInfo,
    WorkwxSendResult,
    check_text,
)
from hongbao.clock import Clock, SystemClock
from hongbao.errors import (
    BillConflictError,
    BillFailedError,
    ConfigurationError,
    ConnectError,
    HongbaoError,
    Outcome,
    ResponseError,
    TransportError,
    UnknownOutcomeError,
    ValidationError,
)
from hongbao.ids import new_nonce as _nonce
from hongbao.wire.masking import mask as masked
from hongbao.wire.retry import RetryPolicy, backoff, should_retry
from hongbao.wire.sign import sign, verify, workwx_sign
from hongbao.wire.transport import WireRequest, WireResponse
from hongbao.wire.xmlcodec import XmlDict, XmlError, dumps, loads

__all__ = ["SEND_APIS", "Attempts", "BaseClient", "Call", "Failure"]

logger = logging.getLogger("hongbao.api")

PATH_PREFIX = "/mmpaymkttransfers/"
_ECHOED = ("mch_billno", "mch_id", "wxappid", "re_openid", "total_amount")
"""Request fields a success answer repeats (the ones the request has): each must be ours."""
_NO_ECHO: Mapping[str, str] = MappingProxyType({})

T = TypeVar("T")


SEND_APIS: Mapping[str, type[ApiRequest]] = MappingProxyType(
    {
        model.api: model
        for model in (
            SendRedpackRequest,
            SendGroupRedpackRequest,
            SendMiniProgramRedpackRequest,
            SendWorkwxRedpackRequest,
        )
    }
)
"""The four send calls by API name: what `send_params` builds and `send_frozen` sends."""


def _send_result(model: type[ApiRequest]) -> Callable[[XmlDict, bytes], SendResult]:
    if model is SendWorkwxRedpackRequest:
        return WorkwxSendResult.from_response
    return SendResult.from_response


class Call(NamedTuple, Generic[T]):
    """One prepared API call: its bytes are final before the first attempt."""

    api: str
    mch_billno: str
    request: WireRequest
    result: Callable[[XmlDict, bytes], T]
    """Builds the result from a successful answer."""
    missing: Callable[[bytes], T] | None = None
    """gethbinfo only: the result for NOT_FOUND, which is an answer, not an error."""
    echo: Mapping[str, str] = _NO_ECHO
    """What the request said of the fields an answer echoes (`_ECHOED`), as text."""

    @property
    def is_query(self) -> bool:
        """True for gethbinfo, whose errors say nothing about the packet itself."""
        return self.missing is not None


class Failure(NamedTuple):
    """An attempt that did not produce a result."""

    error: HongbaoError
    transient: bool
    """Worth resending the identical bytes within this call."""


class Attempts:
    """The retry state of one call: how many resends so far, and whether any attempt may have
    reached WeChat."""

    def __init__(self, api: str, mch_billno: str, policy: RetryPolicy, *, query: bool) -> None:
        self._api = api
        self._mch_billno = mch_billno
        self._query = query
        self._policy = policy
        self._retries = 0
        self._maybe_sent: HongbaoError | None = None

    def next_delay(self, failure: Failure) -> float | None:
        """Seconds to wait before resending, or None to give up and raise `final_error`."""
        if failure.error.outcome is Outcome.UNKNOWN and self._maybe_sent is None:
            self._maybe_sent = failure.error
        if not should_retry(self._policy, self._retries, transient=failure.transient):
            return None
        self._retries += 1
        delay = backoff(self._policy, self._retries)
        logger.info(
            "%s mch_billno=%s: %s; resending the same bytes in %.1f s (retry %d of %d)",
            self._api,
            self._mch_billno,
            type(failure.error).__name__,
            delay,
            self._retries,
            self._policy.max_retries,
        )
        return delay

    def final_error(self, failure: Failure) -> HongbaoError:
        """The error to raise for the last failure.

        After an attempt that may have reached WeChat, a later "not sent" or "refused" answer
        does not prove the packet was not issued (a limit or frequency check can answer before
        the bill number is looked up), so the call's outcome stays unknown.
        """
        error = failure.error
        trusted = isinstance(error, UnknownOutcomeError | BillFailedError | BillConflictError)
        earlier = self._maybe_sent
        if earlier is None or earlier is error or trusted or self._query:
            return error
        unknown = UnknownOutcomeError(
            f"an earlier attempt may have reached WeChat ({type(earlier).__name__}: "
            f"{earlier.message}); the last answer was: {error.message}",
            err_code=error.err_code,
            err_code_des=error.err_code_des,
            return_code=error.return_code,
            return_msg=error.return_msg,
            raw=error.raw,
            mch_billno=self._mch_billno,
            advice=ADVICE_TRANSPORT,
        )
        unknown.__cause__ = error
        return unknown


class BaseClient:
    """Building requests and reading answers for one merchant; no I/O."""

    def __init__(self, merchant: Merchant, *, clock: Clock | None = None) -> None:
        self.merchant = merchant
        self.clock: Clock = clock if clock is not None else SystemClock()
        self._api_key = merchant.api_key.get_secret_value()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mch_id={self.merchant.mch_id!r})"

    def jsapi_params(
        self,
        package: str,
        *,
        appid: str | None = None,
        timestamp: int | None = None,
        nonce: str | None = None,
    ) -> dict[str, str]:
        """The `wx.sendBizRedPacket` parameters for a mini-program packet's `package`
        (docs/protocol.md §7).

        `appid` defaults to the merchant's mini program, `timestamp` to now, `nonce` to a fresh
        random string.

        >>> client.jsapi_params(result.package)  # doctest: +SKIP
        {'timeStamp': '1710489600', 'nonceStr': '…', 'package': 'sendid%3D…', 'signType': 'MD5',
         'paySign': '…'}
        """
        return jsapi_params(
            package,
            appid=appid or _required(self.merchant.mini_appid, "mini_appid", "wx.sendBizRedPacket"),
            api_key=self._api_key,
            timestamp=int(self.clock.now().timestamp()) if timestamp is None else timestamp,
            nonce=_nonce() if nonce is None else nonce,
        )

    # --- building ---------------------------------------------------------------------------

    def send_params(
        self,
        api: str,
        *,
        mch_billno: str,
        re_openid: str,
        total_amount: int,
        send_name: str | None = None,
        wishing: str,
        act_name: str,
        remark: str,
        total_num: int = 1,
        scene_id: str | None = None,
        risk_info: str | None = None,
        nonce_str: str | None = None,
        sender_name: str | None = None,
        agentid: int | None = None,
        sender_header_media_id: str | None = None,
    ) -> dict[str, str | int]:
        """The checked wire parameters of a send call, `nonce_str` included, `sign` never.

        Nothing is sent: record them (a ledger's frozen parameters), then send them unchanged
        with `send_frozen` as often as needed — every attempt is the same bytes. Raises
        `ValidationError` naming the field, as the send methods do. A WeCom packet
        (`sendworkwxredpack`) takes `sender_name` or `agentid` instead of `send_name`, and its
        parameters hold its `workwx_sign` (never the secret it is made with).

        >>> params = client.send_params("sendredpack", mch_billno=bill, re_openid=openid,
        ...     total_amount=100, send_name="Acme", wishing="Thanks", act_name="Spring",
        ...     remark="Enjoy")  # doctest: +SKIP
        >>> client.send_frozen("sendredpack", params)  # doctest: +SKIP
        """
        model = SEND_APIS.get(api)
        if model is None:
            raise ValueError(f"{api!r} is not a send API ({', '.join(SEND_APIS)})")
        params: dict[str, str | int | None]
        if model is SendWorkwxRedpackRequest:
            params = self._workwx_params(
                mch_billno=mch_billno,
                re_openid=re_openid,
                total_amount=total_amount,
                sender_name=sender_name,
                agentid=agentid,
                sender_header_media_id=sender_header_media_id,
                wishing=wishing,
                act_name=act_name,
                remark=remark,
                scene_id=scene_id,
            )
            # Not its parameters: left in for the model to refuse, naming the field.
            params["send_name"] = send_name
            params["risk_info"] = risk_info
            if total_num != 1:
                params["total_num"] = total_num
            nonce = _nonce() if nonce_str is None else check_text("nonce_str", nonce_str, 32)
            return self._checked(model, mch_billno, params, nonce)
        for name, value in (
            ("sender_name", sender_name),
            ("agentid", agentid),
            ("sender_header_media_id", sender_header_media_id),
        ):
            if value is not None:
                raise ValidationError(
                    f"{name} is not a parameter of {api} (rule: whitelist)",
                    field=name,
                    rule="whitelist",
                )
        if send_name is None:
            raise ValidationError(
                f"send_name is required by {api} (rule: required)",
                field="send_name",
                rule="required",
            )
        if model is SendMiniProgramRedpackRequest:
            params = self._mini_params(
                mch_billno=mch_billno,
                re_openid=re_openid,
                total_amount=total_amount,
                send_name=send_name,
                wishing=wishing,
                act_name=act_name,
                remark=remark,
                scene_id=scene_id,
            )
            # Not its parameter: left in for the model to refuse, naming the field.
            params["risk_info"] = risk_info
        elif model is SendGroupRedpackRequest:
            params = self._group_params(
                mch_billno=mch_billno,
                re_openid=re_openid,
                total_amount=total_amount,
                total_num=total_num,
                send_name=send_name,
                wishing=wishing,
                act_name=act_name,
                remark=remark,
                scene_id=scene_id,
                risk_info=risk_info,
                consume_mch_id=None,
            )
        else:
            params = self._redpack_params(
                mch_billno=mch_billno,
                re_openid=re_openid,
                total_amount=total_amount,
                send_name=send_name,
                wishing=wishing,
                act_name=act_name,
                remark=remark,
                scene_id=scene_id,
                risk_info=risk_info,
                client_ip=None,
                consume_mch_id=None,
            )
        params["total_num"] = total_num  # single-packet calls refuse anything but 1, by name
        nonce = _nonce() if nonce_str is None else check_text("nonce_str", nonce_str, 32)
        return self._checked(model, mch_billno, params, nonce)

    def _redpack_params(
        self,
        *,
        mch_billno: str,
        re_openid: str,
        total_amount: int,
        send_name: str,
        wishing: str,
        act_name: str,
        remark: str,
        scene_id: str | None,
        risk_info: str | None,
        client_ip: str | None,
        consume_mch_id: str | None,
    ) -> dict[str, str | int | None]:
        merchant = self.merchant
        return {
            "mch_billno": mch_billno,
            "mch_id": merchant.mch_id,
            "sub_mch_id": merchant.sub_mch_id,
            "wxappid": _required(merchant.appid, "appid", SendRedpackRequest.api),
            "msgappid": merchant.msgappid,
            "send_name": send_name,
            "re_openid": re_openid,
            "total_amount": total_amount,
            "total_num": 1,
            "wishing": wishing,
            "client_ip": merchant.client_ip if client_ip is None else client_ip,
            "act_name": act_name,
            "remark": remark,
            "scene_id": scene_id,
            "risk_info": risk_info,
            "consume_mch_id": merchant.consume_mch_id if consume_mch_id is None else consume_mch_id,
        }

    def _group_params(
        self,
        *,
        mch_billno: str,
        re_openid: str,
        total_amount: int,
        total_num: int,
        send_name: str,
        wishing: str,
        act_name: str,
        remark: str,
        scene_id: str | None,
        risk_info: str | None,
        consume_mch_id: str | None,
    ) -> dict[str, str | int | None]:
        merchant = self.merchant
        return {
            "mch_billno": mch_billno,
            "mch_id": merchant.mch_id,
            "sub_mch_id": merchant.sub_mch_id,
            "wxappid": _required(merchant.appid, "appid", SendGroupRedpackRequest.api),
            "msgappid": merchant.msgappid,
            "send_name": send_name,
            "re_openid": re_openid,
            "total_amount": total_amount,
            "total_num": total_num,
            "amt_type": "ALL_RAND",
            "wishing": wishing,
            "act_name": act_name,
            "remark": remark,
            "scene_id": scene_id,
            "risk_info": risk_info,
            "consume_mch_id": merchant.consume_mch_id if consume_mch_id is None else consume_mch_id,
        }

    def _mini_params(
        self,
        *,
        mch_billno: str,
        re_openid: str,
        total_amount: int,
        send_name: str,
        wishing: str,
        act_name: str,
        remark: str,
        scene_id: str | None,
    ) -> dict[str, str | int | None]:
        merchant = self.merchant
        if merchant.sub_mch_id is not None:
            # sendminiprogramhb has no SP-mode fields: the packet would be paid from the service
            # provider's own balance, not the sub-merchant's.
            raise ConfigurationError(
                "sendminiprogramhb documents no service-provider mode; this merchant has "
                "sub_mch_id set, so it is refused rather than paid from the provider's account"
            )
        return {
            "mch_billno": mch_billno,
            "mch_id": merchant.mch_id,
            "wxappid": _required(
                merchant.mini_appid, "mini_appid", SendMiniProgramRedpackRequest.api
            ),
            "send_name": send_name,
            "re_openid": re_openid,
            "total_amount": total_amount,
            "total_num": 1,
            "wishing": wishing,
            "act_name": act_name,
            "remark": remark,
            "notify_way": "MINI_PROGRAM_JSAPI",
            "scene_id": scene_id,
        }

    def _workwx_params(
        self,
        *,
        mch_billno: str,
        re_openid: str,
        total_amount: int,
        sender_name: str | None,
        agentid: int | None,
        sender_header_media_id: str | None,
        wishing: str,
        act_name: str,
        remark: str,
        scene_id: str | None,
    ) -> dict[str, str | int | None]:
        self._wecom_secret()  # before anything else: without it nothing can be signed
        return {
            "mch_billno": mch_billno,
            "mch_id": self.merchant.mch_id,
            "wxappid": _required(
                self.merchant.wecom_corpid, "wecom_corpid", SendWorkwxRedpackRequest.api
            ),
            "sender_name": sender_name,
            "agentid": agentid,
            "sender_header_media_id": sender_header_media_id,
            "re_openid": re_openid,
            "total_amount": total_amount,
            "wishing": wishing,
            "act_name": act_name,
            "remark": remark,
            "scene_id": scene_id,
        }

    def _wecom_secret(self) -> str:
        secret = self.merchant.wecom_secret
        if secret is None:
            raise ConfigurationError(
                "Merchant.wecom_secret must be set for sendworkwxredpack: the secret of the "
                "WeCom corp's 企业支付 app (config: wecom_secret_file)"
            )
        return secret.get_secret_value()

    def changed_params(
        self, api: str, params: Mapping[str, str | int], changes: Mapping[str, str | int]
    ) -> dict[str, str | int]:
        """Checked send parameters with some values replaced, unchecked (a re-issue's new bill
        number and nonce; a campaign's next line): a WeCom packet's `workwx_sign` is made
        again, since it covers the bill, the nonce, the receiver and the amount."""
        params = {**params, **changes}
        if api == SendWorkwxRedpackRequest.api:
            params["workwx_sign"] = workwx_sign(params, self._wecom_secret())
        return params

    def _send_call(
        self, model: type[ApiRequest], params: Mapping[str, str | int | None]
    ) -> Call[SendResult]:
        return self._prepare(model, str(params["mch_billno"]), params, _send_result(model))

    def _workwx_query_call(self, mch_billno: str, corpid: str | None) -> Call[RedpackInfo]:
        if corpid is None:
            corpid = _required(
                self.merchant.wecom_corpid, "wecom_corpid", QueryWorkwxRedpackRequest.api
            )
        params: dict[str, str | int | None] = {
            "mch_billno": mch_billno,
            "mch_id": self.merchant.mch_id,
            "appid": corpid,
        }

        def missing(raw: bytes) -> RedpackInfo:
            return WorkwxRedpackInfo.not_found(mch_billno, raw)

        return self._prepare(
            QueryWorkwxRedpackRequest, mch_billno, params, WorkwxRedpackInfo.from_response, missing
        )

    def _query_for(self, api: str, mch_billno: str) -> Call[RedpackInfo]:
        """The query that finds a bill sent with `api`: queryworkwxredpack for WeCom packets,
        gethbinfo (the Official Account's appid) for the others."""
        if api == SendWorkwxRedpackRequest.api:
            return self._workwx_query_call(mch_billno, None)
        return self._query_call(mch_billno, None)

    def _query_call(self, mch_billno: str, appid: str | None) -> Call[RedpackInfo]:
        if appid is None:
            appid = self.merchant.appid or self.merchant.mini_appid
        if appid is None:
            raise ConfigurationError("gethbinfo needs appid=, or Merchant.appid or mini_appid")
        params: dict[str, str | int | None] = {
            "mch_billno": mch_billno,
            "mch_id": self.merchant.mch_id,
            "appid": appid,
            "bill_type": "MCHT",
        }

        def missing(raw: bytes) -> RedpackInfo:
            return RedpackInfo.not_found(mch_billno, raw)

        return self._prepare(
            QueryRedpackRequest, mch_billno, params, RedpackInfo.from_response, missing
        )

    def _prepare(
        self,
        model: type[ApiRequest],
        mch_billno: str,
        params: Mapping[str, str | int | None],
        result: Callable[[XmlDict, bytes], T],
        missing: Callable[[bytes], T] | None = None,
    ) -> Call[T]:
        wire = self._checked(model, mch_billno, params, _nonce())
        return self._signed(model, mch_billno, wire, result, missing)

    def _checked(
        self,
        model: type[ApiRequest],
        mch_billno: str,
        params: Mapping[str, str | int | None],
        nonce_str: str,
    ) -> dict[str, str | int]:
        wire = {name: value for name, value in params.items() if value is not None}
        try:
            model.check(wire, self.merchant.limits)
        except ValidationError as exc:
            exc.mch_billno = mch_billno
            raise
        wire["nonce_str"] = nonce_str
        if model is SendWorkwxRedpackRequest and "workwx_sign" not in wire:
            # First over its seven fields with the WeCom secret, then the outer sign covers it.
            wire["workwx_sign"] = workwx_sign(wire, self._wecom_secret())
        return wire

    def _signed(
        self,
        model: type[ApiRequest],
        mch_billno: str,
        wire: Mapping[str, str | int],
        result: Callable[[XmlDict, bytes], T],
        missing: Callable[[bytes], T] | None = None,
    ) -> Call[T]:
        signed = {**wire, "sign": sign(wire, self._api_key)}
        body = dumps(signed)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s request mch_billno=%s %s", model.api, mch_billno, masked(signed))
        request = WireRequest(PATH_PREFIX + model.api, body)
        echo = {name: str(wire[name]) for name in _ECHOED if name in wire}
        return Call(model.api, mch_billno, request, result, missing, echo)

    def _frozen_call(self, api: str, params: Mapping[str, str | int]) -> Call[SendResult]:
        model = SEND_APIS.get(api)
        if model is None:
            raise ValueError(f"{api!r} is not a send API ({', '.join(SEND_APIS)})")
        mch_billno = str(params.get("mch_billno", ""))
        if params.get("mch_id") != self.merchant.mch_id:
            raise ConfigurationError(
                f"these parameters are for merchant {params.get('mch_id')!r}, "
                f"not {self.merchant.mch_id!r}"
            )
        nonce = params.get("nonce_str")
        if "sign" in params:
            raise ValueError("frozen parameters are unsigned: a signature is made per send")
        check_text("nonce_str", nonce if isinstance(nonce, str) else "", 32)
        if model is SendWorkwxRedpackRequest and not params.get("workwx_sign"):
            raise ValueError("frozen sendworkwxredpack parameters lack their workwx_sign")
        fields = {name: value for name, value in params.items() if name != "nonce_str"}
        self._checked(model, mch_billno, fields, str(nonce))
        # Signed as recorded, in the recorded order: the same bytes on every resend (a WeCom
        # packet's recorded workwx_sign included).
        return self._signed(model, mch_billno, params, _send_result(model))

    # --- reading ----------------------------------------------------------------------------

    def _attempts(self, call: Call[T]) -> Attempts:
        return Attempts(call.api, call.mch_billno, self.merchant.retry, query=call.is_query)

    def _transport_failure(self, call: Call[T], error: ConnectError | TransportError) -> Failure:
        if error.mch_billno is None:
            error.mch_billno = call.mch_billno
        if error.advice is None:
            error.advice = ADVICE_CONNECT if isinstance(error, ConnectError) else ADVICE_TRANSPORT
        logger.debug("%s mch_billno=%s: %r", call.api, call.mch_billno, error)
        return Failure(error, transient=True)

    def _read(self, call: Call[T], response: WireResponse) -> T | Failure:
        raw = response.body
        if response.status != 200:
            error = TransportError(
                f"{call.api}: HTTP {response.status} from {response.url or 'the server'}",
                raw=raw,
                mch_billno=call.mch_billno,
                advice=ADVICE_TRANSPORT,
            )
            return Failure(error, transient=response.status >= 500)
        try:
            data = loads(raw)
        except XmlError as exc:
            return self._unusable(call, f"unparseable answer: {exc}", raw)
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s response mch_billno=%s %s", call.api, call.mch_billno, masked(data))
        if "sign" in data and not self._signature_ok(data):
            return self._unusable(call, "the answer's signature does not match", raw, data)
        row = classify(data, query=call.is_query)
        if row is None:
            return self._success(call, data, raw)
        if row.error is None and call.missing is not None:
            return call.missing(raw)
        return Failure(
            row.build(data, raw=raw, mch_billno=call.mch_billno), transient=row.retry_in_call
        )

    def _success(self, call: Call[T], data: XmlDict, raw: bytes) -> T | Failure:
        for name, sent in call.echo.items():
            echoed = data.get(name)
            if isinstance(echoed, str) and echoed.strip() and echoed.strip() != sent:
                what = "the answer is for bill number" if name == "mch_billno" else f"{name} is"
                mismatch = f"{what} {echoed!r}, not the {sent!r} requested"
                return self._unusable(call, mismatch, raw, data)
        if not call.is_query and not _text(data.get("send_listid")):
            return self._unusable(call, "a success without send_listid", raw, data)
        try:
            return call.result(data, raw)
        except PydanticValidationError as exc:
            problem = exc.errors(include_url=False, include_input=False)[0]
            field = ".".join(str(part) for part in problem["loc"]) or "fields"
            return self._unusable(call, f"malformed {field} in a success: {problem['msg']}", raw)

    def _signature_ok(self, data: XmlDict) -> bool:
        # Responses are signed over their flat fields (docs/protocol.md §2.4); a nested container
        # (hblist) has no defined place in that string, so it is left out. [U]: no live response has
        # a sign at all.
        flat = {name: value for name, value in data.items() if isinstance(value, str)}
        return verify(flat, self._api_key)

    def _unusable(
        self, call: Call[T], problem: str, raw: bytes, data: XmlDict | None = None
    ) -> Failure:
        fields = data or {}
        error = ResponseError(
            f"{call.api}: {problem}",
            err_code=_text(fields.get("err_code")),
            return_code=_text(fields.get("return_code")),
            raw=raw,
            mch_billno=call.mch_billno,
            advice=ADVICE_RESPONSE,
        )
        return Failure(error, transient=False)


def _required(appid: str | None, attribute: str, purpose: str) -> str:
    if appid is None:
        raise ConfigurationError(f"Merchant.{attribute} must be set for {purpose}")
    return appid


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None
