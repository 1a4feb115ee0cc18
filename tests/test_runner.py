"""The runner in-process: client API routes, auth, metrics, persist-before-ack."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gossip.auth import client_auth_header
from gossip.http import NodeRunner, data_dir_for, parse_hostport
from gossip.errors import LocalProtocolError, StorageError, StorageInUse
from gossip.events import Registered
from gossip.model import Network, NodeConfig
from gossip.storage.jsonfile import JsonFileStorage
from gossip.http import http_call

from .helpers import KEYS
from .nodeproc import free_port, wait_for


#: Where the runners of a test write (NodeRunner's writer_thread): every test runs both ways.
WRITER_THREAD = True


@pytest.fixture(autouse=True, params=[True, False], ids=["writer-thread", "writes-on-loop"])
def _writes(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(f"{__name__}.WRITER_THREAD", request.param)


def make_runner(tmp_path: Path, name: str, networks: tuple[str, ...] = ("default",),
                loop: asyncio.AbstractEventLoop | None = None) -> NodeRunner:
    config = NodeConfig(
        node_guid=str(uuid.uuid4()),
        node_name=name,
        networks=tuple(Network(name=n, key=KEYS[n]) for n in networks),
        ip="127.0.0.1",
        port=free_port(),
        gossip_timer=0.1,
    )
    return NodeRunner(config, JsonFileStorage(data_dir_for(tmp_path / f"{name}.json")), loop=loop,
                      writer_thread=WRITER_THREAD)


@pytest.fixture
def runners(tmp_path: Path) -> Iterator[list[NodeRunner]]:
    started: list[NodeRunner] = []
    try:
        yield started
    finally:
        for r in started:
            r.stop()


def call(r: NodeRunner, method: str, path: str, body: object = None, *, network: str = "default",
         key: bytes | None = None, query: str = "") -> tuple[int, object]:
    data = json.dumps(body).encode() if body is not None else b""
    q = {k: [v] for k, v in (p.split("=") for p in query.split("&"))} if query else {}
    header = client_auth_header(network=network, node=r.node.guid, key=key or KEYS[network], method=method, path=path,
                                query=q, body=data, ts=int(time.time() * 1000), nonce=secrets.token_hex(12))
    url = f"http://127.0.0.1:{r.config.port}{path}" + (f"?{query}" if query else "")
    status, answer = http_call(url, method=method, body=data if body is not None else None,
                               headers={"X-Gossip-Auth": header})
    return status, json.loads(answer)


def test_client_api_round_trip(tmp_path: Path, runners: list[NodeRunner]) -> None:
    a = make_runner(tmp_path, "a")
    runners.append(a)
    a.start()
    status, made = call(a, "POST", "/v1/gossip", {"msg": "héllo"})
    assert status == 201 and isinstance(made, dict) and made["msg"] == "héllo" and made["complete"]
    # acknowledged means stored: a fresh store on the same directory has it
    on_disk = JsonFileStorage(data_dir_for(tmp_path / "a.json")).load().gossips["default"]
    assert [g.guid for g in on_disk] == [made["guid"]]
    status, rows = call(a, "GET", "/v1/gossip")
    assert status == 200 and rows == [made]
    status, node = call(a, "GET", "/v1/node")
    assert status == 200 and isinstance(node, dict) and node["node_name"] == "a" and node["networks"] == ["default"]
    status, rows = call(a, "GET", "/v1/peers")  # NETWORK_STATUS lists the node itself first
    assert status == 200 and [(r["self"], r["guid"], r["in_sync"]) for r in rows] == [(True, a.node.guid, True)]  # type: ignore[index,union-attr]


def test_register_through_the_client_api(tmp_path: Path, runners: list[NodeRunner]) -> None:
    a, b = make_runner(tmp_path, "a"), make_runner(tmp_path, "b")
    runners += [a, b]
    a.start()
    b.start()
    status, answer = call(b, "POST", "/v1/register", {"address": f"127.0.0.1:{a.config.port}"})
    assert status == 200 and isinstance(answer, dict) and answer["peer"]["name"] == "a"
    g = call(a, "POST", "/v1/gossip", {"msg": "to b"})[1]
    assert isinstance(g, dict)
    wait_for(lambda: any(r["guid"] == g["guid"] for r in call(b, "GET", "/v1/gossip")[1]), 10, "b to get it")  # type: ignore[union-attr,index]
    status, answer = call(b, "POST", "/v1/register", {"address": f"127.0.0.1:{free_port()}"})
    assert status == 502 and "did not answer" in answer["error"]  # type: ignore[index]


def test_register_refused_by_other_password(tmp_path: Path, runners: list[NodeRunner]) -> None:
    a = make_runner(tmp_path, "a", ("other",))
    c = NodeRunner(
        NodeConfig(node_guid=str(uuid.uuid4()), node_name="c",
                   networks=(Network(name="other", key=bytes(32)),), ip="127.0.0.1", port=free_port()),
        JsonFileStorage(tmp_path / "c"),
    )
    runners += [a, c]
    a.start()
    c.start()
    status, answer = call(a, "POST", "/v1/register", {"address": f"127.0.0.1:{c.config.port}"}, network="other")
    assert status == 403 and "password differs" in answer["error"]  # type: ignore[index]


def test_auth_errors_and_routes(tmp_path: Path, runners: list[NodeRunner]) -> None:
    a = make_runner(tmp_path, "a", ("default", "other"))
    runners.append(a)
    a.start()
    base = f"http://127.0.0.1:{a.config.port}"
    status, body = http_call(base + "/v1/gossip")
    assert status == 401 and b"X-Gossip-Auth" in body
    assert call(a, "GET", "/v1/gossip", key=bytes(32))[0] == 401
    status, body = call(a, "GET", "/v1/gossip", query="network=other")
    assert status == 403 and "not 'other'" in body["error"]  # type: ignore[index]
    assert call(a, "GET", "/v1/gossip", network="other", query="network=other")[0] == 200
    assert http_call(base + "/nope")[0] == 404
    assert http_call(base + "/v1/node", method="DELETE")[0] == 405
    assert call(a, "POST", "/v1/gossip", {"msg": ""})[0] == 201  # empty text is a message too
    status, body = call(a, "POST", "/v1/gossip", {"msg": 5})
    assert status == 400 and "msg" in body["error"]  # type: ignore[index]
    status, body = call(a, "POST", "/v1/register", {"address": "nowhere"})
    assert status == 400 and "HOST:PORT" in body["error"]  # type: ignore[index]
    # a replayed client request is refused
    data = json.dumps({"msg": "once"}).encode()
    header = client_auth_header(network="default", node=a.node.guid, key=KEYS["default"], method="POST",
                                path="/v1/gossip", body=data, ts=int(time.time() * 1000), nonce=secrets.token_hex(12))
    first = http_call(base + "/v1/gossip", method="POST", body=data, headers={"X-Gossip-Auth": header})
    again = http_call(base + "/v1/gossip", method="POST", body=data, headers={"X-Gossip-Auth": header})
    assert first[0] == 201 and again[0] == 401 and b"replayed" in again[1]


def test_a_captured_client_request_is_refused_by_other_nodes_and_after_a_restart(
    tmp_path: Path, runners: list[NodeRunner]
) -> None:
    """Issue 10, item 1: a captured `gossip create` got 201 from two other nodes, and again
    from the first after it restarted. The client MAC now covers the node's guid, and a node
    refuses client timestamps from before it started."""
    a, b = make_runner(tmp_path, "a"), make_runner(tmp_path, "b")
    runners.extend([a, b])
    a.start()
    b.start()
    data = json.dumps({"msg": "captured"}).encode()
    header = {"X-Gossip-Auth": client_auth_header(
        network="default", node=a.node.guid, key=KEYS["default"], method="POST", path="/v1/gossip",
        body=data, ts=int(time.time() * 1000), nonce=secrets.token_hex(12),
    )}
    assert http_call(f"http://127.0.0.1:{a.config.port}/v1/gossip", method="POST", body=data, headers=header)[0] == 201
    status, answer = http_call(f"http://127.0.0.1:{b.config.port}/v1/gossip", method="POST", body=data, headers=header)
    assert status == 401 and json.loads(answer)["code"] == "replayed" and b.node.gossip_count() == 0
    a.stop()
    time.sleep(0.01)  # the restarted node starts strictly after the capture
    again = NodeRunner(a.config, JsonFileStorage(data_dir_for(tmp_path / "a.json")))  # same guid, port, store
    runners.append(again)
    again.start()
    status, answer = http_call(f"http://127.0.0.1:{again.config.port}/v1/gossip", method="POST", body=data, headers=header)
    assert status == 401 and json.loads(answer)["code"] == "replayed"
    assert again.node.gossip_count() == 1  # the one acknowledged before the restart, not a second


def test_healthz_and_metrics(tmp_path: Path, runners: list[NodeRunner]) -> None:
    a, b = make_runner(tmp_path, "a"), make_runner(tmp_path, "b")
    runners += [a, b]
    a.start()
    b.start()
    b.register("127.0.0.1", a.config.port)
    call(a, "POST", "/v1/gossip", {"msg": "x"})
    wait_for(lambda: b.node.gossip_count() == 1, 10, "b to get the gossip")
    # The push may bring it before A's first round: wait for that round's probe too.
    wait_for(lambda: a.node.stats["sent.did_you_hear"] > 0, 10, "a's first round")
    base = f"http://127.0.0.1:{a.config.port}"
    status, body = http_call(base + "/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"
    status, body = http_call(base + "/metrics")
    text = body.decode()
    assert status == 200
    for needle in ("gossip_rounds_total", 'gossip_gossips{network="default"} 1',
                   'gossip_peers{network="default",status="alive"} 1', 'gossip_requests_sent_total{verb="did_you_hear"}', 'gossip_http_connections ',
                   'gossip_bytes_total{direction="sent"}', "# TYPE gossip_rejected_total counter",
                   "# TYPE gossip_iblt_retries_total counter", "# TYPE gossip_rounds_held_total counter", "# TYPE gossip_duplicates_total counter"):
        assert needle in text, needle


def test_parse_hostport() -> None:
    assert parse_hostport("127.0.0.1:8470") == ("127.0.0.1", 8470)
    assert parse_hostport("localhost:1")[1] == 1
    assert parse_hostport("[::1]:80") == ("::1", 80)
    for bad in ("", "host", "host:", ":80", "127.0.0.1:0", "127.0.0.1:70000", "127.0.0.1:x"):
        with pytest.raises(LocalProtocolError):
            parse_hostport(bad)


def test_a_second_runner_on_the_same_store_is_refused(tmp_path: Path, runners: list[NodeRunner]) -> None:
    a = make_runner(tmp_path, "a")
    runners.append(a)
    with pytest.raises(StorageInUse) as caught:
        make_runner(tmp_path, "a")
    assert caught.value.pid == os.getpid()


def test_a_failed_write_is_undone_and_never_spread(tmp_path: Path, runners: list[NodeRunner],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A create answered 507 leaves nothing behind: not listed, not spread; a retry makes one."""
    a, b = make_runner(tmp_path, "a"), make_runner(tmp_path, "b")
    runners += [a, b]
    a.start()
    b.start()
    assert isinstance(b.register("127.0.0.1", a.config.port), Registered)
    real = a.storage.write_items

    def disk_full(added: object, removed: object, cursors: object = None) -> None:
        raise StorageError("gossip.jsonl: no space left on device")

    monkeypatch.setattr(a.storage, "write_items", disk_full)
    status, body = call(a, "POST", "/v1/gossip", {"msg": "lost"})
    assert status == 507 and "no space" in body["error"]  # type: ignore[index]
    assert call(a, "GET", "/v1/gossip") == (200, [])
    time.sleep(0.5)  # five rounds of a 0.1 s timer: nothing to spread
    assert b.node.gossip_count() == 0
    monkeypatch.setattr(a.storage, "write_items", real)
    status, made = call(a, "POST", "/v1/gossip", {"msg": "kept"})
    assert status == 201
    wait_for(lambda: b.node.gossip_count() == 1, 10, "b to get the retried gossip")
    # Listed once on b's disk (the listing shows nothing a failed write could take back).
    wait_for(lambda: [r["msg"] for r in call(b, "GET", "/v1/gossip")[1]] == ["kept"], 5, "b to list it")  # type: ignore[index,union-attr]
    assert [g.msg for g in JsonFileStorage(data_dir_for(tmp_path / "a.json")).load().gossips["default"]] == ["kept"]


