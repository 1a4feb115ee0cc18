"""The client API: routes, authentication, JSON shapes and error codes; the web page's files.

Everything but ``/v1/peer`` arrives here (:meth:`ClientApi.handle`). ``/healthz``,
``/metrics`` and the web page's files need no key; every ``/v1/...`` route needs a request
signed with a network key (:data:`~gossip.auth.CLIENT_AUTH_HEADER`, see docs/http-api.md),
and its answer marks the connection as authenticated (the server then keeps it, whatever
unauthenticated clients do). Handlers run on the runner's event loop.
"""

from __future__ import annotations

import asyncio
import json
import socket
from importlib import resources
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from .. import __version__
from ..auth import CLIENT_AUTH_HEADER, ReplayGuard, check_client_auth, unseal_key
from ..errors import AuthenticationError, ErrorCode, GossipError, LocalProtocolError
from ..messages import error_body
from ..events import RegisterFailed, Registered
from ..model import PeerView, iso_for_output
from ..node import GossipStatus, KeyInfo
from .client import getaddrinfo_within
from .server import Request, Response

if TYPE_CHECKING:
    from .runner import NodeRunner

__all__ = ["ClientApi", "parse_hostport", "split_hostport", "gossip_row", "key_row", "RESOLVE_WAIT", "WEB_FILES", "LEAVE_ANSWER_GRACE"]

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
            ("POST", "/v1/gossip"): self._post_gossip,
            ("POST", "/v1/register"): self._post_register,
            ("GET", "/v1/keys"): self._get_keys,
            ("POST", "/v1/keys"): self._post_keys,
            ("POST", "/v1/leave"): self._post_leave,
            ("POST", "/v1/force-leave"): self._post_force_leave,
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
        return Response(response.status, response.body, response.content_type, response.headers, authenticated=True)

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
        })

    async def _get_peers(self, request: Request, network: str) -> Response:
        """NETWORK_STATUS: this node first (``self: true``), then every peer, each with
        ``in_sync``: whether it held the same gossip set as this node, as last known (null:
        not known yet)."""
        node = self.runner.node
        now = self.runner.clock()
        me = PeerView(peer=self.runner.config.self_peer(network), last_seen=now)
        rows = [{**me.to_dict(), "in_sync": True, "in_sync_at": iso_for_output(now), "self": True}]
        for view in node.network_status(network):
            in_sync, known_at = node.peer_in_sync(network, view.peer.guid)
            at = None if known_at is None else iso_for_output(known_at)
            rows.append({**view.to_dict(), "in_sync": in_sync, "in_sync_at": at, "self": False})
        return _json(200, rows)

    async def _get_gossip(self, request: Request, network: str) -> Response:
        rows = self.runner.node.gossip_status(network)  # on the loop: a consistent copy
        # Encoding 100,000 rows takes a while: off the loop, so that peers are not kept waiting.
        body = await asyncio.get_running_loop().run_in_executor(
            None, lambda: json.dumps([gossip_row(r) for r in rows], ensure_ascii=False).encode("utf-8")
        )
        return Response(200, body)

    async def _post_gossip(self, request: Request, network: str) -> Response:
        msg = _json_body(request).get("msg")
        gossip = await self.runner.create_async(msg, network)  # type: ignore[arg-type]  # the core checks it
        return _json(201, dict(gossip.to_dict(), network=network, complete=True))

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
        """Announce a graceful leave on every network of the node, then have it stop."""
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
