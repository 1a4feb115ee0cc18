"""Requests out: the HTTP :class:`~gossip.transport.Transport`, over pooled persistent connections.

:class:`HttpTransport` sends node-to-node requests (``POST /v1/peer``) over HTTP/1.1
connections that it keeps open per peer (at most ``pool_size`` idle ones each, each reused
while it has been idle less than :data:`POOL_IDLE`, which is shorter than the server's
keep-alive timeout so that a reused connection is rarely one the server is closing). Idle
connections past that are closed, not only skipped: a node that meets a random peer every
round would otherwise hold a connection (and its peer one more) to every peer it met within
the server's keep-alive, hundreds on a large network. ``TCP_NODELAY`` is on (asyncio
sets it): without it a small answer waits for the delayed ACK, ~40 ms. Every call has a
timeout; a connection that times out or misbehaves is dropped, never reused. A request that
fails on a *reused* connection before any answer byte arrived is sent once more on a fresh one:
the server had closed the idle connection, and had not read the request.

It also serves (:meth:`HttpTransport.serve`, with :class:`~gossip.http.server.HttpServer`).
Everything runs on one asyncio event loop: the caller's (``loop=``), or one the transport
starts in a daemon thread. The ``*_async`` methods run on that loop; the plain ones are for
other threads and wait for it.

:func:`http_call` is a one-shot request for the command-line client: one deadline for the
whole call, a cap on the answer read as it arrives; no proxies, no redirects, no other URL
schemes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import json
import re
import ssl
import threading
import time
import urllib.parse
import socket
from typing import Any, Coroutine, Mapping, TypeVar

from ..errors import AnswerTooLarge, ErrorCode, LocalProtocolError, TransportError
from ..messages import MAX_MESSAGE_BYTES
from .h1 import SERVER_NAME, HeadError, parse_head
from .server import PEER_PATH, App, Handler, HttpServer, Limits, hostport

__all__ = ["HttpTransport", "LoopThread", "http_call", "error_fields", "getaddrinfo_within", "POOL_IDLE"]

Address = tuple[str, int]
T = TypeVar("T")

#: Seconds an idle pooled connection is kept and reused; then it is closed. Peers a node
#: talks to every round or by push (its eager and active ones) stay connected; one met by a
#: round now and then costs a new connection (~0.15 ms of CPU on loopback) rather than an open
#: socket at both ends for minutes. The server keeps authenticated connections 330 s.
POOL_IDLE = 60.0
_MAX_ANSWER_HEAD = 64 * 1024


class LoopThread:
    """An asyncio event loop running in a daemon thread, for callers that are not async."""

    def __init__(self, name: str = "gossip-loop") -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            # As asyncio.run() does: what is still pending is cancelled and unwinds (its
            # finally clauses run) before the loop closes; a task merely dropped would be
            # destroyed pending, with a "Task was destroyed" error on stderr at every stop.
            pending = asyncio.all_tasks(self.loop)
            for task in pending:
                task.cancel()
            if pending:
                self.loop.run_until_complete(asyncio.wait(pending, timeout=5.0))
            self.loop.run_until_complete(self.loop.shutdown_asyncgens())
            self.loop.close()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop and wait for its result (not from the loop's own thread)."""
        if threading.current_thread() is self._thread:
            coro.close()
            raise RuntimeError("LoopThread.run() called from its own loop; await the coroutine instead")
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            if threading.current_thread() is not self._thread:
                self._thread.join(timeout=5.0)


class _Reused(Exception):
    """A reused connection ended before any answer byte: the request may be sent again."""


