"""HTTP transport: node-to-node requests as ``POST /v1/peer`` over http.server and urllib.

Server side: a :class:`~http.server.ThreadingHTTPServer` in a daemon thread. The body of
``POST /v1/peer`` goes to the node's handler and its answer comes back with status 200; a
:class:`~gossip.errors.GossipError` becomes an error answer with the error's ``status_hint``.
Every other path goes to an optional :data:`App` (the runner's client API and web page), or
gets 404. Every error answer is the JSON of :func:`gossip.messages.error_body`.

Limits, so that hostile input costs little and gets a 4xx and a log line:

- a body needs a Content-Length (411), no larger than ``max_body`` (413, sent before the body
  is read); chunked bodies are refused (411);
- every read from a client waits at most ``read_timeout`` seconds, and the whole request must
  arrive within ``request_timeout`` seconds, so a slow client cannot hold a thread for long;
- at most ``max_concurrency`` connections are served at once; a few more are answered 503
  "busy", and beyond that new connections are closed at once (no unbounded queue);
- one request per connection (HTTP/1.0 style), so idle keep-alive connections hold nothing.

Client side: urllib with only the HTTP and HTTPS handlers (no proxies from the environment,
no redirects, no other URL schemes), a timeout on every call, and a cap on the answer size.
"""

from __future__ import annotations

import http.client
import io
import json
import logging
import re
import socket
import socketserver
import ssl
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any, Callable, Mapping

from ..errors import GossipError, LocalProtocolError, TransportError
from ..messages import MAX_MESSAGE_BYTES, error_body

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

__all__ = ["PEER_PATH", "App", "HttpTransport", "Request", "Response", "http_call"]

Address = tuple[str, int]
Handler = Callable[[bytes], bytes]

#: The path of every node-to-node request.
PEER_PATH = "/v1/peer"

_log = logging.getLogger("gossip.http")

_POLL_INTERVAL = 0.05
#: Connections answered "503 busy" while all ``max_concurrency`` slots are taken.
_SPARE_CONNECTIONS = 8
#: After an error answer sent without reading the body: how long and how much to discard,
#: so that closing the socket does not reset the connection before the client reads the answer.
_LINGER_SECONDS = 1.0
_LINGER_BYTES = 1 << 20
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_DIGITS = re.compile(r"[0-9]{1,30}")  # longer is no length, just an attack
_USER_AGENT = "gossip-http/1"


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
    """What the :data:`App` answers; the transport adds Content-Type and Content-Length."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: Mapping[str, str] = field(default_factory=dict)


#: Serves every request that is not for ``/v1/peer``. May raise GossipError (sent as its
#: ``status_hint`` with a JSON error body); any other exception is logged and answered 500.
App = Callable[[Request], Response]


def _hostport(host: str, port: int) -> str:
    """``host:port`` as in a URL: IPv6 addresses in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# -- server -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Config:
    handler: Handler
    app: App | None
    max_body: int
    read_timeout: float
    request_timeout: float
    ssl_context: ssl.SSLContext | None


class _DeadlineReader(io.RawIOBase):
    """Socket reads that each wait at most ``per_read`` and all end by ``deadline``."""

    def __init__(self, sock: socket.socket, per_read: float, deadline: float) -> None:
        super().__init__()
        self._sock = sock
        self._per_read = per_read
        self._deadline = deadline

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer) -> int:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the request took too long to arrive")
        self._sock.settimeout(min(self._per_read, left))
        return self._sock.recv_into(buffer)


