"""Plain and irregular peers (issue 11, simulator CPU): a round looks only at the peers that
are not plain (``_Net.irregular``) and takes the rest wholesale. These tests hold that to the
scan of every peer it replaces: the same choices, the same run, byte for byte."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gossip.sim
from gossip.liveness import Liveness, LivenessPolicy
from gossip.model import PeerStatus, PeerView, Snapshot
from gossip.node import GossipNode, _Net, _PeerEntry
from gossip.sim import Simulator
from tests.helpers import T0, make_config

ALIVE, SUSPECT, DEAD, LEFT = PeerStatus.ALIVE, PeerStatus.SUSPECT, PeerStatus.DEAD, PeerStatus.LEFT


class ScanningNode(GossipNode):
    """The node as it was before the irregular set: every peer is looked at, every time."""

    @staticmethod
    def _irregular(net: _Net) -> list[_PeerEntry]:
        return list(net.peers.values())

    @staticmethod
    def _known(net: _Net) -> set[str]:
        gone = (PeerStatus.DEAD, PeerStatus.LEFT)
        return {g for g, e in net.peers.items() if e.liveness.status not in gone}


def _scanned_eligible(node: GossipNode, net: _Net, now: float) -> list[str]:
    """``_eligible`` as a scan of every peer (the code it replaced)."""
    partial = node._partial(net)  # noqa: SLF001
    entries = [net.peers[g] for g in net.active.peers() if g in net.peers] if partial else list(net.peers.values())
    eligible = [e for e in entries if e.liveness.eligible(now)]
    sound = [e.peer.guid for e in eligible if not e.doubtful]
    return sound or [e.peer.guid for e in eligible]


def _check(sim: Simulator) -> None:
    """Each live node: every peer that is not plain is in the irregular set, which holds
    known peers only, and the choices built from it equal a scan's."""
    for member in sim.members:
        if not member.up:
            continue
        node = member.node
        for net in node._nets.values():  # noqa: SLF001
            odd = {g for g, e in net.peers.items() if e.fresh or not e.liveness.plain()}
            assert odd <= net.irregular <= net.peers.keys()
            assert node._eligible(net, sim.now) == _scanned_eligible(node, net, sim.now)  # noqa: SLF001
            assert node._known(net) == ScanningNode._known(net)  # noqa: SLF001


def _scenario(sim: Simulator, ops: list[tuple[str, int]], check: bool) -> list[object]:
    """Run ``ops`` on the simulator; return everything observable that chance could change."""
    sim.bootstrap(max_rounds=30)
    for op, arg in ops:
        live = [m.index for m in sim.members if m.up]
        down = [m.index for m in sim.members if not m.up]
        if op == "create":
            sim.create(arg % 3 + 1)
        elif op == "crash" and len(live) > 1:
            sim.crash(live[arg % len(live)])
        elif op == "restart" and down:
            sim.restart(down[arg % len(down)])
        elif op == "join":
            sim.join(1)
        elif op == "partition" and len(sim.members) > 2:
            sim.partition(range(arg % (len(sim.members) - 1) + 1), range(arg % (len(sim.members) - 1) + 1, len(sim.members)))
        elif op == "heal":
            sim.heal()
        sim.step()
        if check:
            _check(sim)
    out: list[object] = [sim.network.stats, sim.pushes]
    for member in sim.members:
        node = member.node
        out.append((member.up, sorted(node.stats.items()), node.network_status(), sorted(g.guid for g in node.gossips())))
    return out


OPS = st.lists(
    st.tuples(st.sampled_from(["step", "create", "crash", "restart", "join", "partition", "heal"]), st.integers(0, 1000)),
    min_size=1,
    max_size=14,
)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    nodes=st.integers(min_value=2, max_value=14),
    seed=st.integers(min_value=0, max_value=2**32),
    loss=st.sampled_from([0.0, 0.1, 0.4]),
    mode=st.sampled_from(["full", "register", "sample", "active"]),
    ops=OPS,
)
def test_the_irregular_set_gives_the_run_a_scan_of_every_peer_gives(
    nodes: int, seed: int, loss: float, mode: str, ops: list[tuple[str, int]]
) -> None:
    def run(scanning: bool) -> list[object]:
        kw: dict[str, object] = {"bootstrap_mode": "full" if mode == "active" else mode}
        if mode == "sample":
            kw["max_peers"] = 6
        if mode == "active":  # past full_view_limit: rounds over the active view
            kw.update(full_view_limit=3, active_view=2)
        sim = Simulator(nodes=nodes, seed=seed, loss=loss, **kw)  # type: ignore[arg-type]
        return _scenario(sim, ops, check=not scanning)

    mp = pytest.MonkeyPatch()
    try:
        mp.setattr(gossip.sim, "GossipNode", ScanningNode)
        scanned = run(scanning=True)
    finally:
        mp.undo()
    assert run(scanning=False) == scanned


