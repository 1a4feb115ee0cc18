"""Every error answer carries a stable ``code`` beside its ``error`` text (issue 10, item 13).

In-process runners on 127.0.0.1 are made to refuse in each way they can: the client API
(authentication, routes, bodies, storage, bugs), the peer endpoint, the HTTP server's own
refusals (400/408/411/413/431/503) and ``POST /v1/register`` (the other node's refusal and
its cause). Each answer's ``code`` must be the documented one, and docs/http-api.md must list
exactly the codes of :class:`gossip.errors.ErrorCode` with their statuses.
"""

from __future__ import annotations

import json
import re
import secrets
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gossip import messages as m
from gossip.auth import client_auth_header
from gossip.errors import ErrorCode, StorageError
from gossip.events import RegisterFailed
from gossip.http import HttpTransport, Limits, NodeRunner, data_dir_for, http_call
from gossip.model import Network, NodeConfig
from gossip.storage.jsonfile import JsonFileStorage

from .helpers import KEYS
from .nodeproc import free_port

ROOT = Path(__file__).resolve().parent.parent
STRANGER = str(uuid.UUID(int=0x5EED, version=4))
WAIT = 5.0


def make_runner(tmp_path: Path, name: str, *, key: bytes = KEYS["default"], clock_offset: float = 0.0,
                limits: Limits | None = None, port: int | None = None, guid: str | None = None) -> NodeRunner:
    """A runner on 127.0.0.1 with a JSON store under ``tmp_path`` (not started); ``port`` and
    ``guid`` given to start a node again as itself."""
    config = NodeConfig(
        node_guid=guid or str(uuid.uuid4()),
        node_name=name,
        networks=(Network(name="default", key=key),),
        ip="127.0.0.1",
        port=port or free_port(),
        gossip_timer=0.2,
    )
    transport = HttpTransport(limits=limits)
    runner = NodeRunner(config, JsonFileStorage(data_dir_for(tmp_path / f"{name}.json")), transport=transport,
                        clock=lambda: time.time() + clock_offset)
    transport.app = runner.api.handle  # the app is the runner's, which needs the transport first
    return runner


@pytest.fixture
def runners(tmp_path: Path) -> Iterator[Callable[..., NodeRunner]]:
    started: list[NodeRunner] = []

    def start(name: str, **kw: Any) -> NodeRunner:
        runner = make_runner(tmp_path, name, **kw)
        started.append(runner)
        runner.start()
        return runner

    try:
        yield start
    finally:
        for runner in started:
            runner.stop()


def signed(method: str, path: str, body: bytes = b"", *, node: str, network: str = "default", key: bytes | None = None,
           ts: int | None = None, query: str = "") -> dict[str, str]:
    q = {k: [v] for k, v in (p.split("=") for p in query.split("&"))} if query else {}
    header = client_auth_header(network=network, node=node, key=key or KEYS["default"], method=method, path=path, query=q,
                                body=body, ts=ts if ts is not None else int(time.time() * 1000),
                                nonce=secrets.token_hex(12))
    return {"X-Gossip-Auth": header}


def error_of(status: int, body: bytes) -> tuple[int, str, dict[str, Any]]:
    """(status, code, body) of an error answer, checking the body's shape."""
    data = json.loads(body)
    assert isinstance(data, dict) and data["type"] == "error" and data["status"] == status, data
    assert isinstance(data["error"], str) and data["error"], data
    assert ErrorCode(data["code"]) is not None, data  # one of the closed set
    return status, data["code"], data


def api(runner: NodeRunner, method: str, path: str, body: Any = None, *, query: str = "",
        headers: dict[str, str] | None = None, **sign: Any) -> tuple[int, str, dict[str, Any]]:
    data = b"" if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
    url = f"http://127.0.0.1:{runner.config.port}{path}" + (f"?{query}" if query else "")
    auth = signed(method, path, data, node=runner.node.guid, query=query, **sign) if headers is None else headers
    status, answer = http_call(url, method=method, body=data if body is not None else None, headers=auth,
                               timeout=WAIT)
    return error_of(status, answer)


