"""Connections in, complete requests out: an asyncio HTTP/1.1 server with deadlines and limits.

Theory of operation
-------------------
Every connection is an :class:`asyncio.Protocol` on one event loop. Until a request has fully
arrived (head and body, within the limits) it costs a socket and its buffer, nothing else: no
thread, no task. Then the request is handed over (``POST /v1/peer`` to the node's handler,
anything else to the :data:`App`); then serves the next request on it (HTTP/1.1 keep-alive); pipelined requests wait their turn
in the buffer, and past ``max_head`` bytes of them the connection stops reading until the
answer is written, and taken (rule 2).

Rules, each against one way a client without the key could stop a node:

1. **Deadlines.** A new connection must start its first request within ``idle_timeout`` of
   connecting; a request's head must be complete within ``head_timeout`` of its first byte;
   its body must keep up ``min_body_rate`` (after ``body_grace``). A trusted connection may
   stay idle ``keepalive_timeout`` between requests. Output the client does not take is timed
   too, trusted or not: a connection held up by unsent answers (rule 2), or closing with
   output unsent, is aborted unless some of it drains within ``idle_timeout``. A sweep at the
   nearest deadline (kept to a quarter second) enforces them.
2. **Caps.** A head is at most ``max_head`` bytes (431), a body at most ``max_body`` (413,
   answered before the body is read). Untrusted connections from one address are at most
   ``max_per_client``; all untrusted connections together buffer at most ``max_buffered``
   bytes (past it, the connection holding the most that is not being answered is answered
   503 and closed). Answers wait for the client (backpressure): while more than the
   transport's high-water mark (64 KiB) of them is unsent, the connection reads and answers
   no further pipelined request, so a client that never reads holds that plus one answer.
3. **Capacity for peers.** A connection becomes *trusted* once one of its requests was
   authenticated: a ``/v1/peer`` request answered 200, or an app answer marked
   ``authenticated``. When ``max_connections`` are open, a new connection evicts the oldest
   untrusted one that is not being answered; trusted ones are never evicted. So no number of
   connections without the key keeps a peer out.
4. **Warnings are rate-limited** (:class:`RateLimitedLog`): an attack costs log lines, never
   a line per connection.

Handlers that are coroutine functions run on the loop; plain functions run in a small thread
pool, since they may block.

**Streams.** An app may answer with a :attr:`Response.stream`: the server writes the head
(no Content-Length, ``Connection: close``) and hands the stream a :class:`Sink`; the body ends
when the stream returns, and the connection closes. A stream that writes faster than the
client reads waits in :meth:`Sink.drain` (asyncio's write flow control: the buffer stays near
64 KiB), and is cancelled when the client goes away. Whoever answers with streams bounds how
many are open (the client API does: docs/http-api.md).
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import logging
import math
import socket
import ssl
import time
import urllib.parse
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Mapping, Union

from ..errors import ErrorCode, GossipError, LocalProtocolError, TransportError, clip
from ..messages import MAX_MESSAGE_BYTES, error_body
from .h1 import Head, HeadError, body_length, keep_alive, parse_head, response_head

__all__ = [
    "PEER_PATH",
    "App",
    "Handler",
    "HttpServer",
    "Limits",
    "RateLimitedLog",
    "Request",
    "Response",
    "Sink",
    "hostport",
]

Address = tuple[str, int]
#: Turns a ``/v1/peer`` request body into the answer body; may raise GossipError.
Handler = Callable[[bytes], Union[bytes, Awaitable[bytes]]]

#: The path of every node-to-node request.
PEER_PATH = "/v1/peer"

logger = logging.getLogger(__name__)

_SWEEP = 0.25
#: After an error answered before the request was read: how long and how much to discard,
#: so that closing does not reset the connection before the client reads the answer.
_LINGER_SECONDS = 1.0
_LINGER_BYTES = 1 << 20


def hostport(host: str, port: int) -> str:
    """``host:port`` as in a URL: IPv6 addresses in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True, slots=True)
class Request:
    """A request for the :data:`App`: anything but ``/v1/peer``.

    ``path`` is as sent (still percent-encoded), without the query string; ``query`` is that
    string parsed (blank values kept); header names are lower case.
    """

    method: str
    path: str
    query: dict[str, list[str]]
    headers: Mapping[str, str]
    body: bytes
    client: tuple[str, int]


