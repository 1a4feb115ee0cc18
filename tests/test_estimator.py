"""The difference estimator (issue 11, item 4): strata summaries, the estimate, the probe that
carries it, and the first IBLT sized from it."""

from __future__ import annotations

import base64
import json
import random
import statistics
import uuid

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gossip import auth
from gossip import messages as m
from gossip import sets
from gossip.digest import STRATA_BYTES, KeySet, estimate_difference, iblt_size_for
from gossip.errors import RemoteProtocolError
from gossip.model import Gossip, PeerView, Snapshot, iso_from_timestamp
from gossip.node import GossipNode
from gossip.sets import GossipSet
from gossip.sim import Simulator

from .helpers import KEYS, T0, Mesh, make_config

keys_st = st.sets(st.integers(min_value=0, max_value=(1 << 256) - 1), max_size=80)


def _pair(rng: random.Random, common: int, only_a: int, only_b: int) -> tuple[KeySet, KeySet]:
    shared = [rng.getrandbits(256) for _ in range(common)]
    return (
        KeySet(shared + [rng.getrandbits(256) for _ in range(only_a)]),
        KeySet(shared + [rng.getrandbits(256) for _ in range(only_b)]),
    )


# ---------------------------------------------------------------------------- the estimate


@pytest.mark.parametrize("d", [1, 2, 3, 8, 30, 100, 300, 1000, 4096])
def test_estimate_is_within_a_factor_of_two_on_most_seeds(d: int) -> None:
    """Seeded statistics: 30 pairs of sets differing by ``d`` keys (split at random between the
    two sides, so that the count difference alone says little). An estimator that returned
    the count difference, a constant, or read the strata the wrong way fails these bounds."""
    ratios = []
    for seed in range(30):
        rng = random.Random(seed * 7919 + d)
        only_a = rng.randint(0, d)
        a, b = _pair(rng, 50, only_a, d - only_a)
        ratios.append(estimate_difference(a.strata, b.strata, len(a) - len(b)) / d)
    within = sum(0.5 <= r <= 2.0 for r in ratios)
    assert within >= 25, sorted(ratios)
    assert 0.7 <= statistics.median(ratios) <= 1.45, sorted(ratios)


def test_equal_sets_estimate_zero_and_the_bounds_hold() -> None:
    rng = random.Random(5)
    a, b = _pair(rng, 500, 0, 0)
    assert a.strata == b.strata and estimate_difference(a.strata, b.strata) == 0
    # Only one side's extra keys: never below the count difference.
    b.update(rng.getrandbits(256) for _ in range(40))
    assert estimate_difference(a.strata, b.strata, len(a) - len(b)) >= 40
    # Never below the number of differing strata (each holds a differing key), whatever
    # count difference is claimed.
    differing = sum(x != y for x, y in zip(a.strata, b.strata))
    assert differing > 1 and estimate_difference(a.strata, b.strata, 0) >= differing


@given(st.lists(st.integers(min_value=0, max_value=255), min_size=STRATA_BYTES, max_size=STRATA_BYTES))
@settings(max_examples=300, deadline=None)
def test_the_search_finds_the_grids_maximum_likelihood(theirs: list[int]) -> None:
    """estimate_difference searches the concave log-likelihood by its slope; a scan of the
    whole grid finds the same d."""
    from gossip.digest import _GRID, _LOG_DIFFERS, _LOG_EQUAL, STRATA, STRATA_GROUPS

    mine = bytes(STRATA_BYTES)
    differs = [sum(1 for g in range(STRATA_GROUPS) if theirs[g * STRATA + i]) for i in range(STRATA)]
    if not any(differs):
        assert estimate_difference(mine, bytes(theirs)) == 0
        return
    scores = [
        sum(k * a + (STRATA_GROUPS - k) * e for k, a, e in zip(differs, _LOG_DIFFERS[j], _LOG_EQUAL[j]))
        for j in range(len(_GRID))
    ]
    best = max(range(len(_GRID)), key=lambda j: (scores[j], -j))
    found = sum(differs)
    assert estimate_difference(mine, bytes(theirs)) == max(round(_GRID[best]), found)


def test_a_summary_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(ValueError, match=str(STRATA_BYTES)):
        estimate_difference(bytes(STRATA_BYTES), bytes(STRATA_BYTES - 1))


@given(initial=keys_st, added=keys_st, removed=keys_st)
@settings(max_examples=150, deadline=None)
def test_incremental_strata_equal_a_fresh_build(initial: set[int], added: set[int], removed: set[int]) -> None:
    keys = KeySet(initial)
    changes = keys.changes
    for key in added:
        keys.add(key)
    keys.update(list(added)[:5])  # adds nothing new
    for key in removed:
        keys.discard(key)
    final = (initial | added) - removed
    assert keys.strata == KeySet(final).strata
    assert (keys.changes == changes) == (final == initial and not (added - initial))


# ---------------------------------------------------------------------------- the wire


