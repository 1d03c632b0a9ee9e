"""Requests per second of the real transports against a do-nothing mutual-TLS endpoint.

The endpoint runs in a child process on 127.0.0.1 (uvloop when installed), answers every POST
with a fixed 200 and requires a client certificate, so each client pays the full mTLS cost with
kept-alive connections. Each case runs for a fixed time (3 s by default), then stops.

    .venv/bin/python bench/transport.py [--seconds 3] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import ssl
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import httpx
import trustme

from hongbao.wire.certs import ClientCertificate, make_ssl_context
from hongbao.wire.http_async import AsyncioTransport
from hongbao.wire.http_sync import HttpxTransport
from hongbao.wire.transport import WireRequest

REPLY = b"<xml><return_code><![CDATA[SUCCESS]]></return_code></xml>"
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/xml\r\nContent-Length: "
    + str(len(REPLY)).encode()
    + b"\r\n\r\n"
    + REPLY
)
REQUEST = WireRequest(
    "/mmpaymkttransfers/sendredpack",
    ("<xml>" + "<field><![CDATA[value]]></field>" * 15 + "</xml>").encode(),
)


class _NullHttp(asyncio.Protocol):
    """Just enough HTTP/1.1 to answer one POST after another on a kept-alive connection."""

    def __init__(self) -> None:
        self.buffer = b""
        self.transport: asyncio.WriteTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TLS transport is not registered as an asyncio.Transport subclass.
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end].lower()
            start = head.find(b"content-length:")
            length = int(head[start + 15 :].split(b"\r\n", 1)[0]) if start >= 0 else 0
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length :]
            assert self.transport is not None
            self.transport.write(RESPONSE)


def _serve(directory: str, port_out: multiprocessing.SimpleQueue[int], seconds: float) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(Path(directory, "server.pem"), Path(directory, "server.key"))
    context.load_verify_locations(Path(directory, "ca.pem"))
    context.verify_mode = ssl.CERT_REQUIRED

    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(
            _NullHttp, "127.0.0.1", 0, ssl=context
        )
        port_out.put(server.sockets[0].getsockname()[1])
        await asyncio.sleep(seconds)  # the endpoint stops by itself
        server.close()

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())


async def _drive(call: Callable[[], Awaitable[object]], concurrency: int, seconds: float) -> int:
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await call()
            done += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done


async def _asyncio(
    url: str, certificate: ClientCertificate, ca: Path, concurrency: int, seconds: float
) -> int:
    async with AsyncioTransport(base_url=url, certificate=certificate, ca_bundle=ca) as transport:
        await transport.handle_async_request(REQUEST)  # warm up: the first handshake
        return await _drive(lambda: transport.handle_async_request(REQUEST), concurrency, seconds)


async def _aiohttp(
    url: str, certificate: ClientCertificate, ca: Path, concurrency: int, seconds: float
) -> int:
    connector = aiohttp.TCPConnector(ssl=make_ssl_context(certificate, ca))
    async with aiohttp.ClientSession(connector=connector, trust_env=False) as session:

        async def call() -> None:
            async with session.post(url + REQUEST.path, data=REQUEST.body) as response:
                response.raise_for_status()
                await response.read()

        await call()
        return await _drive(call, concurrency, seconds)


async def _httpx_async(
    url: str, certificate: ClientCertificate, ca: Path, concurrency: int, seconds: float
) -> int:
    async with httpx.AsyncClient(
        verify=make_ssl_context(certificate, ca), trust_env=False
    ) as client:

        async def call() -> None:
            response = await client.post(url + REQUEST.path, content=REQUEST.body)
            response.raise_for_status()

        await call()
        return await _drive(call, concurrency, seconds)


def _httpx_sync(
    url: str, certificate: ClientCertificate, ca: Path, threads: int, seconds: float
) -> int:
    counts = [0] * threads
    with HttpxTransport(base_url=url, certificate=certificate, ca_bundle=ca) as transport:
        transport.handle_request(REQUEST)
        deadline = time.perf_counter() + seconds

        def worker(index: int) -> None:
            while time.perf_counter() < deadline:
                transport.handle_request(REQUEST)
                counts[index] += 1

        workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
        for thread in workers:
            thread.start()
        for thread in workers:
            thread.join()
    return sum(counts)


def main() -> None:
    """Run every case and print requests per second."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    seconds, concurrency = args.seconds, args.concurrency

    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1")
    merchant = ca.issue_cert("merchant.invalid", common_name="1900000109")
    certificate = ClientCertificate.from_pem(
        merchant.cert_chain_pems[0].bytes(), merchant.private_key_pem.bytes()
    )
    with tempfile.TemporaryDirectory() as directory:
        ca_file = Path(directory, "ca.pem")
        ca.cert_pem.write_to_path(str(ca_file))
        server_cert.cert_chain_pems[0].write_to_path(str(Path(directory, "server.pem")))
        server_cert.private_key_pem.write_to_path(str(Path(directory, "server.key")))

        spawn = multiprocessing.get_context("spawn")
        port_queue: multiprocessing.SimpleQueue[int] = spawn.SimpleQueue()
        lifetime = 6 * seconds + 30
        server = spawn.Process(target=_serve, args=(directory, port_queue, lifetime), daemon=True)
        server.start()
        url = f"https://127.0.0.1:{port_queue.get()}"

        cases: list[tuple[str, Callable[[], int]]] = [
            (
                f"AsyncioTransport, {concurrency} in flight",
                lambda: asyncio.run(_asyncio(url, certificate, ca_file, concurrency, seconds)),
            ),
            (
                f"aiohttp.ClientSession (reference), {concurrency} in flight",
                lambda: asyncio.run(_aiohttp(url, certificate, ca_file, concurrency, seconds)),
            ),
            (
                f"httpx.AsyncClient (reference), {concurrency} in flight",
                lambda: asyncio.run(_httpx_async(url, certificate, ca_file, concurrency, seconds)),
            ),
            (
                "HttpxTransport, 1 thread",
                lambda: _httpx_sync(url, certificate, ca_file, 1, seconds),
            ),
            (
                f"HttpxTransport, {concurrency} threads",
                lambda: _httpx_sync(url, certificate, ca_file, concurrency, seconds),
            ),
        ]
        print(f"loopback mTLS endpoint {url}, {seconds:g} s per case")
        try:
            for name, run in cases:
                started = time.perf_counter()
                count = run()
                elapsed = time.perf_counter() - started
                print(f"{name:<52} {count / elapsed:>9,.0f} req/s  ({count} requests)")
        finally:
            server.terminate()
            server.join()


if __name__ == "__main__":
    main()