class _ClientConnection(asyncio.Protocol):
    """One persistent connection to a peer; one request at a time."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes, bool]] | None = None
        self.closed = False
        self.idle_since = time.monotonic()
        self._status = 0
        self._length: int | None = None  # None: until the head is read; -1: until close
        self._keep = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter, self.waiter = self.waiter, None
        if waiter is None or waiter.done():
            return
        if self._length == -1:  # a body delimited by the close: this is its end
            waiter.set_result((self._status, bytes(self.buffer), False))
        elif not self.buffer and self._length is None:
            waiter.set_exception(_Reused())
        else:
            waiter.set_exception(http.client.IncompleteRead(bytes(self.buffer)))

    def data_received(self, data: bytes) -> None:
        if self.waiter is None or self.waiter.done():
            self.abort()  # an answer nobody asked for
            return
        self.buffer += data
        try:
            self._parse()
        except (HeadError, _TooLarge) as exc:
            self.waiter.set_exception(exc)
            self.waiter = None
            self.abort()

    def _parse(self) -> None:
        while self._length is None:  # heads until the answer's own (past any "100 Continue")
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > _MAX_ANSWER_HEAD:
                    raise HeadError("the answer's head is too long")
                return
            head = parse_head(bytes(self.buffer[:end]), request=False)
            del self.buffer[: end + 4]
            self._status = int(head.start[1])
            if self._status == 100:  # "100 Continue": the real answer follows
                continue
            if head.get("transfer-encoding") is not None:
                raise HeadError("chunked answers are not supported")
            length = head.get("content-length")
            tokens = (head.get("connection") or "").lower()
            self._keep = head.start[0] == "HTTP/1.1" and "close" not in tokens
            if length is None:
                self._length, self._keep = -1, False
            elif not (length.isascii() and length.isdigit()) or len(length) > 30:
                raise HeadError("invalid Content-Length in the answer")
            else:
                self._length = int(length)
                if self._length > self.cap:
                    raise _TooLarge(self.cap)
        if self._length == -1:
            if len(self.buffer) > self.cap:
                raise _TooLarge(self.cap)
            return
        if len(self.buffer) >= self._length:
            assert self.waiter is not None
            body = bytes(self.buffer[: self._length])
            extra = len(self.buffer) > self._length
            self.waiter.set_result((self._status, body, self._keep and not extra))
            self.waiter = None

    async def exchange(self, data: bytes) -> tuple[int, bytes, bool]:
        """Send one request; returns (status, body, reusable)."""
        assert self.transport is not None
        self.buffer.clear()
        self._length = None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self.waiter

    def abort(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()


class _TooLarge(Exception):
    def __init__(self, cap: int) -> None:
        super().__init__(f"the answer exceeds {cap} bytes")
        self.cap = cap


class HttpTransport:
    """The :class:`~gossip.transport.Transport` over HTTP(S); see the module docstring."""

    def __init__(
        self,
        *,
        timeout: float = 5.0,
        max_body: int = MAX_MESSAGE_BYTES,
        ssl_server_context: ssl.SSLContext | None = None,
        ssl_client_context: ssl.SSLContext | None = None,
        app: App | None = None,
        limits: Limits | None = None,
        pool_size: int = 4,
        pool_idle: float = POOL_IDLE,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        """Configure; nothing is opened until used.

        Args:
            timeout: default seconds a request waits (connect, send, whole answer).
            max_body: largest request body the server accepts (larger: 413); answers are
                read up to four times this.
            ssl_server_context: serve HTTPS with this context instead of HTTP.
            ssl_client_context: send requests over HTTPS with this context.
            app: serves every path but ``/v1/peer``; without it they get 404.
            limits: the server's limits (:class:`~gossip.http.server.Limits`); ``max_body``
                overrides its own.
            pool_size: idle connections kept per peer.
            pool_idle: seconds an idle connection is kept (then closed).
            loop: the event loop to run on; None starts one in a daemon thread when needed.

        Raises:
            LocalProtocolError: a limit is not positive.
        """
        for name, value in (
            ("timeout", timeout), ("max_body", max_body), ("pool_size", pool_size), ("pool_idle", pool_idle)
        ):
            if not value > 0:
                raise LocalProtocolError(f"{name} must be positive, not {value!r}")
        base = limits or Limits()
        self.limits = dataclasses.replace(base, max_body=max_body)
        self.timeout = timeout
        self.max_body = max_body
        self.app = app
        self._ssl_server = ssl_server_context
        self._ssl_client = ssl_client_context
        self._pool_size = pool_size
        self._pool_idle = pool_idle
        self._next_sweep = 0.0
        self._loop = loop
        self._owned: LoopThread | None = None
        self._lock = threading.Lock()
        self._server: HttpServer | None = None
        self._idle: dict[Address, list[_ClientConnection]] = {}
        self._busy: set[_ClientConnection] = set()
        #: Client connections opened so far (a pool that works keeps this low).
        self.opened = 0
        #: The address being served, or None.
        self.address: Address | None = None

    # -- the loop ------------------------------------------------------------------------
    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop this transport runs on (started on first use when none was given)."""
        with self._lock:
            if self._loop is None:
                self._owned = LoopThread("gossip-http")
                self._loop = self._owned.loop
            return self._loop

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        loop = self.loop
        if self._owned is not None:
            return self._owned.run(coro)
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            coro.close()
            raise RuntimeError("a blocking HttpTransport method was called on its own loop; use the *_async one")
        return asyncio.run_coroutine_threadsafe(coro, loop).result()

    # -- serving -------------------------------------------------------------------------
    def serve(self, address: Address, handler: Handler) -> Address:
        """Listen on ``address`` (port 0: a free one) and answer on the loop; see :meth:`serve_async`."""
        return self._run(self.serve_async(address, handler))

    async def serve_async(self, address: Address, handler: Handler) -> Address:
        """Listen on ``address``; ``/v1/peer`` bodies go to ``handler``, other paths to the app.

        Returns:
            The address actually bound.

        Raises:
            TransportError: already serving, or the address cannot be bound.
        """
        if self._server is not None:
            raise TransportError("this transport is already serving")
        server = HttpServer(handler, self.app, limits=self.limits, ssl_context=self._ssl_server)
        self._server = server
        try:
            self.address = await server.start(address)
        except TransportError:
            self._server = None
            raise
        return self.address

    @property
    def connections(self) -> int:
        """Connections the server holds open now."""
        return self._server.connections if self._server is not None else 0

    @property
    def accepted(self) -> int:
        """Connections the server has accepted so far."""
        return self._server.accepted if self._server is not None else 0

    # -- requesting ----------------------------------------------------------------------
    def request(self, address: Address, data: bytes, *, timeout: float | None = None) -> bytes:
        """POST ``data`` to ``address``'s ``/v1/peer``; see :meth:`request_async`."""
        return self._run(self.request_async(address, data, timeout=timeout))

    async def request_async(self, address: Address, data: bytes, *, timeout: float | None = None) -> bytes:
        """POST ``data`` to ``address``'s ``/v1/peer`` and return the answer body.

        Args:
            address: the peer's ``(ip or host name, port)``.
            data: the request body.
            timeout: seconds for the whole call; None: the transport's default.

        Raises:
            TransportError: ``status`` None when nothing (usable) answered: refused, timed
                out, unresolvable, cut short, or an answer over ``4 * max_body`` bytes
                (:class:`~gossip.errors.AnswerTooLarge`); otherwise the status, ``code``
                (``remote_code``) and error text (``reason``) of the error answer.
        """
        wait = self.timeout if timeout is None else timeout
        where = hostport(*address)
        head = (
            f"POST {PEER_PATH} HTTP/1.1\r\nHost: {where}\r\nUser-Agent: {SERVER_NAME}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
        ).encode("latin-1")
        try:
            async with asyncio.timeout(wait):
                status, body = await self._exchange(address, head + data)
        except TimeoutError:
            why = f"no answer within {wait:g} s"
            raise TransportError(f"{where} is unreachable: {why}", reason=why, timed_out=True) from None
        except _TooLarge as exc:
            raise AnswerTooLarge(f"{where} answered too much: {exc}", limit=exc.cap) from None
        except (OSError, HeadError, http.client.HTTPException, _Reused) as exc:
            why = _why(exc, wait)
            raise TransportError(f"{where} is unreachable: {why}", reason=why) from None
        if status == 200:
            return body
        text, code = error_fields(body)
        reason = text or http.client.responses.get(status, "error")
        raise TransportError(f"refused by {where} ({status}): {reason}", status=status, remote_code=code, reason=reason)

    async def _exchange(self, address: Address, data: bytes) -> tuple[int, bytes]:
        for attempt in range(2):
            conn, reused = await self._acquire(address, fresh=attempt > 0)
            self._busy.add(conn)
            try:
                status, body, keep = await conn.exchange(data)
            except _Reused:
                if reused:
                    continue
                raise
            except BaseException:
                conn.abort()  # timed out or broken: its state is unknown
                raise
            finally:
                self._busy.discard(conn)
            self._release(address, conn, keep)
            return status, body
        raise _Reused()  # pragma: no cover - the second attempt is always on a fresh connection

    async def _acquire(self, address: Address, *, fresh: bool) -> tuple[_ClientConnection, bool]:
        idle = self._idle.get(address, [])
        now = time.monotonic()
        while idle and not fresh:
            conn = idle.pop()
            if not conn.closed and now - conn.idle_since < self._pool_idle:
                return conn, True
            conn.abort()
        loop = asyncio.get_running_loop()
        self.opened += 1
        _, conn = await loop.create_connection(
            lambda: _ClientConnection(4 * self.max_body),
            address[0],
            address[1],
            ssl=self._ssl_client,
            server_hostname=address[0] if self._ssl_client is not None else None,
        )
        return conn, False

    def _release(self, address: Address, conn: _ClientConnection, keep: bool) -> None:
        now = time.monotonic()
        idle = self._idle.setdefault(address, [])
        if keep and not conn.closed and len(idle) < self._pool_size:
            conn.idle_since = now
            idle.append(conn)
        elif conn.transport is not None:
            conn.transport.close()
        if now >= self._next_sweep:
            self._sweep(now)

    def _sweep(self, now: float) -> None:
        """Close the idle connections kept longer than ``pool_idle`` (and forget peers with
        none left); runs on a release, at most four times per ``pool_idle``."""
        self._next_sweep = now + self._pool_idle / 4
        for address, conns in list(self._idle.items()):
            kept = [c for c in conns if not c.closed and now - c.idle_since < self._pool_idle]
            for conn in conns:
                if conn not in kept and conn.transport is not None:
                    conn.transport.close()
            if kept:
                self._idle[address] = kept
            else:
                del self._idle[address]

    # -- closing -------------------------------------------------------------------------
    def close(self) -> None:
        """Stop serving and close every connection, both ways; idempotent."""
        if self._loop is None:
            return
        try:
            self._run(self.close_async())
        finally:
            if self._owned is not None:
                self._owned.stop()
                self._owned = None
                self._loop = None

    async def close_async(self) -> None:
        server, self._server = self._server, None
        self.address = None
        if server is not None:
            await server.close()
        for conns in self._idle.values():
            for conn in conns:
                conn.abort()
        self._idle.clear()
        for conn in list(self._busy):
            conn.abort()