class _Server(ThreadingHTTPServer):
    """ThreadingHTTPServer with a bounded number of connection threads."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: Address, config: _Config, max_concurrency: int) -> None:
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.config = config
        self._slots = threading.BoundedSemaphore(max_concurrency)
        self._spare = threading.BoundedSemaphore(_SPARE_CONNECTIONS)
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _RequestHandler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse DNS lookup that can hang.
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        if self._slots.acquire(blocking=False):
            slot, busy = self._slots, False
        elif self._spare.acquire(blocking=False):
            slot, busy = self._spare, True
        else:
            _log.warning("closed a connection from %s: too many connections", client_address[0])
            self.shutdown_request(request)
            return
        thread = threading.Thread(
            target=self._serve_connection,
            args=(request, client_address, slot, busy),
            name="gossip-http-connection",
            daemon=True,
        )
        try:
            thread.start()
        except RuntimeError:  # the process cannot start another thread
            slot.release()
            _log.warning("closed a connection from %s: cannot start a thread", client_address[0])
            self.shutdown_request(request)

    def _serve_connection(
        self, sock: socket.socket, client: Any, slot: threading.BoundedSemaphore, busy: bool
    ) -> None:
        conn = sock
        self._track(conn, True)
        try:
            if self.config.ssl_context is not None:
                # The handshake happens here, in this connection's thread, with a timeout;
                # never in the accepting thread, where a slow client would stall everyone.
                self._track(sock, False)
                conn = self.config.ssl_context.wrap_socket(
                    sock, server_side=True, do_handshake_on_connect=False
                )
                self._track(conn, True)
                conn.settimeout(self.config.read_timeout)
                conn.do_handshake()
            _RequestHandler(conn, client, self, busy=busy)
        except Exception:
            self.handle_error(conn, client)
        finally:
            self._track(conn, False)
            self.shutdown_request(conn)
            slot.release()

    def _track(self, sock: socket.socket, add: bool) -> None:
        with self._open_lock:
            if add:
                self._open.add(sock)
            else:
                self._open.discard(sock)

    def abort_connections(self) -> None:
        """Shut down every open connection, so that their threads end now."""
        with self._open_lock:  # held while shutting down: no socket is closed meanwhile
            for sock in self._open:
                try:
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)
                except OSError:
                    pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (OSError, http.client.HTTPException)):
            _log.debug("connection from %s ended: %r", client_address[0], exc)
        else:
            _log.exception("unexpected error on a connection from %s", client_address[0])


class _RequestHandler(BaseHTTPRequestHandler):
    """One connection, one request; answers in JSON except where the App decides."""

    server: _Server
    server_version = _USER_AGENT

    def __init__(
        self, request: Any, client_address: Any, server: _Server, *, busy: bool = False
    ) -> None:
        self.busy = busy
        self.body_read = False
        super().__init__(request, client_address, server)

    def setup(self) -> None:
        config = self.server.config
        #: Most seconds one read or write on this connection may wait.
        self.wait = min(config.read_timeout, 1.0) if self.busy else config.read_timeout
        super().setup()
        self.connection.settimeout(self.wait)
        self.rfile.close()  # replaced by a reader with an overall deadline
        deadline = time.monotonic() + (self.wait if self.busy else config.request_timeout)
        self.rfile = io.BufferedReader(_DeadlineReader(self.connection, self.wait, deadline))

    def version_string(self) -> str:
        return self.server_version

    def log_message(self, format: str, *args: Any) -> None:
        _log.debug("%s %s", self.address_string(), format % args)

    # -- routing ----------------------------------------------------------------------------
    def do_GET(self) -> None:
        self._dispatch()

    do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = do_GET

    def _dispatch(self) -> None:
        if self.busy:
            self._error(503, "the node is busy; try again shortly", {"Retry-After": "1"})
            return
        path, _, query = self.path.partition("?")
        config = self.server.config
        if path == PEER_PATH:
            if self.command != "POST":
                self._error(405, f"{PEER_PATH} accepts POST only", {"Allow": "POST"})
                return
            data = self._read_body(required=True)
            if data is not None:
                handler, peer_data = config.handler, data
                self._answer(path, lambda: Response(200, handler(peer_data)))
        elif config.app is not None:
            body = self._read_body(required=self.command in _BODY_METHODS)
            if body is not None:
                app = config.app
                request = Request(
                    method=self.command,
                    path=path,
                    query=urllib.parse.parse_qs(query, keep_blank_values=True),
                    headers=self._header_dict(),
                    body=body,
                    client=(str(self.client_address[0]), int(self.client_address[1])),
                )
                self._answer(path, lambda: app(request))
        else:
            self._error(404, f"no such path: {path[:200]}")

    def _header_dict(self) -> dict[str, str]:
        out: dict[str, str] = {}
        for name, value in self.headers.items():
            key = name.lower()
            out[key] = f"{out[key]}, {value}" if key in out else value
        return out

    def _read_body(self, *, required: bool) -> bytes | None:
        """The request body, or None after answering an error."""
        if self.headers.get("Transfer-Encoding") is not None:
            self._error(411, "chunked bodies are not accepted; send a Content-Length")
            return None
        values = {v.strip() for v in self.headers.get_all("Content-Length") or []}
        if not values:
            if required:
                self._error(411, "a Content-Length header is required")
                return None
            self.body_read = True
            return b""
        text = values.pop()
        if values or not _DIGITS.fullmatch(text):
            self._error(400, "invalid Content-Length header")
            return None
        length = int(text)
        limit = self.server.config.max_body
        if length > limit:
            self._error(413, f"body of {length} bytes exceeds the limit of {limit} bytes")
            return None
        self.body_read = True  # from here on, nothing is left to discard
        try:
            body = self.rfile.read(length)
        except TimeoutError:
            self._error(408, "the request body did not arrive in time")
            return None
        if len(body) < length:
            _log.debug("%s closed the connection mid-body", self.address_string())
            self.close_connection = True
            return None
        return body

    def _answer(self, path: str, make: Callable[[], Response]) -> None:
        try:
            response = make()
            if not isinstance(response, Response):
                raise TypeError(f"expected a Response, got {type(response).__name__}")
        except GossipError as exc:
            status = exc.status_hint if 400 <= exc.status_hint <= 599 else 500
            client = self.address_string()
            _log.info("%s %s from %s: %d %s", self.command, path, client, status, exc)
            self._error(status, str(exc))
            return
        except Exception:
            _log.exception("%s %s from %s failed", self.command, path, self.address_string())
            self._error(500, "internal error; the node logged the details")
            return
        self._send(response.status, response.body, response.content_type, response.headers)

    # -- answering --------------------------------------------------------------------------
    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Error answers from the base class's parser (bad request line, 414, 431...) in JSON."""
        # Its only 5xx blame the request (an unknown method: 501, HTTP/2 or later: 505): like
        # every other malformed request they get a 4xx, so that 5xx always means the node's fault.
        code = {501: 405, 505: 400}.get(code, code)
        text = message or self.responses.get(code, ("error",))[0]
        self.log_error("code %d, message %s", code, text)
        self._error(code, text)

    def _error(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        self.close_connection = True
        all_headers = {"Connection": "close", **(headers or {})}
        self._send(status, error_body(status, message), "application/json", all_headers)
        if self._unread_body():
            self._linger()

    def _unread_body(self) -> bool:
        """Whether the client may still be sending (a body, or a request we could not parse)."""
        if self.body_read:
            return False
        headers = getattr(self, "headers", None)
        if headers is None:
            return True
        length = headers.get("Content-Length")
        return headers.get("Transfer-Encoding") is not None or (length or "0").strip() != "0"

    def _send(
        self, status: int, body: bytes, content_type: str, headers: Mapping[str, str]
    ) -> None:
        self.connection.settimeout(self.wait)  # the deadline reader may have shortened it
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Content-Type-Options", "nosniff")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD" and status >= 200 and status not in (204, 304):
            self.wfile.write(body)

    def _linger(self) -> None:
        """Half-close, then discard what the client still sends (bounded in time and bytes)."""
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_WR)
            end = time.monotonic() + _LINGER_SECONDS
            drained = 0
            while drained < _LINGER_BYTES:
                left = end - time.monotonic()
                if left <= 0:
                    break
                self.connection.settimeout(left)
                chunk = self.connection.recv(65536)
                if not chunk:
                    break
                drained += len(chunk)
        except OSError:
            pass


