"""The sans-I/O core, driven by hand: every verb, bootstrap, auth, isolation, failures."""

from __future__ import annotations

import dataclasses
import json
from collections import Counter
import random
import uuid

import pytest

from gossip import messages as m
from gossip.auth import derive_key
from gossip.errors import AuthenticationError, ErrorCode, GossipError, LocalProtocolError, MessageTooLarge, RemoteProtocolError
from gossip.events import GossipReceived, PeerJoined, PeerStatusChanged, RegisterFailed, Registered
from gossip.digest import key_hex
from gossip.model import Gossip, Network, Peer, PeerStatus, Quota, Snapshot, item_key
from gossip.node import (
    MAX_PENDING,
    MAX_PENDING_PER_SOURCE,
    PENDING_TTL,
    PENDING_TTL_ROUNDS,
    SETTLED_BACKOFF_MAX,
    UNPROVEN_TTL,
    UNPROVEN_TTL_ROUNDS,
    GossipNode,
)

from .helpers import KEYS, T0, Mesh, full_mesh, make_config, make_node


def pair() -> Mesh:
    return Mesh([make_node(1), make_node(2)])


def test_seed_bootstrap_two_nodes_converge() -> None:
    """The seed's story: B registers with A; A's next round probes B with one DID_YOU_HEAR;
    each fetches what it lacks with TELL_ME_MORE at its following round."""
    mesh = pair()
    a, b = mesh.nodes
    created = [a.create_gossip(f"from a {i}", mesh.now) for i in range(3)]
    mine = b.create_gossip("from b", mesh.now)
    rid = b.register(a.config.ip, a.config.port, mesh.now)
    mesh.deliver()
    registered = [e for e in b.events() if isinstance(e, Registered)]
    assert [e.request_id for e in registered] == [rid]
    assert registered[0].peer.peer.guid == a.guid
    assert any(isinstance(e, PeerJoined) and e.peer.peer.guid == b.guid for e in a.events())
    assert a.eager_peers() == (b.guid,) and b.eager_peers() == (a.guid,)  # registering links them
    mesh.log.clear()
    mesh.round()  # the very next round: the ids each lacks become pending
    verbs = {(who, verb) for who, verb in mesh.log}
    assert ("node-1", "did_you_hear") in verbs
    assert ("node-1", "hello") not in verbs  # its probe rode in the DID_YOU_HEAR: in sync
    assert [r.complete for r in b.gossip_status()] == [True] + [False] * 3
    mesh.log.clear()
    mesh.round()  # the gossips created before the link came by no push: fetched now
    assert {verb for _, verb in mesh.log} == {"did_you_hear", "tell_me_more"}
    want = {g.guid for g in created} | {mine.guid}
    assert {g.guid for g in a.gossips()} == want
    assert {g.guid for g in b.gossips()} == want
    got = [e for e in b.events() if isinstance(e, GossipReceived)]
    assert {e.gossip.guid for e in got} == {g.guid for g in created}
    assert all(e.source == a.guid for e in got)


def test_create_gossip_fields_and_sha2() -> None:
    node = make_node(1)
    gossip = node.create_gossip("héllo ✓ \n <b>", T0)
    assert gossip.verify()
    assert gossip.who_name == "node-1"
    assert gossip.date_time.startswith("2026-09-21T") and gossip.date_time.endswith("+00:00")
    event = node.next_event()
    assert isinstance(event, GossipReceived) and event.source is None and event.gossip == gossip
    assert node.next_event() is None


def test_create_gossip_is_deterministic_per_seed() -> None:
    assert make_node(1).create_gossip("x", T0) == make_node(1).create_gossip("x", T0)
    assert make_node(1).create_gossip("x", T0).guid != make_node(2).create_gossip("x", T0).guid


@pytest.mark.parametrize("msg", [None, 5, "x" * 70_000, "bad \ud800 surrogate"])
def test_create_gossip_rejects_bad_text(msg: object) -> None:
    node = make_node(1)
    with pytest.raises(LocalProtocolError):
        node.create_gossip(msg, T0)  # type: ignore[arg-type]
    assert node.gossip_count() == 0


def test_status_verbs() -> None:
    mesh = pair()
    a, b = mesh.nodes
    b.register(a.config.ip, a.config.port, mesh.now)
    mesh.deliver()
    g = a.create_gossip("hi", mesh.now)
    peers = a.network_status()
    assert [(p.peer.name, p.status) for p in peers] == [("node-2", PeerStatus.ALIVE)]
    row = peers[0].to_dict()
    assert {"guid", "name", "ip", "port", "network_name", "status", "last_seen"} <= set(row)
    assert row["status"] == "alive" and row["last_seen"].endswith("+00:00")
    [status] = [dataclasses.asdict(s) for s in a.gossip_status()]
    assert status["complete"] is True and status["sha2"] == g.sha2 and status["msg"] == "hi"