def test_a_probe_carries_its_summary_as_base64() -> None:
    strata = bytes(range(STRATA_BYTES))
    probe = m.Probe(count=3, fingerprint="0" * 32, strata=strata)
    wire = probe.to_wire()
    assert wire["st"] == base64.b64encode(strata).decode("ascii") and len(wire["st"]) == 4 * STRATA_BYTES // 3
    assert m.Probe.from_wire(json.loads(json.dumps(wire))) == probe
    assert "st" not in m.Probe(count=3, fingerprint="0" * 32).to_wire()


# ---------------------------------------------------------------------------- the sets


def _sets(seed: int, common: int, only: int) -> tuple[GossipSet, GossipSet]:
    a, b = _pair(random.Random(seed), common, only, only)  # equal counts: no hint from them
    return GossipSet(keys=a), GossipSet(keys=b)


def test_the_first_table_is_sized_from_the_estimate() -> None:
    """Equal counts, 200 differing keys: the table peels the first time. Without the summary
    (what an older peer sends) the same sets are answered as before: a table sized from the
    count difference, which does not peel and is asked for again."""
    a, b = _sets(1, 2000, 100)
    probe = b.probe()
    assert probe.strata == b.keys.strata  # b changed lately (it was just built)
    reply = a.answer(probe)
    assert reply.cells is not None and reply.size >= iblt_size_for(100)
    step = b.reconcile(probe, reply)
    assert not step.retry and step.exchange is not None and len(step.exchange.heard) == 100

    old = m.Probe(count=probe.count, fingerprint=probe.fingerprint)
    reply = a.answer(old)
    assert reply.size == iblt_size_for(0)
    assert b.reconcile(old, reply).retry


def test_past_4_keys_per_size_unit_an_estimated_table_beats_a_page(monkeypatch: pytest.MonkeyPatch) -> None:
    """80 keys, 20 differing: a table of 16 (3 x 16 cells) rather than a page of 80 keys. A
    table sized from the count difference fails to peel half the time, so there the page wins
    up to 6 keys per size unit (PAGE_PER_SIZE); from an estimate, only up to 4."""
    a, b = _sets(4, 70, 10)
    probe = b.probe()
    assert probe.strata is not None and iblt_size_for(a.estimate(probe)) == 16
    assert sets.PAGE_PER_SIZE * 16 >= len(a.keys) > sets.PAGE_PER_SIZE_ESTIMATED * 16
    reply = a.answer(probe)
    assert reply.cells is not None and reply.size == 16
    assert b.reconcile(probe, reply).exchange is not None
    monkeypatch.setattr(sets, "PAGE_PER_SIZE_ESTIMATED", sets.PAGE_PER_SIZE)
    assert a.answer(probe).keys is not None


def test_a_retry_carries_the_summary_and_gets_a_table_large_enough() -> None:
    """A settled set's probe carries no summary; when the table it got does not peel, the
    larger one it asks for does carry one, and the answerer sizes that from the estimate
    (at least the size asked)."""
    a, b = _sets(2, 2000, 150)
    a.settle()
    b.settle()
    probe = b.probe()
    assert probe.strata is None
    first = a.answer(probe)
    step = b.reconcile(probe, first)
    assert step.retry and step.probe is not None and step.probe.size == 2 * first.size
    assert step.probe.strata == b.keys.strata
    second = a.answer(step.probe)
    assert second.size >= iblt_size_for(300) > step.probe.size
    assert b.reconcile(step.probe, second).exchange is not None


def test_summaries_follow_changes_and_stop_when_the_set_settles() -> None:
    a, _ = _sets(3, 100, 0)
    a.tick()  # the round in which it changed (it was built): summaries
    assert a.probe().strata is not None
    a.tick()  # ESTIMATE_ROUNDS (1) round after
    assert a.probe().strata is None
    a.keys.add(12345)
    assert a.probe().strata is not None  # changed in this round
    a.tick()
    assert a.probe().strata is not None
    a.tick()
    assert a.probe().strata is None
    a.estimate_rounds = 0  # the estimator off: never, not even for a larger table
    a.keys.add(6789)
    assert a.probe().strata is None and a.probe(size=64).strata is None
    small = GossipSet(keys=KeySet(range(1, sets.ESTIMATE_MIN_KEYS + 1)))
    assert small.probe().strata is None  # an answerer would page it anyway
    assert a.probe(start=0).strata is None  # a page: nothing to size


# ---------------------------------------------------------------------------- the node


def _gossip(number: int) -> Gossip:
    return Gossip.create(
        guid=str(uuid.UUID(int=number, version=4)), date_time=iso_from_timestamp(T0 - 60), who_name="x", msg=f"m{number}"
    )


def _two_nodes() -> Mesh:
    """Two nodes restored with the same 500 gossips (restored: not a change, no summary)."""
    configs = [make_config(1), make_config(2)]
    common = [_gossip(i) for i in range(1, 501)]
    nodes = [
        GossipNode(
            c,
            rng=random.Random(i),
            now=T0,
            push=False,
            snapshot=Snapshot(
                gossips={"default": common}, peers={"default": [PeerView(peer=configs[1 - i].self_peer("default"))]}
            ),
        )
        for i, c in enumerate(configs)
    ]
    return Mesh(nodes)