# -- client -----------------------------------------------------------------------------------


def _opener(ssl_context: ssl.SSLContext | None) -> urllib.request.OpenerDirector:
    """HTTP and HTTPS only: no proxy from the environment, no redirects, no error handlers."""
    opener = urllib.request.OpenerDirector()
    opener.add_handler(urllib.request.HTTPHandler())
    opener.add_handler(urllib.request.HTTPSHandler(context=ssl_context))
    return opener


def _why(exc: BaseException, timeout: float) -> str:
    """A short, lower-case reason why nothing (usable) answered."""
    if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, BaseException):
        exc = exc.reason
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, TimeoutError):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, socket.gaierror):
        return f"cannot resolve the host name ({exc.strerror})"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate rejected ({exc.verify_message})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS failed ({exc.reason or exc})"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "closed the connection without answering"
    if isinstance(exc, http.client.IncompleteRead):
        return "the answer was cut short"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[:1].lower() + exc.strerror[1:]
    return str(exc) or type(exc).__name__


def _read_capped(response: Any, cap: int, deadline: float) -> bytes:
    chunks: list[bytes] = []
    size = 0
    declared = response.headers.get("Content-Length")
    while True:
        if time.monotonic() > deadline:
            raise TimeoutError("the answer took too long")
        chunk = response.read(min(65536, cap + 1 - size))
        if not chunk:
            body = b"".join(chunks)
            if declared is not None and declared.isdigit() and int(declared) != size:
                # The connection closed early: a cut answer must never pass for a whole one.
                raise http.client.IncompleteRead(body, int(declared) - size)
            return body
        chunks.append(chunk)
        size += len(chunk)
        if size > cap:
            raise _TooLarge(cap)