def test_pending_gossip_shows_incomplete_until_fetched() -> None:
    mesh = Mesh([make_node(1, push=False), make_node(2, push=False)])
    a, b = mesh.nodes
    b.register(a.config.ip, a.config.port, mesh.now)
    mesh.deliver()
    g = a.create_gossip("pending?", mesh.now)
    mesh.now += 1
    a.tick(mesh.now)
    # Deliver A's probes and B's answers, but lose B's TELL_ME_MORE.
    mesh.down.add(a.config.port)
    for out in a.outbox():
        a.receive_response(out.request_id, b.handle_request(out.data, mesh.now), mesh.now)
    mesh.down.discard(a.config.port)
    for out in a.outbox():  # A's DID_YOU_HEAR(ids) makes B ask TELL_ME_MORE
        a.receive_response(out.request_id, b.handle_request(out.data, mesh.now), mesh.now)
    tmm = b.outbox()
    assert [o.verb for o in tmm] == ["tell_me_more"]
    b.delivery_failed(tmm[0].request_id, mesh.now, "lost")
    rows = [dataclasses.asdict(r) for r in b.gossip_status()]
    assert rows == [
        {"network": "default", "guid": g.guid, "date_time": None, "who_name": None, "msg": None, "sha2": None, "complete": False,
         "cursor": None}
    ]
    assert (b.gossip_count(), b.pending_count()) == (0, 1) and a.pending_count("default") == 0
    mesh.round()
    assert b.has_gossip(g.guid)
    assert [r.complete for r in b.gossip_status()] == [True]
    assert (b.gossip_count(), b.pending_count()) == (1, 0)


def test_wrong_password_register_is_refused_and_changes_nothing() -> None:
    keys = dict(KEYS, default=derive_key("default", "not the password"))
    a = make_node(1)
    intruder = make_node(2, keys=keys)
    mesh = Mesh([a, intruder])
    rid = intruder.register(a.config.ip, a.config.port, mesh.now)
    mesh.deliver()
    [failed] = [e for e in intruder.events() if isinstance(e, RegisterFailed)]
    assert failed.request_id == rid and failed.status == 401
    assert "MAC" in failed.reason
    assert a.peer_count() == 0 and a.events() == []
    assert a.stats["rejected.AuthenticationError"] == 1


def test_register_answer_proves_the_receiver_holds_the_key() -> None:
    """A node that answers REGISTER without the key is not believed."""
    a, b = make_node(1), make_node(2)
    rid = b.register(a.config.ip, a.config.port, T0)
    [out] = b.outbox()
    answer = a.handle_request(out.data, T0)
    forged = m.encode(
        m.RegisterOk(node=a.config.self_peer("default")),
        network="default",
        sender=a.guid,
        key=derive_key("default", "guess"),
        re=json.loads(out.data)["nonce"],
    )
    b.receive_response(rid, forged, T0)
    assert b.peer_count() == 0
    assert isinstance(b.next_event(), RegisterFailed)
    # the genuine answer is now stale: its request was already settled
    b.receive_response(rid, answer, T0)
    assert b.peer_count() == 0


def test_replayed_request_is_refused() -> None:
    a, b = make_node(1), make_node(2)
    b.register(a.config.ip, a.config.port, T0)
    [out] = b.outbox()
    a.handle_request(out.data, T0)
    a.events()
    with pytest.raises(AuthenticationError, match="replayed"):
        a.handle_request(out.data, T0 + 1)
    assert a.events() == [] and a.peer_count() == 1


def test_a_captured_request_is_refused_by_every_other_node_and_after_a_restart() -> None:
    """Issue 10, item 1: a request names its addressee under the MAC, so a captured one is
    refused by every other node; a node refuses requests stamped before it started (its
    nonce memory does not survive a restart)."""
    mesh = full_mesh(3)
    a, b, c = mesh.nodes
    probe = m.Hello(probe=m.Probe(count=0, fingerprint="0" * 32))
    b._send_to(b._nets["default"], a.guid, probe, mesh.now)  # noqa: SLF001
    [captured] = b.outbox()
    a.handle_request(captured.data, mesh.now)
    with pytest.raises(AuthenticationError, match="addressed to node") as info:
        c.handle_request(captured.data, mesh.now + 1)
    assert info.value.code is ErrorCode.REPLAYED and c.events() == []
    with pytest.raises(AuthenticationError, match="replayed"):
        a.handle_request(captured.data, mesh.now + 1)
    reborn = GossipNode(a.config, rng=random.Random(5), now=mesh.now + 2)  # same guid, nonces forgotten
    with pytest.raises(AuthenticationError, match="before this node started") as info:
        reborn.handle_request(captured.data, mesh.now + 3)
    assert info.value.code is ErrorCode.REPLAYED and reborn.events() == []


def test_a_peer_whose_clock_is_behind_stamps_requests_on_the_receivers_clock() -> None:
    """The restart floor must not refuse an honest peer whose clock is 10 minutes behind
    (within the window): each answer carries the answerer's clock, and requests to it follow."""
    ahead, behind = make_node(1), make_node(2, now=T0 - 600)
    behind.register(ahead.config.ip, ahead.config.port, T0 - 600)  # REGISTER: on its own clock
    [out] = behind.outbox()
    behind.receive_response(out.request_id, ahead.handle_request(out.data, T0), T0 - 600)
    assert behind.peer_count() == 1
    restarted = GossipNode(ahead.config, rng=random.Random(9), now=T0 + 5)
    behind._send_to(behind._nets["default"], ahead.guid, m.Hello(), T0 - 590)  # noqa: SLF001
    [out] = behind.outbox()
    assert json.loads(out.data)["ts"] >= (T0 + 5) * 1000  # on the other node's clock
    restarted.handle_request(out.data, T0 + 10)  # accepted: not before it started


@pytest.mark.parametrize("skew", [-901.0, 901.0])
def test_stale_timestamp_is_refused(skew: float) -> None:
    a, b = make_node(1), make_node(2)
    b.register(a.config.ip, a.config.port, T0)
    [out] = b.outbox()
    with pytest.raises(AuthenticationError, match="clock"):
        a.handle_request(out.data, T0 + skew)
    assert a.peer_count() == 0


