"""Hostile input over real HTTP, against one running node: every endpoint, 1,000+ requests each.

One in-process :class:`~gossip.http.NodeRunner` ("a") on 127.0.0.1 holds a few gossips and one
peer ("b", a second runner that registered with it). Every test below throws hypothesis-made
hostile requests at one endpoint: arbitrary bytes, JSON of any shape, wrongly typed fields,
truncated JSON, non-UTF-8, huge strings, deep nesting, no / garbage / wrong-key / stale /
replayed authentication, and bodies over the size limit. Client API requests come both unsigned
and correctly SIGNED (so the handlers really see the hostile bodies), and ``/v1/peer`` gets
correctly signed envelopes with hostile bodies, so the protocol code behind the MAC is reached.

For every answer: a 4xx with a JSON ``error`` body and no traceback, unless the request was
valid (then its documented status). An oracle computes the expected status of each request
independently (the codec, the replay window, the field rules), and records the few state
changes a valid request may make (a created gossip, a peer a signed HELLO announced). After
every test the node still answers ``/healthz``, every gossip it held is there with the same
sha2, the gossip set changed only by the valid creates, and its peers changed only by what a
valid signed peer request announced. At the end the store on disk holds exactly that too.

Also: unknown paths and methods and raw bytes on the socket (never a 5xx), whole bodies over
the 1 MiB cap (413), and REGISTER with hostile addresses (huge, unicode, port 0, "[::1",
names that do not resolve, a resolver that stalls): a 400 within a few seconds.
"""

from __future__ import annotations

import http.client
import json
import re
import logging
import secrets
import socket
import threading
import time
import urllib.parse
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from gossip import auth
from gossip import messages as m
from gossip.auth import DEFAULT_WINDOW, client_auth_header
from gossip.errors import GossipError
from gossip.events import Registered
from gossip.http import RESOLVE_WAIT, NodeRunner, parse_hostport
from gossip.model import MAX_MSG_CHARS, Network, NodeConfig, check_ip, check_msg
from gossip.storage.jsonfile import JsonFileStorage

from .helpers import KEYS
from .nodeproc import free_port

KEY = KEYS["default"]
WRONG_KEY = KEYS["other"]
MAX_BODY = m.MAX_MESSAGE_BYTES
A_GUID = str(uuid.UUID(int=0xA11CE, version=4))
B_GUID = str(uuid.UUID(int=0xB0B, version=4))
#: A guid that is nobody's: a stranger holding the key.
STRANGER = str(uuid.UUID(int=0x5EED, version=4))
#: A loopback port held bound but not listening, so connections to it are refused: the
#: address that valid records and registers name (no other process can take it meanwhile).
_RESERVED = socket.socket()
_RESERVED.bind(("127.0.0.1", 0))
CLOSED_PORT = int(_RESERVED.getsockname()[1])
#: Where a and b listen, once they do: generated addresses name them as "{a}" and "{b}".
PORTS = {"a": 0, "b": 0}


def with_ports(text: str) -> str:
    return text.replace("{a}", str(PORTS["a"])).replace("{b}", str(PORTS["b"]))
TIMEOUT = 10.0  # per request; every answer here comes in milliseconds

EXAMPLES = 1000
HOSTILE = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)

# One worker runs both hostile HTTP files, in order: their last tests check the outcomes
# that every test before them counted (SENT, STATUSES), and share one node per file.
pytestmark = pytest.mark.xdist_group("hostile_http")

#: Requests sent, by endpoint; test_every_endpoint_got_1000_requests checks the counts.
SENT: Counter[str] = Counter()
#: Answers, by endpoint and status: the generated requests must reach both outcomes.
STATUSES: Counter[tuple[str, int | None]] = Counter()


# ---------------------------------------------------------------------------- the node under test

@dataclass
class Node:
    """The running node, and what the tests allow to have changed on it."""

    a: NodeRunner
    b: NodeRunner
    port: int
    #: guid -> sha2 of every complete gossip the node must hold: the originals and valid creates.
    gossips: dict[str, str]
    #: The peer record of b as a held it before the tests.
    b_identity: tuple[Any, ...]
    #: Peers a valid signed request announced: these may appear (and go).
    allowed_peers: set[str] = field(default_factory=set)
    #: Gossip ids a valid signed DID_YOU_HEAR announced: these may be pending.
    allowed_pending: set[str] = field(default_factory=set)
    #: Nonces of peer requests the node has accepted into its replay guard.
    used_nonces: set[str] = field(default_factory=set)
    #: ERROR log records and uncaught thread exceptions seen while serving.
    errors: list[str] = field(default_factory=list)


class _ErrorLog(logging.Handler):
    def __init__(self, sink: list[str]) -> None:
        super().__init__(level=logging.ERROR)
        self.sink = sink

    def emit(self, record: logging.LogRecord) -> None:
        self.sink.append(f"{record.name}: {record.getMessage()}")


def _runner(tmp: Path, guid: str, name: str, port: int) -> NodeRunner:
    config = NodeConfig(
        node_guid=guid,
        node_name=name,
        networks=(Network(name="default", key=KEY),),
        ip="127.0.0.1",
        port=port,
        gossip_timer=0.5,
    )
    return NodeRunner(config, JsonFileStorage(tmp / name))