def test_a_failed_peer_is_irregular_until_it_answers() -> None:
    sim = Simulator(nodes=4, seed=2)
    a, b = sim.members[0], sim.members[1]
    net = a.node._nets[gossip.sim.NETWORK]  # noqa: SLF001
    assert not net.irregular  # every peer starts plain
    sim.crash(b.index)
    entry = net.peers[b.config.node_guid]
    for _ in range(60):  # settled nodes probe rarely: bounded, not a fixed count
        sim.create(1)
        sim.step()
        _check(sim)
        if entry.liveness.status is DEAD:
            break
    assert entry.liveness.status is DEAD
    assert b.config.node_guid in net.irregular
    sim.restart(b.index)
    for _ in range(60):
        sim.step()
        _check(sim)
        if entry.liveness.status is ALIVE:
            break
    assert entry.liveness.status is ALIVE
    assert not net.irregular  # plain again, and out of the set


def test_plain_is_alive_with_no_failure_since_the_last_answer() -> None:
    policy = LivenessPolicy()
    live = Liveness()
    assert live.plain()
    live.failed(10.0, policy)
    assert not live.plain() and live.status is SUSPECT
    live.succeeded(11.0)
    assert live.plain()
    live.set_left(True)
    assert not live.plain()
    live.set_left(False)
    assert live.plain()
    assert not Liveness(status=DEAD).plain()
    assert not Liveness(failures=1).plain()  # a stored record alive with failures (never made here)
    assert not Liveness(retry_at=5.0).plain()


def test_restored_peers_that_are_not_plain_are_irregular() -> None:
    peers = [make_config(i).self_peer("default") for i in range(2, 7)]
    views = [
        PeerView(peer=peers[0]),
        PeerView(peer=peers[1], status=DEAD, last_seen=T0 - 50, failures=4),
        PeerView(peer=peers[2], status=SUSPECT, failures=1),  # never seen: doubtful
        PeerView(peer=replace(peers[3], left=True, incarnation=1)),
        PeerView(peer=peers[4], last_seen=T0 - 5),
    ]
    node = GossipNode(make_config(1), rng=random.Random(1), now=T0, snapshot=Snapshot(peers={"default": views}))
    net = node._nets["default"]  # noqa: SLF001
    assert net.irregular == {peers[1].guid, peers[2].guid, peers[3].guid}
    # The order of a scan: node._irregular keeps net.peers order, and the choices match it.
    assert [e.peer.guid for e in node._irregular(net)] == [peers[1].guid, peers[2].guid, peers[3].guid]  # noqa: SLF001
    assert node._eligible(net, T0) == [peers[0].guid, peers[1].guid, peers[4].guid]  # noqa: SLF001
    assert node._eligible(net, T0) == _scanned_eligible(node, net, T0)  # noqa: SLF001
    assert node._known(net) == {peers[0].guid, peers[2].guid, peers[4].guid}  # noqa: SLF001


def _restored_by_hand(config_index: int, views: list[PeerView], max_peers: int) -> GossipNode:
    """A node given ``views`` one at a time, as ``_restore`` did before its batch path."""
    node = GossipNode(make_config(config_index), rng=random.Random(1), now=T0, max_peers=max_peers)
    net = node._nets["default"]  # noqa: SLF001
    for view in views:
        if view.peer.guid == node.guid or view.peer.network_name != "default":
            continue
        entry = node._put_peer(net, view.peer, T0, limit=max_peers)  # noqa: SLF001
        if entry is not None:
            entry.liveness = Liveness(status=view.status, last_seen=view.last_seen, failures=view.failures)
            entry.liveness.set_left(view.peer.left)
            node._note(net, entry)  # noqa: SLF001
    return node


def _peer_state(node: GossipNode) -> list[object]:
    net = node._nets["default"]  # noqa: SLF001
    return [
        [(g, e.peer, e.key, e.learnt, e.liveness) for g, e in net.peers.items()],
        list(net.peer_set.records.items()),
        (len(net.peer_keys), net.peer_keys.fingerprint),
        net.irregular,
    ]


VIEWS = st.lists(
    st.builds(
        lambda i, status, seen, failures, left: PeerView(
            peer=replace(make_config(i).self_peer("default"), left=left, incarnation=int(left)),
            status=status, last_seen=seen, failures=failures,
        ),
        st.integers(1, 12),  # 1 is the node itself; repeats are a record stored twice
        st.sampled_from(list(PeerStatus)),
        st.one_of(st.none(), st.just(T0 - 10)),
        st.integers(0, 4),
        st.booleans(),
    ),
    max_size=14,
)


@settings(max_examples=60, deadline=None)
@given(views=VIEWS, max_peers=st.integers(2, 16))
def test_restoring_in_one_batch_holds_what_one_at_a_time_does(views: list[PeerView], max_peers: int) -> None:
    node = GossipNode(make_config(1), rng=random.Random(1), now=T0, max_peers=max_peers,
                      snapshot=Snapshot(peers={"default": views}))
    assert _peer_state(node) == _peer_state(_restored_by_hand(1, views, max_peers))