def test_a_failed_write_takes_the_changes_queued_behind_it_with_it(tmp_path: Path, runners: list[NodeRunner],
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """A create whose write fails, and a delete of it made while that write is under way: the
    delete was computed on top of the create, so it is neither written nor kept; both callers
    get the failure, and the node holds neither (undone newest first: the delete's undo puts
    the gossip back, then the create's takes it out)."""
    a = make_runner(tmp_path, "a")
    runners.append(a)
    a.start()
    real = a.storage.write_items
    writes: list[int] = []

    def slow_then_full(*args: Any) -> None:
        writes.append(1)
        if len(writes) == 1:  # the first write: under way while the delete is made
            time.sleep(0.2)
            raise StorageError("gossip.jsonl: no space left on device")
        real(*args)

    monkeypatch.setattr(a.storage, "write_items", slow_then_full)

    async def create_then_delete() -> list[object]:
        create = asyncio.ensure_future(a.create_async("doomed"))
        await asyncio.sleep(0)  # the create ran on the node and queued its write
        (doomed,), _ = a.node.gossip_page(None, after=0, before=2**62, limit=10)
        try:  # made now, in the same pass: written after the create, or with it
            deleted: object = await a.delete_async(doomed.guid)
        except StorageError as exc:
            deleted = exc
        return list(await asyncio.gather(create, return_exceptions=True)) + [deleted]

    created, deleted = a.call(create_then_delete(), timeout=30)
    assert isinstance(created, StorageError) and isinstance(deleted, StorageError), (created, deleted)
    assert (a.node.gossip_count(), a.node.tombstone_count()) == (0, 0)
    assert call(a, "GET", "/v1/gossip") == (200, [])
    status, made = call(a, "POST", "/v1/gossip", {"msg": "kept"})  # the disk is back
    assert status == 201
    a.stop()
    on_disk = JsonFileStorage(data_dir_for(tmp_path / "a.json")).load()
    assert [g.msg for g in on_disk.gossips["default"]] == ["kept"]
    assert not on_disk.tombstones.get("default")


def test_changes_made_together_are_written_together(tmp_path: Path, runners: list[NodeRunner],
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Group commit: 50 creates made at once cost one write on the loop (a few on the thread),
    each acknowledged once on disk."""
    a = make_runner(tmp_path, "a")
    runners.append(a)
    a.start()
    real = a.storage.write_items
    batches: list[int] = []

    def counted(added: Any, removed: Any, cursors: Any = None) -> None:
        batch = {network: list(items) for network, items in added.items()}
        batches.append(sum(map(len, batch.values())))
        real(batch, removed, cursors)

    monkeypatch.setattr(a.storage, "write_items", counted)

    async def fifty() -> list[str]:
        made = await asyncio.gather(*(a.create_async(f"together {i}") for i in range(50)))
        return [g.guid for g in made]

    guids = a.call(fifty(), timeout=30)
    assert sum(batches) == 50
    assert batches == [50] if not WRITER_THREAD else 1 <= len(batches) <= 50
    a.stop()
    on_disk = JsonFileStorage(data_dir_for(tmp_path / "a.json")).load().gossips["default"]
    assert sorted(g.guid for g in on_disk) == sorted(guids)


def test_a_runner_on_an_application_loop_keeps_what_it_acknowledged(tmp_path: Path) -> None:
    """async with on the caller's loop: aclose writes what is queued before it releases the store."""

    async def main() -> list[str]:
        async with make_runner(tmp_path, "a", loop=asyncio.get_running_loop()) as a:
            made = await asyncio.gather(*(a.create_async(f"on my loop {i}") for i in range(5)))
        return [g.guid for g in made]

    guids = asyncio.run(main())
    on_disk = JsonFileStorage(data_dir_for(tmp_path / "a.json")).load().gossips["default"]
    assert sorted(g.guid for g in on_disk) == sorted(guids)


def test_received_gossip_is_one_info_line_per_batch(
    tmp_path: Path, runners: list[NodeRunner], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="gossip.http.runner")
    a, b = make_runner(tmp_path, "a"), make_runner(tmp_path, "b")
    runners += [a, b]
    a.start()
    for i in range(40):  # before b exists: b learns them all in the rounds after it registers
        a.call(a.create_async(f"gossip {i}"))
    b.start()
    b.register("127.0.0.1", a.config.port)
    wait_for(lambda: b.call(_gossip_count(b)) == 40, 15, "b to learn the 40 gossips")

    def learnt_from_a() -> list[logging.LogRecord]:
        ours = [r for r in caplog.records if r.name == "gossip.http.runner"]
        return [r for r in ours if r.levelno == logging.INFO and r.getMessage().endswith(" on default from a")]

    # The node holds a batch before its line is logged (the runner logs once the batch is
    # written): wait for the lines, not only for the count.
    wait_for(lambda: sum(int(r.getMessage().split()[1]) for r in learnt_from_a()) == 40, 15, "b to log the 40 gossips")
    ours = [r for r in caplog.records if r.name == "gossip.http.runner"]
    learnt_from_a_lines = learnt_from_a()
    assert 1 <= len(learnt_from_a_lines) < 10, [r.getMessage() for r in learnt_from_a_lines]
    created = [r for r in ours if r.getMessage().endswith("from this node")]
    # each create is answered to its client: its line is DEBUG, so a busy node's log stays quiet
    assert [r.getMessage() for r in created] == ["learnt 1 gossip on default from this node"] * 40
    assert {r.levelno for r in created} == {logging.DEBUG}
    # Per gossip: DEBUG only, with the guid and the peer it came from.
    per_gossip = [r for r in ours if r.getMessage().startswith("gossip ") and f" from {a.node.guid} " in r.getMessage()]
    assert len(per_gossip) == 40 and {r.levelno for r in per_gossip} == {logging.DEBUG}


async def _gossip_count(r: NodeRunner) -> int:
    return r.node.gossip_count()  # on the runner's loop, which owns the node


def test_delete_route_and_a_retention_learnt_from_the_network_is_saved(tmp_path: Path, runners: list[NodeRunner]) -> None:
    from gossip.configfile import load_config, save_config
    from gossip.model import Retention

    retention = Retention(max_age=86400.0, set_at=int(time.time() * 1000))

    def config(name: str, keep: Retention) -> NodeConfig:
        return NodeConfig(node_guid=str(uuid.uuid4()), node_name=name, ip="127.0.0.1", port=free_port(), gossip_timer=0.1,
                          networks=(Network(name="default", key=KEYS["default"], retention=keep),))

    path = tmp_path / "b.json"
    b_config = config("b", Retention())
    save_config(path, b_config)
    a = NodeRunner(config("a", retention), JsonFileStorage(tmp_path / "a-data"))
    b = NodeRunner(b_config, JsonFileStorage(tmp_path / "b-data"), config_path=path)
    runners += [a, b]
    a.start()
    b.start()
    assert isinstance(b.register("127.0.0.1", a.config.port), Registered)
    wait_for(lambda: load_config(path).network("default").retention == retention, 10, "b to save the retention")
    status, body = call(a, "POST", "/v1/gossip", {"msg": "oops"})
    guid = body["guid"]  # type: ignore[index]
    status, body = call(a, "POST", "/v1/gossip/delete", {"guid": guid})
    assert status == 200 and body == {"guid": guid, "date_time": body["date_time"], "network": "default", "deleted": True}  # type: ignore[index]
    assert call(a, "POST", "/v1/gossip/delete", {"guid": "nope"})[0] == 400
    status, body = call(a, "POST", "/v1/gossip/delete", {"guid": str(uuid.uuid4())})
    assert status == 404 and body["code"] == "not_found"  # type: ignore[index]
    wait_for(lambda: b.call(_tombstones(b)) == 1, 10, "the tombstone to reach b")
    assert call(b, "GET", "/v1/gossip")[1] == []


async def _tombstones(r: NodeRunner) -> int:
    return r.node.tombstone_count()


def test_calls_that_leave_the_deadline_alone_leave_the_timer_alone(tmp_path: Path, runners: list[NodeRunner]) -> None:
    """Every request passes through the commit path, which brings the round timer forward
    when the call gave the node earlier work. A deadline unchanged, or already due while the
    loop is busy, must leave the timer as it is: set again 1 ms ahead at every request, a
    round that was due never came while requests kept arriving."""
    config = NodeConfig(
        node_guid=str(uuid.uuid4()), node_name="slow", networks=(Network(name="default", key=KEYS["default"]),),
        ip="127.0.0.1", port=free_port(), gossip_timer=60.0,
    )
    a = NodeRunner(config, JsonFileStorage(data_dir_for(tmp_path / "slow.json")), writer_thread=WRITER_THREAD)
    runners.append(a)
    a.start()

    async def calls() -> tuple[bool, bool, bool]:
        first = a._timer
        for _ in range(20):  # a call with no events does not yield: the timer cannot fire meanwhile
            await a._drive(lambda now: None)
        unchanged = a._timer is first
        was = a._timer_at
        a.node.next_deadline = lambda: a.clock() - 5.0  # type: ignore[method-assign]  # overdue
        handles = []
        for _ in range(20):
            await a._drive(lambda now: None)
            handles.append(a._timer)
        return unchanged, a._timer_at < was, all(h is handles[0] for h in handles)

    unchanged, brought_forward, then_left_alone = a.call(calls(), timeout=10)
    assert unchanged and brought_forward and then_left_alone
