"""Hostile input over real HTTP for the routes and wire added with version 3 (issue 10, "Done when").

The same set-up, helpers and checks as tests/test_hostile_http.py (imported, not copied): one
running node ``a`` with a few gossips and one peer ``b``. Covered here:

- ``GET /v1/gossip`` with hostile paging parameters (``after``, ``before``, ``limit``,
  ``order``, ``q``): huge numbers, 5,000 digits, signs, dates, long text; an accepted page is
  checked against the documented rules (cursor order and bounds, limit, ``q``);
- ``GET /v1/gossip/stream`` (``after``, ``q``, ``Last-Event-ID``): only the head and the first
  bytes are read, then the connection is closed;
- ``GET /v1/keys`` and ``POST /v1/keys`` (``op``, ``id``, ``sealed``): the ring never changes;
- ``POST /v1/force-leave`` (``peer``) and ``POST /v1/gossip/delete`` (``guid`` of no gossip);
- ``POST /v1/leave``: only requests that must be refused before its handler (unsigned, bad
  MAC, stale, replayed nonce, another network, another method): the node must keep running;
- ``/v1/peer`` with the version 3 messages: ``keys`` with hostile rings and sealed keys,
  records whose ``left`` is any JSON value, ``ring`` and ``retention`` with extreme values;
- the route table: each new path answers a wrong method with 405 ``method_not_allowed``.

Every answer is a success the oracle allows or a clean 4xx with a documented ``code``; after
each test the node serves, holds every gossip (same sha2) and its key ring is unchanged.
"""

from __future__ import annotations

import json
import re
import secrets
import time
import urllib.parse
import uuid
from typing import Any

import pytest
from hypothesis import assume, example, given
from hypothesis import strategies as st

from gossip import auth
from gossip import messages as m

from .test_hostile_http import (
    A_GUID,
    AUTH_MODES,
    B_GUID,
    EXTREME_DATES,
    FP,
    HOSTILE,
    KEY,
    LONG_NUMBER,
    MAX_BODY,
    STRANGER,
    SURROGATES,
    TIMEOUT,
    Answer,
    ClientRequest,
    Node,
    PeerRequest,
    _GUIDS,
    _PLAUSIBLE,
    _hostile_json,
    _key_for,
    _record,
    _text,
    assert_error,
    assert_intact,
    auth_codes,
    auth_refusal,
    build_peer_body,
    client_bodies,
    client_headers,
    client_target,
    dump,
    huge_text,
    json_any,
    node,  # noqa: F401  (the module-scoped running node, a fixture)
    parse_object,
    peer_expect,
    refused_before_the_handler,
    send,
    sign_header,
    signed_call,
    wanted_network,
    SENT,
    STATUSES,
)

# One worker runs both hostile HTTP files, in order: their last tests check the outcomes
# that every test before them counted (SENT, STATUSES), and share one node per file.
pytestmark = pytest.mark.xdist_group("hostile_http")

KEY_ID = auth.key_id(KEY)
#: Most rows of one page, and longest ``q`` (docs/http-api.md, "Paging").
MAX_LIMIT = 10_000
MAX_Q = 1000


def key_ring(node: Node) -> list[tuple[str, bool]]:
    """The network's key ring as ``GET /v1/keys`` shows it: (id, primary) per key."""
    status, _, rows = signed_call(node, "GET", "/v1/keys")
    assert status == 200, rows
    return [(r["id"], r["primary"]) for r in rows]


def assert_unchanged(node: Node) -> None:
    assert_intact(node)
    assert key_ring(node) == [(KEY_ID, True)], "the key ring changed"


# ---------------------------------------------------------------------------- hostile query values