# -- the one-shot client ------------------------------------------------------------------

#: Bytes asked of the stream at a time while reading an answer's body.
_READ_CHUNK = 64 * 1024
#: A method or a header name (RFC 9110 token); header values must not hold these.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_FIELD_BAD = frozenset("\r\n\0")


def getaddrinfo_within(host: str, port: int, timeout: float | None) -> list[Any]:
    """``socket.getaddrinfo`` for TCP, given up after ``timeout`` s (None: the resolver's own).

    getaddrinfo has no timeout, and a slow resolver can take 5 s per try: the lookup runs in a
    daemon thread, which ends on its own when the resolver gives up.

    Raises:
        socket.gaierror: the name does not resolve, or not within ``timeout`` s.
        UnicodeError: the name cannot be encoded (IDNA).
    """
    if timeout is None:
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    box: list[Any] = []

    def work() -> None:
        try:
            box.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except Exception as exc:  # handed to the caller
            box.append(exc)

    thread = threading.Thread(target=work, name="gossip-resolve", daemon=True)
    thread.start()
    thread.join(max(timeout, 0.0))
    if not box:
        raise socket.gaierror(f"no answer within {timeout:g} s")
    if isinstance(box[0], Exception):
        raise box[0]
    return list(box[0])


def _why(exc: BaseException, timeout: float) -> str:
    """A short, lower-case reason why nothing (usable) answered."""
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host name ({exc.strerror or exc})"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate rejected ({exc.verify_message})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed ({exc.reason or exc})"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, (http.client.RemoteDisconnected, _Reused)):
        return "closed the connection without answering"
    if isinstance(exc, http.client.IncompleteRead):
        return "the answer was cut short"
    if isinstance(exc, HeadError):
        return f"malformed answer ({exc})"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[:1].lower() + exc.strerror[1:]
    return str(exc) or type(exc).__name__


