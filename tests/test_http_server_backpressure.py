"""HttpServer against clients that do not read their answers, go away mid-answer, or arrive
as it closes: output stays bounded (backpressure), unread output is timed out, an answer is
never written after a refusal, the per-client count stays right, and a closed server serves
nobody. Sockets are bound on 127.0.0.1 only (port 0), every wait is bounded, and every
server and client socket is closed at the end of its scenario.
"""

from __future__ import annotations

import asyncio
import gc
import shutil
import socket
import ssl
import struct
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from gossip.http.server import HttpServer, Limits, Request, Response

LOCAL = "127.0.0.1"
WAIT = 5.0  # the most any step waits for anything

Scenario = Callable[[], Awaitable[None]]


def run(scenario: Scenario, timeout: float = 9.0) -> list[dict[str, Any]]:
    """Run ``scenario`` on a new loop; returns what reached the loop's exception handler
    (e.g. "Task exception was never retrieved"), including at garbage collection."""
    errors: list[dict[str, Any]] = []

    async def main() -> None:
        asyncio.get_running_loop().set_exception_handler(lambda loop, context: errors.append(context))
        await asyncio.wait_for(scenario(), timeout)

    asyncio.run(main())
    gc.collect()
    return errors


async def until(condition: Callable[[], bool], timeout: float = WAIT) -> bool:
    """Poll ``condition`` every 10 ms for at most ``timeout`` seconds."""
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            return False
        await asyncio.sleep(0.01)
    return True


async def echo(body: bytes) -> bytes:
    return body


def unsent(server: HttpServer) -> int:
    """Bytes of answers the server holds unsent, over all its connections."""
    conns = list(server._conns)  # noqa: SLF001
    return sum(c.transport.get_write_buffer_size() for c in conns if c.transport is not None)


# -- 1. pipelined answers wait for the client ---------------------------------------------------


def test_pipelined_answers_wait_until_the_client_reads() -> None:
    body = b"x" * (256 << 10)
    count = 200  # 51 MB of answers: far more than the kernel's socket buffers hold
    calls: list[str] = []

    async def app(request: Request) -> Response:
        calls.append(request.path)
        return Response(200, body, "text/javascript")

    async def scenario() -> None:
        server = HttpServer(echo, app)
        host, port = await server.start((LOCAL, 0))
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(b"GET /static/app.js HTTP/1.1\r\nHost: x\r\n\r\n" * count)
            writer.write_eof()  # half-closed: every request that arrived is still answered
            await writer.drain()
            peak = 0
            for _ in range(50):  # 0.5 s without reading
                await asyncio.sleep(0.01)
                peak = max(peak, unsent(server))
            # The transport's high-water mark (64 KiB) plus one answer, not 51 MB.
            assert peak < 1 << 20, f"the server holds {peak} bytes of answers nobody reads"
            assert len(calls) < count // 2, f"{len(calls)} of {count} answers made without a read"
            received = await asyncio.wait_for(reader.read(), WAIT)  # to EOF: the server closes after the last
            assert received.count(b"HTTP/1.1 200 OK\r\n") == count
            assert len(received) == count * (received.index(b"HTTP/1.1 200", 1))
            assert len(calls) == count
        finally:
            writer.transport.abort()
            await server.close()

    assert run(scenario) == []


def test_a_client_that_never_reads_its_pipelined_answers_is_closed_in_time() -> None:
    limits = Limits(idle_timeout=0.5, keepalive_timeout=30.0)

    async def app(request: Request) -> Response:
        # Trusted, even: output nobody reads is held idle_timeout, not keepalive_timeout.
        return Response(200, b"x" * (256 << 10), "text/javascript", authenticated=True)

    async def scenario() -> None:
        server = HttpServer(echo, app, limits=limits)
        host, port = await server.start((LOCAL, 0))
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(b"GET /static/app.js HTTP/1.1\r\nHost: x\r\n\r\n" * 200)
            await writer.drain()
            assert await until(lambda: unsent(server) > 0)  # held up: the client reads nothing
            start = time.monotonic()
            assert await until(lambda: server.connections == 0, 3.0), "a held-up connection outlived its deadline"
            assert time.monotonic() - start < 2.0
        finally:
            writer.transport.abort()
            await server.close()

    assert run(scenario) == []


# -- 2. output that is not read is timed out, even after Connection: close ---------------------


def test_an_unread_answer_is_dropped_after_its_deadline_but_a_slow_reader_gets_it_all() -> None:
    limits = Limits(idle_timeout=0.3, keepalive_timeout=0.3, head_timeout=0.3, body_grace=0.3)
    body = b"y" * (8 << 20)  # more than the kernel's buffers hold: the rest waits in the transport

    async def app(request: Request) -> Response:
        return Response(200, body, "application/octet-stream")

    request = b"GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"

    async def scenario() -> None:
        server = HttpServer(echo, app, limits=limits)
        host, port = await server.start((LOCAL, 0))
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(request)  # and never read
            await writer.drain()
            assert await until(lambda: unsent(server) > 0)
            start = time.monotonic()
            assert await until(lambda: server.connections == 0, 3.0), "a closing connection kept its unread answer"
            assert time.monotonic() - start < 1.5
        finally:
            writer.transport.abort()
        # A client that reads, if slowly, gets more time as long as it takes some. (A fixed
        # receive buffer: the kernel does not grow it to take the whole answer at once.)
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 << 10)
        sock.setblocking(False)
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (host, port)), WAIT)
        reader, writer = await asyncio.open_connection(sock=sock, limit=1 << 20)
        try:
            writer.write(request)
            await writer.drain()
            received = bytearray()
            start = time.monotonic()
            for _ in range(10_000):  # bounded; at most 4 MB/s
                chunk = await asyncio.wait_for(reader.read(64 << 10), WAIT)
                if not chunk:
                    break
                received += chunk
                await asyncio.sleep(0.015)
            assert received.endswith(body) and received.startswith(b"HTTP/1.1 200 OK\r\n")
            assert time.monotonic() - start > 2 * limits.idle_timeout
        finally:
            writer.transport.abort()
            await server.close()

    assert run(scenario) == []