#: Values for a number parameter: the documented range's edges, huge and malformed numbers.
_NUMBER_TEXT = st.one_of(
    st.integers(-(2**70), 2**70).map(str),
    st.integers(0, 20).map(str),
    st.sampled_from([
        "", " ", "0", "1", "10000", "10001", "9" * 19, "9" * 20, "9" * 5000, "-0", "+1", "1e3", "0x10", "1.0",
        " 5", "5 ", "٣", "½", "NaN", "inf", "00000000000000000001", str(2**63), str(2**64), "1,2",
        *EXTREME_DATES, *SURROGATES,
    ]),
    _text.map(lambda t: t.replace(LONG_NUMBER, "9" * 5000)),
)
_ORDER_TEXT = st.sampled_from(["oldest", "newest", "", "OLDEST", "newest ", "old", "desc", "9" * 5000]) | _text
_Q_TEXT = st.one_of(
    _text, st.sampled_from(["first", "FIRST", "héllo", "HÉLLO", "😀", "<b>", "%", "_", ".*", "a" * MAX_Q,
                            "a" * (MAX_Q + 1), "é" * MAX_Q, "x" * 5000]),
)
_PARAM_VALUES = {"after": _NUMBER_TEXT, "before": _NUMBER_TEXT, "limit": _NUMBER_TEXT, "order": _ORDER_TEXT,
                 "q": _Q_TEXT}


def _encode(pairs: list[tuple[str, str]]) -> str:
    return urllib.parse.urlencode(pairs, errors="surrogatepass")


@st.composite
def page_queries(draw: st.DrawFn, names: tuple[str, ...] = ("after", "before", "limit", "order", "q")) -> str:
    """A query with some paging parameters (each possibly repeated), maybe a network."""
    pairs: list[tuple[str, str]] = []
    for name in draw(st.lists(st.sampled_from(names), max_size=6)):
        pairs.append((name, draw(_PARAM_VALUES[name])))
    if draw(st.integers(0, 5)) == 0:
        pairs.insert(draw(st.integers(0, len(pairs))), ("network", draw(st.sampled_from(["default", "other", ""]))))
    if draw(st.integers(0, 9)) == 0:  # an unknown parameter: ignored
        pairs.append((draw(_text), draw(_text)))
    return _encode(pairs)


def page_expect(query: str) -> dict[str, Any] | None:
    """The paging the docs promise for ``query``, or None when it is malformed (400)."""
    q = urllib.parse.parse_qs(query, keep_blank_values=True)  # as the server parses it

    def number(name: str, low: int, high: int) -> tuple[bool, int | None]:
        if name not in q:
            return True, None
        text = q[name][-1]
        if not re.fullmatch(r"[0-9]{1,19}", text) or not low <= int(text) <= high:
            return False, None
        return True, int(text)

    out: dict[str, Any] = {}
    for name, low in (("after", 0), ("before", 1), ("limit", 1)):
        ok, value = number(name, low, MAX_LIMIT if name == "limit" else 10**19 - 1)  # 19 digits at most
        if not ok:
            return None
        out[name] = value
    order = q.get("order", ["oldest"])[-1]
    text = q.get("q", [""])[-1]
    if order not in ("oldest", "newest") or len(text) > MAX_Q:
        return None
    return dict(out, newest=order == "newest", q=text or None)


def check_page(rows: Any, page: dict[str, Any], answer: Answer) -> None:
    """An accepted page keeps the documented promises."""
    assert isinstance(rows, list)
    assert answer.headers.get("gossip-cursor", "").isdigit(), answer.headers
    complete = [r for r in rows if r["complete"]]
    cursors = [r["cursor"] for r in complete]
    assert all(isinstance(c, int) for c in cursors)
    assert cursors == sorted(cursors, reverse=page["newest"]) and len(set(cursors)) == len(cursors)
    assert len(complete) <= (page["limit"] or MAX_LIMIT)
    assert all(c > (page["after"] or 0) for c in cursors)
    if page["before"] is not None:
        assert all(c < page["before"] for c in cursors)
    if page["q"] is not None:
        folded = page["q"].casefold()
        assert all(folded in r["msg"].casefold() or folded in r["who_name"].casefold() for r in complete), page
        assert len(complete) == len(rows), "pending rows under q"
    assert all(r["cursor"] is None for r in rows if not r["complete"])


# ---------------------------------------------------------------------------- GET /v1/gossip with parameters

def client_get_requests(queries: st.SearchStrategy[str]) -> st.SearchStrategy[ClientRequest]:
    return st.builds(ClientRequest, mode=st.sampled_from(AUTH_MODES), body=st.just(None), query=queries,
                     garbage=st.sampled_from(["", "network=default, ts=1, nonce=ab, mac=00", "\x00"]),
                     skew=st.sampled_from([10**9, -(10**9), 10**13]))


