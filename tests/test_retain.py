"""Same guid with different content, retention and delete (issue 10 item 9, issue 13 item 1)."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gossip import messages as m
from gossip.errors import GossipError
from gossip.events import GossipConflict, GossipReceived, GossipRemoved, RetentionChanged, TombstoneAdded
from gossip.model import Gossip, PeerView, Retention, Snapshot, Tombstone, item_key, iso_from_timestamp, wins
from gossip.node import GossipNode
from gossip.storage import JsonFileStorage, MemoryStorage, persist
from gossip.storage.jsonfile import COMPACT_MIN

from .helpers import KEYS, T0, Mesh, make_config

GUID = "c2a7af9e-ab79-4005-add1-77d2c700d84c"
HOUR = 3600.0


def version(msg: str, guid: str = GUID, at: float = T0, who: str = "node-1") -> Gossip:
    return Gossip.create(guid=guid, date_time=iso_from_timestamp(at), who_name=who, msg=msg)


def mesh_of(count: int, *, retention: Retention | None = None, snapshots: dict[int, Snapshot] | None = None,
            linked: bool = True, now: float = T0) -> Mesh:
    """Nodes 1..count knowing each other (``linked``), with a retention and stored items."""
    configs = []
    for i in range(1, count + 1):
        config = make_config(i)
        if retention is not None:
            config = config.with_changes(networks=tuple(dataclasses.replace(n, retention=retention) for n in config.networks))
        configs.append(config)
    views = [PeerView(peer=c.self_peer("default")) for c in configs]
    nodes = []
    for i, config in enumerate(configs, 1):
        stored = (snapshots or {}).get(i, Snapshot())
        peers = {"default": views[: i - 1] + views[i:]} if linked else {}
        snap = dataclasses.replace(stored, peers=peers)
        nodes.append(GossipNode(config, rng=random.Random(i), now=now, snapshot=snap))
    return Mesh(nodes, now=now)


def keysets(mesh: Mesh) -> list[tuple[int, str]]:
    return [(len(n._nets["default"].gossip_keys), n._nets["default"].gossip_keys.fingerprint) for n in mesh.nodes]  # noqa: SLF001


def settle(mesh: Mesh, rounds: int = 12) -> None:
    for _ in range(rounds):
        mesh.round()


# -- same guid, different content ----------------------------------------------------------


def test_two_versions_of_a_guid_converge_to_the_same_winner_everywhere() -> None:
    one, two = version("mine"), version("my own text under your guid", who="node-2")
    winner, loser = (one, two) if one.sha2 < two.sha2 else (two, one)
    assert wins(winner, loser) and not wins(loser, winner)
    mesh = mesh_of(3, snapshots={1: Snapshot(gossips={"default": [one]}), 2: Snapshot(gossips={"default": [two]}),
                                 3: Snapshot(gossips={"default": [loser]})})
    a, b, c = mesh.nodes
    # Same guid, same count, different content: the digests must not agree.
    assert keysets(mesh)[0] != keysets(mesh)[1]
    settle(mesh)
    for node in mesh.nodes:
        assert node.gossips() == [winner]
    assert len(set(keysets(mesh))) == 1
    assert a.peer_in_sync("default", b.guid)[0] is True and b.peer_in_sync("default", c.guid)[0] is True
    events = [e for n in mesh.nodes for e in n.events()]
    replaced = [e for e in events if isinstance(e, GossipRemoved)]
    assert replaced and all(e.reason == "replaced" and e.gossip == loser for e in replaced)
    conflicts = [e for e in events if isinstance(e, GossipConflict)]
    # Reported once per node that met the loser, never per round.
    assert 1 <= len(conflicts) <= 3 and all(e.kept == winner and e.lost == loser for e in conflicts)
    settle(mesh, 20)
    assert not any(isinstance(e, GossipConflict) for n in mesh.nodes for e in n.events())
    assert sum(n.stats["sent.tell_me_more"] for n in mesh.nodes) <= 6  # no fetch loop of the loser


def test_a_loser_pushed_to_a_node_holding_the_winner_is_refused() -> None:
    one, two = version("a"), version("b")
    winner, loser = (one, two) if one.sha2 < two.sha2 else (two, one)
    mesh = mesh_of(2, snapshots={1: Snapshot(gossips={"default": [winner]})})
    a, b = mesh.nodes
    b._send_to(b._nets["default"], a.guid, m.Push(gossips=(loser,)), mesh.now)  # noqa: SLF001  (a member's push)
    mesh.deliver()
    assert a.gossips() == [winner] and a.stats["rejected.conflict"] == 1
    assert [type(e) for e in a.events()] == [GossipConflict]


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(range(3)), st.sampled_from(["g", "t"]), st.integers(0, 3)), min_size=1, max_size=12),
       st.randoms(use_true_random=False))
def test_any_order_of_items_ends_in_the_same_set(specs: list[tuple[int, str, int]], rnd: random.Random) -> None:
    """The conflict rule is a total order per guid: whatever order a node learns the
    versions and tombstones of a few guids in, it ends holding the same items."""
    guids = [f"00000000-0000-4000-8000-00000000000{i}" for i in range(3)]
    items: list[Gossip | Tombstone] = []
    for g, kind, n in specs:
        at = iso_from_timestamp(T0 - n)
        items.append(version(f"v{n}", guid=guids[g], at=T0 - n) if kind == "g" else Tombstone(guid=guids[g], date_time=at))
    results = set()
    for _ in range(3):
        order = items[:]
        rnd.shuffle(order)
        node = GossipNode(make_config(1), rng=random.Random(1), now=T0, snapshot=Snapshot(
            gossips={"default": [i for i in order if isinstance(i, Gossip)]},
            tombstones={"default": [i for i in order if isinstance(i, Tombstone)]}))
        net = node._nets["default"]  # noqa: SLF001
        results.add((frozenset(net.gossips.values()), frozenset(net.tombstones.values())))
    assert len(results) == 1


@pytest.mark.parametrize("make_store", ["memory", "jsonfile"])
def test_a_replacement_survives_a_restart(make_store: str, tmp_path: Path) -> None:
    one, two = version("a"), version("b")
    winner, loser = (one, two) if one.sha2 < two.sha2 else (two, one)
    store = MemoryStorage() if make_store == "memory" else JsonFileStorage(tmp_path)
    store.save_gossips("default", [loser])
    mesh = mesh_of(2, snapshots={1: Snapshot(gossips={"default": [winner]}), 2: store.load()})
    settle(mesh)
    persist(store, mesh.nodes[1].events())
    store.close()
    again = MemoryStorage.load(store) if make_store == "memory" else JsonFileStorage(tmp_path).load()
    assert again.gossips == {"default": [winner]}


def test_a_store_holding_both_versions_after_a_crash_keeps_the_winner(tmp_path: Path) -> None:
    """persist() writes additions before removals: a crash between them leaves both, and the
    restarted node keeps the winner and drops the loser from the store."""
    one, two = version("a"), version("b")
    winner, loser = (one, two) if one.sha2 < two.sha2 else (two, one)
    store = JsonFileStorage(tmp_path)
    store.save_gossips("default", [loser, winner])
    node = GossipNode(make_config(1), rng=random.Random(1), now=T0, snapshot=store.load())
    assert node.gossips() == [winner]
    persist(store, node.events())
    assert JsonFileStorage(tmp_path).load().gossips == {"default": [winner]}


# -- retention ----------------------------------------------------------------------------------

RET = Retention(max_age=HOUR, set_at=int(T0 * 1000))


def test_expired_gossip_is_dropped_and_refused() -> None:
    mesh = mesh_of(2, retention=RET)
    a, b = mesh.nodes
    g = a.create_gossip("short-lived", mesh.now)
    settle(mesh, 3)
    assert b.has_gossip(g.guid)
    mesh.now += HOUR + 1
    settle(mesh, 2)
    assert not a.has_gossip(g.guid) and not b.has_gossip(g.guid)
    assert any(isinstance(e, GossipRemoved) and e.reason == "expired" for e in a.events())
    # A member pushes it again: refused on receipt, not stored.
    b._send_to(b._nets["default"], a.guid, m.Push(gossips=(g,)), mesh.now)  # noqa: SLF001
    mesh.deliver()
    assert not a.has_gossip(g.guid) and a.stats["rejected.expired"] >= 1
    assert keysets(mesh)[0] == (0, keysets(mesh)[1][1])


def test_gossip_held_while_kept_for_ever_expires_once_a_retention_arrives() -> None:
    """No expiry entry per item while the network keeps everything; a retention learnt later
    still finds, and expires, what was stored before it, oldest first."""
    old = version("kept for ever, so far", at=T0 - 2 * HOUR)
    older = version("older still", guid=GUID.replace("c2", "d3", 1), at=T0 - 3 * HOUR)
    fresh = version("recent", guid=GUID.replace("c2", "e4", 1), at=T0 - 60)
    mesh = mesh_of(1, snapshots={1: Snapshot(gossips={"default": [old, fresh, older]})})
    a = mesh.nodes[0]
    net = a._nets["default"]  # noqa: SLF001
    a.tick(mesh.now)
    assert net.expiry == [] and a.gossip_count() == 3
    a._adopt(net, RET)  # noqa: SLF001  (a retention heard from a peer)
    a.events()
    a.tick(mesh.now)
    removed = [e.gossip.guid for e in a.events() if isinstance(e, GossipRemoved) and e.reason == "expired"]
    assert removed == [older.guid, old.guid]
    assert a.has_gossip(fresh.guid) and a.gossip_count() == 1
    assert [key for _, key in net.expiry] == [item_key(fresh)]
    late = version("arrives under the retention", guid=GUID.replace("c2", "f5", 1), at=T0 - 30)
    a._store(net, [late], None, mesh.now)  # noqa: SLF001
    assert sorted(key for _, key in net.expiry) == sorted([item_key(fresh), item_key(late)])


def test_a_node_away_longer_than_the_retention_resurrects_nothing() -> None:
    old = version("from long ago", at=T0)
    mesh = mesh_of(3, retention=RET, now=T0 + 10)
    a, b, c = mesh.nodes
    # C went away holding the gossip; it comes back after more than the retention, with its
    # old store, and a clock 30 s behind the others (it is the last to expire anything).
    mesh.now = T0 + HOUR + 20
    back = GossipNode(c.config, rng=random.Random(3), now=mesh.now - 30,
                      snapshot=Snapshot(gossips={"default": [old]}, peers={"default": [PeerView(peer=a.config.self_peer("default"))]}))
    mesh.nodes[2] = back
    assert back.has_gossip(old.guid)
    for _ in range(20):
        mesh.now += 1.0
        a.tick(mesh.now)
        b.tick(mesh.now)
        back.tick(mesh.now - 30)  # its clock is behind
        mesh.deliver()
        assert not a.has_gossip(old.guid) and not b.has_gossip(old.guid)
    assert not back.has_gossip(old.guid)
    assert a.stats["rejected.expired"] + b.stats["rejected.expired"] <= 2  # refused once, not fetched again and again


def test_retention_travels_to_a_joining_node_and_a_newer_one_spreads() -> None:
    seed = mesh_of(1, retention=RET).nodes[0]
    newcomer = GossipNode(make_config(2), rng=random.Random(2), now=T0)
    third = GossipNode(make_config(3), rng=random.Random(3), now=T0)
    mesh = Mesh([seed, newcomer, third])
    newcomer.register(seed.config.ip, seed.config.port, mesh.now)
    mesh.deliver()
    assert newcomer.retention() == RET  # from the REGISTER answer
    assert any(isinstance(e, RetentionChanged) and e.retention == RET for e in newcomer.events())
    assert newcomer.config.network("default").retention == RET  # what the runner saves
    third.register(newcomer.config.ip, newcomer.config.port, mesh.now)
    mesh.deliver()
    # A newer decision, made at the newcomer, reaches every node through the rounds.
    newer = Retention(max_age=2 * HOUR, set_at=RET.set_at + 1)
    newcomer._adopt(newcomer._nets["default"], newer)  # noqa: SLF001  (what --retention at restart does)
    settle(mesh, 10)
    assert [n.retention() for n in mesh.nodes] == [newer] * 3
    # An older one never wins back.
    seed._adopt(seed._nets["default"], RET)  # noqa: SLF001
    assert seed.retention() == newer


def test_memory_stays_bounded_under_a_steady_stream() -> None:
    mesh = mesh_of(2, retention=Retention(max_age=60, set_at=1))
    a, b = mesh.nodes
    sizes = []
    for minute in range(6):
        for _ in range(60):
            a.create_gossip("tick", mesh.now)
            mesh.round()
        net = b._nets["default"]  # noqa: SLF001
        sizes.append((b.gossip_count(), len(net.expiry), len(net.refused)))
    assert all(count <= 62 for count, _, _ in sizes[1:])
    assert all(heap <= 130 for _, heap, _ in sizes)


# -- delete -------------------------------------------------------------------------------------


def test_delete_spreads_survives_restart_and_refuses_reinsert(tmp_path: Path) -> None:
    mesh = mesh_of(3)
    a, b, c = mesh.nodes
    g = b.create_gossip("regrettable", mesh.now)
    keep = b.create_gossip("fine", mesh.now)
    settle(mesh, 3)
    assert all(n.has_gossip(g.guid) for n in mesh.nodes)
    store = JsonFileStorage(tmp_path)
    persist(store, c.events())
    tomb = a.delete_gossip(g.guid, mesh.now)
    assert tomb == Tombstone(guid=g.guid, date_time=g.date_time)
    assert a.delete_gossip(g.guid, mesh.now) == tomb  # idempotent
    settle(mesh, 6)
    assert not any(n.has_gossip(g.guid) for n in mesh.nodes)
    assert all(n.tombstone_count() == 1 and n.has_gossip(keep.guid) for n in mesh.nodes)
    assert len(set(keysets(mesh))) == 1
    events = c.events()
    assert any(isinstance(e, TombstoneAdded) for e in events)
    assert any(isinstance(e, GossipRemoved) and e.reason == "deleted" for e in events)
    persist(store, events)
    store.close()
    snap = JsonFileStorage(tmp_path).load()
    assert snap.tombstones == {"default": [tomb]} and [x.guid for x in snap.gossips["default"]] == [keep.guid]
    # Restarted, C still refuses the gossip a member pushes again.
    again = GossipNode(c.config, rng=random.Random(9), now=mesh.now, snapshot=dataclasses.replace(
        snap, peers={"default": [PeerView(peer=b.config.self_peer("default"))]}))
    mesh.nodes[2] = again
    b._nets["default"].gossips[g.guid] = g  # noqa: SLF001  (B "forgets" the delete, as a hostile member)
    b._send_to(b._nets["default"], again.guid, m.Push(gossips=(g,)), mesh.now)  # noqa: SLF001
    mesh.deliver()
    assert not again.has_gossip(g.guid) and again.stats["rejected.conflict"] == 1


def test_delete_of_an_unknown_guid_is_a_404() -> None:
    node = GossipNode(make_config(1), rng=random.Random(1), now=T0)
    with pytest.raises(GossipError) as info:
        node.delete_gossip(GUID, T0)
    assert info.value.status_hint == 404 and info.value.code == "not_found"


def test_tombstones_expire_with_the_retention() -> None:
    mesh = mesh_of(2, retention=RET)
    a, b = mesh.nodes
    g = a.create_gossip("x", mesh.now)
    settle(mesh, 2)
    a.delete_gossip(g.guid, mesh.now)
    settle(mesh, 4)
    assert b.tombstone_count() == 1
    mesh.now += HOUR
    settle(mesh, 2)
    assert a.tombstone_count() == b.tombstone_count() == 0 and keysets(mesh)[0][0] == 0


# -- the JSON-file store ------------------------------------------------------------------------


def test_the_log_is_compacted_and_stays_bounded(tmp_path: Path) -> None:
    store = JsonFileStorage(tmp_path)
    live: list[Gossip] = []
    for i in range(3 * COMPACT_MIN):
        g = version(f"m{i}", guid=f"00000000-0000-4000-8000-{i:012x}")
        store.save_gossips("default", [g])
        live.append(g)
        if len(live) > 50:
            store.remove_items("default", [live.pop(0)])
    lines = (tmp_path / "gossip.jsonl").read_bytes().count(b"\n")
    assert lines <= 2 * COMPACT_MIN + 60
    store.close()
    assert JsonFileStorage(tmp_path).load().gossips["default"] == live


def test_a_torn_drop_line_is_cut_and_the_item_stays(tmp_path: Path) -> None:
    g = version("x")
    store = JsonFileStorage(tmp_path)
    store.save_gossips("default", [g])
    store.close()
    log = tmp_path / "gossip.jsonl"
    key = format(item_key(g), "064x")
    log.write_bytes(log.read_bytes() + json.dumps({"network": "default", "drop": key}).encode()[:-5])
    assert JsonFileStorage(tmp_path).load().gossips == {"default": [g]}


def test_protocol_vectors() -> None:
    """The version-3 test vectors of docs/protocol.md."""
    from gossip.digest import KeySet, key_hex

    g = Gossip.create(guid=GUID, date_time="2026-09-21T14:13:20.000000+00:00", who_name="node-0", msg="hello from A")
    other = Gossip.create(guid=GUID, date_time=g.date_time, who_name="node-1", msg="hello from B")
    tomb = Tombstone(guid=GUID, date_time=g.date_time)
    assert key_hex(item_key(g)) == "c2a7af9eab794005add177d2c700d84c0cafef6addeebf68e91b7feb7eda6539"
    assert key_hex(item_key(tomb)) == "c2a7af9eab794005add177d2c700d84ce617f627d98e5bb85196020c4fcf4ff9"
    assert other.sha2 == "652357e74e3e54ec0eed2515d57ab9f28859322004d04161b063500f072aadd3"
    assert key_hex(item_key(other)) == "c2a7af9eab794005add177d2c700d84c7accfed840906a0bfc0f2b0ceadd6374"
    assert wins(other, g) and wins(tomb, other) and not wins(g, tomb)
    assert KeySet([item_key(g)]).fingerprint == "9e859476978e8ba5e3ceedcb3256c0bf"
    cells = KeySet([item_key(g)]).iblt(8).to_text()
    import base64
    raw = base64.b64decode(cells)
    full = [i for i in range(24) if raw[44 * i : 44 * i + 44] != bytes(44)]
    assert full == [5, 14, 17]
    assert raw[44 * 5 : 44 * 6] == (1).to_bytes(4, "big") + item_key(g).to_bytes(32, "big") + bytes.fromhex("dd2af60491501c46")


def test_the_retention_flag_is_stamped_into_server_json(tmp_path: Path) -> None:
    from gossip.configfile import load_config, save_config
    from gossip.errors import ConfigError
    from gossip.http.command import _parser, build_config

    path = tmp_path / "server.json"
    args = _parser().parse_args(["--config", str(path), "--password", "pw", "--retention", "12h"])
    config, _, changed = build_config(args, path)
    retention = config.network("default").retention
    assert changed and retention.max_age == 12 * HOUR and retention.set_at > 0
    save_config(path, config)
    assert load_config(path).network("default").retention == retention
    again, _, changed = build_config(_parser().parse_args(["--config", str(path), "--retention", "12h"]), path)
    assert not changed and again.network("default").retention == retention  # same age: not restamped
    forever, _, _ = build_config(_parser().parse_args(["--config", str(path), "--retention", "forever"]), path)
    assert forever.network("default").retention.max_age is None
    assert forever.network("default").retention.supersedes(retention)
    with pytest.raises(ConfigError, match="--retention: '3 weeks' is not an age"):
        build_config(_parser().parse_args(["--config", str(path), "--retention", "3 weeks"]), path)