@dataclass(frozen=True, slots=True)
class Response:
    """What the :data:`App` answers; the server adds Content-Type and Content-Length.

    ``authenticated``: the request proved it holds a network key, so its connection is
    trusted from now on (rule 3 of the module docstring).
    """

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)
    authenticated: bool = False
    #: Writes the body as it comes (``body`` is then unused); see "Streams" above.
    stream: Callable[[Sink], Awaitable[None]] | None = None


class Sink:
    """Where a :attr:`Response.stream` writes its body."""

    def __init__(self, conn: _Connection) -> None:
        self._conn = conn

    @property
    def closed(self) -> bool:
        """True once the connection is closing or closed."""
        transport = self._conn.transport
        return transport is None or transport.is_closing()

    def write(self, data: bytes) -> None:
        """Queue ``data`` for sending (nothing happens once closed)."""
        self._conn.write(data)

    async def drain(self) -> None:
        """Wait until the client has taken most of what was written."""
        await self._conn.writable.wait()


#: Serves every request that is not for ``/v1/peer``. May raise GossipError (sent as its
#: ``status_hint`` with a JSON error body); any other exception is logged and answered 500.
App = Callable[[Request], Union[Response, Awaitable[Response]]]


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """The server's limits; see the module docstring for what each one protects."""

    max_body: int = MAX_MESSAGE_BYTES
    max_head: int = 64 * 1024
    head_timeout: float = 2.0
    idle_timeout: float = 5.0
    keepalive_timeout: float = 330.0
    body_grace: float = 2.0
    min_body_rate: float = 16 * 1024
    max_connections: int = 4096
    max_per_client: int = 256
    max_buffered: int = 64 << 20

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if not value > 0:
                raise LocalProtocolError(f"{name} must be positive, not {value!r}")


class RateLimitedLog:
    """Logs each kind of message at most once per ``interval`` seconds.

    The next line of a kind says how many of it were left out meanwhile. Kinds are a few
    fixed strings (never an address), so this holds a few entries whatever an attacker does.
    """

    def __init__(self, log: logging.Logger, interval: float = 10.0) -> None:
        self._log = log
        self._interval = interval
        self._state: dict[str, tuple[float, int]] = {}

    def __call__(self, level: int, kind: str, message: str, *args: Any) -> None:
        now = time.monotonic()
        last, dropped = self._state.get(kind, (-math.inf, 0))
        if now - last < self._interval:
            self._state[kind] = (last, dropped + 1)
            return
        self._state[kind] = (now, 0)
        if dropped:
            message += f" ({dropped} more like this in the last {self._interval:g} s)"
        self._log.log(level, message, *args)


class _State(enum.Enum):
    #: Between requests: waiting for the first byte of the next one.
    IDLE = "idle"
    #: Reading a request head.
    HEAD = "head"
    #: Reading a request body of known length.
    BODY = "body"
    #: The request is complete and being answered; not reading.
    ANSWERING = "answering"
    #: An error was answered before the request was read: discarding, then closing.
    DRAINING = "draining"
    CLOSED = "closed"


#: A connection reading a request: the only kind the ``max_buffered`` rule may refuse.
_READING = (_State.IDLE, _State.HEAD, _State.BODY)


