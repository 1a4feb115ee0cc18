"""The public clients of a running node: :class:`Client` (blocking) and :class:`AsyncClient` (asyncio).

Both speak the client API of docs/http-api.md over one persistent HTTP/1.1 connection (a
second one while a :meth:`~AsyncClient.watch` runs), sign every request with the network key
(the password never travels), and raise :class:`NodeError` (carrying the answer's ``code``)
when the node refuses, :class:`~gossip.errors.TransportError` when it cannot be reached.
:class:`Client` runs an :class:`AsyncClient` on an event loop in a thread of its own, so the
two behave the same. See docs/library.md for examples.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import http.client
import ipaddress
import json
import secrets
import ssl
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncGenerator, AsyncIterator, Iterator

from .auth import CLIENT_AUTH_HEADER, DEFAULT_WINDOW, client_auth_header, derive_key
from .configfile import load_config
from .errors import AnswerTooLarge, ErrorCode, GossipError, LocalProtocolError, TransportError
from .http.client import LoopThread, _why, getaddrinfo_within
from .http.h1 import SERVER_NAME, HeadError, parse_head

__all__ = ["Client", "AsyncClient", "Answer", "NodeError", "NotANode", "Page", "DEFAULT_TIMEOUT", "MAX_ANSWER"]

#: Seconds one call may take in all (connect, send, the whole answer).
DEFAULT_TIMEOUT = 10.0
#: Largest answer read, in bytes; past it the call stops reading (a page is far smaller).
MAX_ANSWER = 64 << 20
#: A stream that sends nothing (not even a keep-alive, every 15 s) this long is reconnected.
WATCH_SILENCE = 45.0
#: Reconnection delays of :meth:`AsyncClient.watch`: doubling from the first to the last.
BACKOFF = (0.2, 5.0)
_MAX_HEAD = 64 * 1024
#: Longest line of a stream read (a gossip's JSON: its text is at most 64 Ki characters).
_MAX_EVENT = 4 << 20


class NodeError(GossipError):
    """The node answered with an error: ``status`` (HTTP) and ``code`` (docs/http-api.md).

    ``code`` is None when the answer named none this version knows; ``cause`` is the other
    node's code for ``peer_refused``.
    """

    def __init__(self, message: str, *, status: int, code: ErrorCode | None, cause: ErrorCode | None = None) -> None:
        super().__init__(message, status_hint=status, code=code or ErrorCode.for_status(status))
        self.status = status
        self.cause = cause


class NotANode(NodeError):
    """``GET /healthz`` did not answer as a gossip node does (wrong address?)."""


@dataclass(frozen=True, slots=True)
class Page:
    """One page of ``GET /v1/gossip``: rows (dicts: guid, date_time, who_name, msg, sha2,
    complete, network, cursor), the cursor that continues it (None on the last page), and
    the node's newest cursor on disk when it answered."""

    rows: list[dict[str, Any]]
    next: int | None
    cursor: int


@dataclass
class Answer:
    """One answer of :meth:`AsyncClient.request`: status, body, headers (lower-case names)."""

    status: int
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        """The body as JSON; None when it is not JSON."""
        try:
            return json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            return None


def _query_string(query: dict[str, Any]) -> tuple[str, dict[str, list[str]]]:
    pairs = {k: str(v) for k, v in query.items() if v is not None}
    return urllib.parse.urlencode(pairs), {k: [v] for k, v in pairs.items()}