def test_get_gossip_paging_hostile(node: Node) -> None:
    @HOSTILE
    @given(req=client_get_requests(page_queries()))
    def run(req: ClientRequest) -> None:
        path = "/v1/gossip"
        for i, headers in enumerate(client_headers(req, "GET", path)):
            answer = send(node, "GET", client_target(path, req), None, headers, label="GET /v1/gossip?paging")
            if req.mode not in ("signed", "replay") or i == 1:
                assert_error(answer, {401} if i == 1 else auth_refusal(req), what=req.mode,
                             codes={"replayed"} if i == 1 else auth_codes(req))
            elif wanted_network(req) != "default":
                assert_error(answer, {403}, what="other network", codes={"wrong_network"})
            elif (page := page_expect(req.query)) is None:
                assert_error(answer, {400}, what=f"paging {req.query[:200]!r}", codes={"bad_request"})
            else:
                assert answer.status == 200, (req.query[:200], answer.body[:300])
                check_page(answer.json(), page, answer)

    run()
    assert_unchanged(node)


def test_paging_walks_every_gossip_once(node: Node) -> None:
    """Following Gossip-Next one row at a time, both ways, yields each gossip exactly once."""
    for order, key in (("oldest", "after"), ("newest", "before")):
        seen: list[str] = []
        query = f"limit=1&order={order}"
        for _ in range(len(node.gossips) + 5):
            status, answer, rows = signed_call(node, "GET", "/v1/gossip", query=query)
            assert status == 200
            seen += [r["guid"] for r in rows if r["complete"]]
            nxt = answer.headers.get("gossip-next")
            if nxt is None:
                break
            query = f"limit=1&order={order}&{key}={nxt}"
        assert sorted(seen) == sorted(node.gossips), (order, seen)


# ---------------------------------------------------------------------------- GET /v1/gossip/stream

_LAST_EVENT_ID = st.one_of(
    st.none(), st.none(),
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(["", " ", " 1 ", "0", "9" * 5000, "1e3", "-1", "x", *EXTREME_DATES, "a" * 5000]),
    st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=30),
)


@st.composite
def stream_requests(draw: st.DrawFn) -> tuple[ClientRequest, str | None]:
    return draw(client_get_requests(page_queries(("after", "q")))), draw(_LAST_EVENT_ID)


def stream_expect(query: str, last_event_id: str | None) -> dict[str, Any] | None:
    q = urllib.parse.parse_qs(query, keep_blank_values=True)
    if "after" not in q:  # resuming: the header stands for after; without it, from now
        resume = (last_event_id or "").strip()
        if resume:
            query = _encode([*((k, v) for k, vs in q.items() for v in vs), ("after", resume)])
    return page_expect(query)


def open_stream(node: Node, target: str, headers: dict[str, str]) -> Answer:
    """Read a stream's head and first bytes only (it never ends by itself), then close it."""
    return send(node, "GET", target, headers=headers, label="GET /v1/gossip/stream",
                read_at_most=len(b"retry: 1000\n\n"))


def test_stream_hostile(node: Node) -> None:
    @HOSTILE
    @given(req=stream_requests())
    def run(req: tuple[ClientRequest, str | None]) -> None:
        creq, last_event_id = req
        path = "/v1/gossip/stream"
        for i, headers in enumerate(client_headers(creq, "GET", path)):
            if last_event_id is not None:
                headers = dict(headers, **{"Last-Event-ID": last_event_id})
            answer = open_stream(node, client_target(path, creq), headers)
            if creq.mode not in ("signed", "replay") or i == 1:
                assert_error(answer, {401} if i == 1 else auth_refusal(creq), what=creq.mode,
                             codes={"replayed"} if i == 1 else auth_codes(creq))
            elif wanted_network(creq) != "default":
                assert_error(answer, {403}, what="other network", codes={"wrong_network"})
            elif stream_expect(creq.query, last_event_id) is None:
                assert_error(answer, {400}, what=f"stream {creq.query[:200]!r} {last_event_id!r:.80}",
                             codes={"bad_request"})
            elif answer.status == 429:
                # The streams this test just closed free their slots once the node's loop sees
                # each EOF; under load it may not have yet: still a clean, coded refusal.
                assert_error(answer, {429}, what="stream slots", codes={"too_many_streams"})
            else:
                assert answer.status == 200, (creq.query[:200], last_event_id, answer.body[:300])
                assert answer.headers["content-type"].startswith("text/event-stream")
                assert answer.headers.get("gossip-cursor", "").isdigit()
                assert answer.body == b"retry: 1000\n\n"

    run()
    assert_unchanged(node)