class _Connection(asyncio.Protocol):
    """One client connection; see the module docstring."""

    def __init__(self, server: HttpServer) -> None:
        self.server = server
        self.limits = server.limits
        self.transport: asyncio.Transport | None = None
        self.client: tuple[str, int] = ("?", 0)
        self.buffer = bytearray()
        self.counted = 0  # bytes of self.buffer counted in server.buffered
        self.scanned = 0  # bytes of the buffer already searched for the end of the head
        self.state = _State.IDLE
        self.deadline = math.inf
        self.trusted = False
        self.head: Head | None = None
        self.length = 0
        self.drained = 0
        self.paused = False  # reading paused: pipelined input past max_head, or backpressure
        self.eof = False
        self.unsent = 0  # output waiting in the transport when its deadline was set (rule 1)
        #: Set while the transport takes more writes (asyncio flow control): for streams, and
        #: for pipelined requests, which wait while it is clear (rule 2).
        self.writable = asyncio.Event()
        self.writable.set()
        #: The task writing a stream on this connection, cancelled when the client goes away.
        self.stream_task: asyncio.Task[Any] | None = None

    # -- asyncio callbacks ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.client = (str(peer[0]), int(peer[1]))
        self.wait(self.limits.idle_timeout)
        self.server.admit(self)

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()
        if self.state is _State.IDLE:  # held up by backpressure (rule 2): the client took the answers
            # Not from inside the transport's write callback: closing there, with nothing left
            # to send, would have asyncio end the connection twice.
            asyncio.get_running_loop().call_soon(self._resume)

    def _resume(self) -> None:
        """The client took the answers: the connection is idle again; serve what is buffered."""
        if self.state is _State.IDLE:
            self.wait(self.limits.keepalive_timeout if self.trusted else self.limits.idle_timeout)
            self._next()

    def connection_lost(self, exc: Exception | None) -> None:
        self.state = _State.CLOSED
        self.writable.set()
        if self.stream_task is not None:
            self.stream_task.cancel()
        self.buffer.clear()
        self._account()
        self.server.forget(self)

    def data_received(self, data: bytes) -> None:
        if self.state is _State.DRAINING:
            self.drained += len(data)
            if self.drained >= _LINGER_BYTES:
                self.abort()
            return
        if self.state is _State.CLOSED:
            return
        self.buffer += data
        self._account()
        if self.state is _State.ANSWERING:
            # Pipelined requests wait in the buffer; past a head's worth, the kernel holds the rest.
            if len(self.buffer) > self.limits.max_head:
                self._pause_reading()
            return
        if self.server.over_budget(self):
            return
        self._advance()

    def eof_received(self) -> bool | None:
        """The client half-closed: answer what has fully arrived, then close."""
        self.eof = True
        if self.stream_task is not None:
            return None  # a stream's reader is gone: the transport closes, connection_lost ends the stream
        if self.state is _State.ANSWERING or self.stalled:
            return True  # keep the transport open to write the answers
        if self.state in (_State.HEAD, _State.BODY):
            logger.debug("%s closed the connection mid-request", self.client[0])
        self.close()
        return None

    # -- reading -------------------------------------------------------------------------
    @property
    def stalled(self) -> bool:
        """Between requests, but answers wait unsent past the high-water mark (rule 2)."""
        return self.state is _State.IDLE and not self.writable.is_set()

    def wait(self, seconds: float) -> None:
        """Give the connection ``seconds`` for what it must do next (see the sweep)."""
        self.deadline = time.monotonic() + seconds
        self.server.watch(self.deadline)

    def _account(self) -> None:
        if not self.trusted:
            self.server.buffered += len(self.buffer) - self.counted
            self.counted = len(self.buffer)

    def _advance(self) -> None:
        """Move through IDLE -> HEAD -> BODY as far as the buffer allows; then answer."""
        limits = self.limits
        if self.state is _State.IDLE:
            if self.stalled:
                self._pause_reading()  # resume_writing comes back here
                return
            while self.buffer[:2] == b"\r\n":  # RFC 9112 2.2: ignore empty lines before a request
                del self.buffer[:2]
            if not self.buffer:
                return
            self.state = _State.HEAD
            self.wait(limits.head_timeout)
        if self.state is _State.HEAD:
            end = self.buffer.find(b"\r\n\r\n", max(0, self.scanned - 3))
            if end < 0 or end > limits.max_head:
                if len(self.buffer) > limits.max_head:
                    self.refuse(431, f"the request head exceeds {limits.max_head} bytes")
                else:
                    self.scanned = len(self.buffer)
                return
            try:
                head = parse_head(bytes(self.buffer[:end]), request=True)
                length = body_length(head, max_body=limits.max_body)
            except HeadError as exc:
                self.refuse(exc.status, str(exc))
                return
            del self.buffer[: end + 4]
            self.scanned = 0
            self._account()
            self.head, self.length = head, length
            self.state = _State.BODY
            self.wait(limits.body_grace + length / limits.min_body_rate)
            if length and (head.get("expect") or "").lower() == "100-continue" and len(self.buffer) < length:
                self.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        if self.state is _State.BODY and len(self.buffer) >= self.length:
            assert self.head is not None
            body = bytes(self.buffer[: self.length])
            del self.buffer[: self.length]
            self._account()
            self.state = _State.ANSWERING
            self.deadline = math.inf
            self.server.answer(self, self.head, body)

    def answered(self, keep: bool) -> None:
        """The answer is written: serve the next request, or close."""
        if self.state is not _State.ANSWERING:
            return
        if not keep:
            self.close()
            return
        self.state = _State.IDLE
        self.head = None
        timeout = self.limits.keepalive_timeout if self.trusted else self.limits.idle_timeout
        self.wait(timeout)
        self._next()

    def _next(self) -> None:
        """Between requests: start the next pipelined one, unless the client must first take
        the answers (rule 2: read nothing more until :meth:`resume_writing`)."""
        if self.stalled:
            self._wait_output()
            self._pause_reading()
            return
        if self.paused and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        if not self.server.over_budget(self):
            self._advance()
        if self.eof and self.state is not _State.ANSWERING:
            self.close()  # half-closed, and no further request is whole: done

    def _wait_output(self) -> None:
        """Give the client ``idle_timeout`` to take some of the output unsent now (rule 1)."""
        self.unsent = self._unsent()
        self.wait(self.limits.idle_timeout)

    def _unsent(self) -> int:
        return self.transport.get_write_buffer_size() if self.transport is not None else 0

    def _pause_reading(self) -> None:
        if not self.paused and self.transport is not None:
            self.transport.pause_reading()
            self.paused = True

    def trust(self) -> None:
        if not self.trusted and self.state is not _State.CLOSED:  # a lost connection is uncounted already
            self.server.buffered -= self.counted
            self.counted = 0
            self.trusted = True
            self.server.trusted(self)

    # -- ending --------------------------------------------------------------------------
    def expired(self) -> None:
        """The sweep found the deadline passed."""
        if self.state is _State.BODY:
            self.refuse(408, "the request body did not arrive in time")
        elif (self.state is _State.CLOSED or self.stalled) and self._unsent() < self.unsent:
            self._wait_output()  # the client takes its answers, if slowly: more time
        else:
            # Idle, a head still trickling in (slowloris), or answers the client does not
            # take (held up, or closing): not worth an answer.
            self.abort()

    def refuse(self, status: int, message: str) -> None:
        """Answer an error before the request was read whole, then discard and close."""
        if status != 408:
            logger.debug("%s: %d %s", self.client[0], status, message)
        self.write(response_head(status, len(body := error_body(status, message)), "application/json", {}, close=True) + body)
        self.state = _State.DRAINING
        self.buffer.clear()
        self._account()
        self.wait(_LINGER_SECONDS)
        transport = self.transport
        if transport is not None and transport.can_write_eof():
            transport.write_eof()  # half-close; what the client still sends is read and dropped
        else:
            self.close()

    def write(self, data: bytes) -> None:
        """Send ``data``; nothing happens once an error was answered (:meth:`refuse`) or closing."""
        if self.state in (_State.DRAINING, _State.CLOSED):
            return  # e.g. an answer finishing after a 503 of the max_buffered rule
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        """Close after what was written is sent: within ``idle_timeout`` of the last progress (rule 1)."""
        if self.transport is not None and self.state is not _State.CLOSED:
            self.state = _State.CLOSED
            self.transport.close()
            self.buffer.clear()  # no request of it will be read now
            self._account()
            if self.deadline > time.monotonic() + self.limits.idle_timeout:  # else an earlier one stands (a refusal's)
                self._wait_output()

    def abort(self) -> None:
        """Close now, dropping anything unsent."""
        if self.transport is not None:
            self.state = _State.CLOSED
            self.transport.abort()