def error_fields(body: bytes) -> tuple[str | None, ErrorCode | None]:
    """The ``error`` text (cut to 500 characters) and the ``code`` of a JSON error body, each
    None when absent (a code this version does not know is None too)."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None, None
    if not isinstance(data, dict):
        return None, None
    error = data.get("error")
    return (error[:500] if isinstance(error, str) else None), ErrorCode.from_wire(data.get("code"))


def _request_head(method: str, parts: urllib.parse.SplitResult, host: str, body: bytes | None,
                  headers: Mapping[str, str] | None) -> bytes:
    """The request's head: our fields first (``Connection: close``: one request per call)."""
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    fields = {"Host": host, "User-Agent": SERVER_NAME, "Connection": "close"}
    extra = dict(headers or {})
    if body is not None:
        if not any(k.lower() == "content-type" for k in extra):
            fields["Content-Type"] = "application/json"
        fields["Content-Length"] = str(len(body))
    taken = {k.lower() for k in fields}
    fields.update({k: v for k, v in extra.items() if k.lower() not in taken})
    lines = [f"{method} {target} HTTP/1.1"] + [f"{k}: {v}" for k, v in fields.items()]
    bad_target = any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in target)
    bad_field = any(not _TOKEN.fullmatch(k) or _FIELD_BAD.intersection(v) for k, v in fields.items())
    if not _TOKEN.fullmatch(method) or bad_target or bad_field:
        raise LocalProtocolError("the request's method, target or a header holds characters HTTP does not allow")
    try:
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    except UnicodeEncodeError:
        raise LocalProtocolError("the request's target and headers must be Latin-1 text") from None