# ---------------------------------------------------------------------------- /v1/keys

_KEY_IDS = st.one_of(
    st.just(KEY_ID), st.just(KEY_ID), st.just("0" * 16), st.just(KEY_ID.upper()), st.just(KEY_ID + "0"),
    st.text(alphabet="0123456789abcdef", min_size=16, max_size=16), _text, json_any, huge_text,
)
_SEALED = st.one_of(
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_=", max_size=120),
    st.binary(min_size=0, max_size=90).map(lambda b: __import__("base64").urlsafe_b64encode(b).decode()),
    _text, json_any, huge_text, st.sampled_from(["", "=", "v1." + "A" * 60, FP * 20]),
)
_OPS = st.sampled_from(["install", "use", "remove"]) | st.sampled_from(["", "INSTALL", "list", "use "]) | json_any


@st.composite
def keys_bodies(draw: st.DrawFn) -> bytes:
    objects = st.fixed_dictionaries({}, optional={"op": _OPS, "id": _KEY_IDS, "sealed": _SEALED,
                                                  "extra": json_any})
    # Mostly well-formed ops, so that the ids and sealed keys get past the shape checks (a
    # choice drawn here: st.one_of would flatten client_bodies' many branches into it).
    plausible = st.builds(lambda op, kid, sealed: {"op": op, "id": kid, "sealed": sealed},
                          st.sampled_from(["install", "use", "remove"]), _KEY_IDS, _SEALED)
    choice = draw(st.integers(0, 4))
    if choice < 3:
        data = dump(draw(plausible), draw(st.booleans()))
    elif choice == 3:
        data = dump(draw(objects), draw(st.booleans()))
    else:
        data = draw(client_bodies("op", _OPS))
    assume(len(data) <= MAX_BODY)  # two huge fields: over the cap (its 413 is tested elsewhere)
    return data


def keys_expect(body: bytes) -> tuple[set[int], set[str]]:
    """The status and codes of a signed ``POST /v1/keys`` (no sealed key here ever opens)."""
    obj = parse_object(body)
    if obj is None:
        return {400}, {"bad_request"}
    op, kid = obj.get("op"), obj.get("id")
    if op not in ("install", "use", "remove") or not isinstance(kid, str) or not kid:
        return {400}, {"bad_request"}
    if op == "install":
        if not isinstance(obj.get("sealed"), str):
            return {400}, {"bad_request"}
        return {404}, {"unknown_key"}
    if kid != KEY_ID:
        return {404}, {"unknown_key"}
    if op == "use":
        return {200}, set()  # the primary already: changed false
    return {409}, {"primary_key", "last_key"}


@st.composite
def keys_requests(draw: st.DrawFn) -> tuple[str, ClientRequest]:
    method = draw(st.sampled_from(["GET", "POST", "POST", "POST"]))
    bodies = st.one_of(st.none(), json_any.map(dump)) if method == "GET" else keys_bodies()
    req = draw(st.builds(ClientRequest, mode=st.sampled_from(AUTH_MODES), body=bodies,
                         query=st.sampled_from(["", "", "network=default", "network=other", "op=use"]),
                         garbage=st.sampled_from(["", "x", "network=default, mac=00"]),
                         skew=st.sampled_from([10**9, -(10**9)])))
    return method, req


def test_keys_hostile(node: Node) -> None:
    @HOSTILE
    @given(req=keys_requests())
    def run(req: tuple[str, ClientRequest]) -> None:
        method, creq = req
        body = creq.body or b""
        for i, headers in enumerate(client_headers(creq, method, "/v1/keys")):
            answer = send(node, method, client_target("/v1/keys", creq), creq.body, headers)
            if creq.mode not in ("signed", "replay") or i == 1:
                assert_error(answer, {401} if i == 1 else auth_refusal(creq), what=creq.mode,
                             codes={"replayed"} if i == 1 else auth_codes(creq))
            elif wanted_network(creq) != "default":
                assert_error(answer, {403}, what="other network", codes={"wrong_network"})
            elif method == "GET":
                assert answer.status == 200 and [(r["id"], r["primary"]) for r in answer.json()] == [(KEY_ID, True)]
            else:
                statuses, codes = keys_expect(body)
                if statuses == {200}:
                    assert answer.status == 200, answer.body[:300]
                    data = answer.json()
                    assert data["changed"] is False and [(r["id"], r["primary"]) for r in data["keys"]] == [(KEY_ID, True)]
                else:
                    assert_error(answer, statuses, what=f"keys {body[:200]!r}", codes=codes)

    run()
    assert_unchanged(node)