class AsyncClient:
    """An asyncio client of a running node; use ``async with`` or call :meth:`close`.

    Args:
        url: the node's base URL, e.g. ``http://127.0.0.1:8470``.
        network: the network to act on.
        password: that network's password (or give ``key``).
        key: the network key (:func:`gossip.derive_key`), as ``server.json`` keeps it.
        timeout: seconds each call may take in all.
        ssl_context: for ``https://`` URLs (None: the default, verifying one).
        max_answer: most answer bytes read.

    Raises:
        LocalProtocolError: the URL is not ``http(s)://HOST:PORT``, or no password or key.
    """

    def __init__(
        self,
        url: str,
        *,
        network: str = "default",
        password: str | None = None,
        key: bytes | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        ssl_context: ssl.SSLContext | None = None,
        max_answer: int = MAX_ANSWER,
    ) -> None:
        parts = urllib.parse.urlsplit(url.rstrip("/"))
        try:
            port = parts.port
        except ValueError:
            port = None
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.query:
            raise LocalProtocolError(f"not a node URL (http://HOST:PORT): {url[:200]!r}")
        if key is None:
            if password is None:
                raise LocalProtocolError("give the network's password (or its key)")
            key = derive_key(network, password)
        self.url = f"{parts.scheme}://{parts.netloc}"
        #: The network this client acts on.
        self.network_name = network
        self.timeout = timeout
        self.max_answer = max_answer
        self._key = key
        self._host = parts.hostname
        self._port = port or (443 if parts.scheme == "https" else 80)
        self._netloc = parts.netloc
        self._ssl = (ssl_context or ssl.create_default_context()) if parts.scheme == "https" else None
        self._conn: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._lock: asyncio.Lock | None = None
        #: The node's guid (requests are signed for it) and its clock's lead over ours, in ms.
        self.node_guid: str | None = None
        self.clock_offset_ms = 0

    @classmethod
    def from_config(cls, path: str | Path = "server.json", *, network: str | None = None,
                    url: str | None = None, **kw: Any) -> AsyncClient:
        """A client of the node that ``server.json`` at ``path`` describes, with its key.

        Raises:
            ConfigError: the file is missing or invalid; LocalProtocolError: not on ``network``.
        """
        config = load_config(path)
        name = network or config.networks[0].name
        if name not in config.network_names:
            raise LocalProtocolError(f"{path} is not on network {name!r}; it is on {list(config.network_names)}")
        if url is None:
            host = config.ip
            if ipaddress.ip_address(host).is_unspecified:  # listens everywhere: talk to it here
                host = "::1" if ":" in host else "127.0.0.1"
            url = f"http://[{host}]:{config.port}" if ":" in host else f"http://{host}:{config.port}"
        return cls(url, network=name, key=config.network(name).key, **kw)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection (a later call opens a new one)."""
        if self._conn is not None:
            self._conn[1].transport.abort()
            self._conn = None

    # ------------------------------------------------------------------ the API
    async def create(self, msg: str) -> dict[str, Any]:
        """CREATE_GOSSIP: the new gossip (on the node's disk when this returns)."""
        return await self._expect("POST", "/v1/gossip", {"msg": msg}, 201, dict)  # type: ignore[no-any-return]

    async def page(self, *, after: int = 0, before: int | None = None, limit: int | None = None,
                   newest: bool = False, grep: str | None = None) -> Page:
        """One page of GOSSIP_STATUS in cursor order (docs/http-api.md, "Paging")."""
        query = {"after": after or None, "before": before, "limit": limit,
                 "order": "newest" if newest else None, "q": grep or None}
        answer = await self.request("GET", "/v1/gossip", query=query)
        rows = self._check(answer, "/v1/gossip", 200, list)
        nxt = answer.headers.get("gossip-next")
        cursor = answer.headers.get("gossip-cursor", "0")
        return Page(rows, int(nxt) if nxt and nxt.isdigit() else None, int(cursor) if cursor.isdigit() else 0)

    async def status(self, *, since: int = 0, limit: int | None = None, newest: bool = False,
                     grep: str | None = None) -> list[dict[str, Any]]:
        """GOSSIP_STATUS: every gossip after cursor ``since`` (at most ``limit``), paging as needed."""
        rows: list[dict[str, Any]] = []
        after, before = since, None
        while limit is None or len(rows) < limit:
            want = None if limit is None else min(limit - len(rows), 10_000)
            page = await self.page(after=after, before=before, limit=want, newest=newest, grep=grep)
            rows.extend(page.rows)
            if page.next is None:
                break
            after, before = (after, page.next) if newest else (page.next, before)
        return rows if limit is None else rows[:limit]

    async def network(self) -> list[dict[str, Any]]:
        """NETWORK_STATUS: this node first (``self: true``), then its peers."""
        return await self._expect("GET", "/v1/peers", None, 200, list)  # type: ignore[no-any-return]

    async def register(self, address: str) -> dict[str, Any]:
        """REGISTER the node with another at ``HOST:PORT``; the other node's record."""
        data = await self._expect("POST", "/v1/register", {"address": address}, 200, dict, timeout=self.timeout + 20)
        return data.get("peer") or {}

    async def watch(self, since: int | None = None) -> AsyncGenerator[dict[str, Any], None]:
        """Each gossip the node stores from now (or after cursor ``since``), as it lands.

        Once connected, it reconnects after a disconnect (backoff from 0.2 to 5 s, for as
        long as it takes) and resumes after the last cursor it yielded: nothing is missed or
        repeated. Refusals (wrong password...) raise :class:`NodeError`, and so does a node
        that cannot be reached at the first try (:class:`~gossip.errors.TransportError`);
        stop by breaking out of the loop.
        """
        last = since
        delay = BACKOFF[0]
        while True:
            try:
                async for row in self._stream(last):
                    if isinstance(row, int):  # the stream's starting cursor
                        last = row if last is None else last
                        delay = BACKOFF[0]
                        continue
                    last = row["cursor"]
                    yield row
            except NotANode:
                raise
            except NodeError as exc:
                # A node that has just restarted refuses a request stamped before its start
                # ("replayed"): meet it again (its clock) and retry; every other refusal stands.
                if exc.code is not ErrorCode.REPLAYED or last is None:
                    raise
                self.node_guid = None
            except (TransportError, OSError, asyncio.IncompleteReadError, HeadError, TimeoutError) as exc:
                if last is None:  # never connected: say so rather than wait in silence
                    if isinstance(exc, TransportError):
                        raise
                    why = _why(exc, self.timeout)
                    raise TransportError(f"{self._netloc} is unreachable: {why}", reason=why) from None
            await asyncio.sleep(delay)
            delay = min(delay * 2, BACKOFF[1])

    # ------------------------------------------------------------------ HTTP
    async def request(self, method: str, path: str, payload: Any = None, *, query: dict[str, Any] | None = None,
                      timeout: float | None = None) -> Answer:
        """One signed request on the persistent connection; any status is returned.

        Raises:
            TransportError: nothing (whole) answered in time; AnswerTooLarge: over ``max_answer``.
        """
        wait = self.timeout if timeout is None else timeout
        body = None if payload is None else json.dumps(payload, ensure_ascii=False).encode("utf-8")
        if self._lock is None:
            self._lock = asyncio.Lock()
        try:
            async with asyncio.timeout(wait):
                async with self._lock:
                    if self.node_guid is None:
                        await self._meet_node()
                    text, signed = _query_string(query or {})
                    head = self._head(method, path, text, signed, body, {"Accept": "application/json"})
                    return await self._exchange(head + (body or b""), method, retry=method == "GET")
        except TimeoutError:
            await self.close()
            why = f"no complete answer within {wait:g} s"
            raise TransportError(f"{self._netloc} is unreachable: {why}", reason=why, timed_out=True) from None
        except (OSError, HeadError, http.client.HTTPException, asyncio.IncompleteReadError) as exc:
            await self.close()
            why = _why(exc, wait)
            raise TransportError(f"{self._netloc} is unreachable: {why}", reason=why) from None

    def _head(self, method: str, path: str, query: str, signed: dict[str, list[str]], body: bytes | None,
              extra: dict[str, str]) -> bytes:
        assert self.node_guid is not None
        auth = client_auth_header(
            network=self.network_name, node=self.node_guid, key=self._key, method=method, path=path, query=signed,
            body=body or b"", ts=int(time.time() * 1000) + self.clock_offset_ms, nonce=secrets.token_hex(12),
        )
        fields = {"Host": self._netloc, "User-Agent": SERVER_NAME, CLIENT_AUTH_HEADER: auth, **extra}
        if body is not None:
            fields.update({"Content-Type": "application/json", "Content-Length": str(len(body))})
        target = path + (f"?{query}" if query else "")
        return (f"{method} {target} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in fields.items()) + "\r\n").encode("latin-1")

    async def _meet_node(self) -> None:
        """``GET /healthz`` (open): the guid requests are signed for, and the node's clock,
        which their timestamps follow (a skewed clock here must not look like a replay)."""
        sent = time.time()
        request = f"GET /healthz HTTP/1.1\r\nHost: {self._netloc}\r\nUser-Agent: {SERVER_NAME}\r\n\r\n".encode("latin-1")
        answer = await self._exchange(request, "GET", retry=True)
        got = time.time()
        data = answer.json()
        guid = data.get("node_guid") if isinstance(data, dict) else None
        if answer.status != 200 or not isinstance(guid, str):
            raise NotANode(f"{self.url}/healthz answered HTTP {answer.status}: not a gossip node?",
                            status=answer.status if answer.status >= 400 else 502, code=None)
        self.node_guid = guid
        node_ms = data.get("time_ms")
        if isinstance(node_ms, int) and not isinstance(node_ms, bool):
            offset = node_ms - int((sent + got) / 2 * 1000)
            if abs(offset) <= DEFAULT_WINDOW * 1000:  # beyond it the node's clock_skew refusal says so
                self.clock_offset_ms = offset

    async def _open(self, limit: int = _MAX_HEAD) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        infos = await asyncio.get_running_loop().run_in_executor(
            None, lambda: getaddrinfo_within(self._host, self._port, self.timeout))
        error: OSError = ConnectionRefusedError("no address to connect to")
        for family, kind, proto, _, sockaddr in infos:
            try:
                return await asyncio.open_connection(
                    sockaddr[0], sockaddr[1], family=family, proto=proto, ssl=self._ssl,
                    server_hostname=self._host if self._ssl else None, limit=limit)
            except OSError as exc:
                error = exc
        raise error

    async def _exchange(self, request: bytes, method: str, *, retry: bool) -> Answer:
        """Send on the kept connection (opening one if needed); a kept connection the node
        closed meanwhile is replaced once, for a request that may be repeated."""
        reused = self._conn is not None
        if self._conn is None:
            self._conn = await self._open()
        reader, writer = self._conn
        try:
            writer.write(request)
            await writer.drain()
            answer = await self._read(reader, method)
        except (ConnectionError, asyncio.IncompleteReadError) as exc:
            await self.close()
            if reused and (retry or (isinstance(exc, asyncio.IncompleteReadError) and not exc.partial)):
                return await self._exchange(request, method, retry=False)
            raise
        if (answer.headers.get("connection") or "").lower() == "close":
            await self.close()
        return answer

    async def _read_head(self, reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
        while True:
            try:
                raw = await reader.readuntil(b"\r\n\r\n")
            except asyncio.LimitOverrunError:
                raise HeadError("the answer's head is too long") from None
            head = parse_head(raw[:-4], request=False)
            status = int(head.start[1])
            if not 100 <= status < 200:
                return status, dict(head.joined)

    async def _read(self, reader: asyncio.StreamReader, method: str) -> Answer:
        status, headers = await self._read_head(reader)
        declared = headers.get("content-length")
        if method == "HEAD" or status in (204, 304):
            return Answer(status, b"", headers)
        if headers.get("transfer-encoding") is not None:
            raise HeadError("chunked answers are not supported")
        if declared is None:  # the body ends when the connection does: read up to the cap
            body = bytearray()
            while len(body) <= self.max_answer and (more := await reader.read(min(1 << 16, self.max_answer + 1 - len(body)))):
                body += more
            await self.close()
            if len(body) > self.max_answer:
                raise AnswerTooLarge(f"{self._netloc} answered more than {self.max_answer} bytes", limit=self.max_answer)
            return Answer(status, bytes(body), headers)
        if not (declared.isascii() and declared.isdigit()) or len(declared) > 30:
            raise HeadError("invalid Content-Length in the answer")
        length = int(declared)
        if length > self.max_answer:
            await self.close()
            raise AnswerTooLarge(f"{self._netloc} answered more than {self.max_answer} bytes", limit=self.max_answer)
        return Answer(status, await reader.readexactly(length), headers)

    async def _stream(self, after: int | None) -> AsyncIterator[dict[str, Any] | int]:
        """One stream connection: first its starting cursor (an int), then each gossip row."""
        if self.node_guid is None:
            await self.request("GET", "/v1/node")  # meets the node, within the call's deadline
        text, signed = _query_string({"after": after})
        head = self._head("GET", "/v1/gossip/stream", text, signed, None, {"Accept": "text/event-stream"})
        async with asyncio.timeout(self.timeout):
            reader, writer = await self._open(_MAX_EVENT)
        try:
            writer.write(head)
            async with asyncio.timeout(self.timeout):
                status, headers = await self._read_head(reader)
            if status != 200:
                declared = headers.get("content-length", "0")
                length = int(declared) if declared.isdigit() else 0
                async with asyncio.timeout(self.timeout):
                    body = await reader.readexactly(min(length, 1 << 20))
                self._check(Answer(status, body, headers), "/v1/gossip/stream", 200, object)
            start = headers.get("gossip-cursor", "")
            yield int(start) if after is None and start.isdigit() else (after or 0)
            event: dict[str, str] = {}
            while True:
                async with asyncio.timeout(WATCH_SILENCE):
                    try:
                        line = await reader.readline()
                    except ValueError:  # a line over _MAX_EVENT: not from a gossip node
                        raise HeadError("a stream line is too long") from None
                if not line.endswith(b"\n"):
                    return  # the node closed the stream (stopping): reconnect
                text_line = line.decode("utf-8").rstrip("\r\n")
                if text_line:
                    name, _, value = text_line.partition(":")
                    event[name] = value[1:] if value.startswith(" ") else value
                    continue
                if event.get("event") == "gossip" and "data" in event:
                    yield json.loads(event["data"])
                event = {}
        finally:
            writer.transport.abort()

    async def _expect(self, method: str, path: str, payload: Any, ok: int, shape: type, *,
                      timeout: float | None = None) -> Any:
        return self._check(await self.request(method, path, payload, timeout=timeout), path, ok, shape)

    def _check(self, answer: Answer, path: str, ok: int, shape: type) -> Any:
        data = answer.json()
        if answer.status != ok:
            error = data.get("error") if isinstance(data, dict) else None
            code = ErrorCode.from_wire(data.get("code")) if isinstance(data, dict) else None
            cause = ErrorCode.from_wire(data.get("cause")) if isinstance(data, dict) else None
            text = error if isinstance(error, str) and error else f"{self.url}{path} answered HTTP {answer.status}"
            raise NodeError(text, status=answer.status, code=code, cause=cause)
        if not isinstance(data, shape):
            raise NodeError(f"{self.url}{path} answered something that is not a JSON {shape.__name__}; not a gossip node?",
                            status=502, code=None)
        return data


class Client:
    """A blocking client of a running node; the same calls as :class:`AsyncClient`.

    It runs an :class:`AsyncClient` on an event loop in a daemon thread of its own (one per
    client), so it can be used from any thread, even one whose own loop is running. Use it
    as a context manager, or call :meth:`close`.

    Args: as :class:`AsyncClient`.
    """

    def __init__(self, url: str, *, network: str = "default", password: str | None = None, key: bytes | None = None,
                 timeout: float = DEFAULT_TIMEOUT, ssl_context: ssl.SSLContext | None = None,
                 max_answer: int = MAX_ANSWER) -> None:
        self._async = AsyncClient(url, network=network, password=password, key=key, timeout=timeout,
                                  ssl_context=ssl_context, max_answer=max_answer)
        self._loop: LoopThread | None = None

    @classmethod
    def from_config(cls, path: str | Path = "server.json", *, network: str | None = None,
                    url: str | None = None, **kw: Any) -> Client:
        """A client of the node that ``server.json`` at ``path`` describes (see AsyncClient.from_config)."""
        client = cls.__new__(cls)
        client._async = AsyncClient.from_config(path, network=network, url=url, **kw)
        client._loop = None
        return client

    @property
    def url(self) -> str:
        """The node's base URL."""
        return self._async.url

    @property
    def network_name(self) -> str:
        """The network this client acts on."""
        return self._async.network_name

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _run(self, coro: Any) -> Any:
        if self._loop is None:
            self._loop = LoopThread("gossip-client")
        return self._loop.run(coro)

    def close(self) -> None:
        """Close the connection and stop the client's thread."""
        if self._loop is not None:
            self._loop.run(self._async.close())
            self._loop.stop()
            self._loop = None

    def create(self, msg: str) -> dict[str, Any]:
        """CREATE_GOSSIP: the new gossip (on the node's disk when this returns)."""
        return self._run(self._async.create(msg))  # type: ignore[no-any-return]

    def page(self, *, after: int = 0, before: int | None = None, limit: int | None = None,
             newest: bool = False, grep: str | None = None) -> Page:
        """One page of GOSSIP_STATUS (see :meth:`AsyncClient.page`)."""
        return self._run(self._async.page(after=after, before=before, limit=limit, newest=newest, grep=grep))  # type: ignore[no-any-return]

    def status(self, *, since: int = 0, limit: int | None = None, newest: bool = False,
               grep: str | None = None) -> list[dict[str, Any]]:
        """GOSSIP_STATUS after cursor ``since``, at most ``limit`` rows, paging as needed."""
        return self._run(self._async.status(since=since, limit=limit, newest=newest, grep=grep))  # type: ignore[no-any-return]

    def network(self) -> list[dict[str, Any]]:
        """NETWORK_STATUS: this node first (``self: true``), then its peers."""
        return self._run(self._async.network())  # type: ignore[no-any-return]

    def register(self, address: str) -> dict[str, Any]:
        """REGISTER the node with another at ``HOST:PORT``; the other node's record."""
        return self._run(self._async.register(address))  # type: ignore[no-any-return]

    def request(self, method: str, path: str, payload: Any = None, *, query: dict[str, Any] | None = None,
                timeout: float | None = None) -> tuple[int, Any, dict[str, str]]:
        """One signed request: the status, the JSON answer (None if not JSON), the headers."""
        answer = self._run(self._async.request(method, path, payload, query=query, timeout=timeout))
        return answer.status, answer.json(), answer.headers

    def watch(self, since: int | None = None) -> Iterator[dict[str, Any]]:
        """Each gossip the node stores from now (or after ``since``), as it lands; resumes
        across reconnects (see :meth:`AsyncClient.watch`). Stop by breaking out of the loop."""
        stream = self._async.watch(since)

        async def step() -> dict[str, Any]:
            return await stream.__anext__()

        if self._loop is None:
            self._loop = LoopThread("gossip-client")
        loop = self._loop
        future: concurrent.futures.Future[dict[str, Any]] | None = None
        try:
            while True:
                future = asyncio.run_coroutine_threadsafe(step(), loop.loop)
                yield future.result()
        finally:  # a break, an error, or Ctrl-C while waiting: stop the step, then the stream
            if future is not None and not future.done():
                future.cancel()
                try:
                    future.result(timeout=5.0)
                except (concurrent.futures.CancelledError, concurrent.futures.TimeoutError, Exception):
                    pass
            loop.run(stream.aclose(), timeout=5.0)
