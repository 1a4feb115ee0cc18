"""``python -m gossip.http``: a real node. Connects the core, the HTTP transport, JSON storage and the clock.

This is the one place where "persist, then acknowledge" lives: every call into the node runs
under one lock and takes the events it produced (:meth:`NodeRunner._take`); they are written
to storage, in the order taken but outside the lock, before the HTTP answer that caused them
leaves (:meth:`NodeRunner._commit`).

Run it with ``-m``: run by path, ``import http.server`` would find this file instead.
"""

from __future__ import annotations

import argparse
from importlib import resources
import json
import logging
import os
import random
import secrets
import signal
import socket
import ssl
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from . import __version__
from .auth import CLIENT_AUTH_HEADER, ReplayGuard, check_client_auth, derive_key
from .configfile import load_config, save_config
from .errors import ConfigError, GossipError, LocalProtocolError, StorageError, TransportError
from .events import Event, GossipReceived, PeerJoined, PeerStatusChanged, RegisterFailed, Registered
from .messages import MAX_MESSAGE_BYTES
from .model import Network, NodeConfig, PeerStatus, check_network_name
from .node import GossipNode, Outgoing
from .storage import persist
from .storage.jsonfile import JsonFileStorage
from .transport.http import HttpTransport, Request, Response

__all__ = ["NodeRunner", "main", "parse_hostport", "data_dir_for", "DEFAULT_PORT"]

log = logging.getLogger("gossip.node")

DEFAULT_PORT = 8470
#: Seconds a client's "register with HOST:PORT" waits for the other node's answer.
REGISTER_WAIT = 10.0
#: Seconds it waits for the host name to resolve (an unresolvable name gets its 400 quickly).
RESOLVE_WAIT = 3.0