def _probes(data: bytes) -> list[dict[str, object]]:
    body = json.loads(data).get("body", {})
    return [body[name] for name in ("probe", "hello") if body.get(name) is not None]


def test_nodes_with_equal_counts_and_200_differences_reconcile_in_one_round_trip() -> None:
    mesh = _two_nodes()
    a, b = mesh.nodes
    for i in range(100):
        a.create_gossip(f"a{i}", mesh.now)
        b.create_gossip(f"b{i}", mesh.now)
    assert a.gossip_count() == b.gossip_count() == 600
    sent: list[bytes] = []
    for node in mesh.nodes:
        mesh.now += 1.0
        node.tick(mesh.now)
        for out in node.outbox():
            sent.append(out.data)
            target = mesh.nodes[1 - mesh.nodes.index(node)]
            node.receive_response(out.request_id, target.handle_request(out.data, mesh.now), mesh.now)
    assert all("st" in _probes(data)[0] for data in sent)
    mesh.deliver()
    assert a.gossip_count() == b.gossip_count() == 700
    assert a.stats["iblt_retry.gossip"] == b.stats["iblt_retry.gossip"] == 0


def test_without_the_estimator_the_same_nodes_retry(monkeypatch: pytest.MonkeyPatch) -> None:
    """The control of the test above: the estimator off (ESTIMATE_ROUNDS = 0), the first
    tables are sized from the count difference and do not peel."""
    monkeypatch.setattr(sets, "ESTIMATE_ROUNDS", 0)
    mesh = _two_nodes()
    a, b = mesh.nodes
    for i in range(100):
        a.create_gossip(f"a{i}", mesh.now)
        b.create_gossip(f"b{i}", mesh.now)
    mesh.round()
    assert a.gossip_count() == b.gossip_count() == 700
    assert a.stats["iblt_retry.gossip"] + b.stats["iblt_retry.gossip"] >= 2


@pytest.mark.parametrize(
    "bad",
    [7, "", "not base64!", base64.b64encode(bytes(STRATA_BYTES - 3)).decode(), base64.b64encode(bytes(STRATA_BYTES + 3)).decode()],
)
def test_a_malformed_summary_is_refused_and_changes_nothing(bad: object) -> None:
    """A probe whose summary is not base64 of exactly STRATA_BYTES bytes: the request is
    refused (400, naming the field), counted, and the node is as it was."""
    mesh = _two_nodes()
    a, b = mesh.nodes
    env = {
        "v": m.PROTOCOL_VERSION, "type": "did_you_hear", "net": "default", "from": b.guid,
        "body": {"probe": {"n": 1, "fp": "0" * 32, "st": bad}}, "to": a.guid, "ts": int(mesh.now * 1000) + 1,
        "nonce": "A" * 16,
    }
    data = auth.sign(KEYS["default"], json.dumps(env, separators=(",", ":")).encode())
    before = (a.gossip_count(), a.pending_count(), a.events())
    with pytest.raises(RemoteProtocolError, match="probe.st") as info:
        a.handle_request(data, mesh.now)
    assert info.value.status_hint == 400
    assert a.stats["rejected.RemoteProtocolError"] == 1
    assert (a.gossip_count(), a.pending_count(), a.events()) == before
    env["body"] = {"probe": {"n": 1, "fp": "0" * 32, "st": base64.b64encode(bytes(STRATA_BYTES)).decode()}}
    env["nonce"] = "B" * 16
    data = auth.sign(KEYS["default"], json.dumps(env, separators=(",", ":")).encode())
    assert a.handle_request(data, mesh.now)  # the same request with a good summary is answered


def _settled(*, estimator: bool) -> Simulator:
    """A network converged (the spread itself sends summaries: 80 gossips, more than
    ESTIMATE_MIN_KEYS) and two rounds after; then the estimator on or off in every set."""
    sim = Simulator(nodes=12, seed=4)
    sim.create(80)
    sim.run()
    for _ in range(2):
        sim.step()
    if not estimator:
        for member in sim.members:
            for net in member.node._nets.values():
                net.gossip_set.estimate_rounds = net.peer_set.estimate_rounds = 0
    return sim


def test_a_settled_network_sends_no_summary_and_costs_what_it_did() -> None:
    """Once converged and a round quiet, no probe carries a summary: the settled rounds cost
    exactly the bytes they cost with the estimator off (the same run, same seed, with the
    estimator turned off once it converged)."""
    on, off = _settled(estimator=True), _settled(estimator=False)
    seen: list[bytes] = []
    send = on.network.send

    def watch(src, dst, data, on_reply):  # type: ignore[no-untyped-def]
        seen.append(data)
        send(src, dst, data, on_reply)

    on.network.send = watch  # type: ignore[method-assign]
    before = (on.network.stats.bytes, off.network.stats.bytes)
    assert before[0] == before[1]
    for _ in range(8):
        on.step()
        off.step()
    probes = [p for data in seen for p in _probes(data)]
    assert probes and not any("st" in p for p in probes)
    assert on.network.stats.bytes - before[0] == off.network.stats.bytes - before[1] > 0
