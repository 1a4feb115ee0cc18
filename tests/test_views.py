"""Bounded membership (issue 11): no peer-set reconciliation past the cap; the simulator's sampled views."""

from __future__ import annotations

import io
import random
from contextlib import redirect_stderr, redirect_stdout

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gossip import messages as m
from gossip.model import PeerView
from gossip.node import PEER_RESERVE_DIVISOR, GossipNode
from gossip.sim import Simulator, main, simulate
from gossip.storage import MemoryStorage
from tests.helpers import KEYS, T0, connected, full_mesh, make_config


def _hearsay_limit(cap: int) -> int:
    return cap - max(1, cap // PEER_RESERVE_DIVISOR)


def _round_hellos(known: int, cap: int) -> list[bool]:
    """Whether each DID_YOU_HEAR of one round of a node that knows ``known`` peers carries a HELLO probe."""
    storage = MemoryStorage()
    for i in range(2, known + 2):
        storage.save_peer(PeerView(peer=make_config(i).self_peer("default")))
    node = GossipNode(make_config(1, max_peers=known), rng=random.Random(1), now=T0, snapshot=storage.load(), max_peers=cap)
    assert node.peer_count() == known
    node.tick(node.next_deadline())
    sent = [m.decode(o.data, lambda _: KEYS["default"]).body for o in node.outbox() if o.verb == m.DidYouHear.TYPE]
    assert sent
    return [isinstance(body, m.DidYouHear) and body.hello is not None for body in sent]


def test_peer_sets_are_reconciled_only_while_hearsay_has_room() -> None:
    cap = 16
    limit = _hearsay_limit(cap)
    assert all(_round_hellos(limit - 1, cap))  # below the cap: as before, peers reconcile
    assert not any(_round_hellos(limit, cap))  # at it: the view is kept, no HELLO over all records


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    nodes=st.integers(min_value=2, max_value=60),
    cap=st.integers(min_value=2, max_value=24),
    seed=st.integers(min_value=0, max_value=2**32),
    steps=st.integers(min_value=0, max_value=4),
)
def test_sampled_views_stay_bounded_without_self_or_duplicates(nodes: int, cap: int, seed: int, steps: int) -> None:
    sim = Simulator(nodes=nodes, seed=seed, bootstrap_mode="sample", max_peers=cap)
    sim.create(2)
    for step in range(steps + 1):
        for member in sim.members:
            known = [v.peer.guid for v in member.node.network_status()]
            assert member.node.guid not in known
            assert len(known) == len(set(known))
            assert len(known) <= cap
            if step == 0:  # the start: a sample as large as hearsay may fill, or everyone
                assert len(known) == min(nodes - 1, _hearsay_limit(cap))
        sim.step()


def _live_graph_connected(sim: Simulator) -> bool:
    """Whether the live nodes form one component when each links to the live peers it knows (either way)."""
    return connected(
        {m.node.guid: [view.peer.guid for view in m.node.network_status()] for m in sim.members if m.up}
    )


def test_overlay_stays_connected_and_converges_after_half_the_nodes_crash() -> None:
    n, cap = 400, 16  # views of 14: about 1.6 x log2 N
    sim = Simulator(nodes=n, seed=11, bootstrap_mode="sample", max_peers=cap)
    for index in random.Random(5).sample(range(n), n // 2):
        sim.crash(index)
    assert _live_graph_connected(sim)
    sim.create(20)
    rounds = sim.run(max_rounds=60)
    assert sim.converged(), f"not converged after {rounds} rounds"
    assert all(m.node.peer_count() <= cap for m in sim.members if m.up)


def test_gossip_converges_above_the_cap_with_bounded_views_and_no_peer_reconciliation() -> None:
    n, cap = 1500, 24  # N above the node's default cap of 1,024: the case that was N^2
    sim = Simulator(nodes=n, seed=3, bootstrap_mode="sample", max_peers=cap)
    sim.create(20)
    rounds = sim.run(max_rounds=40)
    assert sim.converged()
    assert rounds <= 15
    assert max(m.node.peer_count() for m in sim.members) <= cap
    assert sum(m.node.stats["sent.hello"] for m in sim.members) == 0  # views full: no HELLO at all


def test_sampled_runs_are_reproducible() -> None:
    a = simulate(nodes=300, messages=5, seed=9, bootstrap="sample", max_peers=12, loss=0.1)
    b = simulate(nodes=300, messages=5, seed=9, bootstrap="sample", max_peers=12, loss=0.1)
    c = simulate(nodes=300, messages=5, seed=10, bootstrap="sample", max_peers=12, loss=0.1)
    assert a.converged and a == b
    assert (a.requests, a.bytes) != (c.requests, c.bytes)
    assert a.to_dict()["max_peers"] == 12
    assert a.to_dict()["bytes_per_node_round"] == round(a.bytes / 300 / a.rounds, 1)


def test_cli_sample_bootstrap_and_stats() -> None:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(["--nodes", "120", "--messages", "3", "--bootstrap", "sample", "--max-peers", "10", "--json", "--stats"])
    assert code == 0
    assert '"max_peers": 10' in out.getvalue()
    assert "peak RSS" in err.getvalue() and "cpu" in err.getvalue()


def test_cli_refuses_a_cap_below_two(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--max-peers", "1"])
    assert exc.value.code == 2
    assert "--max-peers must be >= 2" in capsys.readouterr().err


def test_churn_every_live_node_converges_after_a_tenth_crash_mid_run() -> None:
    calm = simulate(nodes=500, messages=30, seed=4, bootstrap="sample", max_peers=16)
    churn = simulate(nodes=500, messages=30, seed=4, bootstrap="sample", max_peers=16, crash=0.1, crash_at=1)
    assert calm.converged and churn.converged
    assert churn.crashed == 50 and churn.to_dict()["crashed"] == 50
    assert 0 <= churn.lost < 30
    assert churn.coverage[-1] == 1.0


def test_a_gossip_only_crashed_nodes_held_is_lost_not_waited_for() -> None:
    sim = Simulator(nodes=50, seed=2, bootstrap_mode="sample", max_peers=8, push=False)
    sim.create(1)
    (guid,) = sim.created
    holders = [m.index for m in sim.members if m.node.has_gossip(guid)]
    assert holders == [sim.created[guid]]
    sim.rng = random.Random(0)
    # Crash every node: the holder is among them, so the gossip is lost.
    assert sim.crash_fraction(0.999) == 50
    assert sim.lost == {guid}
    assert sim.converged() and sim.coverage() == 1.0


def test_cli_refuses_a_bad_crash_fraction(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--crash", "1"], ["--crash", "-0.1"], ["--crash-at", "0"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        assert "--crash must be a fraction" in capsys.readouterr().err


def test_a_settled_node_whose_probe_found_no_one_probes_again_next_round() -> None:
    mesh = full_mesh(3)
    a, _, c = mesh.nodes
    for _ in range(40):  # settled: probes every SETTLED_BACKOFF_MAX rounds
        mesh.round()
    mesh.down.add(c.config.port)
    for _ in range(200):
        failed = a.stats["failed.did_you_hear"]
        mesh.round()
        if a.stats["failed.did_you_hear"] > failed:
            break
    else:
        raise AssertionError("a never probed the crashed peer")
    def probes() -> int:  # a round's own probes, not the retry of one that failed
        return a.stats["sent.did_you_hear"] - a.stats["retried.did_you_hear"]

    sent = probes()
    mesh.round()
    assert probes() == sent + 1  # not after the settled backoff