def test_clock_skew_of_ten_minutes_is_accepted() -> None:
    a, b = make_node(1), make_node(2)
    b.register(a.config.ip, a.config.port, T0)
    [out] = b.outbox()
    a.handle_request(out.data, T0 + 600)
    assert a.peer_count() == 1


def test_tampered_message_is_refused() -> None:
    a, b = make_node(1), make_node(2)
    b.register(a.config.ip, a.config.port, T0)
    [out] = b.outbox()
    tampered = out.data.replace(b"node-2", b"node-X")
    with pytest.raises(AuthenticationError, match="MAC"):
        a.handle_request(tampered, T0)
    assert a.peer_count() == 0


@pytest.mark.parametrize(
    "data, error",
    [
        (b"", RemoteProtocolError),
        (b"\xff\xfe", RemoteProtocolError),
        (b"[1,2]", RemoteProtocolError),
        (b'{"v":2}', RemoteProtocolError),
        (b'{"v":%d,"net":"nowhere"}' % m.PROTOCOL_VERSION, AuthenticationError),
        (b"x" * (m.MAX_MESSAGE_BYTES + 1), MessageTooLarge),
    ],
)
def test_malformed_requests_get_a_clear_error(data: bytes, error: type[Exception]) -> None:
    node = make_node(1)
    with pytest.raises(error):
        node.handle_request(data, T0)
    assert node.events() == []


def test_tampered_gossip_is_dropped_and_counted() -> None:
    a, b = make_node(1, push=False), make_node(2, push=False)
    mesh = Mesh([a, b])
    b.register(a.config.ip, a.config.port, mesh.now)
    mesh.deliver()
    good = a.create_gossip("the truth", mesh.now)
    b.events()
    # B asks A for it; A's answer is altered (by a member) to carry a different text.
    b._heard_of(b._nets["default"], a.guid, (key_hex(item_key(good)),), mesh.now)  # noqa: SLF001
    [out] = b.outbox()
    env = json.loads(out.data)
    lie = Gossip(guid=good.guid, date_time=good.date_time, who_name=good.who_name, msg="a lie", sha2=good.sha2)
    answer = m.encode(m.TellMeMoreReply(gossips=(lie,)), network="default", sender=a.guid, key=KEYS["default"], re=env["nonce"],
                      now=env["ts"])
    b.receive_response(out.request_id, answer, mesh.now)
    assert not b.has_gossip(good.guid)
    assert b.stats["rejected.bad_sha2"] == 1
    assert not any(isinstance(e, GossipReceived) for e in b.events())
    mesh.round()  # and it still arrives, intact, from A
    assert b.gossips() == [good]


def test_networks_are_isolated() -> None:
    a = make_node(1, ("default", "other"))
    b = make_node(2, ("default",))
    c = make_node(3, ("other",))
    mesh = Mesh([a, b, c])
    b.register(a.config.ip, a.config.port, mesh.now, network="default")
    c.register(a.config.ip, a.config.port, mesh.now, network="other")
    mesh.deliver()
    on_default = a.create_gossip("default only", mesh.now, network="default")
    on_other = c.create_gossip("other only", mesh.now, network="other")
    for _ in range(4):
        mesh.round()
    assert b.gossips() == [on_default] and c.gossips("other") == [on_other]
    assert a.gossips("default") == [on_default] and a.gossips("other") == [on_other]
    assert [p.peer.name for p in b.network_status()] == ["node-1"]  # never learns C
    assert [p.peer.name for p in c.network_status()] == ["node-1"]
    assert {p.peer.network_name for p in a.network_status()} == {"default", "other"}
    with pytest.raises(LocalProtocolError):
        b.create_gossip("x", mesh.now, network="other")


def test_node_on_another_network_is_refused() -> None:
    a = make_node(1, ("default",))
    c = make_node(3, ("other",))
    c.register(a.config.ip, a.config.port, T0, network="other")
    [out] = c.outbox()
    with pytest.raises(AuthenticationError, match="not on network"):
        a.handle_request(out.data, T0)


def test_hello_spreads_peers_and_membership_converges() -> None:
    mesh = Mesh([make_node(i) for i in range(1, 9)])
    mesh.join_all()
    for node in mesh.nodes:
        assert node.peer_count() == 7
        assert node.guid not in {p.peer.guid for p in node.network_status()}


def test_gossip_converges_on_eight_nodes() -> None:
    mesh = Mesh([make_node(i) for i in range(1, 9)])
    mesh.join_all()
    made = {n.create_gossip(f"g{i}", mesh.now).guid for i, n in enumerate(mesh.nodes)}
    for _ in range(10):
        mesh.round()
        if all({g.guid for g in n.gossips()} == made for n in mesh.nodes):
            break
    assert all({g.guid for g in n.gossips()} == made for n in mesh.nodes)


def test_settled_round_costs_the_same_whatever_the_set_size() -> None:
    costs = []
    for count in (10, 3000):
        mesh = pair()
        a, b = mesh.nodes
        b.register(a.config.ip, a.config.port, mesh.now)
        mesh.deliver()
        for i in range(count):
            a.create_gossip(f"m{i}", mesh.now)
        for _ in range(3):
            mesh.round()
        assert b.gossip_count() == count
        before = mesh.bytes
        mesh.round()
        costs.append((mesh.bytes - before) / 2)  # per node: each contacted the other
    assert costs[0] < 1024 and costs[1] < 1024
    assert abs(costs[0] - costs[1]) < 16