# -- 3. max_buffered never refuses a connection being answered ---------------------------------


def test_max_buffered_refuses_a_reading_connection_not_one_being_answered() -> None:
    release = asyncio.Event()

    async def slow_app(request: Request) -> Response:
        await release.wait()
        return Response(200, b'{"ok": true}')

    async def scenario() -> None:
        server = HttpServer(echo, slow_app, limits=Limits(max_buffered=100_000))
        host, port = await server.start((LOCAL, 0))
        ra, wa = await asyncio.open_connection(host, port)
        rb, wb = await asyncio.open_connection(host, port)
        try:
            # A: a request being answered, then 60 KB of a pipelined head (the most buffered)
            wa.write(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nX-Pad: " + b"a" * 60_000)
            await wa.drain()
            await asyncio.sleep(0.1)
            # B: 50 KB of a body: together past max_buffered
            wb.write(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 90000\r\n\r\n" + b"b" * 50_000)
            await wb.drain()
            await asyncio.sleep(0.2)
            release.set()
            answer = await asyncio.wait_for(ra.readuntil(b"\r\n\r\n"), WAIT)
            assert answer.startswith(b"HTTP/1.1 200 OK\r\n"), "the connection being answered was refused"
            assert await asyncio.wait_for(ra.readexactly(12), WAIT) == b'{"ok": true}'
            refused = await asyncio.wait_for(rb.read(1000), WAIT)
            assert refused.startswith(b"HTTP/1.1 503 ")
        finally:
            wa.transport.abort()
            wb.transport.abort()
            await server.close()

    assert run(scenario) == []


# -- 4. the per-client count survives a client that leaves mid-answer --------------------------


def test_a_connection_lost_before_its_authenticated_answer_is_uncounted_once() -> None:
    release = asyncio.Event()
    answered: list[bytes] = []

    async def handler(body: bytes) -> bytes:
        await release.wait()  # e.g. waiting for the fsync of what the request changed
        answered.append(body)
        return b"{}"

    async def scenario() -> None:
        server = HttpServer(handler, limits=Limits(max_per_client=3))
        host, port = await server.start((LOCAL, 0))
        clients = [await asyncio.open_connection(host, port) for _ in range(2)]
        try:
            assert await until(lambda: server.connections == 2)
            for i in range(3):
                release.clear()
                _, writer = await asyncio.open_connection(host, port)
                writer.write(b"POST /v1/peer HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
                await writer.drain()
                assert await until(lambda: server.connections == 3)
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()  # a reset before the answer
                assert await until(lambda: server.connections == 2)
                release.set()
                assert await until(lambda: len(answered) == i + 1)
                await asyncio.sleep(0.02)  # the answer (and its trust) completes
            for _ in range(4):
                clients.append(await asyncio.open_connection(host, port))
            await asyncio.sleep(0.1)
            assert server.connections == 3, "max_per_client=3 was bypassed"
        finally:
            for _, writer in clients:
                writer.transport.abort()
            await server.close()

    assert run(scenario) == []


# -- 7. a closed server serves nobody, not even a TLS handshake under way at close -------------


@pytest.fixture
def certs(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=gossip-test",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )
    return cert, key


def test_a_tls_handshake_finishing_after_close_is_not_served(certs: tuple[Path, Path]) -> None:
    cert, key = certs
    calls: list[bytes] = []

    async def handler(body: bytes) -> bytes:
        calls.append(body)
        return b"{}"

    async def scenario() -> None:
        server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_ctx.load_cert_chain(cert, key)
        server = HttpServer(handler, ssl_context=server_ctx)
        host, port = await server.start((LOCAL, 0))
        reader, writer = await asyncio.open_connection(host, port)  # TCP now, TLS after close
        answer = b""
        try:
            await asyncio.sleep(0.1)
            await asyncio.wait_for(server.close(), WAIT)
            try:
                await asyncio.wait_for(writer.start_tls(ssl.create_default_context(cafile=cert)), WAIT)
                writer.write(b"POST /v1/peer HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")
                await writer.drain()
                answer = await asyncio.wait_for(reader.read(1000), WAIT)
            except (ConnectionError, ssl.SSLError):
                pass  # the server aborted the connection: as it should
            assert answer == b"" and calls == []
            assert server.connections == 0
            assert server._sweeper is None  # noqa: SLF001  (nothing re-armed after close)
        finally:
            writer.transport.abort()
            await asyncio.sleep(0.05)

    assert run(scenario) == []