async def _connect(
    infos: list[Any], context: ssl.SSLContext | None, host: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A stream to the first address that accepts (TLS when ``context`` is given)."""
    loop = asyncio.get_running_loop()
    error: OSError = ConnectionRefusedError("no address to connect to")
    for family, kind, proto, _, sockaddr in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.setblocking(False)
            await loop.sock_connect(sock, sockaddr)
        except OSError as exc:
            sock.close()
            error = exc
            continue
        except BaseException:
            sock.close()
            raise
        try:
            return await asyncio.open_connection(
                sock=sock, ssl=context, server_hostname=host if context is not None else None, limit=_MAX_ANSWER_HEAD
            )
        except BaseException:
            sock.close()
            raise
    raise error


async def _read_answer(reader: asyncio.StreamReader, cap: int, method: str) -> tuple[int, bytes]:
    """Status and body, read as they come and given up past ``cap`` body bytes."""
    while True:
        try:
            raw = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            raise HeadError("the answer's head is too long") from None
        except asyncio.IncompleteReadError as exc:
            if exc.partial:
                raise http.client.IncompleteRead(b"") from None
            raise http.client.RemoteDisconnected("closed the connection without answering") from None
        head = parse_head(raw[:-4], request=False)
        status = int(head.start[1])
        if not 100 <= status < 200:  # "100 Continue" and the like: the real answer follows
            break
    if head.get("transfer-encoding") is not None:
        raise HeadError("chunked answers are not supported")
    declared = head.get("content-length")
    length: int | None = None
    if method == "HEAD" or status in (204, 304):
        length = 0
    elif declared is not None:
        if not (declared.isascii() and declared.isdigit()) or len(declared) > 30:
            raise HeadError("invalid Content-Length in the answer")
        length = int(declared)
        if length > cap:
            raise _TooLarge(cap)  # refused before reading a byte of it
    chunks: list[bytes] = []
    size = 0
    while length is None or size < length:
        chunk = await reader.read(_READ_CHUNK if length is None else min(_READ_CHUNK, length - size))
        if not chunk:
            break
        size += len(chunk)
        if size > cap:
            raise _TooLarge(cap)
        chunks.append(chunk)
    if length is not None and size < length:
        raise http.client.IncompleteRead(b"", length - size)  # a cut answer never passes for a whole one
    return status, b"".join(chunks)


def _run_alone(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro`` on a new event loop in a thread of its own, and wait for it.

    A thread of its own, so that a caller may be anywhere: a plain thread, a coroutine, or
    code whose thread already runs a loop (Playwright's sync API, Jupyter). ``coro`` must
    end by itself (the call's deadline sees to that).
    """
    box: list[tuple[bool, Any]] = []

    def work() -> None:
        loop = asyncio.new_event_loop()
        try:
            box.append((True, loop.run_until_complete(coro)))
        except BaseException as exc:  # handed to the caller
            box.append((False, exc))
        finally:
            loop.close()

    thread = threading.Thread(target=work, name="gossip-http-call", daemon=True)
    thread.start()
    thread.join()
    ok, value = box[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


async def _call_once(
    infos: list[Any], context: ssl.SSLContext | None, host: str, request: bytes, cap: int, method: str, wait: float
) -> tuple[int, bytes]:
    async with asyncio.timeout(wait):  # one deadline: connect, TLS, send, head and body
        reader, writer = await _connect(infos, context, host)
        try:
            writer.write(request)
            await writer.drain()
            return await _read_answer(reader, cap, method)
        finally:
            writer.transport.abort()  # one request per connection; nothing left to send


def http_call(
    url: str,
    *,
    method: str = "GET",
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 5.0,
    ssl_context: ssl.SSLContext | None = None,
    max_answer: int = 4 * MAX_MESSAGE_BYTES,
) -> tuple[int, bytes]:
    """One HTTP(S) request on a new connection, within one deadline; no proxies, no redirects.

    ``timeout`` bounds the whole call: resolving the name, connecting, TLS, sending, and the
    answer's head and body, however slowly they trickle in. The body is read as it arrives
    and given up as soon as it passes ``max_answer`` bytes (at once, when its Content-Length
    says so). It blocks: the request runs on an event loop of its own, in a thread of its own.

    Args:
        url: an ``http://`` or ``https://`` URL.
        method: the HTTP method.
        body: the request body; its Content-Type defaults to ``application/json``.
        headers: extra request headers.
        timeout: seconds for the whole call.
        ssl_context: for ``https://``; None uses the default, verifying context.
        max_answer: most answer body bytes read.

    Returns:
        The status and the body of the answer, whatever the status.

    Raises:
        AnswerTooLarge: the answer's body is over ``max_answer`` bytes.
        TransportError: nothing (whole) answered (``status`` None; ``reason`` says why;
            ``timed_out`` when the deadline passed first).
        LocalProtocolError: ``url`` is not an http(s) URL, or a header is not valid HTTP.
    """
    parts = urllib.parse.urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = 0
    if parts.scheme not in ("http", "https") or not parts.hostname or port == 0:
        raise LocalProtocolError(f"not an http(s) URL: {url!r}")
    where = parts.netloc.rpartition("@")[2]
    request = _request_head(method, parts, where, body, headers) + (body or b"")
    context = (ssl_context or ssl.create_default_context()) if parts.scheme == "https" else None
    deadline = time.monotonic() + timeout
    try:
        infos = getaddrinfo_within(parts.hostname, port or (443 if context else 80), timeout)
        wait = deadline - time.monotonic()
        return _run_alone(_call_once(infos, context, parts.hostname, request, max_answer, method, wait))
    except _TooLarge as exc:
        raise AnswerTooLarge(f"{where} answered more than {exc.cap} bytes", limit=exc.cap) from None
    except TimeoutError:
        why = f"no complete answer within {timeout:g} s"
        raise TransportError(f"{where} is unreachable: {why}", reason=why, timed_out=True) from None
    except (OSError, UnicodeError, HeadError, http.client.HTTPException) as exc:  # gaierror is an OSError
        why = _why(exc, timeout)
        raise TransportError(f"{where} is unreachable: {why}", reason=why) from None