# ---------------------------------------------------------------------------- force-leave and delete

_PEER_NAMES = st.one_of(
    st.sampled_from(["b", " b ", B_GUID, B_GUID.upper(), "a", A_GUID, STRANGER, "", "   ", "x" * 256, "x" * 257,
                     "hostile", "ノード"]),
    _text, json_any, huge_text,
)


def force_leave_expect(node: Node, body: bytes) -> tuple[set[int], set[str]]:
    obj = parse_object(body)
    if obj is None:
        return {400}, {"bad_request"}
    target = obj.get("peer")
    if not isinstance(target, str) or not target.strip() or len(target) > 256:
        return {400}, {"bad_request"}
    if target.strip() in ("b", B_GUID):
        return {409}, {"peer_not_dead"}  # b is alive
    # A peer a valid signed request announced may be dead by now (and then leaves).
    return ({404, 409, 200} if node.allowed_peers else {404}), {"unknown_peer", "ambiguous_peer", "peer_not_dead"}


_DELETE_GUIDS = st.one_of(
    st.uuids(version=4).map(str), st.uuids().map(lambda u: str(u).upper()), st.sampled_from([FP, FP * 2, "x" * 64]),
    _text, json_any, huge_text,
)


def delete_expect(node: Node, body: bytes) -> tuple[set[int], set[str]]:
    obj = parse_object(body)
    if obj is None or not isinstance(obj.get("guid"), str):
        return {400}, {"bad_request"}
    guid = obj["guid"]
    if re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", guid):
        return {404}, {"not_found"}  # a guid, but of no gossip (held ones are never drawn)
    return {400, 404}, {"bad_request", "not_found"}


@pytest.mark.parametrize("path, name, values", [
    ("/v1/force-leave", "peer", _PEER_NAMES),
    ("/v1/gossip/delete", "guid", _DELETE_GUIDS),
])
def test_force_leave_and_delete_hostile(node: Node, path: str, name: str, values: st.SearchStrategy[Any]) -> None:
    expect = force_leave_expect if path == "/v1/force-leave" else delete_expect

    @HOSTILE
    @given(req=st.builds(ClientRequest, mode=st.sampled_from(AUTH_MODES), body=client_bodies(name, values),
                         query=st.sampled_from(["", "", "network=default", "network=other"]),
                         garbage=st.sampled_from(["", "x"]), skew=st.sampled_from([10**9, -(10**9)])))
    def run(req: ClientRequest) -> None:
        body = req.body or b""
        obj = parse_object(body)
        # Never a gossip the node holds: nothing may be deleted.
        if obj is not None and isinstance(obj.get(name), str) and obj[name] in node.gossips:
            return
        if refused_before_the_handler(node, path, req):
            return
        for i, headers in enumerate(client_headers(req, "POST", path)):
            answer = send(node, "POST", client_target(path, req), body, headers)
            if req.mode not in ("signed", "replay") or i == 1:
                assert_error(answer, {401} if i == 1 else auth_refusal(req), what=req.mode,
                             codes={"replayed"} if i == 1 else auth_codes(req))
            elif wanted_network(req) != "default":
                assert_error(answer, {403}, what="other network", codes={"wrong_network"})
            else:
                statuses, codes = expect(node, body)
                if answer.status == 200:
                    assert 200 in statuses, body[:300]
                else:
                    assert_error(answer, statuses, what=f"{path} {body[:200]!r}", codes=codes)

    run()
    assert_unchanged(node)


# ---------------------------------------------------------------------------- POST /v1/leave: refused only

