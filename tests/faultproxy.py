"""A fault-injecting TCP/HTTP forwarder for tests: cut a cluster of real nodes into groups.

Each node listens on a private port (``--listen 127.0.0.1:<private>``) and tells its peers a
port of this proxy (``--port <proxy>``). The proxy forwards every connection to its node,
except that while the network is *cut* it refuses a node-to-node request
(``POST /v1/peer``) whose sender (the envelope's ``"from"`` guid) is in another group than
the node behind the port: the connection is closed without an answer (``mode="drop"``, what
a partition looks like to the sender: no answer) or answered ``503`` (``mode="503"``).
Client-API requests (anything but ``/v1/peer``) always pass.

The proxy serves one request per connection: it reads one whole request (head and
``Content-Length`` body), decides, forwards it with ``Connection: close`` added (so that the
node closes after answering, and the sender's pool does not keep the connection), relays the
answer until the node closes, and closes. Every socket has a timeout, every thread is tracked and :meth:`FaultProxy.close`
ends them all.

Usage::

    proxy = FaultProxy()
    port = proxy.add_route(private_port, group=0)    # start the node with --port port
    proxy.set_group(node_guid, 0)
    proxy.cut(); ...; proxy.heal(); proxy.close()
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

__all__ = ["FaultProxy"]

_HEAD_LIMIT = 64 * 1024
_BODY_LIMIT = 4 * 1024 * 1024
_IO_TIMEOUT = 10.0
_PEER_PATH = "/v1/peer"


@dataclass
class _Route:
    listener: socket.socket
    port: int
    backend: int
    group: int
    thread: threading.Thread | None = None


@dataclass(eq=False)  # hashed by identity: kept in a set
class _Conn:
    sock: socket.socket
    cut_epoch: int  # the proxy's epoch when this connection was admitted
    backend: socket.socket | None = None
    thread: threading.Thread | None = field(default=None, repr=False)


class FaultProxy:
    """Forwards to nodes on 127.0.0.1 and, while cut, drops peer requests between groups.

    Args:
        mode: ``"drop"`` closes a refused connection without answering; ``"503"`` answers
            ``503 Service Unavailable`` with a JSON error body.
    """

    def __init__(self, mode: str = "drop") -> None:
        if mode not in ("drop", "503"):
            raise ValueError("mode is 'drop' or '503'")
        self.mode = mode
        self._lock = threading.Lock()
        self._routes: list[_Route] = []
        self._conns: set[_Conn] = set()
        self._groups: dict[str, int] = {}
        self._cut = False
        self._epoch = 0  # bumped by every cut/heal
        self._closed = threading.Event()
        #: Counters: ("forwarded"|"refused", from_group, to_group) for peer requests,
        #: ("client", None, to_group) for the rest, ("unknown_sender", None, to_group).
        self.stats: Counter[tuple[str, int | None, int]] = Counter()

    # ------------------------------------------------------------------ configuration
    def add_route(self, backend_port: int, group: int) -> int:
        """Listen on a free port of 127.0.0.1 that forwards to ``backend_port``; returns it."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)
        listener.settimeout(0.1)  # accept() polls, so that close() ends the thread promptly
        route = _Route(listener=listener, port=int(listener.getsockname()[1]), backend=backend_port, group=group)
        route.thread = threading.Thread(target=self._accept_loop, args=(route,), name=f"faultproxy-{route.port}", daemon=True)
        with self._lock:
            self._routes.append(route)
        route.thread.start()
        return route.port

    def set_group(self, guid: str, group: int) -> None:
        """Say which group the node with this guid is in (needed to judge its requests)."""
        with self._lock:
            self._groups[guid] = group

    @property
    def is_cut(self) -> bool:
        with self._lock:
            return self._cut

    def cut(self, drain_timeout: float = 15.0) -> None:
        """Start refusing peer requests between groups.

        Returns once every connection admitted before the cut has ended (at most
        ``drain_timeout`` seconds), so nothing that crossed before the cut is still arriving.
        """
        with self._lock:
            self._cut = True
            self._epoch += 1
            epoch = self._epoch
        self._drain(epoch, drain_timeout)

    def heal(self) -> None:
        """Forward everything again."""
        with self._lock:
            self._cut = False
            self._epoch += 1

    def _drain(self, epoch: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if not any(c.cut_epoch < epoch for c in self._conns):
                    return
            time.sleep(0.02)
        raise TimeoutError(f"connections admitted before the cut still open after {timeout}s")

    def refused(self) -> int:
        """Peer requests refused so far."""
        with self._lock:
            return sum(n for (kind, _, _), n in self.stats.items() if kind == "refused")

    # ------------------------------------------------------------------ life cycle
    def close(self, timeout: float = 10.0) -> None:
        """Stop listening, cut every open connection and wait for every thread (bounded)."""
        self._closed.set()
        with self._lock:
            routes = list(self._routes)
        for route in routes:  # no connection is admitted once these have ended
            if route.thread is not None:
                route.thread.join(timeout=5)
            route.listener.close()
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                conns = list(self._conns)  # each thread removes itself when it ends
            if not conns:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"{len(conns)} proxy connection threads did not end")
            for conn in conns:
                for sock in (conn.sock, conn.backend):
                    if sock is not None:
                        try:
                            sock.shutdown(socket.SHUT_RDWR)
                        except OSError:
                            pass
            for conn in conns:
                if conn.thread is not None:
                    conn.thread.join(timeout=0.5)

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ forwarding
    def _accept_loop(self, route: _Route) -> None:
        while not self._closed.is_set():
            try:
                sock, _ = route.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            sock.settimeout(_IO_TIMEOUT)
            with self._lock:
                conn = _Conn(sock=sock, cut_epoch=self._epoch)
                thread = threading.Thread(
                    target=self._serve, args=(route, conn), name="faultproxy-conn", daemon=True
                )
                conn.thread = thread
                self._conns.add(conn)
            thread.start()

    def _serve(self, route: _Route, conn: _Conn) -> None:
        try:
            request = self._read_request(conn.sock)
            if request is None:
                return
            head, body, method, path = request
            if method == "POST" and path.split("?", 1)[0] == _PEER_PATH:
                if not self._admit_peer_request(route, conn, body):
                    self._refuse(conn.sock)
                    return
            else:
                with self._lock:
                    self.stats[("client", None, route.group)] += 1
            self._forward(route, conn, head[:-2] + b"Connection: close\r\n\r\n" + body)
        except OSError:
            pass  # a peer that went away mid-request: the node sees what a network would show
        finally:
            for sock in (conn.backend, conn.sock):
                if sock is not None:
                    try:
                        sock.close()
                    except OSError:
                        pass
            with self._lock:
                self._conns.discard(conn)

    def _admit_peer_request(self, route: _Route, conn: _Conn, body: bytes) -> bool:
        sender = _sender(body)
        with self._lock:
            source = self._groups.get(sender) if sender else None
            if source is None:
                self.stats[("unknown_sender", None, route.group)] += 1
                # Unknown senders pass while healed; while cut, nobody unknown gets through.
                if self._cut:
                    self.stats[("refused", None, route.group)] += 1
                    return False
                return True
            if self._cut and source != route.group:
                self.stats[("refused", source, route.group)] += 1
                return False
            self.stats[("forwarded", source, route.group)] += 1
            return True

    def _refuse(self, sock: socket.socket) -> None:
        if self.mode == "503":
            body = json.dumps({"v": 1, "type": "error", "status": 503, "error": "partitioned by the test proxy"}).encode()
            head = (
                "HTTP/1.0 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            ).encode()
            sock.sendall(head + body)
        else:
            # SO_LINGER 0: close with a reset, as a dropped route looks to the sender.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")

    def _forward(self, route: _Route, conn: _Conn, data: bytes) -> None:
        backend = socket.create_connection(("127.0.0.1", route.backend), timeout=_IO_TIMEOUT)
        conn.backend = backend
        backend.sendall(data)
        while True:
            chunk = backend.recv(65536)
            if not chunk:
                break
            conn.sock.sendall(chunk)

    @staticmethod
    def _read_request(sock: socket.socket) -> tuple[bytes, bytes, str, str] | None:
        """One request: (head with its blank line, body, method, path), or None if cut short."""
        buf = b""
        while b"\r\n\r\n" not in buf:
            if len(buf) > _HEAD_LIMIT:
                return None
            chunk = sock.recv(65536)
            if not chunk:
                return None
            buf += chunk
        end = buf.index(b"\r\n\r\n") + 4
        head, body = buf[:end], buf[end:]
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) < 2:
            return None
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length" and value.strip().isdigit():
                length = int(value.strip())
        if length > _BODY_LIMIT:
            return None
        while len(body) < length:
            chunk = sock.recv(65536)
            if not chunk:
                return None
            body += chunk
        return head, body, parts[0], parts[1]


def _sender(body: bytes) -> str | None:
    """The ``"from"`` guid of a node-to-node envelope, or None."""
    try:
        env = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    sender = env.get("from") if isinstance(env, dict) else None
    return sender if isinstance(sender, str) else None