def _identity(row: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(row.get(k) for k in ("guid", "name", "ip", "port", "network_name", "incarnation"))


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    tmp = tmp_path_factory.mktemp("hostile")
    a, b = _runner(tmp, A_GUID, "a", free_port()), _runner(tmp, B_GUID, "b", free_port())
    PORTS.update(a=a.config.port, b=b.config.port)
    errors: list[str] = []
    handler = _ErrorLog(errors)
    logging.getLogger("gossip").addHandler(handler)
    old_hook = threading.excepthook

    def hook(args: threading.ExceptHookArgs) -> None:
        errors.append(f"thread {args.thread.name if args.thread else '?'}: {args.exc_type.__name__}: {args.exc_value}")
        old_hook(args)

    threading.excepthook = hook
    a.start()
    b.start()
    state: Node | None = None
    try:
        assert isinstance(b.register("127.0.0.1", a.config.port, "default"), Registered)
        state = Node(a=a, b=b, port=a.config.port, gossips={}, b_identity=(), errors=errors)
        for text in ("first", "héllo ✓ 😀 \u2028 <b>&amp;</b>", ""):
            status, _, made = signed_call(state, "POST", "/v1/gossip", json.dumps({"msg": text}).encode())
            assert status == 201, made
            state.gossips[made["guid"]] = made["sha2"]
        peers = [p for p in signed_call(state, "GET", "/v1/peers")[2] if not p["self"]]
        assert [p["guid"] for p in peers] == [B_GUID]
        state.b_identity = _identity(peers[0])
        KNOWN_GUIDS[:] = sorted(state.gossips)
        assert_intact(state)
        yield state
    finally:
        b.stop()
        a.stop()
        threading.excepthook = old_hook
        logging.getLogger("gossip").removeHandler(handler)
    # Everything acknowledged is on disk, and nothing else: a fresh store on a's directory.
    stored = JsonFileStorage(tmp / "a").load().gossips.get("default", [])
    assert {g.guid: g.sha2 for g in stored} == state.gossips
    assert all(g.verify() for g in stored)


# ---------------------------------------------------------------------------- talking to it

@dataclass
class Answer:
    status: int | None  # None: the server closed without answering (raw requests only)
    headers: dict[str, str]
    body: bytes
    seconds: float = 0.0

    def json(self) -> Any:
        return json.loads(self.body)


def send(node: Node, method: str, target: str, body: bytes | None = None,
         headers: dict[str, Any] | None = None, *, label: str | None = None, timeout: float = TIMEOUT,
         read_at_most: int | None = None) -> Answer:
    """One request with http.client (header values may be bytes); the server closes after it.

    ``read_at_most``: read only that many bytes of a 200 answer's body (a stream never ends
    by itself), then close.
    """
    label = label or f"{method} {target.partition('?')[0]}"
    SENT[label] += 1
    conn = http.client.HTTPConnection("127.0.0.1", node.port, timeout=timeout)
    start = time.monotonic()
    try:
        conn.request(method, target, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read(read_at_most) if read_at_most is not None and response.status == 200 else response.read()
        STATUSES[label, response.status] += 1
        return Answer(response.status, {k.lower(): v for k, v in response.getheaders()}, data,
                      time.monotonic() - start)
    except (OSError, http.client.HTTPException) as exc:
        raise AssertionError(f"{method} {target[:80]}: no answer ({exc!r})") from None
    finally:
        conn.close()


def raw(node: Node, data: bytes, *, label: str, timeout: float = TIMEOUT) -> Answer:
    """Send bytes as they are, half-close, read everything; a 1xx interim answer is skipped."""
    SENT[label] += 1
    answer = _raw(node, data, timeout)
    STATUSES[label, answer.status] += 1
    return answer


def _raw(node: Node, data: bytes, timeout: float) -> Answer:
    start = time.monotonic()
    with socket.create_connection(("127.0.0.1", node.port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
        except OSError:  # the server answered and closed before taking it all: read the answer
            pass
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            pass
    reply = b"".join(chunks)
    seconds = time.monotonic() - start
    while reply.startswith(b"HTTP/1.1 1") or reply.startswith(b"HTTP/1.0 1"):
        reply = reply.partition(b"\r\n\r\n")[2]
    if not reply:
        return Answer(None, {}, b"", seconds)
    if not reply.startswith(b"HTTP/"):
        # A bare body: the answer to an HTTP/0.9 request, or to a request line http.server
        # could not read (it answers those in HTTP/0.9 style, without a status line).
        return Answer(0, {}, reply, seconds)
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.decode("iso-8859-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    # HTTP/1.1: bytes after the first request are read as further (pipelined) requests, each
    # answered in turn. The first answer is the one judged; its length says where it ends.
    if headers.get("content-length", "").isdigit():
        body = body[: int(headers["content-length"])]
    return Answer(status, headers, body, seconds)


def sign_header(method: str, path: str, query: str = "", body: bytes = b"", *, key: bytes = KEY,
                network: str = "default", ts: int | None = None, nonce: str | None = None, node: str = A_GUID) -> str:
    """Signed for node A (the node under test) unless told otherwise."""
    parsed = urllib.parse.parse_qs(query, keep_blank_values=True)  # as the server parses it
    return client_auth_header(
        network=network, node=node, key=key, method=method, path=path, query=parsed, body=body,
        ts=int(time.time() * 1000) if ts is None else ts, nonce=nonce or secrets.token_hex(12),
    )


def signed_call(node: Node, method: str, path: str, body: bytes | None = None, query: str = "") -> tuple[int, Answer, Any]:
    header = sign_header(method, path, query, body or b"")
    answer = send(node, method, path + (f"?{query}" if query else ""), body, {"X-Gossip-Auth": header},
                  label="setup and checks")
    assert answer.status is not None
    return answer.status, answer, answer.json()


#: The statuses each error code may come with (docs/http-api.md, "Error codes").
CODE_STATUSES = {
    "bad_request": {400, 411}, "bad_mac": {401}, "wrong_network": {401, 403}, "clock_skew": {401}, "replayed": {401},
    "peer_refused": {403}, "not_found": {404}, "method_not_allowed": {405}, "timeout": {408}, "too_large": {413, 431},
    "quota": {429}, "internal": {500}, "peer_unreachable": {502}, "unavailable": {503}, "storage_failed": {507},
    # Version 3's routes (tests/test_hostile_http_new.py): keys, force-leave, leave, stream.
    "unknown_key": {404}, "primary_key": {409}, "last_key": {409}, "key_in_use": {409}, "unknown_peer": {404},
    "ambiguous_peer": {409}, "peer_not_dead": {409}, "local_only": {403}, "too_many_streams": {429},
}


def assert_error(answer: Answer, expected: set[int] | None = None, *, what: str = "",
                 codes: set[str] | None = None) -> None:
    """A 4xx (or an expected status) whose body is a JSON error with a documented ``code``
    that fits its status (one of ``codes`` when given), and holds no traceback."""
    assert answer.status is not None, f"{what}: no answer"
    if expected is not None:
        assert answer.status in expected, f"{what}: {answer.status} not in {expected}: {answer.body[:300]!r}"
    else:
        assert 400 <= answer.status < 500, f"{what}: {answer.status}: {answer.body[:300]!r}"
    assert b"Traceback" not in answer.body and b'File "' not in answer.body, answer.body[:500]
    if answer.status >= 400:
        assert answer.headers.get("content-type", "").startswith("application/json"), (what, answer.headers)
        data = json.loads(answer.body)
        assert isinstance(data, dict) and isinstance(data.get("error"), str) and data["error"], (what, data)
        assert data.get("status") == answer.status, (what, data)
        assert answer.status in CODE_STATUSES.get(data.get("code"), set()), (what, data)
        if codes is not None:
            assert data["code"] in codes, (what, codes, data)


def assert_intact(node: Node) -> None:
    """The node serves, holds every gossip it should (same sha2) and no other, and its peers
    changed only by what valid signed requests announced; nothing crashed meanwhile."""
    health = send(node, "GET", "/healthz", label="setup and checks")
    assert health.status == 200 and health.json()["status"] == "ok"
    assert node.a.gossiping, "the gossip rounds stopped"
    status, _, rows = signed_call(node, "GET", "/v1/gossip")
    assert status == 200
    complete = {r["guid"]: r["sha2"] for r in rows if r["complete"]}
    assert complete == node.gossips, "the gossips changed"
    pending = {r["guid"] for r in rows if not r["complete"]}
    assert pending <= node.allowed_pending, pending - node.allowed_pending
    assert all(r["sha2"] is None for r in rows if not r["complete"])
    status, _, rows = signed_call(node, "GET", "/v1/peers")
    assert status == 200
    assert rows[0]["self"] is True and rows[0]["guid"] == A_GUID, "the node lists itself first"
    held = {p["guid"]: _identity(p) for p in rows[1:]}
    assert held.get(B_GUID) == node.b_identity, "the peer b changed"
    assert A_GUID not in held, "the node lists itself as a peer"
    assert set(held) - {B_GUID} <= node.allowed_peers, set(held) - {B_GUID} - node.allowed_peers
    assert node.a.node.gossip_count() == len(node.gossips)
    assert node.errors == [], node.errors


# ---------------------------------------------------------------------------- hostile values

SURROGATES = ["\ud800", "x\udfff", "\udbff\udc00y"]
#: Placeholder that dump() turns into a bare JSON number of 5,000 digits (Python's json
#: cannot write one: int() refuses more than 4,300 digits); issue 10, item 2.
LONG_NUMBER = "<<5000 digits>>"
#: Dates that do not convert to UTC, or lie outside 1970-9999 once converted (item 8).
EXTREME_DATES = ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-23:59", "1969-12-31T23:59:59+00:00",
                 "0001-01-01T00:00:00", "9999-12-31T23:59:59.999999+00:00"]
_text = st.text(max_size=24) | st.sampled_from(
    SURROGATES + ["", "\x00", "\u2028", "😀", "é", "default", "other", "msg", "address", "ノード", "a" * 200,
                  LONG_NUMBER, *EXTREME_DATES]
)
_leaves = st.one_of(st.none(), st.booleans(), st.integers(), st.integers(-(2**80), 2**80), st.floats(), _text)
#: Any JSON value.
json_any = st.recursive(
    _leaves, lambda kids: st.lists(kids, max_size=5) | st.dictionaries(_text, kids, max_size=5), max_leaves=12
)


def dump(value: Any, ascii_: bool = True) -> bytes:
    """JSON text; a lone surrogate comes out escaped (ascii) or as invalid UTF-8 bytes, and
    :data:`LONG_NUMBER` as a bare number of 5,000 digits."""
    text = json.dumps(value, ensure_ascii=ascii_).encode("utf-8", "surrogatepass")
    return text.replace(json.dumps(LONG_NUMBER).encode(), b"9" * 5000)


#: Huge strings: over the limits that apply to them, yet in a body under the 1 MiB cap even
#: when escaped (a whole body over the cap is tested on its own, below).
huge_text = st.sampled_from([
    ("x", MAX_MSG_CHARS + 1), ("x", 300_000), ("é", MAX_MSG_CHARS + 1), ("é", 100_000), ("😀", MAX_MSG_CHARS + 1),
    ("\x00", MAX_MSG_CHARS + 1), ("\u2028", 100_000),
]).map(lambda pair: pair[0] * pair[1])


def nested(depth: int, inner: str = "1", kind: str = "[") -> str:
    if kind == "[":
        return "[" * depth + inner + "]" * depth
    return '{"a":' * depth + inner + "}" * depth


deep_text = st.builds(nested, st.integers(2, 5000), st.just("1"), st.sampled_from(["[", "{"]))


@st.composite
def truncated(draw: st.DrawFn, whole: st.SearchStrategy[bytes]) -> bytes:
    data = draw(whole)
    assume(len(data) > 1)
    return data[: draw(st.integers(0, len(data) - 1))]


@st.composite
def not_utf8(draw: st.DrawFn, whole: st.SearchStrategy[bytes]) -> bytes:
    data = draw(whole)
    how = draw(st.sampled_from(["insert", "latin-1", "utf-16", "cut"]))
    if how == "insert":
        i = draw(st.integers(0, len(data)))
        return data[:i] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80\x80", b"\xf8\x88\x80\x80\x80"])) + data[i:]
    if how == "latin-1":
        return data.decode("utf-8", "replace").replace("\ufffd", "é").encode("latin-1", "replace") + b"\xe9"
    if how == "utf-16" and len(data) < MAX_BODY // 4:  # stays under the cap
        return data.decode("utf-8", "replace").encode("utf-16")
    return "é😀".encode()[:-1] + data  # a cut multi-byte sequence


def client_bodies(name: str, values: st.SearchStrategy[Any]) -> st.SearchStrategy[bytes]:
    """Bodies for a client POST whose one field is ``name``."""
    objects = st.one_of(
        st.builds(lambda v: {name: v}, values),
        st.builds(lambda v: {name: v}, json_any),
        st.builds(lambda v, extra: {**extra, name: v}, values, st.dictionaries(_text, json_any, max_size=3)),
        st.dictionaries(_text, json_any, max_size=4),
    )
    whole = st.builds(dump, objects, st.booleans())
    return st.one_of(
        whole,
        whole,
        whole,
        st.binary(max_size=300),
        json_any.map(dump),
        truncated(whole),
        not_utf8(whole),
        deep_text.map(lambda t: f'{{"{name}":{t}}}'.encode()),
        deep_text.map(str.encode),
        huge_text.map(lambda t: dump({name: t}, ascii_=False)),
        st.builds(lambda t, e: dump({name: "ok", "extra": t}, ascii_=e), huge_text, st.booleans()),
        st.sampled_from([b"", b" ", b"null", b"[]", b"{}", b"{", b"}", b'{"' + name.encode() + b'"', b"\xef\xbb\xbf{}"]),
    )


# ---------------------------------------------------------------------------- client-side authentication

#: How a client request is authenticated; only "signed" and "replay" pass.
AUTH_MODES = ["none", "garbage", "near_miss", "wrong_key", "unknown_network", "stale", "tampered",
              "signed", "signed", "signed", "replay"]

_near_miss_header = st.builds(
    lambda net, ts, nonce, mac, sep: sep.join([f"network={net}", f"ts={ts}", f"nonce={nonce}", f"mac={mac}"]),
    st.sampled_from(["default", "other", "", "bad name", "default ", "DEFAULT", "x" * 65]),
    st.integers(0, 10**17),
    st.text(alphabet="0123456789abcdefABCDEF", max_size=70),
    st.text(alphabet="0123456789abcdef", min_size=30, max_size=34),
    st.sampled_from([", ", ",", " ,", ",  "]),
)
_garbage_header = st.binary(max_size=300).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) < 400 else f"{text[:300]}...<{len(text)} chars>...{text[-60:]}"


@dataclass(frozen=True)
class ClientRequest:
    mode: str
    body: bytes | None
    query: str
    garbage: Any = None  # the header, for "garbage" / "near_miss"
    skew: int = 0  # ms, for "stale"

    def __repr__(self) -> str:  # hypothesis prints failing examples: keep them readable
        return (f"ClientRequest(mode={self.mode!r}, body={_short(self.body)}, query={self.query!r},"
                f" garbage={_short(self.garbage)}, skew={self.skew})")


def client_requests(bodies: st.SearchStrategy[bytes | None]) -> st.SearchStrategy[ClientRequest]:
    queries = st.one_of(
        st.just(""), st.just(""), st.just("network=default"), st.just("network=other"),
        st.just("network=default&network=other"), st.just("network=other&network=default"),
        st.text(max_size=40).map(lambda t: urllib.parse.quote(t, safe="=&;%+")),
        st.dictionaries(_text, st.lists(_text, max_size=3), max_size=4).map(
            lambda d: urllib.parse.urlencode(d, doseq=True, errors="surrogatepass")),
    )
    window_ms = int(DEFAULT_WINDOW * 1000)
    return st.builds(
        ClientRequest,
        mode=st.sampled_from(AUTH_MODES),
        body=bodies,
        query=queries,
        garbage=st.one_of(_garbage_header, _near_miss_header),
        skew=st.integers(window_ms + 60_000, 10**13) | st.integers(-(10**12), -(window_ms + 60_000)),
    )


def client_headers(req: ClientRequest, method: str, path: str) -> list[dict[str, Any]]:
    """The X-Gossip-Auth headers to send (two identical ones for a replay)."""
    body = req.body or b""
    now = int(time.time() * 1000)
    if req.mode == "none":
        return [{}]
    if req.mode in ("garbage", "near_miss"):
        return [{"X-Gossip-Auth": req.garbage}]
    if req.mode == "wrong_key":
        return [{"X-Gossip-Auth": sign_header(method, path, req.query, body, key=WRONG_KEY)}]
    if req.mode == "unknown_network":
        return [{"X-Gossip-Auth": sign_header(method, path, req.query, body, key=WRONG_KEY, network="other")}]
    if req.mode == "stale":
        return [{"X-Gossip-Auth": sign_header(method, path, req.query, body, ts=max(0, now + req.skew))}]
    if req.mode == "tampered":  # signed for another body, path or query than sent
        wrong = [(path, req.query, body + b" "), (path + "x", req.query, body), (path, req.query + "&x=1", body)]
        p, q, b = wrong[len(body) % 3]
        return [{"X-Gossip-Auth": sign_header(method, p, q, b)}]
    header = {"X-Gossip-Auth": sign_header(method, path, req.query, body)}
    return [header, header] if req.mode == "replay" else [header]


_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


def auth_refusal(req: ClientRequest) -> set[int]:
    """How a request that is not validly signed is refused: 401, or 400 when its header
    value holds control characters (a malformed request, refused before any route)."""
    header = req.garbage if req.mode in ("garbage", "near_miss") else None
    raw = header if isinstance(header, bytes) else str(header or "").encode("utf-8", "surrogateescape")
    return {400} if _CONTROL.search(raw) else {401}


def auth_codes(req: ClientRequest) -> set[str]:
    """The codes a request that is not validly signed may be refused with."""
    if auth_refusal(req) == {400}:
        return {"bad_request"}
    return {"wrong_key": {"bad_mac"}, "tampered": {"bad_mac"}, "unknown_network": {"wrong_network"},
            "stale": {"clock_skew"}}.get(req.mode, {"bad_mac", "wrong_network"})  # none, garbage, near_miss


def client_target(path: str, req: ClientRequest) -> str:
    return path + (f"?{req.query}" if req.query else "")


def wanted_network(req: ClientRequest) -> str:
    return urllib.parse.parse_qs(req.query, keep_blank_values=True).get("network", ["default"])[-1]


def parse_object(body: bytes) -> dict[str, Any] | None:
    """The body as the node reads it: a UTF-8 JSON object, or None."""
    try:
        value = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


# ---------------------------------------------------------------------------- oversized and bad framing

#: Requests the transport refuses before the handler: (extra header lines, body prefix, status).
@st.composite
def bad_framing(draw: st.DrawFn) -> tuple[str, bytes, int]:
    kind = draw(st.sampled_from(["over", "over", "over", "digits", "junk", "two", "chunked", "missing"]))
    prefix = draw(st.binary(max_size=2048))
    if kind == "over":
        length = draw(st.integers(MAX_BODY + 1, 10**30 - 1) | st.sampled_from([MAX_BODY + 1, 2 * MAX_BODY]))
        return f"Content-Length: {length}\r\n", prefix, 413
    if kind == "digits":
        return f"Content-Length: {'9' * draw(st.integers(31, 5000))}\r\n", prefix, 400
    if kind == "junk":
        junk = draw(st.sampled_from(["-1", "+5", "0x10", "1e3", "", " ", "½", "٣", "5 5", "NaN"]))
        return f"Content-Length: {junk}\r\n", prefix, 400
    if kind == "two":
        return f"Content-Length: 1\r\nContent-Length: {draw(st.integers(2, 10**6))}\r\n", prefix, 400
    if kind == "chunked":
        return "Transfer-Encoding: chunked\r\n", b"5\r\nhello\r\n0\r\n\r\n", 411
    return "", prefix, 411


def framed(method: str, path: str, extra: str, prefix: bytes, auth_header: str = "") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{extra}"
    if auth_header:
        head += f"X-Gossip-Auth: {auth_header}\r\n"
    return head.encode("utf-8") + b"\r\n" + prefix


# ---------------------------------------------------------------------------- POST /v1/gossip

MSG_VALUES = st.one_of(_text, huge_text, st.sampled_from(["x" * MAX_MSG_CHARS, "é" * 1000, "a\x00b"]), json_any)


def _gossip_expect(node: Node, req: ClientRequest, body: bytes) -> tuple[int, bool]:
    """(status, whether it creates a gossip) for a signed POST /v1/gossip."""
    if wanted_network(req) != "default":
        return 403, False
    obj = parse_object(body)
    if obj is None:
        return 400, False
    try:
        check_msg(obj.get("msg"))
    except GossipError:
        return 400, False
    return 201, True


@st.composite
def gossip_posts(draw: st.DrawFn) -> ClientRequest | tuple[str, bytes, int]:
    if draw(st.integers(0, 19)) == 0:
        return draw(bad_framing())
    if draw(st.integers(0, 9)) == 0:  # a valid create (odd text, extra fields), fresh or replayed
        msg = draw(_text | st.text(max_size=300) | st.sampled_from(["", "\u2028\u2029", "😀" * 500, "<script>x</script>"]))
        body = dump({"msg": msg, **draw(st.dictionaries(_text, json_any, max_size=2))}, draw(st.booleans()))
        return ClientRequest(draw(st.sampled_from(["signed", "replay"])), body, draw(st.sampled_from(["", "network=default"])))
    return draw(client_requests(client_bodies("msg", MSG_VALUES)))


def refused_before_the_handler(node: Node, path: str, req: ClientRequest | tuple[str, bytes, int]) -> bool:
    """Bad framing or an oversized body on a POST endpoint: check the refusal, return True."""
    if isinstance(req, tuple):
        extra, prefix, status = req
        answer = raw(node, framed("POST", path, extra, prefix, sign_header("POST", path)), label=f"POST {path}")
        assert_error(answer, {status}, what=f"framing {extra[:60]!r}")
        return True
    body = req.body or b""
    if len(body) > MAX_BODY:  # refused unread, whoever signed it
        answer = send(node, "POST", client_target(path, req), body, client_headers(req, "POST", path)[0])
        assert_error(answer, {413}, what="oversized")
        return True
    return False


def test_post_gossip_hostile(node: Node) -> None:
    @HOSTILE
    @given(req=gossip_posts())
    def run(req: ClientRequest | tuple[str, bytes, int]) -> None:
        if refused_before_the_handler(node, "/v1/gossip", req):
            return
        assert not isinstance(req, tuple)
        body = req.body or b""
        for i, headers in enumerate(client_headers(req, "POST", "/v1/gossip")):
            answer = send(node, "POST", client_target("/v1/gossip", req), body, headers)
            if req.mode not in ("signed", "replay") or i == 1:
                if i == 1:
                    assert_error(answer, {401}, what="replay", codes={"replayed"})
                else:
                    assert_error(answer, auth_refusal(req), what=req.mode, codes=auth_codes(req))
                continue
            status, creates = _gossip_expect(node, req, body)
            if creates:
                assert answer.status == 201, answer.body[:300]
                made = answer.json()
                assert made["msg"] == parse_object(body)["msg"] and made["complete"] is True  # type: ignore[index]
                node.gossips[made["guid"]] = made["sha2"]
            else:
                assert_error(answer, {status}, what="signed")
        assert node.a.node.gossip_count() == len(node.gossips)

    run()
    assert_intact(node)


def test_a_message_at_the_limit_is_created_and_one_over_is_refused(node: Node) -> None:
    for size, expected in ((MAX_MSG_CHARS, 201), (MAX_MSG_CHARS + 1, 400)):
        status, answer, data = signed_call(node, "POST", "/v1/gossip", dump({"msg": "é" * size}, ascii_=False))
        assert status == expected
        if status == 201:
            node.gossips[data["guid"]] = data["sha2"]
        else:
            assert_error(answer, {400})
    assert_intact(node)


# ---------------------------------------------------------------------------- POST /v1/register

HOSTILE_ADDRESSES = [
    "", ":", "::", ":::::", "[::1", "[::1]", "]:80", "[]:80", "127.0.0.1", "127.0.0.1:", "127.0.0.1:0",
    "127.0.0.1:65536", "127.0.0.1:-1", "127.0.0.1:+80", "127.0.0.1:0x50", "127.0.0.1: 80", "127.0.0.1:²",
    "127.0.0.1:①", "127.0.0.1:" + "9" * 5000, "127.0.0.1:" + "0" * 5000 + "1", "0.0.0.0:80", "[::]:80",
    "224.0.0.1:80", "[ff02::1]:80", "[::ffff:127.0.0.1]:80", "1.2.3.4.5:80",
    "nowhere.invalid:80", "no such host.invalid:80", "ノード.invalid:80", "é" * 70 + ":80", "a" * 300 + ":80",
    "a" * 100_000 + ":80", "x." * 200 + "invalid:80", "a\x00b:80", "\ud800:80", "\x00:80", "\u2028:80",
    "host:80\r\nX: y", "http://127.0.0.1:80/", "127.0.0.1:80/path", "user@127.0.0.1:80",
    " :80", "\t:80", "..:80", "-:80", ".:80",
]


def _register_expect(node: Node, req: ClientRequest, body: bytes) -> set[int]:
    if wanted_network(req) != "default":
        return {403}
    obj = parse_object(body)
    if obj is None or not isinstance(obj.get("address"), str):
        return {400}
    try:
        ip, port = parse_hostport(obj["address"], timeout=RESOLVE_WAIT)
        check_ip(ip)
    except Exception:  # noqa: BLE001 - whatever parse_hostport raises, the node must say 400
        return {400}
    if (ip, port) == ("127.0.0.1", node.port):
        return {400}  # itself
    # Only loopback addresses the test controls may be contacted: b (accepts), a closed port.
    assume((ip, port) in {("127.0.0.1", node.b.config.port), ("127.0.0.1", CLOSED_PORT)})
    return {200} if port == node.b.config.port else {502}


def tame(address: Any) -> Any:
    """A generated HOST:PORT whose host is a name gets ".invalid" (RFC 6761): the node still
    looks it up, but no made-up name can make it contact anything (numeric hosts are checked)."""
    if not isinstance(address, str):
        return address
    host, sep, port = address.strip().rpartition(":")
    bare = host.strip("[]")
    if not sep or not bare or bare == "localhost" or bare.endswith(".invalid"):
        return address
    try:
        socket.getaddrinfo(bare, None, flags=socket.AI_NUMERICHOST)
        return address
    except (socket.gaierror, UnicodeError, ValueError):
        return f"{host}.invalid:{port}"


#: Valid addresses: b (200), a port nothing listens on (502), a itself (400).
REACHABLE = st.sampled_from([
    "127.0.0.1:{b}", "localhost:{b}", " 127.0.0.1:{b}\n", "[127.0.0.1]:{b}",
    f"127.0.0.1:{CLOSED_PORT}", f"localhost:{CLOSED_PORT}", "127.0.0.1:{a}", "localhost:{a}",
]).map(with_ports)


@st.composite
def register_posts(draw: st.DrawFn) -> ClientRequest | tuple[str, bytes, int]:
    if draw(st.integers(0, 19)) == 0:
        return draw(bad_framing())
    if draw(st.integers(0, 9)) == 0:  # a valid request, so that the handler's whole path runs
        body = {"address": draw(REACHABLE), **draw(st.dictionaries(_text, json_any, max_size=2))}
        return ClientRequest(draw(st.sampled_from(["signed", "replay"])), dump(body), draw(st.sampled_from(["", "network=default"])))
    addresses = st.one_of(
        _text,
        st.sampled_from(HOSTILE_ADDRESSES),
        REACHABLE,
        st.builds(lambda h, p: f"{h}:{p}", st.sampled_from(["127.0.0.1", "localhost", "[::1]", "0", "nowhere.invalid", "é", ""]),
                  st.sampled_from([str(CLOSED_PORT), "{a}", "{b}", "0", "65536", "-1", "", "x", "8O"]).map(with_ports)),
        huge_text,
        json_any,
    ).map(tame)
    return draw(client_requests(client_bodies("address", addresses)))


def test_post_register_hostile(node: Node) -> None:
    @HOSTILE
    @given(req=register_posts())
    def run(req: ClientRequest | tuple[str, bytes, int]) -> None:
        if refused_before_the_handler(node, "/v1/register", req):
            return
        assert not isinstance(req, tuple)
        body = req.body or b""
        expected = _register_expect(node, req, body) if req.mode in ("signed", "replay") else auth_refusal(req)
        for i, headers in enumerate(client_headers(req, "POST", "/v1/register")):
            answer = send(node, "POST", client_target("/v1/register", req), body, headers)
            if i == 1:
                assert_error(answer, {401}, what="replay", codes={"replayed"})
            elif answer.status == 200:
                assert 200 in expected and answer.json()["peer"]["guid"] == B_GUID
            else:
                # 502: a valid request for an address where nothing listens (documented)
                assert_error(answer, expected, what=f"{req.mode} {body[:80]!r}")

    run()
    assert_intact(node)


@pytest.mark.parametrize("address", HOSTILE_ADDRESSES + ["localhost:{port}", "127.0.0.1:{port}"],
                         ids=lambda a: repr(a[:30]))
def test_register_with_a_hostile_address_is_a_quick_400(node: Node, address: str) -> None:
    address = address.replace("{port}", str(node.port))  # a node cannot register with itself
    body = json.dumps({"address": address}).encode()
    header = sign_header("POST", "/v1/register", body=body)
    answer = send(node, "POST", "/v1/register", body, {"X-Gossip-Auth": header}, label="register list", timeout=8.0)
    assert_error(answer, {400}, what=repr(address[:40]))
    assert answer.seconds < RESOLVE_WAIT + 1.5, f"{address[:40]!r} took {answer.seconds:.1f} s"


def test_register_with_a_name_the_resolver_sits_on_is_a_quick_400(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    """getaddrinfo has no timeout (a slow resolver takes 5 s a try): the node gives up on it."""
    real = socket.getaddrinfo

    def stalling(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "stalls.invalid":
            time.sleep(RESOLVE_WAIT + 3)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", stalling)  # the node runs in this process
    body = json.dumps({"address": "stalls.invalid:80"}).encode()
    answer = send(node, "POST", "/v1/register", body, {"X-Gossip-Auth": sign_header("POST", "/v1/register", body=body)},
                  label="register list", timeout=RESOLVE_WAIT + 5)
    assert_error(answer, {400})
    assert b"no answer within" in answer.body and answer.seconds < RESOLVE_WAIT + 1.5, (answer.seconds, answer.body)
    assert_intact(node)


# ---------------------------------------------------------------------------- GET /v1/gossip, /v1/peers, /v1/node

GET_BODIES = st.one_of(st.none(), st.none(), st.binary(max_size=200), json_any.map(dump))


@pytest.mark.parametrize("path", ["/v1/gossip", "/v1/peers", "/v1/node"])
def test_get_hostile(node: Node, path: str) -> None:
    @HOSTILE
    @given(req=client_requests(GET_BODIES))
    def run(req: ClientRequest) -> None:
        for i, headers in enumerate(client_headers(req, "GET", path)):
            answer = send(node, "GET", client_target(path, req), req.body, headers)
            if req.mode not in ("signed", "replay") or i == 1:
                assert_error(answer, {401} if i == 1 else auth_refusal(req), what=req.mode,
                             codes={"replayed"} if i == 1 else auth_codes(req))
            elif wanted_network(req) != "default":
                assert_error(answer, {403}, what="other network", codes={"wrong_network"})
            else:
                assert answer.status == 200, answer.body[:300]
                data = answer.json()
                if path == "/v1/node":
                    assert data["node_guid"] == A_GUID and data["networks"] == ["default"]
                else:
                    assert isinstance(data, list)

    run()
    assert_intact(node)


# ---------------------------------------------------------------------------- POST /v1/peer

#: Plausible field values, so that hostile bodies get deep into the protocol code. The only
#: valid ips are loopback ones: a record the node accepts must not make it contact anything
#: else. b's guid is left out on purpose (a key holder may update b's record).
FP = "0123456789abcdef0123456789abcdef"
_PLAUSIBLE: st.SearchStrategy[Any] = st.sampled_from([
    FP, FP.upper(), "0x" + FP[2:], "-" + FP[1:], str(uuid.UUID(int=1, version=4)), str(uuid.UUID(int=2, version=4)),
    STRANGER, A_GUID, STRANGER.upper(), "127.0.0.1", "::1", "10.0.0.1x", "0.0.0.0", "224.0.0.1", "::ffff:127.0.0.1",
    "localhost", "default", "other", "bad name", "2026-11-24T06:35:13+00:00", "node", "", "\x00", "ノード",
    *SURROGATES, CLOSED_PORT, 0, 1, 8, 16, 3, 65536, -1, 2**20, 2**21, 2**53, 2**64, 1.0, True, False, None, [], {},
])
_FIELDS = st.sampled_from([
    "probe", "peers", "want", "ids", "answer", "gossips", "node", "n", "fp", "size", "start", "sync", "cells",
    "keys", "upto", "guid", "name", "ip", "port", "network_name", "incarnation", "date_time", "who_name", "msg", "sha2",
])
_hostile_json = st.recursive(
    _leaves | _PLAUSIBLE,
    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(_FIELDS | _text, kids, max_size=4),
    max_leaves=12,
)


def _record(guids: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """A peer record, each field right or a plausible wrong value."""
    good = {"name": "hostile", "ip": "127.0.0.1", "port": CLOSED_PORT, "network_name": "default", "incarnation": 1}
    right_mostly = {k: st.one_of(st.just(v), st.just(v), st.just(v), _PLAUSIBLE) for k, v in good.items()}
    return st.fixed_dictionaries({"guid": guids, **right_mostly})


_INTS = st.integers(-2, 2**54) | st.sampled_from([0, 8, 16, 4096, 8192])
_near_miss = st.one_of(
    st.fixed_dictionaries(
        {"probe": st.fixed_dictionaries({"n": _INTS, "fp": st.just(FP) | _PLAUSIBLE},
                                        optional={"size": _INTS, "start": st.just(FP) | _PLAUSIBLE})},
        optional={"ids": st.lists(_PLAUSIBLE, max_size=3), "want": st.lists(_PLAUSIBLE, max_size=3)},
    ),
    st.fixed_dictionaries({"peers": st.lists(_record(_PLAUSIBLE), max_size=3)}),
    st.fixed_dictionaries({"node": _record(st.just(STRANGER) | _PLAUSIBLE)}),
    st.fixed_dictionaries({"node": _record(st.just(A_GUID))}),
    st.fixed_dictionaries({"ids": st.lists(st.uuids(version=4).map(str) | _PLAUSIBLE, max_size=5)}),
)
_peer_body = st.one_of(_hostile_json, st.dictionaries(_FIELDS, _hostile_json, max_size=3), _near_miss)
REQUEST_TYPES = ["register", "hello", "did_you_hear", "tell_me_more"]
_types = st.one_of(
    st.sampled_from(REQUEST_TYPES), st.sampled_from(REQUEST_TYPES), st.sampled_from(REQUEST_TYPES),
    st.sampled_from(sorted(m.MESSAGE_TYPES)), _hostile_json,
)
#: Stands for the guid of a gossip the node holds (known only once it runs).
KNOWN = "<<known gossip>>"
#: Guids a record may carry validly: strangers to the node (b's is left out, see _PLAUSIBLE).
_GUIDS = st.sampled_from([str(uuid.UUID(int=i, version=4)) for i in (1, 2, 3)] + [STRANGER])
_probe = st.fixed_dictionaries(
    {"n": _INTS, "fp": st.just(FP) | _PLAUSIBLE},
    optional={"size": st.sampled_from([0, 8, 16, 64, 3, 2**20]) | _INTS, "start": st.just(FP) | _PLAUSIBLE},
)
_ids = st.one_of(
    st.lists(st.uuids(version=4).map(str) | st.just(KNOWN), min_size=1, max_size=5),
    st.lists(st.one_of(st.uuids(version=4).map(str), st.just(KNOWN), _PLAUSIBLE), max_size=5),
)
#: Bodies that fit their message type, each field right or a plausible wrong value.
_MATCHED = {
    "register": st.fixed_dictionaries({"node": _record(st.just(STRANGER) | _GUIDS | _PLAUSIBLE)}),
    "hello": st.one_of(
        st.fixed_dictionaries({"peers": st.lists(_record(_GUIDS | _PLAUSIBLE), min_size=1, max_size=3)}),
        st.fixed_dictionaries({}, optional={
            "probe": _probe, "peers": st.lists(_record(_GUIDS | _PLAUSIBLE), max_size=3),
            "want": st.lists(st.just(FP) | _PLAUSIBLE, max_size=3),
        }),
    ),
    "did_you_hear": st.one_of(
        st.fixed_dictionaries({"ids": _ids}),
        st.fixed_dictionaries({}, optional={"probe": _probe, "ids": _ids}),
    ),
    "tell_me_more": st.fixed_dictionaries({"ids": _ids}),
}


_right_record = st.fixed_dictionaries({
    "guid": _GUIDS, "name": st.sampled_from(["hostile", "ノード", "x" * 128]), "ip": st.just("127.0.0.1"),
    "port": st.just(CLOSED_PORT), "network_name": st.just("default"), "incarnation": st.integers(0, 2**53),
})
_right_probe = st.fixed_dictionaries(
    {"n": st.integers(0, 2**53), "fp": st.just(FP)}, optional={"size": st.sampled_from([8, 16, 64]), "start": st.just(FP)})
_right_ids = st.lists(st.uuids(version=4).map(str) | st.just(KNOWN), max_size=20)
#: Well-formed requests with odd but valid content: they reach the node's answering code.
_VALID = {
    "register": st.fixed_dictionaries({"node": _right_record.map(lambda r: dict(r, guid=STRANGER))}),
    "hello": st.fixed_dictionaries({}, optional={"probe": _right_probe, "peers": st.lists(_right_record, max_size=3),
                                                 "want": st.lists(st.just(FP), max_size=2)}),
    "did_you_hear": st.fixed_dictionaries({"ids": _right_ids}, optional={"probe": _right_probe}),
    "tell_me_more": st.fixed_dictionaries({"ids": _right_ids}),
}


@dataclass(frozen=True)
class PeerRequest:
    kind: str
    data: bytes = b""  # for the raw kinds
    env: dict[str, Any] = field(default_factory=dict)  # for the envelope kinds: ts and nonce are set when sent
    fresh_nonce: bool = True
    skew: int = 0
    cut: int = 0
    twice: bool = False
    ascii_: bool = True
    depth: int = 0
    framing: tuple[str, bytes, int] | None = None

    def __repr__(self) -> str:
        return (f"PeerRequest(kind={self.kind!r}, data={_short(self.data)}, env={_short(self.env)}, fresh_nonce="
                f"{self.fresh_nonce}, skew={self.skew}, cut={self.cut}, twice={self.twice}, ascii_={self.ascii_},"
                f" depth={self.depth}, framing={_short(self.framing)})")


@st.composite
def peer_requests(draw: st.DrawFn) -> PeerRequest:
    kind = draw(st.sampled_from([
        "bytes", "json", *["signed"] * 10, *["valid"] * 4, "unsigned", "wrong_key",
        "stale", "truncated", "not_utf8", "deep", "huge", "framing",
    ]))
    if kind == "bytes":
        return PeerRequest(kind, data=draw(st.binary(max_size=500)))
    if kind == "json":
        return PeerRequest(kind, data=dump(draw(_hostile_json | st.dictionaries(st.sampled_from(
            ["v", "type", "net", "from", "body", "ts", "nonce", "re", "mac"]), _hostile_json)), draw(st.booleans())))
    if kind == "framing":
        return PeerRequest(kind, framing=draw(bad_framing()))
    if kind == "valid":
        type_ = draw(st.sampled_from(REQUEST_TYPES))
        sender = STRANGER if type_ == "register" else draw(st.sampled_from([STRANGER, B_GUID]))
        valid = {"v": m.PROTOCOL_VERSION, "type": type_, "net": "default", "from": sender, "body": draw(_VALID[type_]),
                 "to": None if type_ == "register" else A_GUID}
        return PeerRequest(kind, env=valid, twice=draw(st.integers(0, 9)) == 0, cut=draw(st.integers(0, 10**6)))
    env: dict[str, Any] = {
        "v": m.PROTOCOL_VERSION,
        "type": draw(_types),
        "net": "default",
        "from": draw(st.one_of(st.sampled_from([STRANGER, B_GUID]), st.sampled_from([STRANGER, B_GUID, A_GUID]), _PLAUSIBLE)),
        "to": draw(st.sampled_from([A_GUID, A_GUID, A_GUID, None, B_GUID])),
    }
    matched = _MATCHED.get(env["type"]) if isinstance(env["type"], str) else None
    env["body"] = draw(_peer_body if matched is None else st.one_of(matched, matched, matched, _peer_body))
    overrides = draw(st.dictionaries(st.sampled_from(["v", "net", "ts", "nonce", "re"]), _hostile_json, max_size=2)
                     | st.just({}) | st.just({}) | st.just({}) | st.just({}))
    env.update(overrides)
    if kind == "deep":
        env["body"] = {"extra": "<<DEEP>>"}
    if kind == "huge":
        body: dict[str, Any] = dict(env["body"]) if isinstance(env["body"], dict) else {}
        body[draw(_FIELDS | st.just("pad"))] = draw(huge_text)
        env["body"] = body
    window_ms = int(DEFAULT_WINDOW * 1000)
    return PeerRequest(
        kind,
        env=env,
        fresh_nonce="nonce" not in overrides,
        skew=draw(st.integers(window_ms + 60_000, 10**13) | st.integers(-(10**12), -(window_ms + 60_000))),
        cut=draw(st.integers(0, 10**6)),
        twice=draw(st.integers(0, 9)) == 0,
        ascii_=draw(st.sampled_from([True, True, False])),
        depth=draw(st.integers(9, 5000)),
    )


def build_peer_body(req: PeerRequest) -> bytes:
    env = dict(req.env)
    now = int(time.time() * 1000)
    if "ts" not in env or req.kind == "stale":
        env["ts"] = max(0, now + req.skew) if req.kind == "stale" else now
    if req.fresh_nonce:
        env["nonce"] = secrets.token_hex(12)
    text = dump(env, req.ascii_).replace(KNOWN.encode(), node_gossips()[req.cut % len(node_gossips())].encode())
    if req.kind == "deep":
        text = text.replace(b'"<<DEEP>>"', nested(req.depth, "1", "[" if req.depth % 2 else "{").encode())
    key = WRONG_KEY if req.kind == "wrong_key" else KEY
    if req.kind == "unsigned":
        return text if req.cut % 2 else text[:-1] + b',"mac":"' + b"0" * 32 + b'"}'
    data = auth.sign(key, text)
    if req.kind == "truncated":
        data = data[: req.cut % len(data)]
    if req.kind == "not_utf8":
        i = req.cut % len(data)
        data = data[:i] + b"\xff" + data[i:]
    return data


#: The guids of the gossips the node held at the start.
KNOWN_GUIDS: list[str] = []


def node_gossips() -> list[str]:
    return KNOWN_GUIDS or [str(uuid.UUID(int=9, version=4))]


def _key_for(network: str) -> bytes | None:
    return KEY if network == "default" else None


def peer_expect(node: Node, data: bytes) -> tuple[set[int], m.Envelope | None]:
    """What the node must answer to these bytes, and the envelope when it may accept them."""
    try:
        env = m.decode(data, _key_for)
    except GossipError as exc:
        return {exc.status_hint}, None
    if env.re is not None:
        return {400}, None
    assert env.ts is not None and env.nonce is not None
    if env.to is not None and env.to != A_GUID:
        return {401}, None  # addressed to another node: refused before the replay guard
    if abs(time.time() - env.ts / 1000) > DEFAULT_WINDOW or env.nonce in node.used_nonces:
        return {401}, None
    node.used_nonces.add(env.nonce)  # in the replay guard from now on, whatever the answer
    body = env.body
    if isinstance(body, m.Register):
        return {200, 400, 503}, env  # 400: not the sender's own record; 503: peer list full
    if isinstance(body, (m.Hello, m.DidYouHear)):
        return {200, 400}, env  # 400: a probe size that is no power of two in range
    if isinstance(body, m.TellMeMore):
        return {200}, env
    return {400}, None  # an answer type sent as a request


def test_peer_endpoint_hostile(node: Node) -> None:
    @HOSTILE
    @given(req=peer_requests())
    def run(req: PeerRequest) -> None:
        if req.kind == "framing":
            assert req.framing is not None
            extra, prefix, status = req.framing
            answer = raw(node, framed("POST", "/v1/peer", extra, prefix), label="POST /v1/peer")
            assert_error(answer, {status}, what=f"framing {extra[:60]!r}")
            return
        data = req.data if req.kind in ("bytes", "json") else build_peer_body(req)
        for _ in range(2 if req.twice else 1):
            expected, env = peer_expect(node, data)
            answer = send(node, "POST", "/v1/peer", data, {"Content-Type": "application/json"})
            if answer.status == 200:
                assert env is not None and 200 in expected, f"accepted {data[:300]!r}"
                reply = m.decode(answer.body, _key_for)
                assert reply.re == env.nonce and reply.sender == A_GUID
                assert type(reply.body) is m.REPLY_TYPES[type(env.body)]
                # Only what an accepted request names may change: the peers and ids in it.
                body = env.body
                if isinstance(body, m.Register):
                    node.allowed_peers.add(body.node.guid)
                elif isinstance(body, m.Hello):
                    node.allowed_peers.update(p.guid for p in body.peers)
                elif isinstance(body, m.DidYouHear):
                    node.allowed_pending.update(body.ids)
            else:
                assert_error(answer, expected, what=f"{req.kind} {data[:200]!r}")
        assert node.a.node.gossip_count() == len(node.gossips)

    run()
    assert_intact(node)


def test_a_signed_request_replayed_is_refused(node: Node) -> None:
    data = auth.sign(KEY, dump({"v": m.PROTOCOL_VERSION, "type": "hello", "net": "default", "from": STRANGER, "body": {}, "to": A_GUID,
                                "ts": int(time.time() * 1000), "nonce": secrets.token_hex(12)}))
    first = send(node, "POST", "/v1/peer", data, label="POST /v1/peer")
    again = send(node, "POST", "/v1/peer", data, label="POST /v1/peer")
    assert first.status == 200
    assert_error(again, {401}, codes={"replayed"})
    assert b"replayed" in again.body


def test_a_signed_request_with_a_number_too_long_to_read_is_400(node: Node) -> None:
    """int() refuses more than 4,300 digits with a bare ValueError: issue 10, item 2."""
    unsigned = dump({"v": m.PROTOCOL_VERSION, "type": "hello", "net": "default", "from": STRANGER, "body": {"pad": "<<N>>"}, "to": A_GUID,
                     "ts": int(time.time() * 1000), "nonce": secrets.token_hex(12)})
    data = auth.sign(KEY, unsigned.replace(b'"<<N>>"', b"9" * 5000))
    answer = send(node, "POST", "/v1/peer", data, label="POST /v1/peer")
    assert_error(answer, {400})
    assert b"number too long" in answer.body
    assert_intact(node)


# ---------------------------------------------------------------------------- whole bodies over the limit

@pytest.mark.parametrize("path", ["/v1/peer", "/v1/gossip", "/v1/register"])
def test_a_whole_body_over_the_limit_is_413(node: Node, path: str) -> None:
    """A client that sends all of an oversized body still reads the 413 (refused unread)."""
    body = b'{"msg":"' + b"x" * MAX_BODY + b'"}'
    header = sign_header("POST", path, body=body)
    answer = send(node, "POST", path, body, {"X-Gossip-Auth": header}, label=f"POST {path}")
    assert_error(answer, {413})
    assert_intact(node)


# ---------------------------------------------------------------------------- unknown paths, methods, raw bytes

KNOWN_PATHS = ["/", "/healthz", "/metrics", "/static/app.js", "/static/app.css", "/v1/peer", "/v1/gossip",
               "/v1/peers", "/v1/node", "/v1/register"]
_READABLE = {("GET", p) for p in ("/", "/healthz", "/metrics", "/static/app.js", "/static/app.css",
                                  "/v1/gossip", "/v1/peers", "/v1/node")}
_METHODS = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "CONNECT",
                            "PROPFIND", "FOO", "get", "Post", "M-SEARCH"]) | st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789!#$%&'*+-.^_`|~", min_size=1, max_size=12)
_PATHS = st.one_of(
    st.sampled_from(KNOWN_PATHS + [
        "/v1/peer/", "/v1", "/v1/", "//v1/gossip", "/v1/gossip/", "/V1/GOSSIP", "/v1/gossip/../node",
        "/../../etc/passwd", "/static/../http.py", "/static/", "/static/app.js.map", "/%2e%2e/%2e%2e/etc/passwd",
        "/v1/peer%00", "/healthz/", "/index.html", "*", "http://127.0.0.1/v1/gossip", "127.0.0.1:80", "/" * 300,
        "/" + "a" * 70_000,
    ]),
    st.text(max_size=60).map(lambda t: "/" + urllib.parse.quote(t, safe="/%?&=;")),
    st.binary(max_size=40).map(lambda b: "/" + urllib.parse.quote_from_bytes(b, safe="/")),
)
_VERSIONS = st.sampled_from(["HTTP/1.1", "HTTP/1.1", "HTTP/1.0", "HTTP/2.0", "HTTP/3", "HTTP/1.1.1", "HTTP/x",
                             "HTTP/01.01", "http/1.1", "HTTP/1.10", "HTTP/999999999999999.1", ""])


@st.composite
def odd_requests(draw: st.DrawFn) -> tuple[str, str, bytes]:
    method, path, version = draw(_METHODS), draw(_PATHS), draw(_VERSIONS)
    headers = "Host: 127.0.0.1\r\n"
    body = b""
    if draw(st.booleans()):
        body = draw(st.binary(max_size=200) | json_any.map(dump))
        headers += f"Content-Length: {len(body)}\r\n"
    if draw(st.integers(0, 4)) == 0:
        headers += f"X-Gossip-Auth: {sign_header(method, path.partition('?')[0])}\r\n"
    if draw(st.integers(0, 9)) == 0:
        headers += draw(st.sampled_from(["Content-Length: 99999999999\r\n", "Transfer-Encoding: chunked\r\n",
                                         "X-Gossip-Auth: a\r\nX-Gossip-Auth: b\r\n", "Connection: keep-alive\r\n",
                                         "X: " + "y" * 70_000 + "\r\n", "".join(f"X-{i}: {i}\r\n" for i in range(120)),
                                         " folded\r\n", "no colon here\r\n", "Expect: 100-continue\r\n"]))
    line = f"{method} {path} {version}".rstrip()
    return method, path, line.encode("latin-1", "replace") + b"\r\n" + headers.encode("latin-1") + b"\r\n" + body


def assert_odd_answer(answer: Answer, method: str, path: str) -> None:
    """Anything goes but a 5xx, a traceback or a non-JSON error."""
    # A Python traceback's own words: the request's method or path may be echoed in a 404
    # ("no route Traceback /" once made this fail), but never these.
    assert b"Traceback (most recent call last)" not in answer.body and b'File "' not in answer.body
    if answer.status is None:
        return  # closed without answering: the request never ended (e.g. a body cut short)
    if answer.status == 0:  # an HTTP/0.9 answer: a bare body
        if answer.body.startswith(b"{"):
            assert json.loads(answer.body).get("status", 200) < 500
        return
    assert answer.status < 500, (method, path[:80], answer.status, answer.body[:300])
    if answer.status >= 400 and method != "HEAD":
        data = json.loads(answer.body)
        assert isinstance(data, dict) and isinstance(data.get("error"), str) and data.get("status") == answer.status
    if 200 <= answer.status < 300:  # only what anybody may read, or a signed read
        bare = path.partition("?")[0]
        if bare.startswith("//"):  # http.server reads "//x" as "/x" (no open redirects)
            bare = "/" + bare.lstrip("/")
        assert (method, bare) in _READABLE, (method, path, answer.status)


def test_unknown_paths_and_methods(node: Node) -> None:
    @HOSTILE
    @given(req=odd_requests())
    def run(req: tuple[str, str, bytes]) -> None:
        method, path, data = req
        assert_odd_answer(raw(node, data, label="unknown paths and methods"), method, path)

    run()
    assert_intact(node)


_REQUEST_LINE_PIECES = st.sampled_from([b"GET", b"POST", b" ", b"/", b"/v1/peer", b"/v1/gossip", b"HTTP/1.1",
                                        b"\r\n", b"\n", b"\r\n\r\n", b"Content-Length: 5", b":", b"\x00", b"\xff"])


def test_raw_bytes_on_the_socket(node: Node) -> None:
    @HOSTILE
    @given(data=st.one_of(
        st.binary(max_size=1000),
        st.lists(_REQUEST_LINE_PIECES | st.binary(max_size=8), max_size=30).map(b"".join),
        st.binary(max_size=300).map(lambda b: b"GET /v1/node HTTP/1.1\r\n" + b + b"\r\n\r\n"),
        st.binary(max_size=300).map(lambda b: b"POST /v1/peer HTTP/1.1\r\nContent-Length: 300\r\n\r\n" + b),
    ))
    def run(data: bytes) -> None:
        assert_odd_answer(raw(node, data, label="raw bytes"), "?", "?")

    run()
    assert_intact(node)


# ---------------------------------------------------------------------------- the totals

def test_every_endpoint_got_1000_requests(node: Node) -> None:
    """Runs last: each endpoint above really got 1,000+ generated requests in this run."""
    endpoints = ["POST /v1/peer", "POST /v1/gossip", "POST /v1/register", "GET /v1/gossip", "GET /v1/peers",
                 "GET /v1/node", "unknown paths and methods", "raw bytes"]
    if not all(SENT[e] for e in endpoints):
        pytest.skip("counts only when the whole file runs")
    print("\nrequests sent: " + ", ".join(f"{e}={SENT[e]}" for e in endpoints + ["setup and checks"]))
    for e in endpoints:
        print(f"  {e}: " + ", ".join(f"{s}x{n}" for (ep, s), n in sorted(STATUSES.items(), key=str) if ep == e))
    print(f"  peers a valid signed request announced: {len(node.allowed_peers)},"
          f" gossip ids: {len(node.allowed_pending)}, gossips held: {len(node.gossips)}")
    assert all(SENT[e] >= EXAMPLES for e in endpoints), dict(SENT)
    # The signed requests really reached the handlers: accepted and refused, for every endpoint.
    for endpoint, seen in {
        "POST /v1/peer": {200, 400, 401},
        "POST /v1/gossip": {201, 400, 401, 403},
        "POST /v1/register": {400, 401, 403},
        "GET /v1/gossip": {200, 401, 403},
        "GET /v1/peers": {200, 401, 403},
        "GET /v1/node": {200, 401, 403},
        "unknown paths and methods": {404, 405},
    }.items():
        assert seen <= {s for (ep, s), n in STATUSES.items() if ep == endpoint}, (endpoint, STATUSES)
    assert_intact(node)
