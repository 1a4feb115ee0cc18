"""The active view (issue 11, items 1, 2 and 6): symmetric links past full_view_limit, rounds
and eager push over them, repair after crashes, shuffles and the network-size estimate."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gossip import messages as m
from gossip.errors import RemoteProtocolError
from gossip.model import NodeConfig, PeerView
from gossip.node import GossipNode
from gossip.sets import ActiveView
from gossip.sim import Simulator
from gossip.storage import MemoryStorage
from tests.helpers import KEYS, T0, connected, make_config


def active_sim(nodes: int, seed: int, cap: int, *, active: int = 5, limit: int = 8, loss: float = 0.0) -> Simulator:
    """A simulator whose nodes use the active view: each starts from a sampled view and is
    rebuilt from its stored state with ``active_view`` and ``full_view_limit`` set (the
    simulator's own nodes keep the defaults, under which small networks use no active view)."""
    sim = Simulator(nodes=nodes, seed=seed, bootstrap_mode="sample", max_peers=cap, loss=loss)
    for member in sim.members:
        member.config = replace(member.config, active_view=active, full_view_limit=limit)
        member.node = GossipNode(
            member.config, rng=random.Random(member.seed), now=sim.now, snapshot=member.storage.load(), max_peers=cap
        )
    return sim


def quiet(sim: Simulator) -> None:
    """Deliver every message under way (and what they set off), without starting a round."""
    while (due := sim.network.next_due()) is not None:
        sim.network.run_until(due)


def live_active(sim: Simulator) -> dict[str, tuple[str, ...]]:
    return {mem.node.guid: mem.node.active_peers() for mem in sim.members if mem.up}


def asymmetric(views: dict[str, tuple[str, ...]]) -> list[tuple[str, str]]:
    """Links held on one side only (a link to a node not live counts)."""
    return [(a, b) for a, peers in views.items() for b in peers if b not in views or a not in views[b]]



def settle(sim: Simulator, rounds: int) -> dict[str, tuple[str, ...]]:
    """Step until the active views are symmetric between rounds (at most ``rounds`` steps):
    a LINK answer and a ``drop`` that crossed leave a one-sided link until the next shuffle
    over it."""
    for _ in range(rounds):
        sim.step()
        quiet(sim)
        views = live_active(sim)
        if not asymmetric(views):
            return views
    return live_active(sim)


# ------------------------------------------------------------------------------- the object
def test_active_view_evicts_at_random_when_full_and_never_holds_twice() -> None:
    view = ActiveView(size=2)
    rng = random.Random(1)
    assert view.add("a", rng) is None and view.add("a", rng) is None
    assert view.add("b", rng) is None and view.peers() == ("a", "b") and view.missing() == 0
    evicted = view.add("c", rng)
    assert evicted in ("a", "b") and len(view) == 2 and "c" in view and evicted not in view
    view.asking.add("d")
    assert view.remove("c") and not view.remove("c") and view.missing() == 0  # one slot, one ask out
    assert view.add("d", rng) is None and not view.asking


def test_size_estimate_is_schnabels_and_never_below_the_known_count() -> None:
    view = ActiveView()
    assert view.estimate(known=7) == 7  # no sample yet
    view.sample_seen(known=10, sampled=8, already=1)  # 10 x 8 / 1
    assert view.estimate(known=7) == 80
    view.sample_seen(known=10, sampled=8, already=7)  # (0.9 x 80 + 80) / (0.9 + 7)
    assert view.estimate(known=7) == round(152 / 7.9)
    assert view.estimate(known=50) == 50


def test_config_validates_the_view_sizes() -> None:
    base = make_config(1)
    assert (base.active_view, base.full_view_limit) == (6, 1000)
    for bad in ({"active_view": 0}, {"active_view": 65}, {"full_view_limit": 0}, {"active_view": True}, {"full_view_limit": 2.5}):
        with pytest.raises(Exception, match="active_view|full_view_limit"):
            NodeConfig(node_guid=base.node_guid, node_name="n", networks=base.networks, **bad)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ one node
def _node_knowing(known: int, *, limit: int, active: int = 3) -> GossipNode:
    storage = MemoryStorage()
    for i in range(2, known + 2):
        storage.save_peer(PeerView(peer=make_config(i).self_peer("default")))
    config = replace(make_config(1), active_view=active, full_view_limit=limit)
    return GossipNode(config, rng=random.Random(1), now=T0, snapshot=storage.load(), max_peers=64)


def _sent(node: GossipNode) -> list[tuple[str | None, m.Message]]:
    return [(o.peer, m.decode(o.data, lambda _: KEYS["default"]).body) for o in node.outbox()]


def test_below_the_limit_no_link_is_sent_and_rounds_use_every_peer() -> None:
    node = _node_knowing(10, limit=11)  # 11 nodes known, itself included: not past the limit
    assert not node.uses_active_view()
    assert node.network_size() == 11  # the nodes it knows, itself included
    contacted = set()
    for r in range(40):
        node.tick(node.next_deadline())
        sent = _sent(node)
        assert not any(isinstance(body, m.Link) for _, body in sent)
        contacted |= {peer for peer, body in sent if isinstance(body, m.DidYouHear)}
    assert len(contacted) > 5 and node.active_peers() == ()
    assert node.network_size() < 11  # nothing answered: dead peers are not counted


def test_past_the_limit_an_empty_view_sends_one_join_and_one_passive_probe() -> None:
    node = _node_knowing(12, limit=12)
    assert node.uses_active_view()
    node.tick(node.next_deadline())
    sent = _sent(node)
    links = [(peer, body) for peer, body in sent if isinstance(body, m.Link)]
    assert [body.op for _, body in links] == ["join"]
    assert links[0][1].node == node.config.self_peer("default")
    # No active peer yet: the round probes only the one passive peer of a shuffle round.
    assert len([peer for peer, body in sent if isinstance(body, m.DidYouHear)]) == 1


def test_link_answers_ask_refused_when_full_join_evicts_and_tells_drop_removes() -> None:
    hub = _node_knowing(12, limit=12, active=2)
    peers = [make_config(i) for i in range(2, 6)]

    def link(i: int, op: str) -> m.LinkReply:
        config = peers[i]
        sender = config.self_peer("default")
        data = m.encode(
            m.Link(op=op, node=sender if op in ("join", "ask") else None), network="default", sender=config.node_guid,
            key=KEYS["default"], nonce=f"{random.Random(op + str(i)).getrandbits(96):024x}", ts=int(T0 * 1000) + 1,
            to=hub.guid,
        )
        reply = m.decode(hub.handle_request(data, T0 + 0.001), lambda _: KEYS["default"]).body
        assert isinstance(reply, m.LinkReply)
        return reply

    guid = [p.node_guid for p in peers]
    assert link(0, "ask").accepted and link(1, "ask").accepted
    assert set(hub.active_peers()) == {guid[0], guid[1]}
    assert not link(2, "ask").accepted  # full: an ask is refused
    assert link(3, "join").accepted  # a join is taken: a random member goes, and is told
    assert not link(2, "join").accepted  # but one eviction a round at most (made-up joiners)
    assert guid[3] in hub.active_peers() and len(hub.active_peers()) == 2
    [(evicted, drop)] = [(p, b) for p, b in _sent(hub) if isinstance(b, m.Link)]
    assert drop == m.Link(op="drop") and evicted in (guid[0], guid[1]) and evicted not in hub.active_peers()
    kept = next(g for g in guid[:2] if g != evicted)
    assert link(guid.index(kept), "drop").accepted and hub.active_peers() == (guid[3],)
    with pytest.raises(RemoteProtocolError, match="own record"):
        _link_without_record(hub, peers[2])  # join and ask must carry the sender's record


def _link_without_record(hub: GossipNode, config: NodeConfig) -> None:
    data = m.encode(
        m.Link(op="ask"), network="default", sender=config.node_guid, key=KEYS["default"], nonce="ab" * 12,
        ts=int(T0 * 1000) + 2, to=hub.guid,
    )
    hub.handle_request(data, T0 + 0.002)


# ------------------------------------------------------------------------- the overlay
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    nodes=st.integers(min_value=12, max_value=50),
    cap=st.integers(min_value=10, max_value=20),
    active=st.integers(min_value=2, max_value=6),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_active_views_are_bounded_without_self_or_duplicates_and_symmetric_once_quiet(
    nodes: int, cap: int, active: int, seed: int
) -> None:
    sim = active_sim(nodes, seed, cap, active=active, limit=4)
    for _ in range(15):
        sim.step()
        for mem in sim.members:
            view = mem.node.active_peers()
            assert len(view) <= active
            assert mem.node.guid not in view
            assert len(view) == len(set(view))
            known = {v.peer.guid for v in mem.node.network_status()}
            assert set(view) <= known  # active members are peers it holds records of
            assert set(mem.node.eager_peers()) <= set(view)  # the Plumtree runs over the active view
    views = settle(sim, 60)
    assert not asymmetric(views)
    assert all(views.values())  # nobody is left without a link
    # Small views may split the overlay (two cycles of a 2-regular graph); the passive
    # probe of each shuffle round still carries every gossip across.
    sim.create(3)
    sim.run(max_rounds=80)
    assert sim.converged()


def test_active_overlay_reconnects_and_converges_after_half_the_nodes_crash() -> None:
    n, cap = 120, 16
    sim = active_sim(n, seed=7, cap=cap, active=5, limit=8)
    views = settle(sim, 40)
    assert connected(views) and not asymmetric(views)
    sim.crash_fraction(0.5)
    live = {mem.node.guid for mem in sim.members if mem.up}
    assert len(live) == n // 2
    views = settle(sim, 80)  # repair: dead members dropped, replaced from the records held
    assert all(set(peers) <= live for peers in views.values()), "a dead node is still in an active view"
    assert all(views.values()) and not asymmetric(views)
    assert connected(views)
    sim.create(10)
    rounds = sim.run(max_rounds=40)
    assert sim.converged(), f"live nodes did not converge in {rounds} rounds"
    assert all(len(mem.node.active_peers()) <= 5 for mem in sim.members if mem.up)


def test_size_estimate_follows_the_network_past_the_limit() -> None:
    n = 300
    sim = active_sim(n, seed=2, cap=32, limit=8)
    for _ in range(40):
        sim.step()
    estimates = sorted(mem.node.network_size() for mem in sim.members)
    median = estimates[len(estimates) // 2]
    assert all(e >= 29 for e in estimates)  # never below what a node knows (28 records and itself)
    assert n / 2 <= median <= 2 * n, estimates[:: n // 10]


def test_active_view_runs_are_reproducible() -> None:
    def run(seed: int) -> tuple[int, int, list[tuple[str, ...]]]:
        sim = active_sim(60, seed, 12, limit=6)
        sim.create(5)
        rounds = sim.run(max_rounds=60)
        assert sim.converged()
        return rounds, sim.network.stats.bytes, [mem.node.active_peers() for mem in sim.members]

    assert run(3) == run(3)
    assert run(3) != run(4)
