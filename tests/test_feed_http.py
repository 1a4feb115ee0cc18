"""The change feed over HTTP: paged listing, the stream, gossip.Client and gossip.AsyncClient
against in-process runners on 127.0.0.1."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gossip import AsyncClient, Client, NodeError
from gossip.errors import ErrorCode
from gossip.http import NodeRunner
from gossip.model import MAX_MSG_CHARS

from .helpers import KEYS
from .test_error_codes import make_runner, runners  # noqa: F401  (runners: a fixture)

PASSWORD_KEY = KEYS["default"]


def client_of(runner: NodeRunner, **kw: Any) -> Client:
    return Client(f"http://127.0.0.1:{runner.config.port}", key=PASSWORD_KEY, **kw)


def test_paging_order_filter_and_next(runners: Callable[..., NodeRunner]) -> None:
    a = runners("alpha")
    with client_of(a) as client:
        made = [client.create(f"{'Red' if i % 2 else 'blue'} item {i}") for i in range(25)]
        page = client.page(limit=10)
        assert [r["msg"] for r in page.rows] == [g["msg"] for g in made[:10]]
        assert page.next == page.rows[-1]["cursor"] and page.cursor == 25
        second = client.page(after=page.next, limit=10)
        assert [r["guid"] for r in second.rows] == [g["guid"] for g in made[10:20]]
        last = client.page(after=second.next or 0, limit=10)
        assert len(last.rows) == 5 and last.next is None
        newest = client.page(limit=3, newest=True)
        assert [r["guid"] for r in newest.rows] == [g["guid"] for g in made[-1:-4:-1]]
        older = client.page(before=newest.next, limit=3, newest=True)
        assert [r["guid"] for r in older.rows] == [g["guid"] for g in made[-4:-7:-1]]
        red = client.status(grep="RED")
        assert [r["guid"] for r in red] == [g["guid"] for i, g in enumerate(made) if i % 2]
        assert [r["guid"] for r in client.status()] == [g["guid"] for g in made]  # paged under the hood
        assert len(client.status(limit=7)) == 7
        cursors = [r["cursor"] for r in client.status()]
        assert cursors == sorted(cursors) and len(set(cursors)) == 25
        assert [r["guid"] for r in client.status(since=cursors[19])] == [g["guid"] for g in made[20:]]


@pytest.mark.parametrize("query", [
    {"limit": "0"}, {"limit": "10001"}, {"limit": "x"}, {"after": "-1"}, {"after": "1.5"},
    {"before": "0"}, {"order": "sideways"}, {"q": "x" * 1001}, {"after": "9" * 40},
])
def test_bad_paging_parameters_are_400_bad_request(runners: Callable[..., NodeRunner], query: dict[str, str]) -> None:
    a = runners("alpha")
    with client_of(a) as client:
        status, data, _ = client.request("GET", "/v1/gossip", query=query)
        assert status == 400 and data["code"] == "bad_request"
        status, data, _ = client.request("GET", "/v1/gossip/stream", query=query)
        assert status == 400 and data["code"] == "bad_request"
        with pytest.raises(NodeError) as caught:
            client.page(limit=0)
        assert caught.value.code is ErrorCode.BAD_REQUEST and caught.value.status == 400


def test_listing_without_parameters_is_capped_and_says_how_to_go_on(
    runners: Callable[..., NodeRunner], monkeypatch: pytest.MonkeyPatch
) -> None:
    from gossip.http import api

    a = runners("alpha")
    monkeypatch.setattr(api, "PAGE_LIMIT", 3)
    with client_of(a) as client:
        made = [client.create(f"m{i}") for i in range(5)]
        status, rows, headers = client.request("GET", "/v1/gossip")  # as an old caller asks
        assert status == 200 and [r["guid"] for r in rows] == [g["guid"] for g in made[:3]]
        assert headers["gossip-cursor"] == "5" and headers["gossip-next"] == str(rows[-1]["cursor"])
        status, rows, headers = client.request("GET", "/v1/gossip", query={"after": headers["gossip-next"]})
        assert [r["guid"] for r in rows] == [g["guid"] for g in made[3:]] and "gossip-next" not in headers


def test_stream_delivers_gossip_created_on_another_node_within_a_second(runners: Callable[..., NodeRunner]) -> None:
    a, b = runners("alpha"), runners("bravo")
    b.register("127.0.0.1", a.config.port)
    got: list[dict[str, Any]] = []
    arrived = threading.Event()
    with client_of(b) as watcher, client_of(a) as creator:

        def watch() -> None:
            for row in watcher.watch():
                got.append(row)
                arrived.set()
                return

        thread = threading.Thread(target=watch, daemon=True)
        thread.start()
        time.sleep(0.5)  # the stream is open
        made = creator.create("hello from alpha")
        start = time.monotonic()
        assert arrived.wait(5.0)
        took = time.monotonic() - start
        thread.join(5.0)
    assert got[0]["guid"] == made["guid"] and got[0]["msg"] == "hello from alpha" and got[0]["cursor"] >= 1
    assert took < 1.0, took


def raw_stream(port: int, runner: NodeRunner, query: str = "", seconds: float = 1.0, headers: str = "") -> bytes:
    """The bytes a stream sends in ``seconds`` (signed with the network key)."""
    from gossip.auth import client_auth_header
    import secrets

    q = dict(p.split("=") for p in query.split("&")) if query else {}
    auth = client_auth_header(network="default", node=runner.node.guid, key=PASSWORD_KEY, method="GET",
                              path="/v1/gossip/stream", query={k: [v] for k, v in q.items()}, body=b"",
                              ts=int(time.time() * 1000), nonce=secrets.token_hex(12))
    target = "/v1/gossip/stream" + (f"?{query}" if query else "")
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nX-Gossip-Auth: {auth}\r\n{headers}\r\n".encode())
        data = b""
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            data += chunk
    return data


def test_idle_stream_sends_only_keep_alives(runners: Callable[..., NodeRunner]) -> None:
    a = runners("alpha")
    a.feed.keepalive = 0.2
    data = raw_stream(a.config.port, a, seconds=1.5)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"text/event-stream" in head
    events = [e for e in body.split(b"\n\n") if e]
    assert events[0] == b"retry: 1000"
    assert set(events[1:]) == {b": keep-alive"} and 4 <= len(events[1:]) <= 8, events
    assert len(body) < 200  # bytes in 1.5 s of idling: comments only


def test_stream_resumes_after_a_cursor_without_loss_or_duplicates(runners: Callable[..., NodeRunner]) -> None:
    a = runners("alpha")
    with client_of(a) as client:
        made = [client.create(f"m{i}") for i in range(6)]
        cursors = [r["cursor"] for r in client.status()]
        # from a cursor: the rest, in order, then live ones
        body = raw_stream(a.config.port, a, query=f"after={cursors[2]}", seconds=0.5)
        ids = [int(line[4:]) for line in body.split(b"\n") if line.startswith(b"id: ")]
        assert ids == cursors[3:]
        # Last-Event-ID does the same (EventSource style)
        body = raw_stream(a.config.port, a, seconds=0.5, headers=f"Last-Event-ID: {cursors[4]}\r\n")
        assert [int(line[4:]) for line in body.split(b"\n") if line.startswith(b"id: ")] == cursors[5:]
        # a filtered stream
        body = raw_stream(a.config.port, a, query="after=0&q=M5", seconds=0.5)
        assert [int(line[4:]) for line in body.split(b"\n") if line.startswith(b"id: ")] == [cursors[5]]
    assert len(made) == 6


def test_streams_are_bounded_per_client_and_end_when_the_node_stops(tmp_path: Path) -> None:
    a = make_runner(tmp_path, "alpha")
    a.start()
    a.feed.max_per_client = 2
    socks = []
    try:
        from gossip.auth import client_auth_header
        import secrets

        def open_stream() -> tuple[socket.socket, bytes]:
            auth = client_auth_header(network="default", node=a.node.guid, key=PASSWORD_KEY, method="GET",
                                      path="/v1/gossip/stream", query={}, body=b"", ts=int(time.time() * 1000),
                                      nonce=secrets.token_hex(12))
            sock = socket.create_connection(("127.0.0.1", a.config.port), timeout=5)
            sock.sendall(f"GET /v1/gossip/stream HTTP/1.1\r\nHost: x\r\nX-Gossip-Auth: {auth}\r\n\r\n".encode())
            return sock, sock.recv(4096)

        for _ in range(2):
            sock, first = open_stream()
            socks.append(sock)
            assert first.startswith(b"HTTP/1.1 200")
        sock, refused = open_stream()
        socks.append(sock)
        assert refused.startswith(b"HTTP/1.1 429") and b'"too_many_streams"' in refused
        assert a.feed.streams == 2
        socks[0].close()
        deadline = time.monotonic() + 3
        while a.feed.streams != 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert a.feed.streams == 1  # a client that goes away frees its slot at once
        started = time.monotonic()
        a.stop()
        assert time.monotonic() - started < 3
        socks[1].settimeout(3)
        rest = b""
        while chunk := socks[1].recv(4096):
            rest += chunk
        assert a.feed.streams == 0  # the stream ended, and the connection closed (recv saw EOF)
    finally:
        a.stop()
        for sock in socks:
            sock.close()


def test_async_client_against_a_real_node(runners: Callable[..., NodeRunner]) -> None:
    a = runners("alpha")

    async def main() -> list[str]:
        async with AsyncClient(f"http://127.0.0.1:{a.config.port}", key=PASSWORD_KEY) as client:
            first = await client.create("one")
            seen: list[str] = []

            async def follow() -> None:
                async for row in client.watch(since=0):
                    seen.append(row["msg"])
                    if len(seen) == 3:
                        return

            task = asyncio.create_task(follow())
            await asyncio.sleep(0.3)
            await client.create("two")
            await client.create("three")
            await asyncio.wait_for(task, 5)
            assert (await client.status())[0]["guid"] == first["guid"]
            assert (await client.network())[0]["self"] is True
            with pytest.raises(NodeError) as caught:
                await client.create("x" * (MAX_MSG_CHARS + 1))
            assert caught.value.code is ErrorCode.BAD_REQUEST and caught.value.status == 400
            return seen

    assert asyncio.run(main()) == ["one", "two", "three"]


def test_wrong_password_raises_node_error_with_its_code(runners: Callable[..., NodeRunner]) -> None:
    a = runners("alpha")
    with Client(f"http://127.0.0.1:{a.config.port}", password="not it") as client:
        with pytest.raises(NodeError) as caught:
            client.create("x")
        assert caught.value.code is ErrorCode.BAD_MAC and caught.value.status == 401
        with pytest.raises(NodeError):
            next(iter(client.watch()))


def test_a_client_from_a_config_file_uses_its_address_and_key(runners: Callable[..., NodeRunner], tmp_path: Path) -> None:
    from gossip.configfile import save_config

    a = runners("alpha")
    path = tmp_path / "server.json"
    save_config(path, a.config)
    with Client.from_config(path) as client:
        assert client.url == f"http://127.0.0.1:{a.config.port}" and client.network_name == "default"
        assert client.create("from the config")["msg"] == "from the config"
    with pytest.raises(Exception, match="not on network"):
        Client.from_config(path, network="elsewhere")


def test_a_long_gossip_travels_whole_through_the_stream(runners: Callable[..., NodeRunner]) -> None:
    a = runners("alpha")
    text = "\u0001\u00e9" * 30_000  # escaped or multi-byte: a long line of the stream
    with client_of(a) as client:
        made = client.create(text)
        row = next(iter(client.watch(since=0)))
    assert row["guid"] == made["guid"] and row["msg"] == text


def test_client_register_and_network(runners: Callable[..., NodeRunner]) -> None:
    a, b = runners("alpha"), runners("bravo")
    with client_of(b) as client:
        peer = client.register(f"127.0.0.1:{a.config.port}")
        assert peer["name"] == "alpha" and peer["guid"] == a.node.guid
        rows = client.network()
        assert [r["name"] for r in rows] == ["bravo", "alpha"] and rows[0]["self"] is True
        with pytest.raises(NodeError) as caught:
            client.register("not an address")
        assert caught.value.code is ErrorCode.BAD_REQUEST