def test_newly_registered_peer_is_contacted_next_round_even_with_many_peers() -> None:
    mesh = Mesh([make_node(i, max_peers=1) for i in range(1, 7)])
    mesh.join_all()
    newcomer = make_node(7, max_peers=1)
    mesh.nodes.append(newcomer)
    hub = mesh.nodes[0]
    newcomer.register(hub.config.ip, hub.config.port, mesh.now)
    mesh.deliver()
    mesh.now += 1
    hub.tick(mesh.now)
    targets = {o.peer for o in hub.outbox()}
    assert newcomer.guid in targets


def test_unreachable_peer_turns_suspect_then_dead_then_alive() -> None:
    mesh = Mesh([make_node(1, max_peers=1), make_node(2, max_peers=1)])
    a, b = mesh.nodes
    b.register(a.config.ip, a.config.port, mesh.now)
    mesh.deliver()
    a.events()
    mesh.down.add(b.config.port)
    statuses = []
    for _ in range(40):
        mesh.round()
        statuses.append(a.network_status()[0].status)
        if statuses[-1] is PeerStatus.DEAD:
            break
    assert PeerStatus.SUSPECT in statuses and statuses[-1] is PeerStatus.DEAD
    changes = [(e.old, e.peer.status) for e in a.events() if isinstance(e, PeerStatusChanged)]
    assert changes == [(PeerStatus.ALIVE, PeerStatus.SUSPECT), (PeerStatus.SUSPECT, PeerStatus.DEAD)]
    mesh.down.discard(b.config.port)
    for _ in range(80):  # dead peers are retried with backoff
        mesh.round()
        if a.network_status()[0].status is PeerStatus.ALIVE:
            break
    assert a.network_status()[0].status is PeerStatus.ALIVE


def test_refusal_counts_against_liveness() -> None:
    """A peer that refuses us (e.g. our clocks are too far apart) is not one we can gossip with."""
    a, b = make_node(1), make_node(2)
    b.register(a.config.ip, a.config.port, T0)
    [out] = b.outbox()
    b.receive_response(out.request_id, a.handle_request(out.data, T0), T0)
    b.tick(T0 + 1)
    for out in b.outbox():
        b.delivery_failed(out.request_id, T0 + 1, "refused", 401)
    assert b.network_status()[0].status is PeerStatus.SUSPECT


def test_requests_time_out_by_themselves() -> None:
    a, b = make_node(1), make_node(2)
    b.register(a.config.ip, a.config.port, T0)
    b.outbox()  # sent, never answered
    assert T0 < b.next_deadline() <= T0 + 1.0  # first round comes before the 5 s timeout
    b.tick(T0 + 5.0)
    [event] = [e for e in b.events() if isinstance(e, RegisterFailed)]
    assert event.reason == "timed out" and event.status is None


def test_restart_from_snapshot_keeps_gossips_and_peers() -> None:
    mesh = pair()
    a, b = mesh.nodes
    b.register(a.config.ip, a.config.port, mesh.now)
    mesh.deliver()
    g = a.create_gossip("keep me", mesh.now)
    snapshot = Snapshot(gossips={"default": a.gossips()}, peers={"default": a.network_status()})
    again = GossipNode(a.config, rng=random.Random(9), now=mesh.now, snapshot=snapshot)
    assert again.gossips() == [g]
    assert [p.peer.guid for p in again.network_status()] == [b.guid]


def test_snapshot_gossip_with_bad_sha2_is_not_loaded() -> None:
    a = make_node(1)
    g = a.create_gossip("x", T0)
    bad = Gossip(guid=g.guid, date_time=g.date_time, who_name=g.who_name, msg="y", sha2=g.sha2)
    again = GossipNode(a.config, rng=random.Random(1), now=T0, snapshot=Snapshot(gossips={"default": [bad]}))
    assert again.gossip_count() == 0 and again.stats["rejected.bad_sha2"] == 1


def test_register_rejects_bad_arguments() -> None:
    node = make_node(1)
    with pytest.raises(LocalProtocolError):
        node.register("not-an-ip", 80, T0)
    with pytest.raises(LocalProtocolError):
        node.register("127.0.0.1", 0, T0)
    with pytest.raises(LocalProtocolError):
        node.register(node.config.ip, node.config.port, T0)
    with pytest.raises(LocalProtocolError):
        node.register("127.0.0.1", 80, T0, network="nope")


def test_rng_must_be_injected() -> None:
    with pytest.raises(LocalProtocolError):
        GossipNode(make_config(1), rng=None, now=T0)  # type: ignore[arg-type]


