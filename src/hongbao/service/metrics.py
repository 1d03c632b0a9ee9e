"""`/metrics`: what `hongbao serve` exposes to Prometheus (prometheus-client).

Labels are merchant names (from the configuration), API names, states, err_codes and webhook
endpoint numbers (their order in the configuration) — never an openid, a key, a bill number,
a token or a URL (which may carry credentials).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from hongbao.api.codes import SEND_CODES
from hongbao.errors import ConnectError, Outcome
from hongbao.wire.transport import AsyncTransport, WireRequest, WireResponse

__all__ = ["LedgerCollector", "MeteredTransport", "Metrics"]

_ERR_CODE = re.compile(rb"<err_code>(?:<!\[CDATA\[)?([A-Z_0-9.]{1,64})")
_RESULT = re.compile(rb"<result_code>(?:<!\[CDATA\[)?([A-Z]{1,16})")
_RETURN = re.compile(rb"<return_code>(?:<!\[CDATA\[)?([A-Z]{1,16})")
_QUERIES = frozenset({"gethbinfo"})


class Metrics:
    """The service's counters and histograms, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        # Only the samples: the `_created` twins of each series double a scrape for nothing.
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.requests = Counter(
            "hongbao_wechat_requests",
            "Requests to WeChat Pay by merchant, API and result (SUCCESS, an err_code, "
            "return_code FAIL, HTTP status or a transport failure).",
            ["merchant", "api", "result"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "hongbao_wechat_request_seconds",
            "Time from sending a request to WeChat Pay to its answer (or failure).",
            ["merchant", "api"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
            registry=self.registry,
        )
        self.freq_limit = Counter(
            "hongbao_freq_limit_answers",
            "FREQ_LIMIT answers from WeChat Pay (the merchant is sending too fast).",
            ["merchant"],
            registry=self.registry,
        )
        self.unknown = Counter(
            "hongbao_unknown_outcomes",
            "Send attempts whose outcome is unknown (no answer, or an answer that does not say); "
            "hongbao resolves each by query or a same-bill resend.",
            ["merchant"],
            registry=self.registry,
        )
        self.webhook_attempts = Counter(
            "hongbao_webhook_attempts",
            "Webhook delivery attempts by endpoint number and result (delivered or failed).",
            ["endpoint", "result"],
            registry=self.registry,
        )

    def observe(self, merchant: str, api: str, result: str, seconds: float) -> None:
        """Count one WeChat request."""
        self.requests.labels(merchant, api, result).inc()
        self.latency.labels(merchant, api).observe(seconds)
        if result == "FREQ_LIMIT":
            self.freq_limit.labels(merchant).inc()
        if api not in _QUERIES and _unknown(result):
            self.unknown.labels(merchant).inc()


def _unknown(result: str) -> bool:
    if result == "transport_error" or result.startswith("http_") or result == "return_FAIL":
        return True
    code = SEND_CODES.get(result)
    return code is not None and code.outcome is Outcome.UNKNOWN


def classify(response: WireResponse) -> str:
    """The result of an answer, read cheaply from its bytes (no XML parse)."""
    if response.status != 200:
        return f"http_{response.status}"
    returned = _RETURN.search(response.body)
    if returned is not None and returned.group(1) != b"SUCCESS":
        return "return_FAIL"
    code = _ERR_CODE.search(response.body)
    if code is not None and code.group(1) not in (b"SUCCESS", b""):
        return code.group(1).decode()
    result = _RESULT.search(response.body)
    return result.group(1).decode() if result is not None else "SUCCESS"


class MeteredTransport(AsyncTransport):
    """An `AsyncTransport` that times and counts each request of a merchant's client."""

    def __init__(self, inner: AsyncTransport, metrics: Metrics, merchant: str) -> None:
        self.inner = inner
        self.metrics = metrics
        self.merchant = merchant

    async def handle_async_request(self, request: WireRequest) -> WireResponse:
        """Send through the inner transport; count the result whatever it is."""
        api = request.path.rstrip("/").rsplit("/", 1)[-1]
        started = time.perf_counter()
        result = "transport_error"
        try:
            response = await self.inner.handle_async_request(request)
        except ConnectError:
            result = "connect_error"  # never reached WeChat: nothing was sent
            raise
        else:
            result = classify(response)
            return response
        finally:
            self.metrics.observe(self.merchant, api, result, time.perf_counter() - started)

    async def aclose(self) -> None:
        """Close the inner transport."""
        await self.inner.aclose()


class LedgerCollector(Collector):
    """Gauges read from the ledger at each scrape: payouts by merchant and state, webhook
    deliveries pending and given up by endpoint number."""

    def __init__(
        self,
        payouts: Callable[[], Mapping[tuple[str, str], int]],
        webhooks: Callable[[], Mapping[str, tuple[int, int]]],
    ) -> None:
        self._payouts = payouts
        self._webhooks = webhooks

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """The gauges, fresh from the ledger."""
        payouts = GaugeMetricFamily(
            "hongbao_payouts", "Payouts in the ledger by merchant and state.",
            labels=["merchant", "state"],
        )
        for (merchant, state), count in sorted(self._payouts().items()):
            payouts.add_metric([merchant, state], count)
        yield payouts
        pending = GaugeMetricFamily(
            "hongbao_webhook_backlog", "Webhook deliveries not done yet, by endpoint number.",
            labels=["endpoint"],
        )
        given_up = GaugeMetricFamily(
            "hongbao_webhook_given_up",
            "Webhook deliveries given up after 24 h of failures, by endpoint number.",
            labels=["endpoint"],
        )
        for endpoint, (waiting, failed) in sorted(self._webhooks().items()):
            pending.add_metric([endpoint], waiting)
            given_up.add_metric([endpoint], failed)
        yield pending
        yield given_up