def raw(port: int, data: bytes, *, then: float = 0.0) -> tuple[int, bytes]:
    """Send raw bytes (and wait ``then`` s more without sending); read the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
        s.sendall(data)
        time.sleep(then)
        chunks = []
        end = time.monotonic() + WAIT
        while time.monotonic() < end:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    return int(head.split(b" ")[1]), body


# ---------------------------------------------------------------------------- the one list, documented

def documented_codes() -> dict[str, set[int]]:
    """The "Error codes" table of docs/http-api.md: code -> statuses."""
    text = (ROOT / "docs" / "http-api.md").read_text(encoding="utf-8")
    section = text.split("### Error codes", 1)[1].split("\n#", 1)[0]
    rows = re.findall(r"^\| `([a-z_]+)` \| ([0-9, ]+) \|", section, flags=re.M)
    assert rows, "docs/http-api.md has no error code table"
    return {code: {int(s) for s in statuses.split(",")} for code, statuses in rows}


def test_docs_list_every_code_with_its_statuses() -> None:
    table = documented_codes()
    assert set(table) == {c.value for c in ErrorCode}
    for status in (400, 401, 403, 404, 405, 408, 411, 413, 429, 431, 500, 502, 503, 507):
        assert status in table[ErrorCode.for_status(status)], status
    assert ErrorCode.from_wire("no_such_code") is None and ErrorCode.from_wire(401) is None


# ---------------------------------------------------------------------------- the client API

def test_client_api_refusals_carry_their_code(runners: Callable[..., NodeRunner]) -> None:
    a = runners("a")
    assert api(a, "GET", "/v1/gossip", headers={})[:2] == (401, "bad_mac")  # no signature at all
    assert api(a, "GET", "/v1/gossip", headers={"X-Gossip-Auth": "nonsense"})[:2] == (401, "bad_mac")
    assert api(a, "GET", "/v1/gossip", key=KEYS["other"])[:2] == (401, "bad_mac")  # wrong password
    assert api(a, "GET", "/v1/gossip", network="other", key=KEYS["other"])[:2] == (401, "wrong_network")
    assert api(a, "GET", "/v1/gossip", query="network=other")[:2] == (403, "wrong_network")
    _, code, body = api(a, "GET", "/v1/gossip", ts=int((time.time() - 3600) * 1000))
    assert code == "clock_skew" and body["status"] == 401
    once = signed("GET", "/v1/peers", node=a.node.guid)
    assert http_call(f"http://127.0.0.1:{a.config.port}/v1/peers", headers=once, timeout=WAIT)[0] == 200
    assert api(a, "GET", "/v1/peers", headers=once)[:2] == (401, "replayed")
    assert api(a, "POST", "/v1/gossip", b"{not json")[:2] == (400, "bad_request")
    assert api(a, "POST", "/v1/gossip", {"msg": 5})[:2] == (400, "bad_request")
    assert api(a, "POST", "/v1/register", {"address": "nowhere"})[:2] == (400, "bad_request")
    assert api(a, "GET", "/v1/nothing-here")[:2] == (404, "not_found")
    assert api(a, "DELETE", "/v1/gossip")[:2] == (405, "method_not_allowed")
    assert api(a, "POST", "/v1/gossip", b"x" * (m.MAX_MESSAGE_BYTES + 1))[:2] == (413, "too_large")


def test_storage_failures_and_bugs_carry_their_code(runners: Callable[..., NodeRunner],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    a = runners("a")

    def disk_full(added: object, removed: object, cursors: object = None) -> None:
        raise StorageError("gossip.jsonl: no space left on device")

    monkeypatch.setattr(a.storage, "write_items", disk_full)
    assert api(a, "POST", "/v1/gossip", {"msg": "lost"})[:2] == (507, "storage_failed")

    def broken(network: str | None = None, **page: Any) -> list[Any]:
        raise RuntimeError("a bug")

    monkeypatch.setattr(a.node, "gossip_page", broken)
    _, code, body = api(a, "GET", "/v1/gossip")
    assert (body["status"], code) == (500, "internal") and "a bug" not in body["error"]


# ---------------------------------------------------------------------------- the server's own refusals

def test_the_servers_own_refusals_carry_their_code(runners: Callable[..., NodeRunner]) -> None:
    a = runners("a", limits=Limits(body_grace=0.3, min_body_rate=1024.0))
    port = a.config.port
    assert error_of(*raw(port, b"BREW /coffee HTTP/9.9\r\n\r\n"))[:2] == (400, "bad_request")
    assert error_of(*raw(port, b"POST /v1/gossip HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"))[:2] == (
        411, "bad_request")
    assert error_of(*raw(port, b"POST /v1/peer HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999\r\n\r\n"))[:2] == (
        413, "too_large")
    long_head = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"p" * (70 * 1024) + b"\r\n\r\n"
    assert error_of(*raw(port, long_head))[:2] == (431, "too_large")
    # A body that stops arriving: 408 once its time (0.3 s + 1 s per KiB) is up.
    slow = b"POST /v1/peer HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n" + b"{"
    assert error_of(*raw(port, slow, then=0.2))[:2] == (408, "timeout")
    status, body = http_call(f"http://127.0.0.1:{port}/v1/gossip", method="POST", timeout=WAIT)  # no length
    assert error_of(status, body)[:2] == (411, "bad_request")
    # Unauthenticated bytes held past the budget (4 KiB here): 503 to the one holding most.
    tight = runners("tight", limits=Limits(max_buffered=4096))
    hog = b"POST /v1/peer HTTP/1.1\r\nHost: x\r\nContent-Length: 60000\r\n\r\n" + b"x" * 8000
    assert error_of(*raw(tight.config.port, hog))[:2] == (503, "unavailable")


# ---------------------------------------------------------------------------- the peer endpoint

def peer_request(to: str, key: bytes = KEYS["default"], ts: float | None = None) -> bytes:
    when = int((time.time() if ts is None else ts) * 1000)
    return m.encode(m.Hello(), network="default", sender=STRANGER, key=key, nonce=secrets.token_hex(12), ts=when, to=to)


def test_peer_endpoint_refusals_carry_their_code(runners: Callable[..., NodeRunner]) -> None:
    a = runners("a")
    url = f"http://127.0.0.1:{a.config.port}/v1/peer"

    def post(data: bytes) -> tuple[int, str]:
        return error_of(*http_call(url, method="POST", body=data, timeout=WAIT))[:2]

    assert post(b"{garbage") == (400, "bad_request")
    assert post(peer_request(a.node.guid, KEYS["other"])) == (401, "bad_mac")
    assert post(peer_request(a.node.guid, ts=time.time() - 3600)) == (401, "clock_skew")
    assert post(peer_request(STRANGER)) == (401, "replayed")  # addressed to another node
    once = peer_request(a.node.guid)
    assert http_call(url, method="POST", body=once, timeout=WAIT)[0] == 200
    assert post(once) == (401, "replayed")
    assert post(b" " * (m.MAX_MESSAGE_BYTES + 1)) == (413, "too_large")
    assert error_of(*http_call(url, timeout=WAIT))[:2] == (405, "method_not_allowed")


# ---------------------------------------------------------------------------- POST /v1/register

def test_a_refused_registration_says_why_by_code(runners: Callable[..., NodeRunner]) -> None:
    a = runners("a")
    other_password = runners("other", key=KEYS["other"])
    skewed = runners("skewed", clock_offset=1200.0)  # 20 minutes ahead: beyond the 15-minute window
    _, code, body = api(a, "POST", "/v1/register", {"address": f"127.0.0.1:{other_password.config.port}"})
    assert (body["status"], code, body["cause"]) == (403, "peer_refused", "bad_mac")
    assert "password differs" in body["error"]
    _, code, body = api(a, "POST", "/v1/register", {"address": f"127.0.0.1:{skewed.config.port}"})
    assert (body["status"], code, body["cause"]) == (403, "peer_refused", "clock_skew")
    assert "the clocks differ too much" in body["error"]
    nowhere = f"127.0.0.1:{free_port()}"
    _, code, body = api(a, "POST", "/v1/register", {"address": nowhere})
    assert (body["status"], code, "cause" in body) == (502, "peer_unreachable", False)
    assert body["error"] == f"{nowhere} did not answer (connection refused)"


def test_register_failed_events_carry_the_refusals_code(runners: Callable[..., NodeRunner]) -> None:
    a = runners("a")
    skewed = runners("skewed", clock_offset=-1200.0)
    event = a.register("127.0.0.1", skewed.config.port, "default")
    assert isinstance(event, RegisterFailed)
    assert (event.status, event.code) == (401, ErrorCode.CLOCK_SKEW)
    assert "off this node's clock" in event.reason and "127.0.0.1" not in event.reason  # the refusal's own text
    event = a.register("127.0.0.1", free_port(), "default")
    assert isinstance(event, RegisterFailed)
    assert (event.status, event.code, event.reason) == (None, None, "connection refused")
