"""`Client` (sync, on httpx) and `AsyncClient` (async, on asyncio): the red packet calls.

Both are thin I/O shells over `BaseClient`: the request is checked, signed and serialised once,
then sent; transient failures (connection errors, timeouts, HTTP 5xx, SYSTEMERROR) are resent
with the identical bytes up to `merchant.retry.max_retries` times; anything else raises the one
exception its answer maps to (`hongbao.api.codes`). The bill number always comes from the
caller (`hongbao.ids.mint_bill_no` mints one): it is the packet's idempotency key. A ledger
records `send_params(...)` first and sends them with `send_frozen`, byte-identical on every resend.

>>> client = Client(merchant)  # doctest: +SKIP
>>> result = client.send_redpack(  # doctest: +SKIP
...     mch_billno=mint_bill_no(merchant.mch_id, clock.now()), re_openid=openid,
...     total_amount=100, send_name="Acme", wishing="Thanks!", act_name="Spring", remark="Enjoy")
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Self, TypeVar

from hongbao.api._base import BaseClient, Call, Failure
from hongbao.api.merchant import Merchant
from hongbao.api.models import (
    RedpackInfo,
    SendGroupRedpackRequest,
    SendMiniProgramRedpackRequest,
    SendRedpackRequest,
    SendResult,
    SendWorkwxRedpackRequest,
    WorkwxRedpackInfo,
    WorkwxSendResult,
)
from hongbao.clock import Clock
from hongbao.errors import ConfigurationError, ConnectError, TransportError
from hongbao.wire.transport import AsyncTransport, Transport

__all__ = ["AsyncClient", "Client"]

T = TypeVar("T")
Pace = Callable[[], Awaitable[None]]
"""Waits for the caller's next slot of the merchant's rate (e.g. `Pacer.acquire`)."""


def _require_certificate(merchant: Merchant) -> None:
    if merchant.certificate is None:
        raise ConfigurationError(
            f"merchant {merchant.mch_id} has no API certificate: every red packet API needs it "
            "(Merchant.from_p12 / from_pem_files), or pass a transport"
        )


def _http_transport(merchant: Merchant, clock: Clock) -> Transport:
    _require_certificate(merchant)
    # Imported here so that a client on an explicit transport never loads httpx.
    from hongbao.wire.http_sync import HttpxTransport

    return HttpxTransport(
        base_url=merchant.base_url,
        backup_url=merchant.backup_url,
        certificate=merchant.certificate,
        ca_bundle=merchant.ca_bundle,
        timeouts=merchant.timeouts,
        clock=clock,
    )


def _asyncio_transport(merchant: Merchant, clock: Clock) -> AsyncTransport:
    _require_certificate(merchant)
    from hongbao.wire.http_async import AsyncioTransport

    return AsyncioTransport(
        base_url=merchant.base_url,
        backup_url=merchant.backup_url,
        certificate=merchant.certificate,
        ca_bundle=merchant.ca_bundle,
        timeouts=merchant.timeouts,
        clock=clock,
    )


class Client(BaseClient):
    """Synchronous client for one merchant.

    Without `transport`, an httpx transport with the merchant's certificate is created and
    closed with the client. `sleep` is how retries wait (tests pass a recorder).

    >>> with Client(merchant) as client:  # doctest: +SKIP
    ...     info = client.query_redpack("1900000109202403150000000001")
    """

    def __init__(
        self,
        merchant: Merchant,
        *,
        transport: Transport | None = None,
        clock: Clock | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(merchant, clock=clock)
        self._owns_transport = transport is None
        self.transport = (
            transport if transport is not None else _http_transport(merchant, self.clock)
        )
        self._sleep = sleep

    def send_redpack(
        self,
        *,
        mch_billno: str,
        re_openid: str,
        total_amount: int,
        send_name: str,
        wishing: str,
        act_name: str,
        remark: str,
        scene_id: str | None = None,
        risk_info: str | None = None,
        client_ip: str | None = None,
        consume_mch_id: str | None = None,
    ) -> SendResult:
        """sendredpack: one normal packet of `total_amount` fen to `re_openid`
        (docs/protocol.md §3.2)."""
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
            client_ip=client_ip,
            consume_mch_id=consume_mch_id,
        )
        return self._execute(self._send_call(SendRedpackRequest, params))

    def send_group_redpack(
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
        scene_id: str | None = None,
        risk_info: str | None = None,
        consume_mch_id: str | None = None,
    ) -> SendResult:
        """sendgroupredpack: `total_amount` fen split at random into `total_num` shares (§3.3)."""
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
            consume_mch_id=consume_mch_id,
        )
        return self._execute(self._send_call(SendGroupRedpackRequest, params))

    def send_miniprogram_redpack(
        self,
        *,
        mch_billno: str,
        re_openid: str,
        total_amount: int,
        send_name: str,
        wishing: str,
        act_name: str,
        remark: str,
        scene_id: str | None = None,
    ) -> SendResult:
        """sendminiprogramhb: a packet to open in the mini program; see `jsapi_params` (§3.4)."""
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
        return self._execute(self._send_call(SendMiniProgramRedpackRequest, params))

    def send_workwx_redpack(
        self,
        *,
        mch_billno: str,
        re_openid: str,
        total_amount: int,
        wishing: str,
        act_name: str,
        remark: str,
        sender_name: str | None = None,
        agentid: int | None = None,
        sender_header_media_id: str | None = None,
        scene_id: str | None = None,
    ) -> WorkwxSendResult:
        """sendworkwxredpack: one packet to a member of the merchant's WeCom corp, in the name of
        an app (`agentid`) or a person (`sender_name`, optional avatar), signed twice with the
        WeCom payment secret and the API key (docs/protocol.md §15.4)."""
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
        result = self._execute(self._send_call(SendWorkwxRedpackRequest, params))
        assert isinstance(result, WorkwxSendResult)
        return result

    def send_frozen(self, api: str, params: Mapping[str, str | int]) -> SendResult:
        """Send recorded parameters (from `send_params`) unchanged: the same bytes every time.

        `api` is the send call they were built for. A resend with the same bill number is how
        an unknown outcome is resolved without risking a second packet.
        """
        return self._execute(self._frozen_call(api, params))

    def query_redpack(self, mch_billno: str, *, appid: str | None = None) -> RedpackInfo:
        """gethbinfo: the record of `mch_billno` (`found=False` if WeChat has none, yet).

        `appid` defaults to the merchant's Official Account appid. An exception from a query
        concerns the query only: it never says whether the packet was issued.
        """
        return self._execute(self._query_call(mch_billno, appid))

    def query_workwx_redpack(
        self, mch_billno: str, *, corpid: str | None = None
    ) -> WorkwxRedpackInfo:
        """queryworkwxredpack: the WeCom record of `mch_billno` (`found=False` if none, yet).

        `corpid` defaults to the merchant's `wecom_corpid`. As with gethbinfo, an exception from
        a query concerns the query only (docs/protocol.md §15.5).
        """
        info = self._execute(self._workwx_query_call(mch_billno, corpid))
        assert isinstance(info, WorkwxRedpackInfo)
        return info

    def query_for(self, api: str, mch_billno: str) -> RedpackInfo:
        """The record of a bill sent with the send call `api`: queryworkwxredpack for a WeCom
        packet, gethbinfo for the others (with the merchant's default appid)."""
        return self._execute(self._query_for(api, mch_billno))

    def close(self) -> None:
        """Close the transport if this client created it."""
        if self._owns_transport:
            self.transport.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _execute(self, call: Call[T]) -> T:
        attempts = self._attempts(call)
        while True:
            try:
                response = self.transport.handle_request(call.request)
            except (ConnectError, TransportError) as exc:
                outcome: T | Failure = self._transport_failure(call, exc)
            else:
                outcome = self._read(call, response)
            if not isinstance(outcome, Failure):
                return outcome
            delay = attempts.next_delay(outcome)
            if delay is None:
                raise attempts.final_error(outcome)
            self._sleep(delay)


class AsyncClient(BaseClient):
    """Asynchronous client for one merchant; the twin of `Client`.

    Without `transport`, an asyncio transport with the merchant's certificate is created (its
    session opens lazily inside the running loop) and closed with the client.

    >>> async with AsyncClient(merchant) as client:  # doctest: +SKIP
    ...     info = await client.query_redpack("1900000109202403150000000001")
    """

    def __init__(
        self,
        merchant: Merchant,
        *,
        transport: AsyncTransport | None = None,
        clock: Clock | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        super().__init__(merchant, clock=clock)
        self._owns_transport = transport is None
        self.transport = (
            transport if transport is not None else _asyncio_transport(merchant, self.clock)
        )
        self._sleep = sleep

    async def send_redpack(
        self,
        *,
        mch_billno: str,
        re_openid: str,
        total_amount: int,
        send_name: str,
        wishing: str,
        act_name: str,
        remark: str,
        scene_id: str | None = None,
        risk_info: str | None = None,
        client_ip: str | None = None,
        consume_mch_id: str | None = None,
    ) -> SendResult:
        """sendredpack: one normal packet of `total_amount` fen to `re_openid`
        (docs/protocol.md §3.2)."""
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
            client_ip=client_ip,
            consume_mch_id=consume_mch_id,
        )
        return await self._execute(self._send_call(SendRedpackRequest, params))

    async def send_group_redpack(
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
        scene_id: str | None = None,
        risk_info: str | None = None,
        consume_mch_id: str | None = None,
    ) -> SendResult:
        """sendgroupredpack: `total_amount` fen split at random into `total_num` shares (§3.3)."""
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
            consume_mch_id=consume_mch_id,
        )
        return await self._execute(self._send_call(SendGroupRedpackRequest, params))

    async def send_miniprogram_redpack(
        self,
        *,
        mch_billno: str,
        re_openid: str,
        total_amount: int,
        send_name: str,
        wishing: str,
        act_name: str,
        remark: str,
        scene_id: str | None = None,
    ) -> SendResult:
        """sendminiprogramhb: a packet to open in the mini program; see `jsapi_params` (§3.4)."""
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
        return await self._execute(self._send_call(SendMiniProgramRedpackRequest, params))

    async def send_workwx_redpack(
        self,
        *,
        mch_billno: str,
        re_openid: str,
        total_amount: int,
        wishing: str,
        act_name: str,
        remark: str,
        sender_name: str | None = None,
        agentid: int | None = None,
        sender_header_media_id: str | None = None,
        scene_id: str | None = None,
    ) -> WorkwxSendResult:
        """sendworkwxredpack: one packet to a member of the merchant's WeCom corp, in the name of
        an app (`agentid`) or a person (`sender_name`, optional avatar), signed twice with the
        WeCom payment secret and the API key (docs/protocol.md §15.4)."""
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
        result = await self._execute(self._send_call(SendWorkwxRedpackRequest, params))
        assert isinstance(result, WorkwxSendResult)
        return result

    async def send_frozen(
        self, api: str, params: Mapping[str, str | int], *, pace: Pace | None = None
    ) -> SendResult:
        """Send recorded parameters (from `send_params`) unchanged: the same bytes every time.

        `api` is the send call they were built for. A resend with the same bill number is how
        an unknown outcome is resolved without risking a second packet. `pace` is awaited
        before each retry within the call (WeChat counts every call against the rate).
        """
        return await self._execute(self._frozen_call(api, params), pace)

    async def query_redpack(
        self, mch_billno: str, *, appid: str | None = None, pace: Pace | None = None
    ) -> RedpackInfo:
        """gethbinfo: the record of `mch_billno` (`found=False` if WeChat has none, yet).

        `appid` defaults to the merchant's Official Account appid. An exception from a query
        concerns the query only: it never says whether the packet was issued. `pace` is awaited
        before each retry within the call.
        """
        return await self._execute(self._query_call(mch_billno, appid), pace)

    async def query_workwx_redpack(
        self, mch_billno: str, *, corpid: str | None = None, pace: Pace | None = None
    ) -> WorkwxRedpackInfo:
        """queryworkwxredpack: the WeCom record of `mch_billno` (`found=False` if none, yet).

        `corpid` defaults to the merchant's `wecom_corpid`. As with gethbinfo, an exception from
        a query concerns the query only (docs/protocol.md §15.5).
        """
        info = await self._execute(self._workwx_query_call(mch_billno, corpid), pace)
        assert isinstance(info, WorkwxRedpackInfo)
        return info

    async def query_for(
        self, api: str, mch_billno: str, *, pace: Pace | None = None
    ) -> RedpackInfo:
        """The record of a bill sent with the send call `api`: queryworkwxredpack for a WeCom
        packet, gethbinfo for the others (with the merchant's default appid)."""
        return await self._execute(self._query_for(api, mch_billno), pace)

    async def aclose(self) -> None:
        """Close the transport if this client created it."""
        if self._owns_transport:
            await self.transport.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def _execute(self, call: Call[T], pace: Pace | None = None) -> T:
        attempts = self._attempts(call)
        while True:
            try:
                response = await self.transport.handle_async_request(call.request)
            except (ConnectError, TransportError) as exc:
                outcome: T | Failure = self._transport_failure(call, exc)
            else:
                outcome = self._read(call, response)
            if not isinstance(outcome, Failure):
                return outcome
            delay = attempts.next_delay(outcome)
            if delay is None:
                raise attempts.final_error(outcome)
            await self._sleep(delay)
            if pace is not None:
                await pace()