class _TooLarge(Exception):
    def __init__(self, cap: int) -> None:
        super().__init__(f"the answer exceeds {cap} bytes")


def _call(
    opener: urllib.request.OpenerDirector,
    url: str,
    method: str,
    body: bytes | None,
    headers: Mapping[str, str],
    timeout: float,
    cap: int,
) -> tuple[int, bytes]:
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LocalProtocolError(f"not an http(s) URL: {url!r}")
    where = parts.netloc
    request = urllib.request.Request(url, data=body, headers=dict(headers), method=method)
    request.add_unredirected_header("User-agent", _USER_AGENT)
    deadline = time.monotonic() + timeout
    try:
        with opener.open(request, timeout=timeout) as response:
            return int(response.status), _read_capped(response, cap, deadline)
    except _TooLarge as exc:
        raise TransportError(f"{where} answered too much: {exc}") from None
    except (OSError, http.client.HTTPException) as exc:  # URLError is an OSError
        raise TransportError(f"{where} is unreachable: {_why(exc, timeout)}") from None


def _error_text(body: bytes) -> str | None:
    """The ``error`` field of a JSON error body, if there is one."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    error = data.get("error") if isinstance(data, dict) else None
    return error[:500] if isinstance(error, str) else None


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
    """One HTTP(S) request, for the command-line client; no proxies, no redirects.

    Args:
        url: an ``http://`` or ``https://`` URL.
        method: the HTTP method.
        body: the request body; its Content-Type defaults to ``application/json``.
        headers: extra request headers.
        timeout: seconds to wait for each step (connect, send, first byte), and for the
            whole answer to arrive.
        ssl_context: for ``https://``; None uses the default, verifying context.
        max_answer: most answer bytes read.

    Returns:
        The status and the body of the answer, whatever the status.

    Raises:
        TransportError: nothing answered (``status`` None), or the answer exceeded
            ``max_answer``.
        LocalProtocolError: ``url`` is not an http(s) URL.
    """
    all_headers = dict(headers or {})
    if body is not None and not any(k.lower() == "content-type" for k in all_headers):
        all_headers["Content-Type"] = "application/json"
    return _call(_opener(ssl_context), url, method, body, all_headers, timeout, max_answer)


# -- the transport ----------------------------------------------------------------------------


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
        read_timeout: float = 10.0,
        request_timeout: float = 30.0,
        max_concurrency: int = 64,
    ) -> None:
        """Configure; nothing is opened until :meth:`serve`.

        Args:
            timeout: default seconds a :meth:`request` waits (connect, send, answer).
            max_body: largest request body the server accepts (larger: 413).
            ssl_server_context: serve HTTPS with this context instead of HTTP.
            ssl_client_context: send requests over HTTPS with this context.
            app: serves every path but ``/v1/peer``; without it they get 404.
            read_timeout: most seconds the server waits for each read from a client.
            request_timeout: most seconds a whole request may take to arrive.
            max_concurrency: most connections served at once (more: 503, or closed).

        Raises:
            LocalProtocolError: a limit is not positive.
        """
        limits = {"timeout": timeout, "max_body": max_body, "read_timeout": read_timeout,
                  "request_timeout": request_timeout, "max_concurrency": max_concurrency}
        for name, value in limits.items():
            if not value > 0:
                raise LocalProtocolError(f"{name} must be positive, not {value!r}")
        self.timeout = timeout
        self.max_body = max_body
        self.app = app
        self._ssl_server = ssl_server_context
        self._read_timeout = read_timeout
        self._request_timeout = request_timeout
        self._max_concurrency = max_concurrency
        self._scheme = "https" if ssl_client_context is not None else "http"
        self._opener = _opener(ssl_client_context)
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        #: The address being served, or None.
        self.address: Address | None = None

    def serve(self, address: Address, handler: Handler) -> Address:
        """Listen on ``address`` and answer from a background thread.

        Args:
            address: ``(ip, port)``; port 0 picks a free port.
            handler: turns a ``/v1/peer`` request body into the answer body.

        Returns:
            The address actually bound.

        Raises:
            TransportError: already serving, or the address cannot be bound.
        """
        config = _Config(
            handler=handler,
            app=self.app,
            max_body=self.max_body,
            read_timeout=self._read_timeout,
            request_timeout=self._request_timeout,
            ssl_context=self._ssl_server,
        )
        with self._lock:
            if self._server is not None:
                raise TransportError("this transport is already serving")
            try:
                server = _Server(address, config, self._max_concurrency)
            except OSError as exc:
                where = _hostport(*address)
                raise TransportError(f"cannot listen on {where}: {_why(exc, 0)}") from None
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": _POLL_INTERVAL},
                name=f"gossip-http-{server.server_port}",
                daemon=True,
            )
            thread.start()
            self._server, self._thread = server, thread
            self.address = (server.server_name, server.server_port)
            _log.debug("serving on %s", _hostport(*self.address))
            return self.address

    def request(self, address: Address, data: bytes, *, timeout: float | None = None) -> bytes:
        """POST ``data`` to ``address``'s ``/v1/peer`` and return the answer body.

        Args:
            address: the peer's ``(ip or host name, port)``.
            data: the request body.
            timeout: seconds to wait (each step, and the whole answer); None: the default.

        Returns:
            The body of the 200 answer.

        Raises:
            TransportError: ``status`` None when nothing answered (refused, timed out,
                unresolvable, cut short, or an answer over ``4 * max_body`` bytes);
                otherwise the status of the error answer, with its error text.
        """
        wait = self.timeout if timeout is None else timeout
        where = _hostport(*address)
        url = f"{self._scheme}://{where}{PEER_PATH}"
        headers = {"Content-Type": "application/json"}
        status, body = _call(self._opener, url, "POST", data, headers, wait, 4 * self.max_body)
        if status == 200:
            return body
        reason = _error_text(body) or http.client.responses.get(status, "error")
        raise TransportError(f"refused by {where} ({status}): {reason}", status=status)

    def close(self) -> None:
        """Stop serving: close the listening socket and open connections; idempotent."""
        with self._lock:
            server, thread = self._server, self._thread
            self._server = self._thread = None
            self.address = None
        if server is None or thread is None:
            return
        if thread.is_alive():
            server.shutdown()
        server.server_close()
        server.abort_connections()
        thread.join(timeout=5.0)