#: How a leave request is spoiled so that it must be refused before the handler runs (a
#: correctly signed one from loopback would stop the node every other test needs).
LEAVE_SPOILS = ["none", "garbage", "wrong_key", "unknown_network", "stale", "tampered", "replayed", "other_network"]


@st.composite
def leave_requests(draw: st.DrawFn) -> tuple[str, bytes, str]:
    spoil = draw(st.sampled_from(LEAVE_SPOILS))
    body = draw(st.one_of(st.just(b"{}"), st.just(b""), json_any.map(dump), st.binary(max_size=100)))
    query = draw(st.sampled_from(["", "network=default"]))
    if spoil == "other_network":  # the last network= wins: never default here
        query = draw(st.sampled_from(["network=other", "network=default&network=other", "network=",
                                      "network=" + "x" * 300]))
    return spoil, body, query


def leave_headers(spoil: str, body: bytes, query: str) -> dict[str, Any]:
    path = "/v1/leave"
    if spoil == "none":
        return {}
    if spoil == "garbage":
        return {"X-Gossip-Auth": "network=default, ts=1, nonce=00, mac=" + "0" * 64}
    if spoil == "wrong_key":
        return {"X-Gossip-Auth": sign_header("POST", path, query, body, key=auth_key_other())}
    if spoil == "unknown_network":
        return {"X-Gossip-Auth": sign_header("POST", path, query, body, network="other", key=auth_key_other())}
    if spoil == "stale":
        return {"X-Gossip-Auth": sign_header("POST", path, query, body, ts=int(time.time() * 1000) - 10**9)}
    if spoil == "tampered":
        return {"X-Gossip-Auth": sign_header("POST", path, query, body + b" ")}
    if spoil == "replayed":  # a nonce the node has already taken, on a request it answered
        nonce = secrets.token_hex(12)
        header = sign_header("GET", "/v1/node", nonce=nonce)
        assert send(node_ref[0], "GET", "/v1/node", None, {"X-Gossip-Auth": header}, label="setup and checks").status == 200
        return {"X-Gossip-Auth": sign_header("POST", path, query, body, nonce=nonce)}
    assert spoil == "other_network"
    return {"X-Gossip-Auth": sign_header("POST", path, query, body)}


def auth_key_other() -> bytes:
    from .test_hostile_http import WRONG_KEY

    return WRONG_KEY


#: The node, for leave_headers (a replayed nonce needs a first request).
node_ref: list[Node] = []

_LEAVE_CODES = {"none": {"bad_mac"}, "garbage": {"bad_mac"}, "wrong_key": {"bad_mac"},
                "unknown_network": {"wrong_network"}, "stale": {"clock_skew"}, "tampered": {"bad_mac"},
                "replayed": {"replayed"}, "other_network": {"wrong_network"}}


def test_leave_refused_before_the_handler(node: Node) -> None:
    node_ref[:] = [node]

    @HOSTILE
    @given(req=leave_requests())
    def run(req: tuple[str, bytes, str]) -> None:
        spoil, body, query = req
        headers = leave_headers(spoil, body, query)
        answer = send(node, "POST", "/v1/leave" + (f"?{query}" if query else ""), body, headers)
        assert_error(answer, {403} if spoil == "other_network" else {401}, what=spoil, codes=_LEAVE_CODES[spoil])
        assert node.a.gossiping

    run()
    # Signed correctly, but with another method: 405, and the node stays.
    for method in ("GET", "PUT", "DELETE", "PATCH"):
        answer = send(node, method, "/v1/leave", b"{}", {"X-Gossip-Auth": sign_header(method, "/v1/leave", body=b"{}")})
        assert_error(answer, {405}, what=method, codes={"method_not_allowed"})
    assert_unchanged(node)


# ---------------------------------------------------------------------------- the route table

#: The routes added with version 3: (method, path) that exist.
NEW_ROUTES = {("GET", "/v1/gossip/stream"), ("GET", "/v1/keys"), ("POST", "/v1/keys"), ("POST", "/v1/leave"),
              ("POST", "/v1/force-leave"), ("POST", "/v1/gossip/delete")}
NEW_PATHS = sorted({p for _, p in NEW_ROUTES})