def parse_hostport(text: str, *, timeout: float | None = None) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) to an (ip, port) pair, resolving a host name.

    Args:
        timeout: most seconds to wait for the name's resolution (None: the resolver's own).

    Raises:
        LocalProtocolError: not of that form, or the name does not resolve (in time).
    """
    host, sep, port_text = text.strip().rpartition(":")
    host = host.strip("[]")
    # ASCII digits only, and few: "²" and "٣" pass isdigit(), and int() of 4301+ digits raises.
    if not sep or not host or not port_text.isascii() or not port_text.isdigit() or len(port_text) > 5 \
            or not 1 <= int(port_text) <= 65535:
        raise LocalProtocolError(f"{text!r} is not HOST:PORT (for example 127.0.0.1:8470)")
    try:
        infos = _getaddrinfo(host, int(port_text), timeout)
    except (socket.gaierror, UnicodeError) as exc:
        why = getattr(exc, "strerror", None) or str(exc)
        raise LocalProtocolError(f"cannot resolve host {host!r}: {why}") from None
    return str(infos[0][4][0]), int(port_text)


def _getaddrinfo(host: str, port: int, timeout: float | None) -> list[Any]:
    """getaddrinfo, given up after ``timeout`` s: it has no timeout, and a slow resolver can
    take 5 s per try (the lookup itself ends in a daemon thread, bounded by the resolver)."""
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
    thread.join(timeout)
    if not box:
        raise socket.gaierror(f"no answer within {timeout:g} s")
    if isinstance(box[0], Exception):
        raise box[0]
    return list(box[0])


def data_dir_for(config_path: Path) -> Path:
    """Where a node keeps gossips and peers: ``server.json`` -> ``server-data/`` beside it."""
    return config_path.with_name(config_path.stem + "-data")


@dataclass(frozen=True, slots=True)
class _Batch:
    """What one call into the node changed (events) and queued (requests), in call order."""

    ticket: int
    events: list[Event]
    outbox: list[Outgoing]


@dataclass
class _Waiter:
    done: threading.Event = field(default_factory=threading.Event)
    event: Event | None = None


class NodeRunner:
    """A GossipNode served over HTTP, persisted to a JSON-file store, driven by the clock.

    Args:
        config: the node's configuration (its ip and port are where it listens).
        storage: where gossips and peers live; the node starts from ``storage.load()``.
        transport: the HTTP transport (created with this runner's app when None).
        clock: seconds since the epoch (``time.time``); tests may pass another.
    """

    def __init__(
        self,
        config: NodeConfig,
        storage: JsonFileStorage,
        *,
        transport: HttpTransport | None = None,
        clock: Callable[[], float] = time.time,
        request_timeout: float = 5.0,
    ) -> None:
        self.storage = storage
        self.clock = clock
        # A transport passed in must route its app to this runner (see main()).
        self.transport = transport or HttpTransport(app=self.app, timeout=request_timeout)
        self._request_timeout = request_timeout
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._pool = ThreadPoolExecutor(max_workers=16, thread_name_prefix="gossip-send")
        self._waiters: dict[int, _Waiter] = {}
        self._client_guards: dict[str, ReplayGuard] = {}
        self._counters: dict[tuple[str, str], int] = {}
        self._listeners: list[Callable[[Event], None]] = []
        # Batches are taken under the lock and written in the same order outside it.
        self._order = threading.Condition()
        self._issued = 0
        self._committed = 0
        self._ready: dict[int, _Batch] = {}
        self._writing = False
        self._failures: dict[int, StorageError] = {}
        self.node = GossipNode(
            config,
            rng=random.Random(secrets.randbits(128)),
            now=clock(),
            snapshot=storage.load(),
            # The transport times every call out; this only catches an answer never reported.
            request_timeout=request_timeout * 6,
        )

    # ------------------------------------------------------------------ life cycle
    @property
    def config(self) -> NodeConfig:
        return self.node.config

    def start(self) -> tuple[str, int]:
        """Serve on the config's address (its port must not be 0) and start gossiping."""
        address = self.transport.serve((self.config.ip, self.config.port), self.handle_peer)
        self.start_gossiping()
        return address

    def start_gossiping(self) -> None:
        """Start the round loop in a background thread (serving is started separately)."""
        self._thread = threading.Thread(target=self._loop, name="gossip-loop", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop gossiping and serving; everything acknowledged is already on disk."""
        self._stop.set()
        self._wake.set()
        thread = getattr(self, "_thread", None)
        if thread is not None:
            thread.join(timeout=5)
        self.transport.close()
        self._pool.shutdown(wait=True, cancel_futures=True)
        with self._lock:
            self.storage.close()

    def on_event(self, listener: Callable[[Event], None]) -> None:
        """Call ``listener`` with every event, after it was persisted (an embedding hook)."""
        self._listeners.append(listener)

    def _loop(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                self.node.tick(self.clock())
                batch = self._take()
                delay = self.node.next_deadline() - self.clock()
            try:
                self._commit(batch)
            except StorageError:
                pass  # logged by _commit; a full disk must not end the rounds
            self._wake.wait(timeout=min(max(delay, 0.0), 1.0))
            self._wake.clear()

    # ------------------------------------------------------------------ persist, then acknowledge
    def _take(self) -> _Batch:
        """Take what the node changed and queued, in order. Call with the lock held, last."""
        batch = _Batch(self._issued, self.node.events(), self.node.outbox())
        self._issued += 1
        return batch

    def _commit(self, batch: _Batch) -> None:
        """Persist a batch, tell listeners, send its requests; the caller answers after this.

        Group commit: batches are written in the order they were taken, outside the node
        lock, and whichever thread finds the writer idle writes every batch ready by then in
        one go (one fsync for all of them), so concurrent requests share the disk's latency.

        Raises:
            StorageError: the events could not be written (the caller must not acknowledge).
        """
        with self._order:
            self._ready[batch.ticket] = batch
            while batch.ticket >= self._committed:
                if self._writing or self._committed not in self._ready:
                    self._order.wait()
                    continue
                run: list[_Batch] = []
                while self._committed + len(run) in self._ready:
                    run.append(self._ready.pop(self._committed + len(run)))
                self._writing = True
                self._order.release()
                failure: StorageError | None = None
                try:
                    events = [event for b in run for event in b.events]
                    if events:
                        persist(self.storage, events)
                except StorageError as exc:
                    failure = exc
                    log.error("%s", exc)  # also raised in the send pool and the round loop: say it here
                finally:
                    self._order.acquire()
                    self._writing = False
                    self._committed += len(run)
                    if failure is not None:
                        self._failures.update((b.ticket, failure) for b in run)
                    self._order.notify_all()
            failed = self._failures.pop(batch.ticket, None)
        if failed is not None:
            raise failed
        for event in batch.events:
            self._note(event)
        for out in batch.outbox:
            self._count("sent", out.verb)
            try:
                self._pool.submit(self._send, out)
            except RuntimeError:  # stopping: the pool takes no more work
                return

    def _note(self, event: Event) -> None:
        if isinstance(event, GossipReceived):
            log.info("gossip %s from %s on %s", event.gossip.guid, event.source or "this node", event.network)
        elif isinstance(event, PeerJoined):
            log.info("peer %s (%s:%s) joined %s", event.peer.peer.name, *event.peer.peer.address, event.peer.peer.network_name)
        elif isinstance(event, PeerStatusChanged):
            log.warning("peer %s is now %s (was %s)", event.peer.peer.name, event.peer.status, event.old)
        elif isinstance(event, (Registered, RegisterFailed)):
            waiter = self._waiters.get(event.request_id)
            if waiter is not None:
                waiter.event = event
                waiter.done.set()
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:  # a listener's bug must not stop the node
                log.exception("event listener failed")

    def _send(self, out: Outgoing) -> None:
        try:
            answer = self.transport.request(out.address, out.data, timeout=self._request_timeout)
        except TransportError as exc:
            self._count("failed", out.verb)
            with self._lock:
                self.node.delivery_failed(out.request_id, self.clock(), str(exc), exc.status)
                batch = self._take()
            self._commit(batch)
            return
        self._count_bytes(len(out.data), len(answer))
        with self._lock:
            self.node.receive_response(out.request_id, answer, self.clock())
            batch = self._take()
        self._commit(batch)

    def handle_peer(self, data: bytes) -> bytes:
        """``POST /v1/peer``: a peer's request. Its effects are on disk before the answer leaves."""
        with self._lock:
            try:
                answer = self.node.handle_request(data, self.clock())
            except GossipError as exc:
                self._count("rejected", type(exc).__name__)
                log.warning("refused a peer request: %s", exc)
                raise
            batch = self._take()
        self._commit(batch)  # on disk before the answer leaves
        self._count_bytes(len(answer), len(data))
        return answer

    # ------------------------------------------------------------------ metrics
    def _count(self, kind: str, label: str) -> None:
        with self._lock:
            self._counters[(kind, label)] = self._counters.get((kind, label), 0) + 1

    def _count_bytes(self, sent: int, received: int) -> None:
        with self._lock:
            for kind, n in (("bytes_sent", sent), ("bytes_received", received)):
                self._counters[(kind, "")] = self._counters.get((kind, ""), 0) + n

    def metrics_text(self) -> str:
        """The Prometheus text exposition of this node's counters."""
        with self._lock:
            stats = dict(self.node.stats)
            counters = dict(self._counters)
            nets = self.node.networks
            held = {n: self.node.gossip_count(n) for n in nets}
            peers = {n: [v.status for v in self.node.network_status(n)] for n in nets}
        lines: list[str] = []

        def family(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            lines.extend(f"{name}{labels} {value:g}" for labels, value in samples)

        family("gossip_rounds_total", "counter", "Gossip rounds started.", [("", stats.get("rounds", 0))])
        family(
            "gossip_requests_sent_total", "counter", "Node-to-node requests sent, by verb.",
            [(f'{{verb="{v}"}}', n) for (k, v), n in sorted(counters.items()) if k == "sent"],
        )
        family(
            "gossip_requests_failed_total", "counter", "Requests sent that got no usable answer, by verb.",
            [(f'{{verb="{v}"}}', n) for (k, v), n in sorted(counters.items()) if k == "failed"],
        )
        family(
            "gossip_requests_received_total", "counter", "Peer requests accepted, by verb.",
            [(f'{{verb="{k.split(".", 1)[1]}"}}', n) for k, n in sorted(stats.items()) if k.startswith("received.")],
        )
        family(
            "gossip_rejected_total", "counter", "Messages refused, by reason.",
            [(f'{{reason="{k.split(".", 1)[1]}"}}', n) for k, n in sorted(stats.items()) if k.startswith("rejected.")],
        )
        family(
            "gossip_bytes_total", "counter", "Node-to-node body bytes, by direction.",
            [(f'{{direction="{d}"}}', counters.get((f"bytes_{d}", ""), 0)) for d in ("sent", "received")],
        )
        family(
            "gossip_iblt_retries_total", "counter", "IBLTs that did not peel and were asked for again, by set.",
            [(f'{{set="{k.split(".", 1)[1]}"}}', n) for k, n in sorted(stats.items()) if k.startswith("iblt_retry.")],
        )
        family("gossip_gossips", "gauge", "Complete gossips held, by network.", [(f'{{network="{n}"}}', c) for n, c in held.items()])
        family(
            "gossip_peers", "gauge", "Peers known, by network and status.",
            [
                (f'{{network="{n}",status="{s.value}"}}', sum(1 for x in statuses if x is s))
                for n, statuses in peers.items()
                for s in PeerStatus
            ],
        )
        return "\n".join(lines) + "\n"

    # ------------------------------------------------------------------ client API
    def app(self, request: Request) -> Response:
        """Everything but ``/v1/peer``: health, metrics, the web page and the client API."""
        route = (request.method, request.path)
        if route == ("GET", "/healthz"):
            with self._lock:
                body = {"status": "ok", "node_guid": self.node.guid, "version": __version__}
            return _json(200, body)
        if route == ("GET", "/metrics"):
            return Response(200, self.metrics_text().encode(), "text/plain; version=0.0.4; charset=utf-8")
        if request.method == "GET" and request.path in WEB_FILES:
            return _web_file(request.path)
        handlers: dict[tuple[str, str], Callable[[Request, str], Response]] = {
            ("GET", "/v1/node"): self._get_node,
            ("GET", "/v1/peers"): self._get_peers,
            ("GET", "/v1/gossip"): self._get_gossip,
            ("POST", "/v1/gossip"): self._post_gossip,
            ("POST", "/v1/register"): self._post_register,
        }
        handler = handlers.get(route)
        if handler is None:
            known = {p for _, p in handlers} | {"/healthz", "/metrics"}
            status = 405 if request.path in known else 404
            return _json(status, {"v": 1, "type": "error", "status": status, "error": f"no route {request.method} {request.path}"})
        network = check_client_auth(
            request.headers.get(CLIENT_AUTH_HEADER.lower()),
            method=request.method,
            path=request.path,
            query=request.query,
            body=request.body,
            key_for=self._key_for,
            guard_for=self._guard_for,
            now=self.clock(),
        )
        wanted = request.query.get("network", [network])[-1]
        if wanted != network:
            raise GossipError(f"you authenticated for network {network!r}, not {wanted!r}", status_hint=403)
        return handler(request, network)

    def _key_for(self, network: str) -> bytes | None:
        for net in self.config.networks:
            if net.name == network:
                return net.key
        return None

    def _guard_for(self, network: str) -> ReplayGuard:
        with self._lock:
            return self._client_guards.setdefault(network, ReplayGuard())

    def _get_node(self, request: Request, network: str) -> Response:
        c = self.config
        return _json(200, {
            "node_guid": c.node_guid,
            "node_name": c.node_name,
            "networks": list(c.network_names),
            "ip": c.ip,
            "port": c.port,
            "gossip_timer": c.gossip_timer,
            "gossip_max_peer_count": c.gossip_max_peer_count,
            "version": __version__,
        })

    def _get_peers(self, request: Request, network: str) -> Response:
        with self._lock:
            return _json(200, [v.to_dict() for v in self.node.network_status(network)])

    def _get_gossip(self, request: Request, network: str) -> Response:
        with self._lock:
            rows = [r.to_dict() for r in self.node.gossip_status(network)]
        return _json(200, rows)

    def _post_gossip(self, request: Request, network: str) -> Response:
        body = _json_body(request)
        msg = body.get("msg")
        with self._lock:
            gossip = self.node.create_gossip(msg, self.clock(), network)  # type: ignore[arg-type]
            batch = self._take()
        self._commit(batch)  # on disk before the 201 leaves
        return _json(201, dict(gossip.to_dict(), network=network, complete=True))

    def _post_register(self, request: Request, network: str) -> Response:
        body = _json_body(request)
        address = body.get("address")
        if not isinstance(address, str):
            raise LocalProtocolError("register needs {\"address\": \"HOST:PORT\"}")
        ip, port = parse_hostport(address, timeout=RESOLVE_WAIT)
        event = self.register(ip, port, network)
        if isinstance(event, Registered):
            return _json(200, {"peer": event.peer.to_dict()})
        assert isinstance(event, RegisterFailed)
        if event.status in (401, 403):
            raise GossipError(
                f"{address} refused the registration: {_refusal(event, network, 'its')}",
                status_hint=403,
            )
        raise GossipError(f"{address} did not answer: {event.reason}", status_hint=502)

    def register(self, ip: str, port: int, network: str | None = None) -> Event:
        """REGISTER with ``ip:port`` and wait for the outcome (at most ~10 s)."""
        waiter = _Waiter()
        with self._lock:
            rid = self.node.register(ip, port, self.clock(), network)
            self._waiters[rid] = waiter
            batch = self._take()
        self._commit(batch)
        try:
            if not waiter.done.wait(REGISTER_WAIT + self._request_timeout):
                return RegisterFailed(request_id=rid, network=network or "", address=(ip, port), reason="no answer in time", status=None)
            assert waiter.event is not None
            return waiter.event
        finally:
            with self._lock:
                self._waiters.pop(rid, None)


#: The web client: path -> (file in gossip/web, content type). Nothing else is served from disk.
WEB_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/static/app.css": ("app.css", "text/css; charset=utf-8"),
}
#: Scripts and styles only from this node, no inline script, no framing, no other origin.
WEB_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
        " connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def _web_file(path: str) -> Response:
    name, content_type = WEB_FILES[path]
    try:
        data = resources.files("gossip.web").joinpath(name).read_bytes()
    except (FileNotFoundError, OSError):
        return _json(404, {"v": 1, "type": "error", "status": 404, "error": f"{name} is not installed"})
    return Response(200, data, content_type, WEB_HEADERS)


def _refusal(event: RegisterFailed, network: str, article: str) -> str:
    """Why a node refused our REGISTER with 401/403: the clocks, or else the network or password."""
    if "clock" in event.reason:  # ReplayGuard's "message timestamp is ...s off this node's clock"
        return f"the clocks differ too much ({event.reason.split('): ', 1)[-1]})"
    return f"it is not on network {network!r} or {article} password differs"


def _json(status: int, body: Any) -> Response:
    return Response(status, json.dumps(body, ensure_ascii=False).encode("utf-8"))


def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(request.body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise LocalProtocolError("the request body must be a UTF-8 JSON object") from None
    if not isinstance(body, dict):
        raise LocalProtocolError("the request body must be a JSON object")
    return body


# ---------------------------------------------------------------------- command line
def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m gossip.http",
        description="Run a gossip node: it serves its peers, the client API and the web page over HTTP.",
    )
    p.add_argument("--config", default="server.json", help="the node's properties file (default ./server.json)")
    p.add_argument("--name", help="this node's name (default node-<guid prefix>)")
    p.add_argument("--network", help="the network to create or join (default 'default')")
    pw = p.add_mutually_exclusive_group()
    pw.add_argument("--password", help="the network password (prefer GOSSIP_PASSWORD or --password-file)")
    pw.add_argument("--password-file", help="read the network password from this file")
    p.add_argument("--ip", help="address to listen on and advertise (default 127.0.0.1)")
    p.add_argument("--port", type=int, help=f"port to listen on (default {DEFAULT_PORT}; 0 picks a free one)")
    p.add_argument("--timer", type=float, help="seconds between gossip rounds (default 1)")
    p.add_argument("--max-peers", type=int, help="most peers contacted in one round (default 3)")
    p.add_argument("--join", metavar="HOST:PORT", help="register with a running node of the network")
    p.add_argument("--listen", metavar="HOST:PORT", help="listen here instead of --ip:--port (which peers are still told)")
    p.add_argument("--tls-cert", metavar="PATH", help="serve HTTPS with this certificate (PEM); needs --tls-key")
    p.add_argument("--tls-key", metavar="PATH", help="the certificate's private key (PEM)")
    p.add_argument("--tls-ca", metavar="PATH", help="verify peers' certificates against this CA (PEM); turns on HTTPS to peers")
    p.add_argument("--max-body", type=int, default=MAX_MESSAGE_BYTES, metavar="BYTES", help="largest request body accepted (default 1 MiB)")
    p.add_argument("--clock-offset", type=float, default=0.0, metavar="SECONDS", help=argparse.SUPPRESS)
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="default INFO")
    return p


def _password(args: argparse.Namespace) -> str | None:
    if args.password is not None:
        return str(args.password)
    if args.password_file is not None:
        try:
            text = Path(args.password_file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"cannot read --password-file {args.password_file}: {exc.strerror}") from None
        if not text:
            raise ConfigError(f"--password-file {args.password_file} is empty")
        return text
    return os.environ.get("GOSSIP_PASSWORD") or None


def build_config(args: argparse.Namespace, path: Path) -> tuple[NodeConfig, str | None, bool]:
    """The config to run with: loaded and updated by flags, or new.

    Returns:
        ``(config, generated_password, changed)``; the password is set only when this call
        made it up, so that it can be shown once.
    """
    password = _password(args)
    generated = None
    network_name = args.network
    if network_name is not None:
        try:
            check_network_name(network_name)
        except LocalProtocolError as exc:
            raise ConfigError(f"--network: {exc}") from None
    existed = path.exists()
    if existed:
        config = load_config(path)
        network_name = network_name or config.networks[0].name
        changed = False
    else:
        guid = str(uuid.uuid4())
        network_name = network_name or "default"
        if password is None:
            password = generated = secrets.token_urlsafe(18)
        config = NodeConfig(
            node_guid=guid,
            node_name=args.name or f"node-{guid[:8]}",
            networks=(Network(name=network_name, key=derive_key(network_name, password)),),
            port=DEFAULT_PORT,
        )
        changed = True
    updates: dict[str, Any] = {}
    for flag, attr in (
        ("name", "node_name"),
        ("ip", "ip"),
        ("port", "port"),
        ("timer", "gossip_timer"),
        ("max_peers", "gossip_max_peer_count"),
    ):
        value = getattr(args, flag)
        if value is not None and value != getattr(config, attr):
            updates[attr] = value
    if password is not None and generated is None and existed:
        key = derive_key(network_name, password)
        if (network_name, key) not in {(n.name, n.key) for n in config.networks}:
            others = tuple(n for n in config.networks if n.name != network_name)
            updates["networks"] = (Network(name=network_name, key=key),) + others
    elif password is None and network_name not in config.network_names:
        raise ConfigError(
            f"to join network {network_name!r} this node needs its password:"
            " set GOSSIP_PASSWORD, or pass --password-file or --password"
        )
    if updates:
        if existed and {"node_name", "ip", "port"} & set(updates):
            updates["incarnation"] = config.incarnation + 1  # peers must prefer the new record
        try:
            config = config.with_changes(**updates)
        except LocalProtocolError as exc:
            raise ConfigError(f"bad option: {exc}") from None
        changed = True
    return config, generated, changed


def tls_contexts(args: argparse.Namespace) -> tuple[ssl.SSLContext | None, ssl.SSLContext | None]:
    """The server and client TLS contexts the flags ask for (both None: plain HTTP).

    Raises:
        ConfigError: a half-given pair, or a file that cannot be loaded.
    """
    if bool(args.tls_cert) != bool(args.tls_key):
        raise ConfigError("--tls-cert and --tls-key go together")
    server = client = None
    try:
        if args.tls_cert:
            server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            server.minimum_version = ssl.TLSVersion.TLSv1_2
            server.load_cert_chain(args.tls_cert, args.tls_key)
        if args.tls_ca:
            client = ssl.create_default_context(cafile=args.tls_ca)
            client.minimum_version = ssl.TLSVersion.TLSv1_2
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the TLS files: {exc}") from None
    if server is not None and client is None:
        raise ConfigError("with --tls-cert, also give --tls-ca: peers are then reached over HTTPS and verified")
    return server, client


def _banner(config: NodeConfig, address: tuple[str, int], path: Path, password: str | None, scheme: str = "http") -> str:
    host = f"[{address[0]}]" if ":" in address[0] else address[0]
    network = config.networks[0].name
    lines = [
        f"gossip node {config.node_name} ({config.node_guid}) on network {', '.join(config.network_names)}",
        f"Serving {scheme.upper()} on {address[0]} port {address[1]} ({scheme}://{host}:{address[1]}/) ...",
        f"config {path}, data {data_dir_for(path)}/",
        "",
        "To join a second node to this network, run:",
    ]
    port = address[1] + 1
    join = f"python -m gossip.http --config node-{port}.json --port {port} --network {network} --join {host}:{address[1]}"
    if scheme == "https":
        join += " --tls-cert CERT --tls-key KEY --tls-ca CA"
    if password is not None:
        lines[-1] = "To join a second node to this network, run (the password is shown only this once;"
        lines.append("server.json keeps only a key derived from it):")
        lines.append(f"    GOSSIP_PASSWORD='{password}' {join}")
    else:
        lines.append(f"    GOSSIP_PASSWORD='<the password of {network}>' {join}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run a node until SIGINT or SIGTERM. Returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    path = Path(args.config)
    runner: NodeRunner | None = None

    # The transport must be listening before the runner exists (to learn the port of --port 0).
    def handler(data: bytes) -> bytes:
        if runner is None:
            raise GossipError("this node is starting; try again", status_hint=503)
        return runner.handle_peer(data)

    def app(request: Request) -> Response:
        if runner is None:
            raise GossipError("this node is starting; try again", status_hint=503)
        return runner.app(request)

    transport = None
    try:
        server_tls, client_tls = tls_contexts(args)
        transport = HttpTransport(
            app=app, max_body=args.max_body, ssl_server_context=server_tls, ssl_client_context=client_tls
        )
        config, generated, changed = build_config(args, path)
        join = parse_hostport(args.join) if args.join else None
        listen = parse_hostport(args.listen) if args.listen else (config.ip, config.port)
        storage = JsonFileStorage(data_dir_for(path))
        try:
            address = transport.serve(listen, handler)
        except (OSError, TransportError) as exc:
            raise ConfigError(f"cannot listen on {listen[0]}:{listen[1]}: {exc}; pick another --port") from None
        if args.listen:
            address = (config.ip, config.port)
        elif address[1] != config.port:  # --port 0: advertise the port we got
            config = config.with_changes(port=address[1], incarnation=config.incarnation + 1)
            changed = True
        if changed:
            save_config(path, config)
        offset = args.clock_offset
        runner = NodeRunner(config, storage, transport=transport, clock=lambda: time.time() + offset)
    except (ConfigError, StorageError, LocalProtocolError) as exc:
        if transport is not None:
            transport.close()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(_banner(config, address, path, generated, "https" if server_tls else "http"), flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    runner.start_gossiping()
    status = 0
    if join is not None:
        network = args.network or config.networks[0].name
        event = runner.register(*join, network)
        if isinstance(event, Registered):
            print(f"joined network {network}: registered with {event.peer.peer.name} at {args.join}", flush=True)
        else:
            assert isinstance(event, RegisterFailed)
            why = _refusal(event, network, "the") if event.status in (401, 403) else event.reason
            print(f"error: could not join {args.join}: {why}", file=sys.stderr)
            stop.set()
            status = 1
    while not stop.wait(0.5):
        pass
    runner.stop()
    print("stopped; everything acknowledged is on disk", flush=True)
    return status


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