def test_core_does_no_io() -> None:
    import ast
    import pathlib

    import gossip.node

    tree = ast.parse(pathlib.Path(gossip.node.__file__).read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not imported & {"socket", "threading", "time", "os", "asyncio", "select"}
    calls = {
        f"{n.func.value.id}.{n.func.attr}"
        for n in ast.walk(tree)
        if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and isinstance(n.func.value, ast.Name)
    }
    assert not {c for c in calls if c.startswith("random.") and c != "random.Random"}
    assert "uuid.uuid4" not in calls


def test_network_key_must_be_long_enough() -> None:
    with pytest.raises(LocalProtocolError):
        Network(name="default", key=b"short")


def test_large_difference_falls_back_to_pages_of_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    """When no IBLT up to the largest size peels, the sides page through their sorted keys."""
    import gossip.sets

    monkeypatch.setattr(gossip.sets, "MAX_IBLT_SIZE", 16)
    monkeypatch.setattr(gossip.sets, "PAGE_SIZE", 40)
    mesh = Mesh([make_node(1, push=False), make_node(2, push=False)])
    a, b = mesh.nodes
    b.register(a.config.ip, a.config.port, mesh.now)
    mesh.deliver()
    made = {a.create_gossip(f"a{i}", mesh.now).guid for i in range(150)}
    made |= {b.create_gossip(f"b{i}", mesh.now).guid for i in range(150)}  # same counts: no hint
    mesh.round()
    assert {g.guid for g in a.gossips()} == made == {g.guid for g in b.gossips()}
    assert a.stats["iblt_retry.gossip"] + b.stats["iblt_retry.gossip"] >= 2
    pages = [verb for _, verb in mesh.log].count("did_you_hear")
    assert pages > 300 // 40  # several pages were asked for


def test_peer_list_cap_refuses_registration_clearly() -> None:
    a = GossipNode(make_config(1), rng=random.Random(1), now=T0, max_peers=1)
    mesh = Mesh([a, make_node(2), make_node(3)])
    _, b, c = mesh.nodes
    b.register(a.config.ip, a.config.port, mesh.now)
    rid = c.register(a.config.ip, a.config.port, mesh.now)
    mesh.deliver()
    [failed] = [e for e in c.events() if isinstance(e, RegisterFailed)]
    assert failed.request_id == rid and failed.status == 503 and "full" in failed.reason
    assert [p.peer.name for p in a.network_status()] == ["node-2"]


def test_one_silent_round_makes_a_peer_suspect_not_dead() -> None:
    mesh = Mesh([make_node(1, max_peers=1), make_node(2, max_peers=1)])
    a, b = mesh.nodes
    b.register(a.config.ip, a.config.port, mesh.now)
    mesh.deliver()
    mesh.down.add(b.config.port)
    a.create_gossip("lost", mesh.now)
    mesh.round()  # the push and the round's probe both fail: one failure, not two
    [view] = a.network_status()
    assert view.status is PeerStatus.SUSPECT and view.failures == 1


# ---------------------------------------------------------------------------- one request per peer a round


@pytest.mark.parametrize("push, fanout", [(False, 3), (True, 1)])
def test_a_round_sends_each_peer_one_request_carrying_both_probes(push: bool, fanout: int) -> None:
    # Without eager push the rounds spread everything: an unsettled round probes
    # gossip_max_peer_count peers. With it pushes do, to that many peers, and a round is
    # repair: one peer.
    mesh = full_mesh(8, max_peers=3, push=push)
    node = mesh.nodes[0]
    node.tick(T0 + 1)
    out = node.outbox()
    assert [o.verb for o in out] == ["did_you_hear"] * fanout and len({o.peer for o in out}) == fanout
    body = json.loads(out[0].data)["body"]
    assert set(body) == {"probe", "hello", "ring"}  # and its key ring (docs/protocol.md)
    assert body["hello"]["n"] == 8 and body["probe"]["n"] == 0  # 8 records (its own too), no gossip


def test_the_combined_probe_reconciles_peers_and_gossips_together() -> None:
    """B knows A; A knows B and C; each holds gossips the other lacks. The one request of B's
    round finds both differences, and the follow-ups fix them: a plain HELLO for the peer
    records, DID_YOU_HEAR ids and TELL_ME_MORE for the gossips."""
    mesh = Mesh([make_node(i, push=False) for i in (1, 2, 3)])
    a, b, c = mesh.nodes
    b.register(a.config.ip, a.config.port, mesh.now)
    c.register(a.config.ip, a.config.port, mesh.now)
    mesh.deliver()
    assert b.peer_count() == 1
    made = {a.create_gossip(f"a{i}", mesh.now).guid for i in range(5)} | {b.create_gossip("b", mesh.now).guid}
    mesh.log.clear()
    mesh.now += 1
    b.tick(mesh.now)  # B alone: its round probes its one peer
    mesh.deliver()
    assert mesh.log[0] == ("node-2", "did_you_hear")
    assert {verb for _, verb in mesh.log} == {"did_you_hear", "hello", "tell_me_more"}
    assert {p.peer.guid for p in b.network_status()} == {a.guid, c.guid}
    assert {g.guid for g in a.gossips()} == made == {g.guid for g in b.gossips()}


# ---------------------------------------------------------------------------- undo: revert and cancel


def test_revert_takes_a_created_gossip_back_out_of_the_node() -> None:
    mesh = full_mesh(3)
    a = mesh.nodes[0]
    kept = a.create_gossip("written", mesh.now)
    a.events()
    mesh.deliver()
    listing = a.gossip_status()
    mesh.now += 1.0  # past the linger of the pushes before: these leave at once
    made = a.create_gossip("write failed", mesh.now)
    events = a.events()
    pushes = a.outbox()
    assert [o.verb for o in pushes] == ["push"] * 2
    a.revert(events)
    for out in pushes:
        a.cancel(out.request_id)
    assert not a.has_gossip(made.guid) and a.gossips() == [kept]
    assert a.gossip_status() == listing and a.next_event() is None
    # Its fingerprint is that of {kept} again: a round finds it in sync with its peers.
    mesh.log.clear()
    mesh.round()
    assert {verb for _, verb in mesh.log} == {"did_you_hear"}
    assert all(n.gossips() == [kept] for n in mesh.nodes)
    assert all(n.network_status()[0].status is PeerStatus.ALIVE for n in mesh.nodes)


def test_revert_drops_a_reverted_gossip_from_the_push_queues() -> None:
    mesh = full_mesh(2)
    a, b = mesh.nodes
    a.create_gossip("first", mesh.now)
    [first] = a.outbox()  # in flight: what follows queues behind it
    second = a.create_gossip("second", mesh.now)
    a.revert([e for e in a.events() if isinstance(e, GossipReceived) and e.gossip == second])
    assert a.outbox() == []
    a.receive_response(first.request_id, b.handle_request(first.data, mesh.now), mesh.now)
    assert a.outbox() == []  # nothing left to push: the second gossip is gone
    assert [g.msg for g in b.gossips()] == ["first"]


def test_revert_forgets_a_peer_that_joined_in_the_failed_batch() -> None:
    a, b = make_node(1), make_node(2)
    records = a.network_status()
    before = a._nets["default"].peer_keys.fingerprint  # noqa: SLF001
    b.register(a.config.ip, a.config.port, T0)
    [out] = b.outbox()
    a.handle_request(out.data, T0)  # the runner would now fail to write, and answer 507
    a.revert(a.events())
    assert a.peer_count() == 0 and a.network_status() == records and a.eager_peers() == ()
    assert a._nets["default"].peer_keys.fingerprint == before  # noqa: SLF001
    a.tick(T0 + 1)
    assert a.outbox() == []  # no round probes a forgotten peer


def test_cancelled_fetch_can_be_asked_again_and_costs_no_liveness() -> None:
    mesh = full_mesh(2, push=False)
    a, b = mesh.nodes
    g = a.create_gossip("fetch me", mesh.now)
    mesh.now += 1
    b.tick(mesh.now)
    [probe] = b.outbox()
    b.receive_response(probe.request_id, a.handle_request(probe.data, mesh.now), mesh.now)
    [fetch] = b.outbox()
    assert fetch.verb == "tell_me_more"
    b.cancel(fetch.request_id)
    b.cancel(fetch.request_id)  # settled ids are ignored
    assert b.network_status()[0].failures == 0 and b.network_status()[0].status is PeerStatus.ALIVE
    assert b.stats["failed.tell_me_more"] == 0
    mesh.round()  # the id is free again: the next round asks for it
    assert b.has_gossip(g.guid)


def test_cancelled_push_frees_its_peer_for_the_next_push() -> None:
    mesh = full_mesh(2)
    a, b = mesh.nodes
    a.create_gossip("one", mesh.now)
    [push] = a.outbox()
    a.create_gossip("two", mesh.now)  # queued behind the push in flight
    assert a.outbox() == []
    a.cancel(push.request_id)
    assert a.eager_peers() == (b.guid,) and a.network_status()[0].failures == 0
    three = a.create_gossip("three", mesh.now)
    [again] = a.outbox()  # a new push goes at once, without what was queued behind the old
    assert [g[0] for g in json.loads(again.data)["body"]["gossips"]] == [three.guid]  # [guid, ...]


def test_cancelled_register_reports_nothing() -> None:
    a, b = make_node(1), make_node(2)
    rid = b.register(a.config.ip, a.config.port, T0)
    b.outbox()
    b.cancel(rid)
    b.tick(T0 + 10)
    assert b.events() == [] and b.next_deadline() > T0 + 10


def test_a_settled_network_probes_less_and_less_and_a_change_brings_back_the_rounds() -> None:
    """Trickle: while nothing changes, one probe every 1, 2, 4, 8 rounds; any change: a probe
    every round again (of one peer with eager push on, of k without: see the next test)."""
    mesh = Mesh([make_node(i, max_peers=3) for i in range(6)])
    mesh.join_all()
    for _ in range(24):  # settle: everyone knows everyone, nothing differs
        mesh.round()
    mesh.log.clear()
    for _ in range(2 * SETTLED_BACKOFF_MAX):
        mesh.round()
    probes = Counter(who for who, verb in mesh.log if verb == "did_you_hear")
    assert set(probes.values()) == {2}, probes  # each node: one probe every SETTLED_BACKOFF_MAX rounds
    mesh.nodes[2].create_gossip("news", mesh.now)
    mesh.deliver()  # pushed at once: every node now holds it, each noted the change
    assert all(n.gossip_count() == 1 for n in mesh.nodes)
    mesh.log.clear()
    mesh.round()
    assert Counter(who for who, verb in mesh.log if verb == "did_you_hear") == {n.config.node_name: 1 for n in mesh.nodes}
    mesh.log.clear()
    for _ in range(3):
        mesh.round()  # the change seen, rounds settle again: 1 probe, then 1 after a rest of 1
    probes = Counter(who for who, verb in mesh.log if verb == "did_you_hear")
    assert all(count <= 3 for count in probes.values()) and sum(probes.values()) < 3 * len(mesh.nodes)


def _made_up_ids(rng: random.Random, count: int) -> tuple[str, ...]:
    """Made-up gossip keys: a made-up guid and content hash (the tombstone bit clear)."""
    return tuple(key_hex((uuid.UUID(int=rng.getrandbits(128), version=4).int << 128) | rng.getrandbits(127)) for _ in range(count))


def test_ids_announced_by_members_are_capped_per_source_and_in_total() -> None:
    """Issue 10, item 7: 40 DID_YOU_HEARs of 4,096 made-up ids left 163,840 pending ids."""
    mesh = full_mesh(6)
    a, members = mesh.nodes[0], mesh.nodes[1:]
    rng = random.Random(7)
    for member in members:
        for _ in range(8):
            member._send_to(member._nets["default"], a.guid, m.DidYouHear(ids=_made_up_ids(rng, m.MAX_IDS)), mesh.now)  # noqa: SLF001
    mesh.deliver()
    net = a._nets["default"]  # noqa: SLF001
    assert len(net.pending) == MAX_PENDING < 5 * MAX_PENDING_PER_SOURCE
    assert max(net.pending_by.values()) <= MAX_PENDING_PER_SOURCE
    assert a.stats["rejected.pending_cap"] == 5 * 8 * m.MAX_IDS - MAX_PENDING
    assert sum(not row.complete for row in a.gossip_status()) == MAX_PENDING


def test_ids_nobody_delivers_stop_being_pending() -> None:
    """A source that answers without the id stops being its source; an id left with no source,
    or pending past the TTL, is dropped. A real gossip announced alongside still arrives."""
    mesh = full_mesh(3)
    a, liar, silent = mesh.nodes
    rng = random.Random(8)
    real = liar.create_gossip("real", mesh.now)
    mesh.deliver()
    assert a.has_gossip(real.guid)
    fake = _made_up_ids(rng, 300)
    liar._send_to(liar._nets["default"], a.guid, m.DidYouHear(ids=fake), mesh.now)  # noqa: SLF001
    mesh.deliver()
    net = a._nets["default"]  # noqa: SLF001
    assert set(fake) <= set(net.pending)
    for _ in range(4):
        mesh.round()  # A fetches from the liar, whose answers lack them
    assert not set(fake) & set(net.pending) and not net.pending_by
    # A source that never answers: its ids expire after the TTL.
    late = _made_up_ids(rng, 5)
    silent._send_to(silent._nets["default"], a.guid, m.DidYouHear(ids=late), mesh.now)  # noqa: SLF001
    mesh.deliver()
    mesh.down.add(silent.config.port)
    ttl = max(PENDING_TTL, PENDING_TTL_ROUNDS * a.config.gossip_timer)
    for _ in range(int(ttl) + 10):
        mesh.round()
        if not net.pending:
            break
    assert not net.pending and not net.pending_by
    assert a.stats["expired.pending"] >= 1


def _forged(node: GossipNode, sender: str, body: m.Message, now: float) -> bytes:
    """A request signed with the network key (as any member can) under any ``from``."""
    return m.encode(
        body, network="default", sender=sender, key=KEYS["default"], nonce=uuid.uuid4().hex, ts=int(now * 1000),
        to=node.guid,
    )


def test_a_member_cannot_take_another_nodes_guid_for_good() -> None:
    """Issue 10, item 6: announcing X's guid at another address with incarnation 2^53-1
    redirected X's traffic for good. Hearsay never moves a record its own node gave; a forged
    first-hand claim lasts only until X itself speaks; a restarted X wins its record back."""
    mesh = Mesh([make_node(i) for i in range(1, 5)])
    mesh.join_all()
    a, b, x, evil = mesh.nodes
    real = x.config.self_peer("default")
    stolen = dataclasses.replace(real, ip=evil.config.ip, port=evil.config.port, incarnation=2**53 - 1)

    def held(node: GossipNode) -> Peer:
        return node._nets["default"].peers[x.guid].peer  # noqa: SLF001

    # Hearsay, passed on by the member under its own name: A heard X first-hand, so no.
    a.handle_request(_forged(a, evil.guid, m.Hello(peers=(stolen,)), mesh.now), mesh.now)
    assert held(a) == real and a.stats["rejected.peer_hearsay"] == 1
    # A forged first-hand claim (from = X) is believed...
    b.handle_request(_forged(b, x.guid, m.Hello(peers=(stolen,)), mesh.now), mesh.now)
    assert held(b) == stolen
    # ...until X's own records reach B: X's rounds reconcile peer records with B.
    for _ in range(40):
        mesh.round()
        if held(b) == real:
            break
    assert held(b) == real
    # X restarts knowing nothing, incarnation 0, and registers: A takes its record back.
    a.handle_request(_forged(a, x.guid, m.Hello(peers=(stolen,)), mesh.now), mesh.now)
    assert held(a) == stolen
    reborn = GossipNode(x.config, rng=random.Random(99), now=mesh.now)
    mesh.nodes[2] = reborn
    reborn.register(a.config.ip, a.config.port, mesh.now)
    mesh.deliver()
    assert held(a) == real
    # and the stolen record, passed on again as hearsay, does not move it
    a.handle_request(_forged(a, evil.guid, m.Hello(peers=(stolen,)), mesh.now), mesh.now)
    assert held(a) == real


def test_made_up_peer_records_cannot_crowd_out_honest_peers() -> None:
    """Issue 10, item 5: two HELLOs of 2,048 fake records filled the peer list: REGISTER got
    503, spreading slowed from 0.2 s to over 60 s, and the fakes stayed for ever."""
    cap = 64
    nodes = [GossipNode(make_config(i), rng=random.Random(i), now=T0, max_peers=cap) for i in range(1, 4)]
    mesh = Mesh(nodes)
    a, b, evil = nodes
    b.register(a.config.ip, a.config.port, mesh.now)
    evil.register(a.config.ip, a.config.port, mesh.now)
    mesh.deliver()
    fakes = tuple(
        Peer(guid=str(uuid.UUID(int=i + 1, version=4)), name=f"fake-{i}", ip=f"127.9.{i // 250}.{i % 250 + 1}",
             port=7000, network_name="default")
        for i in range(2 * cap)
    )
    for half in (fakes[:cap], fakes[cap:]):
        a.handle_request(_forged(a, evil.guid, m.Hello(peers=half), mesh.now), mesh.now)
    held = a._nets["default"].peers  # noqa: SLF001
    assert len(held) == cap - cap // 8  # hearsay leaves room for REGISTER
    assert b.guid in held and evil.guid in held  # honest (first-hand) records are never evicted
    # A new honest node can still join: its REGISTER evicts a fake.
    c = GossipNode(make_config(4), rng=random.Random(4), now=T0, max_peers=cap)
    mesh.nodes.append(c)
    rid = c.register(a.config.ip, a.config.port, mesh.now)
    mesh.deliver()
    assert any(isinstance(e, Registered) and e.request_id == rid for e in c.events())
    assert c.guid in held
    # Spreading between honest nodes stays a matter of rounds, not minutes.
    made = b.create_gossip("through the fog", mesh.now)
    for _ in range(5):
        mesh.round()
    assert a.has_gossip(made.guid) and c.has_gossip(made.guid)
    # Fakes, once tried and never answering, are forgotten after the TTL (and not taken back
    # from the peers that still hold them): all of them, here within three TTLs, as settled
    # rounds try them one by one.
    ttl = max(UNPROVEN_TTL, UNPROVEN_TTL_ROUNDS * a.config.gossip_timer)
    for _ in range(3 * int(ttl)):
        mesh.round(1.0)
        if not any(f.guid in held for f in fakes):
            break
    assert not any(f.guid in held for f in fakes)
    assert {b.guid, c.guid, evil.guid} <= set(held)
    assert a.stats["expired.unproven_peer"] + a.stats["evicted.unproven_peer"] >= len(fakes) - (cap - cap // 8) + 3


def _quota_node(index: int, **limits: int) -> GossipNode:
    config = dataclasses.replace(
        make_config(index), networks=(Network(name="default", key=KEYS["default"], quota=Quota(**limits)),)
    )
    return GossipNode(config, rng=random.Random(index), now=T0)


def test_a_networks_quota_refuses_creates_clearly() -> None:
    """Issue 10, item 10: a member created 300 gossips of 64 KiB in 3 s. Per-network limits."""
    node = _quota_node(1, max_gossip_bytes=100, creates_per_minute=3, max_network_bytes=10_000)
    with pytest.raises(GossipError) as info:
        node.create_gossip("é" * 51, T0)  # 102 bytes of UTF-8
    assert (info.value.status_hint, info.value.code) == (413, ErrorCode.TOO_LARGE)
    for i in range(3):
        node.create_gossip(f"burst {i}", T0)
    with pytest.raises(GossipError, match="3 creates a minute") as info:
        node.create_gossip("one too many", T0 + 1)
    assert (info.value.status_hint, info.value.code) == (429, ErrorCode.QUOTA)
    node.create_gossip("a token came back", T0 + 21)  # 3 a minute: one every 20 s
    assert node.gossip_count() == 4
    full = _quota_node(2, max_network_bytes=300, creates_per_minute=100)
    full.create_gossip("x" * 40, T0)  # about 200 bytes of JSON
    with pytest.raises(GossipError, match="is full") as info:
        full.create_gossip("y" * 40, T0)
    assert (info.value.status_hint, info.value.code) == (429, ErrorCode.QUOTA)


def test_a_networks_quota_keeps_what_arrives_within_it() -> None:
    """Gossips over the size limit, or past the network's bytes, are not stored when they
    arrive (counted); the rest of the batch is."""
    small = _quota_node(2, max_gossip_bytes=50, max_network_bytes=2 * 230)
    big = make_node(1)
    mesh = Mesh([big, small])
    small.register(big.config.ip, big.config.port, mesh.now)
    mesh.deliver()
    kept = [big.create_gossip(f"fits {i}", mesh.now) for i in range(2)]
    too_long = big.create_gossip("z" * 51, mesh.now)
    overflow = big.create_gossip("fits too, but the network is full", mesh.now)
    for _ in range(5):
        mesh.round()
    assert {g.guid for g in small.gossips()} == {g.guid for g in kept}
    assert not small.has_gossip(too_long.guid) and not small.has_gossip(overflow.guid)
    assert small.stats["rejected.quota_gossip_bytes"] >= 1 and small.stats["rejected.quota_network_bytes"] >= 1


def test_network_status_knows_which_peers_hold_the_same_set() -> None:
    """Issue 12, item 3: each peer's last known set summary, against this node's set now."""
    mesh = full_mesh(3)
    a, b, c = mesh.nodes

    def in_sync(peer: GossipNode) -> bool | None:
        return a.peer_in_sync("default", peer.guid)[0]

    assert a.peer_in_sync("default", b.guid) == (None, None)  # nothing exchanged yet
    for _ in range(3):
        mesh.round()
    assert in_sync(b) is True and in_sync(c) is True
    known_at = a.peer_in_sync("default", b.guid)[1]
    assert known_at is not None and T0 < known_at <= mesh.now
    a.create_gossip("news", mesh.now)  # a's set changes: nobody is known to hold it yet
    assert in_sync(b) is False
    mesh.deliver()
    for _ in range(4):
        mesh.round()
    assert in_sync(b) is True and in_sync(c) is True
    assert a.peer_in_sync("default", a.guid) == (None, None)  # not a peer


def test_peer_view_is_one_peer_of_network_status() -> None:
    mesh = full_mesh(3)
    a = mesh.nodes[0]
    for view in a.network_status():
        assert a.peer_view("default", view.peer.guid) == view
    assert a.peer_view("default", a.guid) is None and a.peer_view("default", "not-a-peer") is None


def test_the_received_event_the_core_builds_is_the_public_one() -> None:
    """The core builds GossipReceived without calling __init__ (every gossip learnt makes
    one): it must be the same frozen, comparable, hashable event."""
    mesh = full_mesh(2)
    a, b = mesh.nodes
    b.events()
    g = a.create_gossip("made here", mesh.now)
    mesh.deliver()
    [event] = [e for e in b.events() if isinstance(e, GossipReceived)]
    public = GossipReceived(network="default", gossip=g, source=a.guid, cursor=event.cursor)
    assert event == public and hash(event) == hash(public) and repr(event) == repr(public)
    assert event.cursor >= 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.cursor = 5  # type: ignore[misc]