@pytest.mark.parametrize("path", NEW_PATHS)
@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "FOO"])
def test_new_routes_answer_every_method(node: Node, method: str, path: str) -> None:
    """A route answers its method with 401 unsigned (never 404), any other with 405; near
    misses of its path are 404."""
    body = b"{}" if method != "GET" else None
    answer = send(node, method, path, body, label="new routes")
    if (method, path) in NEW_ROUTES:
        assert_error(answer, {401}, what=f"{method} {path}", codes={"bad_mac"})
    else:
        assert_error(answer, {405}, what=f"{method} {path}", codes={"method_not_allowed"})
    for near in (path + "/", path.upper(), path + "x", path.replace("/v1/", "/v2/")):
        assert_error(send(node, method, near, body, label="new routes"), {404}, what=near, codes={"not_found"})


# ---------------------------------------------------------------------------- /v1/peer, version 3 messages

_BIG = st.one_of(
    st.integers(-(2**70), 2**70), st.sampled_from([0, 1, -1, 2**53 - 1, 2**53, 2**63, 2**64, LONG_NUMBER]),
    st.floats(), st.sampled_from([1e11, 1e11 + 1, 0.5, True, None, "1", *EXTREME_DATES]),
)
_RING_IDS = st.sampled_from([KEY_ID, "0" * 16, "f" * 16, KEY_ID.upper(), "x" * 16, "", FP]) | _text
_ring = st.one_of(
    st.fixed_dictionaries({"version": _BIG, "primary": _RING_IDS, "ids": st.lists(_RING_IDS, max_size=4)}),
    st.builds(lambda v, ids: {"version": v, "primary": ids[0], "ids": ids},
              _BIG, st.lists(_RING_IDS, min_size=1, max_size=4, unique=True)),
    st.builds(lambda v: {"version": v, "primary": KEY_ID, "ids": [KEY_ID]}, _BIG),
    _hostile_json,
)
#: Retentions: never one valid and short enough to expire the node's gossips (that would be
#: a legitimate deletion); every malformed shape and extreme number.
_retention = st.one_of(
    st.fixed_dictionaries({}, optional={"max_age": _BIG.filter(lambda v: not (isinstance(v, (int, float)) and not isinstance(v, bool) and 1 <= v < 1e10)),
                                        "set_at": _BIG}),
    st.fixed_dictionaries({"max_age": st.sampled_from([None, 1e10, 1e11]), "set_at": _BIG}),
    _hostile_json,
)
_sealed_key = st.one_of(
    st.fixed_dictionaries({"id": _RING_IDS, "sealed": _SEALED}),
    st.builds(lambda kid, s: {"id": kid, "sealed": s}, st.just(KEY_ID), _SEALED),
    _hostile_json,
)
_LEFT = st.one_of(st.booleans(), st.none(), st.integers(-1, 2), st.floats(), _text, st.lists(st.booleans(), max_size=2),
                  st.dictionaries(_text, st.booleans(), max_size=2), st.just(LONG_NUMBER))
_left_record = st.builds(lambda r, left: dict(r, left=left), _record(_GUIDS | _PLAUSIBLE), _LEFT)

_V3_BODIES = {
    "keys": st.one_of(
        st.builds(lambda ring, keys: {"ring": ring, "keys": keys}, _ring, st.lists(_sealed_key, max_size=4)),
        st.builds(lambda v, s: {"ring": {"version": v, "primary": KEY_ID, "ids": [KEY_ID]},
                                "keys": [{"id": KEY_ID, "sealed": s}]}, _BIG, _SEALED),
        st.dictionaries(st.sampled_from(["ring", "keys"]), _hostile_json, max_size=2),
    ),
    "hello": st.fixed_dictionaries({"peers": st.lists(_left_record, min_size=1, max_size=3)}),
    "register": st.fixed_dictionaries({"node": _left_record.map(lambda r: dict(r, guid=STRANGER))}),
    "did_you_hear": st.fixed_dictionaries({}, optional={
        "ring": _ring, "retention": _retention,
        "ids": st.lists(st.just(FP * 2) | st.text(alphabet="0123456789abcdef", min_size=64, max_size=64) | _PLAUSIBLE,
                        max_size=3),
    }),
    "push": st.dictionaries(st.sampled_from(["gossips", "tombstones", "retention", "prune"]), _hostile_json, max_size=3),
}


