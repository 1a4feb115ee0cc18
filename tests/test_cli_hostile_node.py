"""The ``gossip`` command line against a fake node on 127.0.0.1 that answers slowly, endlessly or oddly.

Issue 10, items 11-13: one deadline per call covering connect, head and body; an answer read as
it arrives and given up past a cap; errors told apart by their ``code``, never by their text.
Each fake node is a thread on a free loopback port that serves for at most :data:`SERVE_FOR`
seconds, sends at most a bounded number of bytes, and is stopped and joined by its fixture.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
import tracemalloc
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gossip import cli
from gossip.configfile import save_config
from gossip.errors import AnswerTooLarge, ErrorCode, TransportError
from gossip import client as gossip_client
from gossip.http import http_call
from gossip.model import Network, NodeConfig

from .helpers import KEYS

#: No fake node serves longer than this, whatever the client does.
SERVE_FOR = 30.0
#: The --timeout of the CLI calls below, and what "a little" more may add.
DEADLINE = 1.0
SLACK = 1.0
#: A trickle slower than nothing: each byte comes well within any per-read timeout.
EVERY = 0.2

Answer = Callable[[socket.socket, threading.Event], None]
FAKE_GUID = "1b4e28ba-2fa1-41d2-883f-0016d3cca427"


class FakeNode:
    """Reads one request per connection, then lets ``answer`` write (the client may hang up)."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(8)
        self.listener.settimeout(0.05)
        self.port = int(self.listener.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.stop = threading.Event()
        self.requests: list[bytes] = []
        #: The client closed the connection while the answer was still being written.
        self.hung_up = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="fake-node", daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        end = time.monotonic() + SERVE_FOR
        while not self.stop.is_set() and time.monotonic() < end:
            try:
                conn, _ = self.listener.accept()
            except OSError:  # the accept timed out (socket.timeout is an OSError)
                continue
            with conn:
                conn.settimeout(2.0)
                try:
                    request = _read_request(conn)
                    if request.startswith(b"GET /healthz "):
                        # Honest about who it is (the CLI signs its requests for this guid),
                        # hostile in everything else.
                        reply(200, {"status": "ok", "node_guid": FAKE_GUID})(conn, self.stop)
                    else:
                        self.requests.append(request)
                        self.answer(conn, self.stop)
                except OSError:
                    self.hung_up.set()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.listener.close()
        assert not self.thread.is_alive()


def _read_request(conn: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data and len(data) < 65536:
        chunk = conn.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")), 0)
    while len(body) < min(length, 1 << 20):
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


@pytest.fixture
def fake() -> Iterator[Callable[[Answer], FakeNode]]:
    made: list[FakeNode] = []

    def start(answer: Answer) -> FakeNode:
        node = FakeNode(answer)
        made.append(node)
        return node

    try:
        yield start
    finally:
        for node in made:
            node.close()


# ---------------------------------------------------------------------------- answers

def dribble(data: bytes, every: float = EVERY) -> Answer:
    """Send ``data`` one byte every ``every`` seconds."""

    def answer(conn: socket.socket, stop: threading.Event) -> None:
        for i in range(len(data)):
            if stop.wait(every):
                return
            conn.sendall(data[i : i + 1])

    return answer


def head_then_dribble(head: bytes, body: bytes, every: float = EVERY) -> Answer:
    def answer(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(head)
        dribble(body, every)(conn, stop)

    return answer


def flood(head: bytes, total: int) -> Answer:
    """The head, then ``total`` bytes of a JSON list as fast as the client takes them."""
    chunk = b'"' + b"x" * 65530 + b'",'

    def answer(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(head + b"[")
        sent = 0
        while sent < total and not stop.is_set():
            conn.sendall(chunk)
            sent += len(chunk)

    return answer


def reply(status: int, body: Any) -> Answer:
    data = json.dumps(body).encode()

    def answer(conn: socket.socket, stop: threading.Event) -> None:
        conn.sendall(
            f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {len(data)}\r\n"
            "Connection: close\r\n\r\n".encode() + data
        )

    return answer


OK_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n"


# ---------------------------------------------------------------------------- running the CLI

@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A config holding the network key (no password to stretch on each call)."""
    path = tmp_path / "server.json"
    save_config(path, NodeConfig(
        node_guid=str(uuid.uuid4()), node_name="me", networks=(Network(name="default", key=KEYS["default"]),),
        ip="127.0.0.1", port=9,
    ))
    return path


def gossip(capsys: pytest.CaptureFixture[str], config: Path, node: FakeNode, *argv: str) -> tuple[int, str, float]:
    """Run ``gossip ARGV --node URL --config PATH``; the exit status, the one error line, seconds."""
    start = time.monotonic()
    status = cli.main([*argv, "--node", node.url, "--config", str(config)])
    seconds = time.monotonic() - start
    out, err = capsys.readouterr()
    if status != 0:
        assert out == "" and err.startswith("gossip: error: ") and err.count("\n") == 1, err
        assert "Traceback" not in err
    return status, err, seconds


# ---------------------------------------------------------------------------- 11. one deadline per call

@pytest.mark.parametrize("part", ["head", "body"])
def test_http_call_has_one_deadline_for_an_answer_sent_a_byte_at_a_time(
    fake: Callable[[Answer], FakeNode], part: str
) -> None:
    body = b'["' + b"x" * 60 + b'"]'
    head = f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    node = fake(dribble(head + body) if part == "head" else head_then_dribble(head, body))
    start = time.monotonic()
    with pytest.raises(TransportError) as caught:
        http_call(f"{node.url}/v1/gossip", timeout=DEADLINE)
    seconds = time.monotonic() - start
    assert DEADLINE * 0.9 <= seconds < DEADLINE + SLACK, seconds
    assert caught.value.status is None and caught.value.timed_out
    assert caught.value.reason == f"no complete answer within {DEADLINE:g} s"


@pytest.mark.parametrize("part", ["head", "body"])
def test_status_gives_up_on_a_node_that_trickles_its_answer(
    fake: Callable[[Answer], FakeNode], config: Path, capsys: pytest.CaptureFixture[str], part: str
) -> None:
    """A byte every 0.2 s never trips a per-read timeout; the call's one deadline ends it."""
    node = fake(dribble(OK_HEAD + b"[]") if part == "head" else head_then_dribble(OK_HEAD, b"[]", every=3.0))
    status, err, seconds = gossip(capsys, config, node, "status", "--timeout", str(DEADLINE))
    assert status == cli.EXIT_FAILURE
    assert DEADLINE * 0.9 <= seconds < DEADLINE + SLACK, seconds
    assert f"the node at {node.url} did not answer /v1/gossip in full within {DEADLINE:g} s" in err
    assert "--timeout SECONDS waits longer" in err


def test_http_call_works_and_keeps_its_deadline_where_a_loop_already_runs(fake: Callable[[Answer], FakeNode]) -> None:
    """Callers inside asyncio (or Playwright's sync API, or Jupyter) get the same blocking call."""
    quick = fake(reply(200, ["ok"]))
    slow = fake(dribble(OK_HEAD + b"[]"))

    async def inside() -> tuple[tuple[int, bytes], float]:
        answer = http_call(f"{quick.url}/", timeout=5)
        start = time.monotonic()
        with pytest.raises(TransportError):
            http_call(f"{slow.url}/", timeout=DEADLINE)
        return answer, time.monotonic() - start

    answer, seconds = asyncio.run(inside())
    assert answer == (200, b'["ok"]') and seconds < DEADLINE + SLACK


def test_connecting_counts_against_the_deadline(fake: Callable[[Answer], FakeNode]) -> None:
    """A listener whose accept queue is full drops new SYNs: the connect itself hangs."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(4):  # fill the accept queue (nobody accepts)
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(("127.0.0.1", port))
            fillers.append(s)
        time.sleep(0.1)
        start = time.monotonic()
        with pytest.raises(TransportError) as caught:
            http_call(f"http://127.0.0.1:{port}/v1/gossip", timeout=DEADLINE)
        assert time.monotonic() - start < DEADLINE + SLACK and caught.value.timed_out
    finally:
        for s in fillers:
            s.close()
        listener.close()


def test_the_deadline_is_ten_seconds_unless_told(config: Path, monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    waits: list[tuple[str, float, int]] = []

    def recording(self: cli.Client, method: str, path: str, payload: Any = None, *, query: Any = None,
                  timeout: float | None = None) -> tuple[int, Any, dict[str, str]]:
        waits.append((path.rpartition("/")[2], timeout or 0.0, self._async.max_answer))
        peer = {"peer": {"name": "x", "guid": "g", "ip": "127.0.0.1", "port": 1}}
        return 200, peer if "register" in path else [], {}

    monkeypatch.setattr(cli.Client, "request", recording)
    for argv in (["status"], ["status", "--timeout", "2.5"], ["register", "127.0.0.1:1"],
                 ["register", "127.0.0.1:1", "--timeout", "3"], ["network", "--max-answer", "2"]):
        assert cli.main([*argv, "--node", "http://127.0.0.1:9", "--config", str(config)]) == 0, capsys.readouterr()
    assert waits == [
        ("gossip", 10.0, 64 << 20), ("gossip", 2.5, 64 << 20), ("register", cli.REGISTER_TIMEOUT, 64 << 20),
        ("register", 3.0, 64 << 20), ("peers", 10.0, 2 << 20),
    ]
    for bad in ("0", "-1", "nan", "inf", "soon"):
        assert cli.main(["status", "--timeout", bad]) == cli.EXIT_USAGE
    assert cli.main(["status", "--max-answer", "0"]) == cli.EXIT_USAGE
    capsys.readouterr()


# ---------------------------------------------------------------------------- 12. a bounded answer

def test_status_stops_reading_an_endless_answer_at_the_cap(
    fake: Callable[[Answer], FakeNode], config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """No Content-Length, 48 MiB offered: the CLI reads 1 MiB (--max-answer 1) and stops."""
    node = fake(flood(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n", 48 << 20))
    tracemalloc.start()
    try:
        status, err, seconds = gossip(capsys, config, node, "status", "--max-answer", "1", "--timeout", "10")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert status == cli.EXIT_FAILURE
    assert f"the node at {node.url} answered /v1/gossip with more than 1 MiB; stopped reading" in err
    assert "--max-answer MIB" in err
    assert peak < 8 << 20, f"{peak / (1 << 20):.1f} MiB held for a 1 MiB cap"
    assert seconds < 5


def test_an_answer_that_declares_more_than_the_cap_is_refused_before_its_body(
    fake: Callable[[Answer], FakeNode], config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The default cap is 64 MiB: a Content-Length above it is refused without reading on."""
    assert cli.MAX_ANSWER == 64 << 20
    declared = (64 << 20) + 1
    node = fake(flood(f"HTTP/1.1 200 OK\r\nContent-Length: {declared}\r\n\r\n".encode(), 48 << 20))
    tracemalloc.start()
    try:
        status, err, seconds = gossip(capsys, config, node, "network", "--timeout", "10")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert status == cli.EXIT_FAILURE and "answered /v1/peers with more than 64 MiB" in err
    assert peak < 4 << 20 and seconds < 5, (peak, seconds)


@pytest.mark.parametrize("framing", ["length", "close"])
def test_http_call_reads_up_to_the_cap_and_no_further(fake: Callable[[Answer], FakeNode], framing: str) -> None:
    def answer_of(size: int) -> Answer:
        def answer(conn: socket.socket, stop: threading.Event) -> None:
            length = f"Content-Length: {size}\r\n" if framing == "length" else ""
            conn.sendall(f"HTTP/1.1 200 OK\r\n{length}Connection: close\r\n\r\n".encode() + b"z" * size)

        return answer

    assert http_call(f"{fake(answer_of(1000)).url}/", max_answer=1000, timeout=5) == (200, b"z" * 1000)
    with pytest.raises(AnswerTooLarge) as caught:
        http_call(f"{fake(answer_of(1001)).url}/", max_answer=1000, timeout=5)
    assert caught.value.limit == 1000 and caught.value.status is None


# ---------------------------------------------------------------------------- 13. errors by code

CASES = [
    # (status, body, what the message must say, what it must not)
    (401, {"code": "clock_skew", "error": "message timestamp is +1200s off"}, "clock and the node's differ", "credentials"),
    (401, {"code": "bad_mac", "error": "the clock says so"}, "refused our credentials for network default", "differ"),
    (401, {"code": "wrong_network", "error": "this node is not on network 'default'"}, "wrong network or password", "clock"),
    (401, {"code": "replayed", "error": "seen that"}, "took our request for a replay", "credentials"),
    (429, {"code": "quota", "error": "30 creates a minute"}, "a limit of the network was reached (30 creates a minute)", "HTTP 429"),
    (503, {"code": "unavailable", "error": "starting"}, "is starting or busy (starting); try again shortly", "HTTP"),
    (507, {"code": "storage_failed", "error": "disk full"}, "could not write to its disk (disk full); nothing was kept", "HTTP"),
    (413, {"code": "too_large", "error": "body of 2 MB"}, "refused the request as too large: body of 2 MB", "HTTP"),
    (400, {"code": "bad_request", "error": "msg must be a string"}, "the node refused the request: msg must be a string", "HTTP"),
    (404, {"code": "not_found", "error": "no route"}, "is --node the address of a gossip node?", "credentials"),
    (500, {"code": "internal", "error": "internal error"}, "its log has the details", "credentials"),
    # An error body without a code (an older node): by its status.
    (401, {"error": "wrong password"}, "refused our credentials", "clock"),
    # A code this version does not know: by its status too.
    (503, {"code": "brand_new", "error": "later"}, "is starting or busy", "HTTP"),
    # Not an error body at all.
    (502, ["odd"], "HTTP 502; is --node the address of a gossip node?", "credentials"),
]


@pytest.mark.parametrize(("status", "body", "says", "not_says"), CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def test_the_cli_tells_errors_apart_by_their_code(
    fake: Callable[[Answer], FakeNode], config: Path, capsys: pytest.CaptureFixture[str],
    status: int, body: Any, says: str, not_says: str,
) -> None:
    node = fake(reply(status, body))
    code, err, _ = gossip(capsys, config, node, "create", "hello")
    assert code == cli.EXIT_FAILURE
    assert says in err and not_says not in err, err


REGISTER_CASES = [
    (403, {"code": "peer_refused", "cause": "clock_skew", "error": "10.0.0.9:8470 refused the registration: the clocks differ too much"},
     "cannot register: 10.0.0.9:8470 refused the registration: the clocks differ too much; the clocks of both machines must agree"),
    (403, {"code": "peer_refused", "cause": "bad_mac", "error": "10.0.0.9:8470 refused the registration: the clocks, it said"},
     "refused the registration: the clocks, it said; both nodes need the same network and password"),
    (403, {"code": "peer_refused", "error": "10.0.0.9:8470 refused the registration"},
     "both nodes need the same network and password"),
    (502, {"code": "peer_unreachable", "error": "10.0.0.9:8470 did not answer (connection refused)"},
     "cannot register: 10.0.0.9:8470 did not answer (connection refused); is a gossip node running there?"),
    (403, {"code": "wrong_network", "error": "you authenticated for network 'a', not 'b'"},
     "refused our credentials for network default"),
]


@pytest.mark.parametrize(("status", "body", "says"), REGISTER_CASES, ids=[c[1].get("cause", c[1]["code"]) for c in REGISTER_CASES])
def test_register_tells_refusals_apart_by_code_and_cause(
    fake: Callable[[Answer], FakeNode], config: Path, capsys: pytest.CaptureFixture[str],
    status: int, body: Any, says: str,
) -> None:
    node = fake(reply(status, body))
    code, err, _ = gossip(capsys, config, node, "register", "10.0.0.9:8470")
    assert code == cli.EXIT_FAILURE and says in err, err
    assert json.loads(node.requests[0].partition(b"\r\n\r\n")[2]) == {"address": "10.0.0.9:8470"}
    assert ErrorCode.from_wire(body["code"]) is not None


@pytest.mark.parametrize("ahead_s, followed", [(120.0, True), (-600.0, True), (3600.0, False)])
def test_the_cli_signs_for_the_node_and_on_its_clock_within_the_window(
    config: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], ahead_s: float, followed: bool
) -> None:
    """Issue 10, item 1: requests are signed for the node's guid, stamped on the node's clock
    (it refuses client timestamps from before it started) but only within the 15-minute window."""
    headers: list[str] = []

    async def recording(self: Any, request: bytes, method: str, *, retry: bool) -> Any:
        head = request.partition(b"\r\n\r\n")[0].decode("latin-1")
        if head.startswith("GET /healthz "):
            body = json.dumps({"status": "ok", "node_guid": FAKE_GUID, "time_ms": int((time.time() + ahead_s) * 1000)})
            return gossip_client.Answer(200, body.encode(), {})
        headers.extend(line.partition(": ")[2] for line in head.split("\r\n") if line.startswith("X-Gossip-Auth: "))
        return gossip_client.Answer(200, b"[]", {})

    monkeypatch.setattr(gossip_client.AsyncClient, "_exchange", recording)
    assert cli.main(["status", "--node", "http://127.0.0.1:9", "--config", str(config)]) == 0, capsys.readouterr()
    [header] = headers
    fields = dict(part.split("=", 1) for part in header.split(", "))
    assert fields["node"] == FAKE_GUID
    expected = time.time() + (ahead_s if followed else 0.0)
    assert abs(int(fields["ts"]) / 1000 - expected) < 5