class HttpServer:
    """Serves ``/v1/peer`` to a :data:`Handler` and everything else to an :data:`App`.

    Create and use it on its event loop. Error answers are the JSON of
    :func:`gossip.messages.error_body`, with the ``code`` of the refusing
    :class:`~gossip.errors.GossipError`, or else the one of the status
    (``bad_request``, ``timeout``, ``too_large``, ``unavailable``, ``internal``...).
    """

    def __init__(
        self,
        handler: Handler,
        app: App | None = None,
        *,
        limits: Limits | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.handler = handler
        self.app = app
        self.limits = limits or Limits()
        self.ssl_context = ssl_context
        self.buffered = 0
        #: Connections admitted so far.
        self.accepted = 0
        self._conns: dict[_Connection, None] = {}  # oldest first
        self._per_client: Counter[str] = Counter()
        self._server: asyncio.AbstractServer | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._sweep_at = math.inf
        self._tasks: set[asyncio.Task[None]] = set()
        self._pool: ThreadPoolExecutor | None = None
        self._warn = RateLimitedLog(logger)
        self._closed = False
        self.address: Address | None = None

    @property
    def connections(self) -> int:
        return len(self._conns)

    async def start(self, address: Address) -> Address:
        """Listen on ``address`` (port 0: a free one). Returns the address bound.

        Raises:
            TransportError: the address cannot be bound.
        """
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        try:
            self._server = await loop.create_server(
                lambda: _Connection(self),
                address[0],
                address[1],
                family=family,
                backlog=1024,
                reuse_address=True,
                ssl=self.ssl_context,
                ssl_handshake_timeout=self.limits.idle_timeout if self.ssl_context else None,
            )
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise TransportError(f"cannot listen on {hostport(*address)}: {reason[:1].lower()}{reason[1:]}") from None
        bound = self._server.sockets[0].getsockname()
        self.address = (str(bound[0]), int(bound[1]))
        return self.address

    async def close(self) -> None:
        """Stop listening and end every connection now; answers being made are dropped.

        A connection still in its TLS handshake now is aborted when the handshake ends.
        """
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        self._sweeper, self._sweep_at = None, math.inf
        if self._server is not None:
            self._server.close()
        for conn in list(self._conns):
            conn.abort()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        # Wait for the cancelled answers to unwind: a task left pending when the loop stops
        # is destroyed with "Task was destroyed but it is pending!" on stderr.
        # (Bounded: an answer that shields a write it must finish gets a few seconds for it.)
        if tasks:
            await asyncio.wait(tasks, timeout=5.0)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    # -- connection accounting -----------------------------------------------------------
    def admit(self, conn: _Connection) -> None:
        ip = conn.client[0]
        if self._closed:
            conn.abort()
            return
        if self._per_client[ip] >= self.limits.max_per_client:
            self._warn(logging.WARNING, "per-client", "refused connections from %s: more than %d open", ip, self.limits.max_per_client)
            conn.abort()
            return
        if len(self._conns) >= self.limits.max_connections:
            victim = next((c for c in self._conns if not c.trusted and c.state is not _State.ANSWERING), None)
            if victim is None:
                self._warn(logging.WARNING, "full", "refused a connection: %d open, all busy or trusted", len(self._conns))
                conn.abort()
                return
            self._warn(logging.WARNING, "evict", "closed the oldest unauthenticated connections to admit new ones (%d open)", len(self._conns))
            victim.abort()
            self.forget(victim)
        self._conns[conn] = None
        self._per_client[ip] += 1
        self.accepted += 1

    def trusted(self, conn: _Connection) -> None:
        """Stop counting ``conn`` against ``max_per_client`` (if it still is counted)."""
        if conn in self._conns:
            self._uncount(conn.client[0])

    def forget(self, conn: _Connection) -> None:
        """Stop counting a connection (idempotent; refused ones were never counted)."""
        if conn in self._conns:
            del self._conns[conn]
            if not conn.trusted:
                self._uncount(conn.client[0])

    def _uncount(self, ip: str) -> None:
        self._per_client[ip] -= 1
        if self._per_client[ip] <= 0:
            del self._per_client[ip]

    def over_budget(self, conn: _Connection) -> bool:
        """Past ``max_buffered``: answer 503 to the untrusted connection holding the most.

        Only a connection reading a request is picked: one being answered would write its
        answer after the 503 (and holds at most a head's worth of pipelined input anyway).
        """
        if self.buffered <= self.limits.max_buffered or conn.trusted:
            return False
        candidates = (c for c in self._conns if not c.trusted and c.state in _READING)
        hog = max(candidates, key=lambda c: c.counted, default=conn)
        self._warn(logging.WARNING, "buffered", "unauthenticated requests hold more than %d bytes: refusing the largest", self.limits.max_buffered)
        hog.refuse(503, "the node is busy; try again shortly")
        return hog is conn

    def watch(self, deadline: float) -> None:
        """Make sure a sweep runs at ``deadline`` (or within ``_SWEEP`` after it); none once closed."""
        if deadline < self._sweep_at and not self._closed:
            self._schedule(deadline)

    def _schedule(self, at: float) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        self._sweep_at = max(at, time.monotonic() + _SWEEP)  # deadlines are kept to a quarter second
        self._sweeper = asyncio.get_running_loop().call_at(self._sweep_at, self._sweep)

    def _sweep(self) -> None:
        """End the connections whose deadline passed; sleep until the next deadline.

        An idle node sweeps only when some connection's deadline is due: no periodic wake-up.
        """
        self._sweeper, self._sweep_at = None, math.inf
        now = time.monotonic()
        for conn in [c for c in self._conns if c.deadline <= now]:
            conn.expired()
        nearest = min((c.deadline for c in self._conns), default=math.inf)
        if nearest < math.inf:
            self._schedule(nearest)

    # -- answering -----------------------------------------------------------------------
    def answer(self, conn: _Connection, head: Head, body: bytes) -> None:
        task = asyncio.get_running_loop().create_task(self._answer(conn, head, body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(self, conn: _Connection, head: Head, body: bytes) -> None:
        method, target, version = head.start
        path, _, query = target.partition("?")
        response = await self._respond(conn, method, path, query, head, body)
        if response.stream is not None and method == "GET" and response.status == 200:
            await self._stream(conn, response)
            return
        keep = keep_alive(head, version)
        out = response_head(response.status, len(response.body), response.content_type, dict(response.headers), close=not keep)
        if method != "HEAD" and response.status not in (204, 304):
            out += response.body
        if response.authenticated:
            conn.trust()
        conn.write(out)
        conn.answered(keep)

    async def _stream(self, conn: _Connection, response: Response) -> None:
        """Write a streamed answer until the stream returns or the client goes away; then close."""
        assert response.stream is not None
        if response.authenticated:
            conn.trust()
        conn.write(response_head(response.status, None, response.content_type, dict(response.headers), close=True))
        conn.stream_task = asyncio.current_task()
        try:
            await response.stream(Sink(conn))
        except asyncio.CancelledError:
            pass  # the client went away, or the server is closing
        except Exception:
            logger.exception("a stream to %s failed", conn.client[0])
        finally:
            conn.stream_task = None
            conn.close()

    async def _respond(self, conn: _Connection, method: str, path: str, query: str, head: Head, body: bytes) -> Response:
        try:
            if path == PEER_PATH:
                if method != "POST":
                    return _error(405, f"{PEER_PATH} accepts POST only", {"Allow": "POST"})
                if head.get("content-length") is None:
                    return _error(411, "a Content-Length header is required")
                answer = await self._call(self.handler, body)
                if not isinstance(answer, bytes):
                    raise TypeError(f"the handler returned {type(answer).__name__}, not bytes")
                return Response(200, answer, authenticated=True)
            if self.app is None:
                return _error(404, f"no such path: {path[:200]}")
            if method in ("POST", "PUT", "PATCH") and head.get("content-length") is None:
                return _error(411, "a Content-Length header is required")
            request = Request(
                method=method,
                path=path,
                query=urllib.parse.parse_qs(query, keep_blank_values=True),
                headers=dict(head.joined),
                body=body,
                client=conn.client,
            )
            response = await self._call(self.app, request)
            if not isinstance(response, Response):
                raise TypeError(f"the app returned {type(response).__name__}, not a Response")
            return response
        except GossipError as exc:
            status = exc.status_hint if 400 <= exc.status_hint <= 599 else 500
            # Refused keys are worth an operator's attention (a wrong password, a probe); the
            # rest is the client's business. Once per kind per interval, text cut short.
            level = logging.WARNING if status in (401, 403) else logging.INFO
            self._warn(level, f"refused-{status}", "%s %s from %s: %d %s", method, path[:100], conn.client[0], status, clip(str(exc)))
            return _error(status, str(exc), code=exc.code if status == exc.status_hint else None)
        except asyncio.CancelledError:
            raise
        except Exception:
            logger.exception("%s %s from %s failed", method, path[:100], conn.client[0])
            return _error(500, "internal error; the node logged the details")

    async def _call(self, fn: Callable[[Any], Any], arg: Any) -> Any:
        if inspect.iscoroutinefunction(fn):
            return await fn(arg)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="gossip-http-handler")
        result = await asyncio.get_running_loop().run_in_executor(self._pool, fn, arg)
        if inspect.isawaitable(result):
            return await result
        return result


def _error(
    status: int, message: str, headers: Mapping[str, str] | None = None, *, code: ErrorCode | None = None
) -> Response:
    """An error answer; ``code`` defaults to the one of ``status`` (:meth:`ErrorCode.for_status`)."""
    return Response(status, error_body(status, message, code), headers=dict(headers or {}))