@st.composite
def v3_peer_requests(draw: st.DrawFn) -> PeerRequest:
    type_ = draw(st.sampled_from(sorted(_V3_BODIES)))
    sender = STRANGER if type_ == "register" else draw(st.sampled_from([STRANGER, B_GUID]))
    env = {"v": m.PROTOCOL_VERSION, "type": type_, "net": "default", "from": sender, "body": draw(_V3_BODIES[type_]),
           "to": None if type_ == "register" else A_GUID}
    return PeerRequest("signed", env=env, ascii_=draw(st.booleans()), cut=draw(st.integers(0, 10**6)))


#: A key announcement whose new key's sealed text is well formed but does not open: the one
#: outcome (401) that the strategies above reach only about once in 200 draws.
_UNOPENED_KEY = PeerRequest("signed", env={
    "v": m.PROTOCOL_VERSION, "type": "keys", "net": "default", "from": B_GUID, "to": A_GUID,
    "body": {"ring": {"version": 2, "primary": KEY_ID, "ids": [KEY_ID, "0" * 16]},
             "keys": [{"id": KEY_ID, "sealed": "00" * 64}, {"id": "0" * 16, "sealed": "00" * 64}]},
})


def test_peer_v3_messages_hostile(node: Node) -> None:
    @HOSTILE
    @example(req=_UNOPENED_KEY)
    @given(req=v3_peer_requests())
    def run(req: PeerRequest) -> None:
        data = build_peer_body(req)
        expected, env = peer_expect(node, data)
        if env is None and expected == {400}:
            try:  # requests peer_expect does not know: KEYS and PUSH get an answer, or a 400
                decoded = m.decode(data, _key_for)
            except Exception:
                decoded = None
            if decoded is not None and isinstance(decoded.body, (m.Keys, m.Push)):
                # 401: a sealed key that does not open with the key that signed the request
                expected, env = {200, 400, 401}, decoded
        answer = send(node, "POST", "/v1/peer", data, {"Content-Type": "application/json"}, label="POST /v1/peer v3")
        if answer.status == 200:
            assert env is not None and 200 in expected, f"accepted {data[:300]!r}"
            reply = m.decode(answer.body, _key_for)
            assert reply.re == env.nonce and type(reply.body) is m.REPLY_TYPES[type(env.body)]
            body = env.body
            if isinstance(body, m.Register):
                node.allowed_peers.add(body.node.guid)
            elif isinstance(body, m.Hello):
                node.allowed_peers.update(p.guid for p in body.peers)
            elif isinstance(body, m.DidYouHear):
                # A key names its gossip's guid (its high 128 bits): that guid may be pending.
                node.allowed_pending.update(str(uuid.UUID(int=int(k, 16) >> 128)) for k in body.ids)
        else:
            assert_error(answer, expected, what=f"v3 {data[:300]!r}")
        assert node.a.node.gossip_count() == len(node.gossips)

    run()
    assert_unchanged(node)


# ---------------------------------------------------------------------------- the totals

#: The outcomes each new endpoint's generated requests must have reached: accepted and
#: refused, so that the hostile values really got to the handlers.
REACHED = {
    "GET /v1/gossip?paging": {200, 400, 401, 403},
    "GET /v1/gossip/stream": {200, 400, 401, 403},
    "GET /v1/keys": {200, 401, 403},
    "POST /v1/keys": {200, 400, 401, 403, 404, 409},
    "POST /v1/force-leave": {400, 401, 403, 404, 409},
    "POST /v1/gossip/delete": {400, 401, 403, 404},
    "POST /v1/leave": {401, 403},
    "POST /v1/peer v3": {200, 400, 401},
}


def test_every_new_endpoint_reached_its_outcomes(node: Node) -> None:
    """Runs last: each new endpoint got its share of requests, and both outcomes."""
    if not all(SENT[e] for e in REACHED):
        pytest.skip("counts only when the whole file runs")
    for endpoint, wanted in REACHED.items():
        seen = {s for (ep, s), n in STATUSES.items() if ep == endpoint}
        print(f"  {endpoint}: {SENT[endpoint]} sent, " + ", ".join(
            f"{s}x{n}" for (ep, s), n in sorted(STATUSES.items(), key=str) if ep == endpoint))
        assert wanted <= seen, (endpoint, sorted(seen, key=str))
    assert_unchanged(node)
