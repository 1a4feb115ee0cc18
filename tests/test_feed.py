"""The change feed in the core and the stores: cursors, their persistence, and paging."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from gossip.events import GossipReceived
from gossip.model import Gossip, Snapshot
from gossip.node import GossipNode
from gossip.storage import JsonFileStorage, MemoryStorage, persist

from tests.helpers import T0, make_node


def restart(node: GossipNode, snapshot: Snapshot) -> GossipNode:
    """The node started again from ``snapshot`` (another seed: new guids)."""
    return GossipNode(node.config, rng=random.Random(99), now=T0, snapshot=snapshot)


def created(node: GossipNode, msgs: list[str], network: str | None = None) -> list[GossipReceived]:
    for i, msg in enumerate(msgs):
        node.create_gossip(msg, T0 + i, network)
    return [e for e in node.events() if isinstance(e, GossipReceived)]


def test_cursors_grow_across_networks_and_are_never_given_again() -> None:
    node = make_node(1, ("default", "other"))
    first = created(node, ["a", "b"], "default") + created(node, ["c"], "other")
    assert [e.cursor for e in first] == [1, 2, 3]
    node.revert(first[2:])  # a failed write: the gossip leaves, its cursor stays used
    again = created(node, ["d"], "other")
    assert [e.cursor for e in again] == [4]
    assert [r.cursor for r in node.gossip_status("other")] == [4]
    assert [r.msg for r in node.gossip_page("other")[0]] == ["d"]


def test_a_restored_node_continues_after_the_highest_cursor() -> None:
    node = make_node(1)
    storage = MemoryStorage()
    persist(storage, created(node, ["a", "b", "c"]))
    snapshot = storage.load()
    assert snapshot.cursors == {"default": {r.guid: r.cursor for r in node.gossip_status() if r.cursor}}
    restarted = restart(node, snapshot)
    assert [r.cursor for r in restarted.gossip_status()] == [1, 2, 3]
    assert [e.cursor for e in created(restarted, ["d"])] == [4]
    # A high-water mark beyond every stored cursor (the newest was deleted) is kept too.
    bumped = restart(node, Snapshot(gossips=snapshot.gossips, cursors=snapshot.cursors, last_cursor=9))
    assert [e.cursor for e in created(bumped, ["e"])] == [10]


def test_gossips_without_cursors_are_numbered_after_the_others_in_list_order() -> None:
    source = make_node(2)
    created(source, ["x", "y", "z"])
    x, y, z = sorted(source.gossips(), key=lambda g: g.msg)
    node = make_node(1, snapshot=Snapshot(gossips={"default": [y, x, z]}, cursors={"default": {z.guid: 7}}))
    assert [(r.msg, r.cursor) for r in node.gossip_page()[0]] == [("z", 7), ("y", 8), ("x", 9)]


def test_paging_order_and_filter() -> None:
    node = make_node(1)
    msgs = [f"{'Apple' if i % 3 == 0 else 'pear'} number {i}" for i in range(10)]
    created(node, msgs)
    rows, more = node.gossip_page(limit=4)
    assert [r.cursor for r in rows] == [1, 2, 3, 4] and more
    rows, more = node.gossip_page(after=4, limit=4)
    assert [r.cursor for r in rows] == [5, 6, 7, 8] and more
    rows, more = node.gossip_page(after=8, limit=4)
    assert [r.cursor for r in rows] == [9, 10] and not more
    rows, more = node.gossip_page(newest=True, limit=3)
    assert [r.cursor for r in rows] == [10, 9, 8] and more
    rows, more = node.gossip_page(newest=True, before=3, limit=3)
    assert [r.cursor for r in rows] == [2, 1] and not more
    rows, more = node.gossip_page(text="APPLE")
    assert [r.msg for r in rows] == [msgs[i] for i in (0, 3, 6, 9)] and not more
    rows, _ = node.gossip_page(text=node.config.node_name.upper(), limit=100)
    assert len(rows) == 10  # who_name matches too
    rows, more = node.gossip_page(text="apple", after=1, before=10)
    assert [r.cursor for r in rows] == [4, 7] and not more


def test_json_store_keeps_cursors_and_numbers_old_lines_by_file_order(tmp_path: Path) -> None:
    node = make_node(1)
    store = JsonFileStorage(tmp_path)
    store.load()
    persist(store, created(node, ["a", "b"]))
    store.close()
    lines = [json.loads(line) for line in (tmp_path / "gossip.jsonl").read_text().splitlines()]
    assert [line["cursor"] for line in lines] == [1, 2]
    # A line written by a version without cursors, appended after them, then one with.
    old = Gossip.create(guid="8b8a2f5e-1f3c-4b61-9d2e-6d8f1c2b3a4d", date_time="2026-11-24T06:35:13+00:00", who_name="old", msg="old")
    new = Gossip.create(guid="9b8a2f5e-1f3c-4b61-9d2e-6d8f1c2b3a4d", date_time="2026-11-24T06:35:14+00:00", who_name="new", msg="new")
    with open(tmp_path / "gossip.jsonl", "a") as f:
        f.write(json.dumps({"network": "default", "gossip": old.to_dict()}) + "\n")
        f.write(json.dumps({"network": "default", "gossip": new.to_dict(), "cursor": 11}) + "\n")
    snapshot = JsonFileStorage(tmp_path).load()
    assert snapshot.cursors["default"][old.guid] == 3 and snapshot.cursors["default"][new.guid] == 11
    restarted = restart(node, snapshot)
    assert [r.cursor for r in restarted.gossip_page()[0]] == [1, 2, 3, 11]
    assert [e.cursor for e in created(restarted, ["c"])] == [12]
    # Compaction keeps each cursor (and the old line's place, so its number).
    store = JsonFileStorage(tmp_path)
    store.load()
    store.compact()
    store.close()
    assert JsonFileStorage(tmp_path).load().cursors == snapshot.cursors


@pytest.mark.parametrize("bad", ["0", "-3", "1.5", '"7"', "true"])
def test_json_store_refuses_a_bad_cursor(tmp_path: Path, bad: str) -> None:
    from gossip.errors import StorageError

    g = Gossip.create(guid="8b8a2f5e-1f3c-4b61-9d2e-6d8f1c2b3a4d", date_time="2026-11-24T06:35:13+00:00", who_name="w", msg="m")
    (tmp_path / "gossip.jsonl").write_text(f'{{"network":"default","gossip":{g.to_json()},"cursor":{bad}}}\n')
    with pytest.raises(StorageError, match="line 1: cursor"):
        JsonFileStorage(tmp_path).load()


def test_a_rewritten_log_keeps_every_cursor_and_the_highest_even_when_its_gossip_is_gone(tmp_path: Path) -> None:
    node = make_node(1)
    store = JsonFileStorage(tmp_path)
    store.load()
    old = Gossip.create(guid="8b8a2f5e-1f3c-4b61-9d2e-6d8f1c2b3a4d", date_time="2026-11-24T06:35:13+00:00", who_name="old", msg="old")
    store.save_gossip("default", old)  # as a version without cursors wrote it: cursor 1 by file order
    store.close()
    store = JsonFileStorage(tmp_path)
    restarted = restart(node, store.load())
    persist(store, created(restarted, ["a", "b", "c"]))  # cursors 2, 3, 4
    # What removing gossip does (retention, deletion): rewrite the log without some records,
    # here the oldest and the newest.
    store.load()
    with store._lock:
        scan = store._scan_log()  # a rewrite writes what a scan of the log read, cursors and all
        scan.records = [(network, item) for network, item in scan.records if isinstance(item, Gossip) and item.msg in ("a", "b")]
        store._rewrite_log(scan)
    store.close()
    again = JsonFileStorage(tmp_path).load()
    assert [again.cursors["default"][g.guid] for g in again.gossips["default"]] == [2, 3]  # not renumbered
    assert again.last_cursor == 4  # kept by the peer file
    assert json.loads((tmp_path / "peers.json").read_text())["last_cursor"] == 4
    later = GossipNode(node.config, rng=random.Random(100), now=T0, snapshot=again)
    assert [e.cursor for e in created(later, ["d"])] == [5]  # 4 is never given again


@pytest.mark.parametrize("kind", ["json", "memory"])
def test_a_deleted_newest_gossip_leaves_its_cursor_used_across_compaction_and_restart(tmp_path: Path, kind: str) -> None:
    """Deletion (a tombstone) removes the gossip that holds the highest cursor; the store drops
    it, compacts, and a restarted node still never gives that cursor again, nor renumbers."""
    node = make_node(1)
    store: JsonFileStorage | MemoryStorage = JsonFileStorage(tmp_path) if kind == "json" else MemoryStorage()
    node = restart(node, store.load())
    made = created(node, ["a", "b", "c"])
    persist(store, made)
    assert [e.cursor for e in made] == [1, 2, 3]
    node.delete_gossip(made[-1].gossip.guid, T0 + 10)
    persist(store, node.events())
    if isinstance(store, JsonFileStorage):
        store.compact()
        store.close()
        store = JsonFileStorage(tmp_path)
    snapshot = store.load()
    assert sorted(g.msg for g in snapshot.gossips["default"]) == ["a", "b"]
    assert [snapshot.cursors["default"][e.gossip.guid] for e in made[:2]] == [1, 2]
    later = GossipNode(node.config, rng=random.Random(100), now=T0, snapshot=snapshot)  # new guids
    assert not later.has_gossip(made[-1].gossip.guid)
    assert [e.cursor for e in created(later, ["d"])] == [4]
