"""The client API: routes, authentication, JSON shapes and error codes; the web page's files.

Everything but ``/v1/peer`` arrives here (:meth:`ClientApi.handle`). ``/healthz``,
``/metrics`` and the web page's files need no key; every ``/v1/...`` route needs a request
signed with a network key (:data:`~gossip.auth.CLIENT_AUTH_HEADER`, see docs/http-api.md),
and its answer marks the connection as authenticated (the server then keeps it, whatever
unauthenticated clients do). Handlers run on the runner's event loop.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
from importlib import resources
import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from .. import __version__
from ..auth import CLIENT_AUTH_HEADER, ReplayGuard, check_client_auth, unseal_key
from ..errors import AuthenticationError, ErrorCode, GossipError, LocalProtocolError
from ..messages import error_body
from ..events import RegisterFailed, Registered
from ..model import PeerView, iso_for_output
from ..node import GossipStatus, KeyInfo
from .client import getaddrinfo_within
from .server import Request, Response, Sink

if TYPE_CHECKING:
    from .runner import NodeRunner

__all__ = [
    "ClientApi", "parse_hostport", "split_hostport", "gossip_row", "key_row", "PageQuery", "parse_page", "sse_event",
    "RESOLVE_WAIT", "WEB_FILES", "PAGE_LIMIT", "MAX_PAGE_LIMIT", "LEAVE_ANSWER_GRACE",
]

#: Seconds a register route waits for a host name to resolve (an unresolvable one gets a quick 400).
RESOLVE_WAIT = 3.0
#: Seconds between answering ``POST /v1/leave`` and asking the process to stop (the server
#: aborts its connections when it closes: the answer must have left by then).
LEAVE_ANSWER_GRACE = 0.3

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

Route = Callable[[Request, str], Awaitable[Response]]

#: Rows in a page of ``GET /v1/gossip`` when the client names no ``limit``, and the most it may name.
PAGE_LIMIT = 10_000
MAX_PAGE_LIMIT = 10_000
#: Rows a stream takes from the node at once while it catches up.
_STREAM_BATCH = 500
#: Seconds a stream waits for its client to read what was sent before it gives up.
_STALLED = 60.0
#: Longest ``q`` filter, in characters.
_MAX_QUERY = 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class PageQuery:
    """Which part of the change feed ``GET /v1/gossip`` lists (see docs/http-api.md)."""

    after: int = 0
    before: int | None = None
    limit: int = PAGE_LIMIT
    newest: bool = False
    text: str | None = None


def parse_page(query: dict[str, list[str]]) -> PageQuery:
    """The paging parameters of a query: ``after``, ``before``, ``limit``, ``order``, ``q``.

    Raises:
        LocalProtocolError: a parameter is malformed or out of range (answered 400).
    """

    def number(name: str, low: int, high: int | None = None) -> int | None:
        values = query.get(name)
        if not values:
            return None
        text = values[-1]
        if not (text.isascii() and text.isdigit()) or len(text) > 19 or int(text) < low or (high is not None and int(text) > high):
            bound = f"from {low} to {high}" if high is not None else f"of at least {low}"
            raise LocalProtocolError(f"{name} must be a whole number {bound}, not {text[:40]!r}")
        return int(text)

    order = query.get("order", ["oldest"])[-1]
    if order not in ("oldest", "newest"):
        raise LocalProtocolError(f"order must be 'oldest' or 'newest', not {order[:40]!r}")
    text = query.get("q", [""])[-1]
    if len(text) > _MAX_QUERY:
        raise LocalProtocolError(f"q holds at most {_MAX_QUERY} characters")
    return PageQuery(
        after=number("after", 0) or 0,
        before=number("before", 1),
        limit=number("limit", 1, MAX_PAGE_LIMIT) or PAGE_LIMIT,
        newest=order == "newest",
        text=text or None,
    )


def sse_event(row: GossipStatus) -> bytes:
    """One gossip as a Server-Sent Event: ``id`` is its cursor, ``data`` its row as JSON."""
    data = json.dumps(gossip_row(row), ensure_ascii=False)  # one line: JSON escapes newlines
    return f"id: {row.cursor}\nevent: gossip\ndata: {data}\n\n".encode("utf-8")


def gossip_row(row: GossipStatus) -> dict[str, Any]:
    """One GOSSIP_STATUS row as the client API shows it."""
    return {
        "network": row.network,
        "guid": row.guid,
        "date_time": row.date_time,
        "who_name": row.who_name,
        "msg": row.msg,
        "sha2": row.sha2,
        "complete": row.complete,
        "cursor": row.cursor,
    }


class ClientApi:
    """The routes of one runner's client API; :meth:`handle` is the server's App."""

    def __init__(self, runner: NodeRunner) -> None:
        self.runner = runner
        self._guards: dict[str, ReplayGuard] = {}
        #: Client requests from before this moment are refused (see ReplayGuard.not_before).
        self._started = runner.clock()
        self._routes: dict[tuple[str, str], Route] = {
            ("GET", "/v1/node"): self._get_node,
            ("GET", "/v1/peers"): self._get_peers,
            ("GET", "/v1/gossip"): self._get_gossip,
            ("GET", "/v1/gossip/stream"): self._get_stream,
            ("POST", "/v1/gossip"): self._post_gossip,
            ("POST", "/v1/register"): self._post_register,
            ("GET", "/v1/keys"): self._get_keys,
            ("POST", "/v1/keys"): self._post_keys,
            ("POST", "/v1/leave"): self._post_leave,
            ("POST", "/v1/force-leave"): self._post_force_leave,
            ("POST", "/v1/gossip/delete"): self._post_delete,
        }

    async def handle(self, request: Request) -> Response:
        """Answer one request (the server's :data:`~gossip.http.server.App`)."""
        route = (request.method, request.path)
        if route == ("GET", "/healthz"):
            return _json(200, {
                "status": "ok", "node_guid": self.runner.node.guid, "version": __version__,
                # Clients sign for this guid, with timestamps on this clock (see auth.ReplayGuard).
                "time_ms": int(self.runner.clock() * 1000),
            })
        if route == ("GET", "/metrics"):
            return Response(200, self.runner.metrics_text().encode(), "text/plain; version=0.0.4; charset=utf-8")
        if request.method == "GET" and request.path in WEB_FILES:
            return _web_file(request.path)
        handler = self._routes.get(route)
        if handler is None:
            known = {p for _, p in self._routes} | {"/healthz", "/metrics"}
            status = 405 if request.path in known else 404
            code = ErrorCode.METHOD_NOT_ALLOWED if status == 405 else ErrorCode.NOT_FOUND
            return Response(status, error_body(status, f"no route {request.method[:16]} {request.path[:200]}", code))
        network = check_client_auth(
            request.headers.get(CLIENT_AUTH_HEADER.lower()),
            method=request.method,
            path=request.path,
            query=request.query,
            body=request.body,
            key_for=self._key_for,
            guard_for=self._guard_for,
            now=self.runner.clock(),
            node_guid=self.runner.node.guid,
        )
        wanted = request.query.get("network", [network])[-1]
        if wanted != network:
            raise GossipError(
                f"you authenticated for network {network!r}, not {wanted[:64]!r}",
                status_hint=403,
                code=ErrorCode.WRONG_NETWORK,
            )
        response = await handler(request, network)
        return dataclasses.replace(response, authenticated=True)

    def _key_for(self, network: str) -> tuple[bytes, ...]:
        """The network's keys (any is accepted: a rotation may be under way); a network this
        node is not on is refused here, with its own code."""
        for net in self.runner.config.networks:
            if net.name == network:
                return net.keys
        raise AuthenticationError(f"this node is not on network {network!r}", code=ErrorCode.WRONG_NETWORK)

    def _guard_for(self, network: str) -> ReplayGuard:
        guard = self._guards.get(network)
        if guard is None:
            guard = self._guards[network] = ReplayGuard(not_before=self._started)
        return guard

    async def _get_node(self, request: Request, network: str) -> Response:
        c = self.runner.config
        return _json(200, {
            "node_guid": c.node_guid,
            "node_name": c.node_name,
            "networks": list(c.network_names),
            "ip": c.ip,
            "port": c.port,
            "gossip_timer": c.gossip_timer,
            "gossip_max_peer_count": c.gossip_max_peer_count,
            "version": __version__,
            # Of the network the request was signed for: the page's counts, without the list.
            "gossip_count": self.runner.node.gossip_count(network),
            "pending_count": self.runner.node.pending_count(network),
            # Issue 11: the estimated number of nodes, and whether rounds use the active view.
            "network_size": self.runner.node.network_size(network),
            "uses_active_view": self.runner.node.uses_active_view(network),
        })

    async def _get_peers(self, request: Request, network: str) -> Response:
        """NETWORK_STATUS: this node first (``self: true``), then every peer, each with
        ``in_sync``: whether it held the same gossip set as this node, as last known (null:
        not known yet)."""
        node = self.runner.node
        now = self.runner.clock()
        me = PeerView(peer=self.runner.config.self_peer(network), last_seen=now)
        rows = [{**me.to_dict(), "in_sync": True, "in_sync_at": iso_for_output(now), "self": True, "active": False}]
        active = set(node.active_peers(network))
        for view in node.network_status(network):
            in_sync, known_at = node.peer_in_sync(network, view.peer.guid)
            at = None if known_at is None else iso_for_output(known_at)
            rows.append({
                **view.to_dict(), "in_sync": in_sync, "in_sync_at": at, "self": False,
                "active": view.peer.guid in active,
            })
        return _json(200, rows)

    async def _get_gossip(self, request: Request, network: str) -> Response:
        """GOSSIP_STATUS, a page at a time, in cursor order (docs/http-api.md, "Paging")."""
        page = parse_page(request.query)
        node, committed = self.runner.node, self.runner.feed.committed
        # Nothing past what is on disk (a failed write could still take it back).
        before = committed + 1 if page.before is None else min(page.before, committed + 1)
        rows, more = node.gossip_page(  # on the loop: a consistent copy
            network, after=page.after, before=before, limit=page.limit, newest=page.newest, text=page.text
        )
        # Ids not fetched yet sort after every cursor: on the last page oldest first, on the
        # first page newest first (never under a text filter: they have no text).
        if page.text is None and (not more if not page.newest else page.before is None):
            pending = node.pending_status(network)
            rows = rows + pending if not page.newest else pending + rows
        headers = {"Gossip-Cursor": str(committed)}
        if more:
            headers["Gossip-Next"] = str(rows[-1].cursor)
        # Encoding 10,000 rows takes a while: off the loop, so that peers are not kept waiting.
        body = await asyncio.get_running_loop().run_in_executor(
            None, lambda: json.dumps([gossip_row(r) for r in rows], ensure_ascii=False).encode("utf-8")
        )
        return Response(200, body, headers=headers)

    async def _get_stream(self, request: Request, network: str) -> Response:
        """New gossip as it lands, as Server-Sent Events, after ``after`` (or the
        ``Last-Event-ID`` header); see docs/http-api.md, "Stream"."""
        feed = self.runner.feed
        query = request.query
        if "after" not in query:  # resuming (the Last-Event-ID header), else from now
            query = {**query, "after": [request.headers.get("last-event-id", "").strip() or str(feed.committed)]}
        page = parse_page(query)
        release = feed.claim_stream(request.client[0])  # 429 now, before the answer starts

        async def stream(sink: Sink) -> None:
            try:
                await self._follow(sink, network, page)
            finally:
                release()

        headers = {"Cache-Control": "no-store", "Gossip-Cursor": str(page.after)}
        return Response(200, b"", "text/event-stream; charset=utf-8", headers, stream=stream)

    async def _follow(self, sink: Sink, network: str, page: PageQuery) -> None:
        """Send what landed after ``page.after``, then each new gossip as its write completes;
        a keep-alive comment whenever nothing was sent for ``feed.keepalive`` seconds."""
        feed, node = self.runner.feed, self.runner.node
        last = page.after
        sink.write(b"retry: 1000\n\n")  # EventSource-style clients: reconnect after 1 s
        while not sink.closed and not feed.closed:
            upto = feed.committed
            rows, more = node.gossip_page(network, after=last, before=upto + 1, limit=_STREAM_BATCH, text=page.text)
            if rows:
                sink.write(b"".join(sse_event(row) for row in rows))
                last = rows[-1].cursor or last
                try:  # a client that stops reading gives its slot back after a while
                    await asyncio.wait_for(sink.drain(), _STALLED)
                except TimeoutError:
                    return
            if more:
                continue
            last = max(last, upto)  # all up to there was seen (what was not sent did not match)
            if not await feed.wait(last, feed.keepalive) and not sink.closed:
                sink.write(b": keep-alive\n\n")

    async def _post_gossip(self, request: Request, network: str) -> Response:
        msg = _json_body(request).get("msg")
        gossip = await self.runner.create_async(msg, network)  # type: ignore[arg-type]  # the core checks it
        cursor = self.runner.node.cursor_of(gossip.guid, network)
        return _json(201, dict(gossip.to_dict(), network=network, complete=True, cursor=cursor))

    async def _post_delete(self, request: Request, network: str) -> Response:
        guid = _json_body(request).get("guid")
        if not isinstance(guid, str):
            raise LocalProtocolError('delete needs {"guid": "<the gossip\'s guid>"}')
        tombstone = await self.runner.delete_async(guid, network)
        return _json(200, dict(tombstone.to_dict(), network=network, deleted=True))

    async def _post_register(self, request: Request, network: str) -> Response:
        address = _json_body(request).get("address")
        if not isinstance(address, str):
            raise LocalProtocolError("register needs {\"address\": \"HOST:PORT\"}")
        loop = asyncio.get_running_loop()
        ip, port = await loop.run_in_executor(None, lambda: parse_hostport(address, timeout=RESOLVE_WAIT))
        event = await self.runner.register_async(ip, port, network)
        if isinstance(event, Registered):
            return _json(200, {"peer": event.peer.to_dict()})
        assert isinstance(event, RegisterFailed)
        if event.status in (401, 403):
            text = f"{address[:200]} refused the registration: {refusal(event, network, 'its')}"
            return Response(403, error_body(403, text, ErrorCode.PEER_REFUSED, cause=event.code))
        text = f"{address[:200]} did not answer ({event.reason})"
        return Response(502, error_body(502, text, ErrorCode.PEER_UNREACHABLE))


    async def _post_leave(self, request: Request, network: str) -> Response:
        """Announce a graceful leave on every network of the node, then have it stop.

        Only from the node's own host (a loopback address): every client of the API holds the
        network's key, and one member must not be able to stop the nodes it can reach (a
        node that left exits 0, which a supervisor does not restart). Elsewhere: SIGTERM.
        """
        if not _is_loopback(request.client[0]):
            raise GossipError(
                "gossip leave stops this node, so it is taken only from the node's own host (a loopback"
                " address); run it there, or stop the node with SIGTERM",
                status_hint=403,
                code=ErrorCode.LOCAL_ONLY,
            )
        departure = await self.runner.leave_async()
        self.runner.loop.call_later(LEAVE_ANSWER_GRACE, self.runner.done.set)
        c = self.runner.config
        return _json(200, {
            "node_guid": c.node_guid,
            "node_name": c.node_name,
            "networks": list(c.network_names),
            "told": departure.told,
            "answered": departure.answered,
            "incarnation": departure.incarnation,
        })

    async def _post_force_leave(self, request: Request, network: str) -> Response:
        """Mark a dead peer of ``network`` as left; the record spreads to the other nodes."""
        target = _json_body(request).get("peer")
        if not isinstance(target, str) or not target.strip() or len(target) > 256:
            raise LocalProtocolError('force-leave needs {"peer": "NAME or GUID"}')
        view, changed = await self.runner.force_leave_async(target.strip(), network)
        return _json(200, {"peer": view.to_dict(), "changed": changed})
    async def _get_keys(self, request: Request, network: str) -> Response:
        """``gossip keys list``: each key's id (never the key), whether primary, and how many
        of the known nodes hold it."""
        return _json(200, [key_row(row) for row in self.runner.node.key_ring(network)])

    async def _post_keys(self, request: Request, network: str) -> Response:
        """``gossip keys install|use|remove``: ``{"op", "id", "sealed"}`` (``sealed``: install
        only, the new key sealed under the key that signed this request; see docs/security.md)."""
        body = _json_body(request)
        op, kid = body.get("op"), body.get("id")
        if op not in ("install", "use", "remove"):
            raise LocalProtocolError('keys needs {"op": "install" | "use" | "remove", "id": KEY_ID}')
        if not isinstance(kid, str) or not kid:
            raise LocalProtocolError("keys needs the key's id (\"id\")")
        runner = self.runner
        changed = True
        if op == "install":
            sealed = body.get("sealed")
            if not isinstance(sealed, str):
                raise LocalProtocolError('install needs the new key sealed ("sealed"; see docs/security.md)')
            key = unseal_key(runner.node.keys(network), kid, sealed, context=network)
            if key is None:
                raise GossipError(
                    "the sealed key does not open with a key of this node, or is not the key of that id;"
                    " seal it under a key the node holds (`gossip keys install` does)",
                    status_hint=404,
                    code=ErrorCode.UNKNOWN_KEY,
                )
            changed = await runner.install_key_async(key, network)
        elif op == "use":
            changed = await runner.use_key_async(kid, network)
        else:
            await runner.remove_key_async(kid, network)
        rows = [key_row(row) for row in runner.node.key_ring(network)]
        return _json(200, {"op": op, "id": kid, "changed": changed, "keys": rows})


def key_row(row: KeyInfo) -> dict[str, Any]:
    """One key of ``GET /v1/keys``."""
    return {
        "network": row.network,
        "id": row.id,
        "primary": row.primary,
        "nodes": row.nodes,
        "known": row.known,
        "unheard": row.unheard,
    }


def _is_loopback(ip: str) -> bool:
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return bool((mapped or address).is_loopback)


def refusal(event: RegisterFailed, network: str, article: str) -> str:
    """Why a node refused our REGISTER with 401/403, by the refusal's code: the clocks, a
    replay, or else the network or password (``article``: "its" or "the" password)."""
    if event.code is ErrorCode.CLOCK_SKEW:
        return f"the clocks differ too much ({event.reason})"
    if event.code is ErrorCode.REPLAYED:
        return f"it took our request for a replay ({event.reason})"
    return f"it is not on network {network!r} or {article} password differs"


def split_hostport(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) to a (host, port) pair, without resolving the host.

    Raises:
        LocalProtocolError: not of that form.
    """
    host, sep, port_text = text.strip().rpartition(":")
    host = host.strip("[]")
    # ASCII digits only, and few: "²" and "٣" pass isdigit(), and int() of 4301+ digits raises.
    # No host name holds white space or URL punctuation: "a b:80" and "user@h:80" are typos.
    if not sep or not host or not port_text.isascii() or not port_text.isdigit() or len(port_text) > 5 \
            or not 1 <= int(port_text) <= 65535 or any(c.isspace() or c in "/@?#[]" for c in host):
        raise LocalProtocolError(f"{text[:100]!r} is not HOST:PORT (for example 127.0.0.1:8470)")
    return host, int(port_text)


def parse_hostport(text: str, *, timeout: float | None = None) -> tuple[str, int]:
    """``HOST:PORT`` (``[v6]:PORT`` for IPv6) to an (ip, port) pair, resolving a host name.

    Args:
        timeout: most seconds to wait for the name's resolution (None: the resolver's own).

    Raises:
        LocalProtocolError: not of that form, or the name does not resolve (in time).
    """
    host, port = split_hostport(text)
    try:
        infos = getaddrinfo_within(host, port, timeout)
    except (socket.gaierror, UnicodeError) as exc:
        why = getattr(exc, "strerror", None) or str(exc)
        raise LocalProtocolError(f"cannot resolve host {host[:100]!r}: {why}") from None
    return str(infos[0][4][0]), port


def _web_file(path: str) -> Response:
    name, content_type = WEB_FILES[path]
    try:
        data = resources.files("gossip.web").joinpath(name).read_bytes()
    except (FileNotFoundError, OSError):
        return Response(404, error_body(404, f"{name} is not installed", ErrorCode.NOT_FOUND))
    return Response(200, data, content_type, WEB_HEADERS)


def _json(status: int, body: Any) -> Response:
    return Response(status, json.dumps(body, ensure_ascii=False).encode("utf-8"))


def _json_body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(request.body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        raise LocalProtocolError("the request body must be a UTF-8 JSON object") from None
    except ValueError:  # a number of more than 4,300 digits
        raise LocalProtocolError("the request body holds a number too long to read") from None
    if not isinstance(body, dict):
        raise LocalProtocolError("the request body must be a JSON object")
    return body
