"""Eager push (Plumtree): spreading by hops, pruning to a tree, grafting, flow control."""

from __future__ import annotations

import json
import random
import uuid

import pytest

from gossip import messages as m
from gossip import plumtree
from gossip.digest import key_hex
from gossip.model import Gossip, iso_from_timestamp, item_key
from gossip.node import PUSH_LINGER, SETTLED_BACKOFF_MAX, GossipNode
from gossip.plumtree import EagerPeers

from .helpers import KEYS, T0, Mesh, full_mesh, make_node


def eager_links(mesh: Mesh) -> set[frozenset[str]]:
    return {frozenset((n.guid, p)) for n in mesh.nodes for p in n.eager_peers()}


def is_symmetric(mesh: Mesh) -> bool:
    by_guid = {n.guid: n for n in mesh.nodes}
    return all(n.guid in by_guid[p].eager_peers() for n in mesh.nodes for p in n.eager_peers())


def gossips_in(data: bytes) -> list[str]:
    return [g[0] for g in json.loads(data)["body"]["gossips"]]  # each [guid, date_time, who_name, msg, sha2]


def test_a_gossip_reaches_every_node_by_push_alone() -> None:
    mesh = full_mesh(30)
    cold = mesh.nodes[0].create_gossip("the first", mesh.now)
    mesh.deliver()  # no tick, no round: only the pushes the create set off
    assert {verb for _, verb in mesh.log} == {"push"}
    # A cold network floods the links its nodes pick at random: a node no one picked is not
    # reached. The rounds fetch the gossip for it, and the fetch grafts it to the tree.
    reached = sum(n.has_gossip(cold.guid) for n in mesh.nodes)
    assert 25 <= reached <= 30
    mesh.round()
    mesh.round()
    assert all(n.has_gossip(cold.guid) for n in mesh.nodes)
    for creator in mesh.nodes[::7]:
        g = creator.create_gossip(f"from {creator.config.node_name}", mesh.now)
        mesh.log.clear()
        mesh.deliver()
        assert all(n.has_gossip(g.guid) for n in mesh.nodes)
        assert {verb for _, verb in mesh.log} == {"push"}


def test_duplicates_prune_the_links_to_a_tree_on_which_a_body_crosses_each_once() -> None:
    mesh = full_mesh(30)
    rng = random.Random(5)
    for i in range(3):  # the first floods prune the links that brought duplicates; the rounds graft
        rng.choice(mesh.nodes).create_gossip(f"settle {i}", mesh.now)
        mesh.deliver()
        mesh.round()
        mesh.round()
    tree = eager_links(mesh)
    assert len(tree) == 29 and is_symmetric(mesh)  # a spanning tree, the same seen from both ends
    before = mesh.bodies
    made = [rng.choice(mesh.nodes).create_gossip(f"burst {i}", mesh.now).guid for i in range(100)]
    mesh.deliver()
    assert all(n.has_gossip(g) for n in mesh.nodes for g in made)
    per_node = (mesh.bodies - before) / (len(mesh.nodes) * len(made))
    assert per_node <= 1.3  # the creator needs none: 29/30 is the floor
    assert eager_links(mesh) == tree  # pruned links were not topped up


def test_a_duplicate_push_is_answered_prune_and_both_ends_drop_the_link() -> None:
    mesh = full_mesh(3)
    a, b, c = mesh.nodes
    a.create_gossip("x", mesh.now)
    mesh.deliver()
    # A pushed to B and C; each pushed it on to the other, and both copies were duplicates.
    assert [verb for _, verb in mesh.log] == ["push"] * 4
    assert set(a.eager_peers()) == {b.guid, c.guid}
    assert b.eager_peers() == (a.guid,) and c.eager_peers() == (a.guid,)
    assert mesh.bodies == 4 and all(n.gossip_count() == 1 for n in mesh.nodes)


def test_a_push_that_brings_something_new_makes_its_sender_eager() -> None:
    mesh = full_mesh(6, max_peers=1)
    creator = mesh.nodes[0]
    creator.create_gossip("new", mesh.now)
    [push] = creator.outbox()
    [target] = [n for n in mesh.nodes if n.guid == push.peer]
    assert creator.guid not in target.eager_peers()
    answer = target.handle_request(push.data, mesh.now)
    assert json.loads(answer)["body"] == {}  # not "prune"
    creator.receive_response(push.request_id, answer, mesh.now)
    assert creator.guid in target.eager_peers() and target.guid in creator.eager_peers()


def test_a_forged_gossip_in_a_push_is_not_stored_and_prunes_the_link() -> None:
    mesh = full_mesh(2)
    a, b = mesh.nodes
    good = Gossip.create(guid=str(uuid.UUID(int=7, version=4)), date_time="2026-11-24T06:35:13+00:00", who_name="x", msg="truth")
    lie = Gossip(guid=good.guid, date_time=good.date_time, who_name=good.who_name, msg="a lie", sha2=good.sha2)
    data = m.encode(m.Push(gossips=(lie,)), network="default", sender=a.guid, key=KEYS["default"], nonce="f" * 24, ts=int(T0 * 1000),
                    to=b.guid)
    answer = m.decode(b.handle_request(data, T0), lambda net: KEYS["default"])
    assert answer.body == m.PushReply(prune=True)
    assert b.gossip_count() == 0 and b.stats["rejected.bad_sha2"] == 1 and b.events() == []


def test_the_tree_missed_a_node_the_round_that_finds_it_pushes_the_body_and_grafts() -> None:
    mesh = full_mesh(2)
    a, b = mesh.nodes
    mesh.down.add(b.config.port)
    g = a.create_gossip("missed", mesh.now)
    mesh.deliver()  # the push fails: B leaves A's eager set
    assert a.eager_peers() == () and not b.has_gossip(g.guid)
    mesh.down.clear()
    mesh.now += a.config.gossip_timer  # A's failure backoff is over
    mesh.log.clear()
    mesh.round()  # A's probe finds B lacks it: the body goes at once, no id, no fetch
    assert b.has_gossip(g.guid)
    assert ("node-1", "push") in mesh.log and "tell_me_more" not in {verb for _, verb in mesh.log}
    assert a.stats["sent.push"] >= 1 and b.stats["duplicate.push"] == 0
    assert a.eager_peers() == (b.guid,) and b.eager_peers() == (a.guid,)  # a useful repair grafts
    later = a.create_gossip("by push again", mesh.now)
    mesh.log.clear()
    mesh.deliver()
    assert b.has_gossip(later.guid) and mesh.log == [("node-1", "push")]


def test_a_repair_the_peer_takes_nothing_of_prunes_no_link_and_is_told_as_ids_next_time() -> None:
    mesh = full_mesh(3)
    a, b, c = mesh.nodes
    g = a.create_gossip("everywhere", mesh.now)
    mesh.deliver()
    assert all(n.has_gossip(g.guid) for n in mesh.nodes)
    links = {n.guid: n.eager_peers() for n in mesh.nodes}
    # A repair of a gossip B already holds (it came meanwhile by the tree), as A sends it.
    data = m.encode(m.Push(gossips=(a.gossips()[0],), repair=True), network="default", sender=c.guid,
                    key=KEYS["default"], nonce="r" * 16, ts=int(T0 * 1000), to=b.guid)
    answer = m.decode(b.handle_request(data, mesh.now), lambda net: KEYS["default"])
    assert answer.body == m.PushReply(prune=True)  # "nothing new", for the sender's memory
    assert {n.guid: n.eager_peers() for n in mesh.nodes} == links  # and no link dropped


def test_a_grafting_fetch_carries_the_flag_and_the_answerer_links_the_asker() -> None:
    mesh = full_mesh(2)
    a, b = mesh.nodes
    g = a.create_gossip("x", mesh.now)
    [push] = a.outbox()
    a.delivery_failed(push.request_id, mesh.now, "lost")
    mesh.now += 2
    b.tick(mesh.now)
    [probe] = b.outbox()
    b.receive_response(probe.request_id, a.handle_request(probe.data, mesh.now), mesh.now)
    assert b.outbox() == []  # pending until B's next round
    mesh.now += 1
    b.tick(mesh.now)
    fetch = [out for out in b.outbox() if out.verb == "tell_me_more"]
    assert len(fetch) == 1 and json.loads(fetch[0].data)["body"] == {"ids": m._pack_keys([key_hex(item_key(g))]), "graft": True}
    assert a.eager_peers() == ()
    b.receive_response(fetch[0].request_id, a.handle_request(fetch[0].data, mesh.now), mesh.now)
    assert a.eager_peers() == (b.guid,) and b.has_gossip(g.guid)


def test_flow_control_batches_a_burst_of_creates() -> None:
    mesh = full_mesh(4)
    a = mesh.nodes[0]
    made = [a.create_gossip(f"m{i}", mesh.now).guid for i in range(1000)]
    mesh.deliver()
    assert all(n.gossip_count() == 1000 for n in mesh.nodes)
    mine = [verb for who, verb in mesh.log if who == "node-1"]
    assert mine == ["push"] * 6  # to each of its 3 eager peers: the first gossip, then the 999 others
    assert len(mesh.log) < 20 and mesh.bodies < 4 * len(made)


def test_a_push_stays_within_the_answer_budget() -> None:
    mesh = full_mesh(2)
    a, b = mesh.nodes
    for i in range(20):
        a.create_gossip(f"{i} " + "x" * 60_000, mesh.now)
    pushes = []
    for _ in range(100):  # bounded: each push leaves a linger after the last
        out = a.outbox()
        if not out:
            if sum(pushes) == 20:
                break
            a.tick(a.next_deadline())
            continue
        for o in out:
            pushes.append(len(gossips_in(o.data)))
            assert len(o.data) < m.MAX_MESSAGE_BYTES
            a.receive_response(o.request_id, b.handle_request(o.data, mesh.now), mesh.now)
    assert sum(pushes) == 20 and len(pushes) >= 4 and b.gossip_count() == 20


def test_a_failed_eager_peer_leaves_the_set_and_an_empty_set_is_picked_again() -> None:
    mesh = full_mesh(4, max_peers=1)
    a = mesh.nodes[0]
    a.create_gossip("one", mesh.now)
    [push] = a.outbox()
    assert a.eager_peers() == (push.peer,)
    a.delivery_failed(push.request_id, mesh.now, "unreachable")
    assert a.eager_peers() == ()
    a.create_gossip("two", mesh.now)
    [again] = a.outbox()
    assert again.peer != push.peer and a.eager_peers() == (again.peer,)  # the failed one backs off


def test_without_push_only_the_rounds_spread_and_fetches_do_not_graft() -> None:
    mesh = full_mesh(5, push=False)
    g = mesh.nodes[0].create_gossip("slow", mesh.now)
    assert mesh.nodes[0].outbox() == []
    for _ in range(6):
        mesh.round()
    assert all(n.has_gossip(g.guid) for n in mesh.nodes)
    assert "push" not in {verb for _, verb in mesh.log}
    assert all(n.eager_peers() == () for n in mesh.nodes)


def test_a_node_without_push_takes_pushes_and_pushes_nothing_on() -> None:
    mesh = full_mesh(2)
    a = mesh.nodes[0]
    b = GossipNode(mesh.nodes[1].config, rng=random.Random(2), now=T0, push=False)
    g = a.create_gossip("take it", T0)
    [push] = a.outbox()
    answer = b.handle_request(push.data, T0)  # from a sender B does not even know
    assert m.decode(answer, lambda net: KEYS["default"]).body == m.PushReply()
    assert b.has_gossip(g.guid) and b.outbox() == []


# ---------------------------------------------------------------------------- EagerPeers itself


def test_take_respects_the_id_limit_and_the_byte_budget() -> None:
    eager = EagerPeers(1)
    eager.add("p")
    eager.proved("p")  # past slow start: full pushes
    assert eager.enqueue({f"g{i}": 10 for i in range(5000)}, exclude=None) == ["p"]
    assert len(eager.take("p", budget=10**9, now=0.0)) == m.MAX_IDS
    assert eager.take("p", budget=10**9, now=0.0) == []  # one in flight at a time
    eager.finished("p")
    assert eager.take("p", budget=35, now=0.0) == ["g4096", "g4097", "g4098"]  # three fit in 35 bytes
    eager.finished("p")
    eager.clear("p")
    eager.enqueue({"huge": 10**6, "small": 1}, exclude="q")
    assert eager.take("p", budget=35, now=0.0) == ["huge"]  # the first always goes, whatever its size


def test_the_queue_keeps_the_newest_beyond_its_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plumtree, "QUEUE_LIMIT", 5)
    eager = EagerPeers(1)
    eager.add("p")
    eager.enqueue({"g0": 1}, exclude=None)
    assert eager.take("p", budget=100, now=0.0) == ["g0"]
    assert eager.enqueue({f"g{i}": 1 for i in range(1, 11)}, exclude=None) == []  # busy
    eager.finished("p")
    assert eager.take("p", budget=100, now=0.0) == [f"g{i}" for i in range(6, 11)]


def test_the_set_is_bounded_and_picked_only_when_started_or_empty() -> None:
    eager = EagerPeers(1)
    assert eager.limit == 4 and EagerPeers(3).limit == 6
    for peer in "abcdef":
        eager.add(peer)
    assert eager.peers() == ("a", "b", "c", "d")
    eager = EagerPeers(2)
    assert not eager.started
    eager.pick(["a", "b", "c"], random.Random(1))
    assert eager.started and len(eager) == 2
    eager.remove(eager.peers()[0])
    eager.enqueue({"g": 1}, exclude=None)
    eager.forget("g")
    assert eager.take(eager.peers()[0], budget=100, now=0.0) == []


def test_pushes_to_one_peer_linger_apart_and_batch_meanwhile() -> None:
    eager = EagerPeers(1, linger=0.1)
    eager.add("p")
    assert eager.enqueue({"g0": 1}, exclude=None) == ["p"]
    assert eager.take("p", budget=100, now=10.0) == ["g0"]  # after a quiet spell: at once
    eager.finished("p")
    eager.enqueue({"g1": 1, "g2": 1}, exclude=None)
    assert eager.ready(10.05) == [] and eager.take("p", budget=100, now=10.05) == []
    assert eager.due() == pytest.approx(10.1)
    eager.enqueue({"g3": 1}, exclude=None)
    assert eager.ready(10.1) == ["p"]
    assert eager.take("p", budget=100, now=10.1) == ["g1", "g2", "g3"]  # together
    assert eager.due() == float("inf")  # nothing waits


def test_a_node_sends_a_lingering_push_when_its_deadline_comes() -> None:
    mesh = Mesh([make_node(i, max_peers=1) for i in range(2)])
    mesh.join_all()
    a, b = mesh.nodes
    a.create_gossip("first", mesh.now)
    mesh.deliver()  # the probe, answered without a prune: the link is proven ...
    a.create_gossip("second", mesh.now)  # ... so the next push leaves at once
    mesh.deliver()
    assert b.gossip_count() == 2
    a.create_gossip("third", mesh.now)  # within the linger of the last push: held back
    assert a.outbox() == []
    assert a.next_deadline() == pytest.approx(mesh.now + PUSH_LINGER * a.config.gossip_timer)
    a.tick(a.next_deadline())
    [push] = a.outbox()
    assert push.verb == "push"
    a.receive_response(push.request_id, b.handle_request(push.data, mesh.now), mesh.now)
    assert b.gossip_count() == 3


def test_slow_start_a_new_link_gets_a_probe_then_full_pushes_at_once() -> None:
    """The first push on a link carries PROBE gossips; answered without a prune, the link is
    proven and the rest leaves at once (no linger), as many as the budget allows."""
    eager = EagerPeers(1, linger=0.1)
    eager.add("p")
    eager.enqueue({f"g{i}": 10 for i in range(100)}, exclude=None)
    probe = eager.take("p", budget=10**6, now=5.0)
    assert probe == [f"g{i}" for i in range(plumtree.PROBE)]
    eager.finished("p")
    assert eager.take("p", budget=10**6, now=5.01) == []  # unproven: the gap holds as before
    eager.proved("p")
    assert eager.take("p", budget=10**6, now=5.01) == [f"g{i}" for i in range(plumtree.PROBE, 100)]
    eager.finished("p")
    eager.remove("p")  # a pruned link starts over if it comes back
    eager.add("p")
    eager.enqueue({f"h{i}": 10 for i in range(100)}, exclude=None)
    assert len(eager.take("p", budget=10**6, now=9.0)) == plumtree.PROBE


def test_a_probe_answered_prune_drops_the_long_queue_behind_it() -> None:
    """In the first flood a redundant link carries only its probe: the prune that answers
    it drops the rest of the burst queued for that peer (rule 5), so the duplicates that
    cross a cycle are PROBE bodies, not the burst."""
    mesh = full_mesh(3)
    a, b, c = mesh.nodes
    batch = _made(60)
    assert _push_from(c, b, batch, nonce="c" * 24).prune is False  # B holds them all, from C
    a._store(a._nets["default"], batch, None, T0)  # A gets them at once too, by another way
    a.events()
    [probe] = [o for o in a.outbox() if o.verb == "push" and o.peer == b.guid]
    assert len(gossips_in(probe.data)) == plumtree.PROBE
    a.receive_response(probe.request_id, b.handle_request(probe.data, T0), T0)
    assert b.guid not in a.eager_peers()  # pruned: B had them all
    assert [o for o in a.outbox() if o.peer == b.guid] == []  # the other 44 are not sent to B


def test_a_busy_link_lingers_longer_and_a_quiet_one_sends_at_once() -> None:
    """Back-to-back pushes to one peer double its gap up to BUSY_LINGER x linger, so each
    carries more; a push after a quiet spell goes at once and sets the gap back."""
    eager = EagerPeers(1, linger=0.1)
    eager.add("p")
    now, gaps = 0.0, []
    for i in range(6):  # a steady stream: something always queued
        eager.enqueue({f"g{i}": 10}, exclude=None)
        now = max(now, eager.due())
        assert eager.take("p", 1000, now) == [f"g{i}"]
        eager.finished("p")
        eager.enqueue({f"h{i}": 1}, exclude=None)  # something waits: due() is when it may go
        gaps.append(round(eager.due() - now, 6))
        eager.clear("p")
    assert gaps[0] == 0.1 and max(gaps) == pytest.approx(plumtree.BUSY_LINGER * 0.1)
    assert gaps == sorted(gaps)  # it only grows while the link stays busy
    quiet = now + 10.0
    eager.enqueue({"late": 10}, exclude=None)
    assert eager.ready(quiet) == ["p"] and eager.take("p", 1000, quiet) == ["late"]  # at once
    eager.finished("p")
    eager.enqueue({"next": 10}, exclude=None)
    assert eager.due() == pytest.approx(quiet + 0.1)  # the gap is back to linger


def _pruned_with_queue(count: int) -> tuple[Mesh, GossipNode, GossipNode, list[Gossip], list[object]]:
    """A and B linked; ``count`` gossips queued at A for B (within the linger) when a
    duplicate from B prunes the link. Returns what A sends B then, decoded."""
    mesh = full_mesh(2)
    a, b = mesh.nodes
    first = a.create_gossip("first", mesh.now)
    mesh.deliver()  # the probe proves the link: the next push leaves at once, then lingers
    a.create_gossip("second", mesh.now)
    mesh.deliver()
    assert a.eager_peers() == (b.guid,)
    queued = [a.create_gossip(f"queued {i}", mesh.now) for i in range(count)]
    assert [o.verb for o in a.outbox()] == []
    echo = m.encode(m.Push(gossips=(first,)), network="default", sender=b.guid, key=KEYS["default"],
                    nonce="e" * 16, ts=int(T0 * 1000), to=a.guid)
    answer = m.decode(a.handle_request(echo, mesh.now), lambda net: KEYS["default"])
    assert answer.body == m.PushReply(prune=True) and a.eager_peers() == ()
    outs = a.outbox()
    sent = [m.decode(o.data, lambda net: KEYS["default"]).body for o in outs]
    for out in outs:
        a.receive_response(out.request_id, b.handle_request(out.data, mesh.now), mesh.now)
    return mesh, a, b, queued, sent


def test_a_pruned_link_still_carries_a_few_queued_gossips_as_bodies() -> None:
    """A few gossips queued at the prune are likely a flood crossing the link the other way:
    they go once, as a repair, so the subtree behind B is not cut off."""
    from gossip.node import PRUNE_FLUSH

    mesh, a, b, queued, sent = _pruned_with_queue(PRUNE_FLUSH)
    assert len(sent) == 1 and isinstance(sent[0], m.Push) and sent[0].repair
    assert [g.guid for g in sent[0].gossips] == [g.guid for g in queued]
    assert all(b.has_gossip(g.guid) for g in queued)


def test_a_pruned_link_drops_a_long_queue_and_a_round_brings_it() -> None:
    """A long queue at the prune is a stream B gets by another link (the duplicates show
    it): A sends nothing more on the link, and B's rounds bring what nothing else did."""
    from gossip.node import PRUNE_FLUSH

    mesh, a, b, queued, sent = _pruned_with_queue(PRUNE_FLUSH + 1)
    assert sent == []
    assert all(not b.has_gossip(g.guid) for g in queued)
    for _ in range(3):
        mesh.round()
        if all(b.has_gossip(g.guid) for g in queued):
            break
    assert all(b.has_gossip(g.guid) for g in queued)


def _push_from(a: GossipNode, b: GossipNode, gossips: list[Gossip], *, repair: bool = False, nonce: str = "d" * 24) -> m.PushReply:
    data = m.encode(m.Push(gossips=tuple(gossips), repair=repair), network="default", sender=a.guid,
                    key=KEYS["default"], nonce=nonce, ts=int(T0 * 1000), to=b.guid)
    reply = m.decode(b.handle_request(data, T0), lambda net: KEYS["default"]).body
    assert isinstance(reply, m.PushReply)
    return reply


def _made(count: int, first: int = 0) -> list[Gossip]:
    return [
        Gossip.create(guid=str(uuid.UUID(int=1000 + i, version=4)), date_time=iso_from_timestamp(T0 - 60),
                      who_name="x", msg=f"g{i}")
        for i in range(first, first + count)
    ]


@pytest.mark.parametrize(("held", "pruned"), [(0, False), (2, False), (3, True), (4, True)])
def test_a_push_of_mostly_gossips_held_prunes_its_link_and_keeps_the_new_ones(held: int, pruned: bool) -> None:
    """With many sources every batch mixes gossips a link brought first with others: a push
    more than half duplicates prunes (rule 5), whatever new it brought is kept all the same."""
    mesh = full_mesh(3)
    a, b, c = mesh.nodes
    batch = _made(4)
    if held:
        assert _push_from(c, b, batch[:held], nonce="c" * 24).prune is False  # B holds them, from C
    reply = _push_from(a, b, batch, nonce="e" * 24)
    assert reply.prune is pruned
    assert all(b.has_gossip(g.guid) for g in batch)  # the new ones are stored either way
    assert b.stats["duplicate.push"] == held
    assert (a.guid in b.eager_peers()) is not pruned


def test_a_repair_of_mostly_gossips_held_prunes_nothing() -> None:
    """A repair's prune means "took none of these" (they go as ids next time): one that brought
    anything new answers no prune, however many it already held."""
    mesh = full_mesh(2)
    a, b = mesh.nodes
    batch = _made(4)
    _push_from(a, b, batch[:3], nonce="c" * 24)
    assert _push_from(a, b, batch, repair=True, nonce="e" * 24).prune is False
    assert b.has_gossip(batch[3].guid)
    assert _push_from(a, b, batch, repair=True, nonce="f" * 24).prune is True  # nothing new now


def test_a_peer_far_behind_is_repaired_within_a_budget_and_pulls_the_rest() -> None:
    """A round finds B lacks 40 gossips of 4 kB (160 kB): A pushes at most REPAIR_BUDGET of
    their bodies and tells the rest as ids, and while that repair is in flight the next
    round's difference goes as ids only; B fetches the rest at its own pace."""
    from gossip.node import REPAIR_BUDGET

    mesh = full_mesh(2)
    a, b = mesh.nodes
    mesh.down.add(b.config.port)
    made = [a.create_gossip(f"{i} " + "x" * 4000, mesh.now) for i in range(40)]
    mesh.deliver()  # B is down: the tree's push fails
    mesh.down.clear()
    mesh.now += 2 * a.config.gossip_timer
    a.tick(mesh.now)
    sent = [(o, m.decode(o.data, lambda net: KEYS["default"]).body) for o in a.outbox()]
    probes = [(o, body) for o, body in sent if isinstance(body, m.DidYouHear)]
    assert probes
    for out, _ in probes:  # B answers A's probe; A then gives B what it lacks
        a.receive_response(out.request_id, b.handle_request(out.data, mesh.now), mesh.now)
    given = [(o, m.decode(o.data, lambda net: KEYS["default"]).body) for o in a.outbox()]
    repairs = [body for _, body in given if isinstance(body, m.Push)]
    told = [k for _, body in given if isinstance(body, m.DidYouHear) for k in body.ids]
    assert len(repairs) == 1 and repairs[0].repair
    pushed = sum(g.wire_size() for g in repairs[0].gossips)
    assert 0 < pushed <= REPAIR_BUDGET
    assert len(repairs[0].gossips) + len(told) == 40  # the rest as ids, none lost
    # A second reconciliation while that repair is still in flight: ids only.
    a._give(a._nets["default"], b.guid, tuple(told), mesh.now)  # the rule itself, as a round would call it
    again = [m.decode(o.data, lambda net: KEYS["default"]).body for o in a.outbox()]
    assert again and all(isinstance(body, m.DidYouHear) for body in again)
    for out, _ in given:
        a.receive_response(out.request_id, b.handle_request(out.data, mesh.now), mesh.now)
    for _ in range(10):
        if all(b.has_gossip(g.guid) for g in made):
            break
        mesh.round()
    assert all(b.has_gossip(g.guid) for g in made)


def _round_probes(node: GossipNode, mesh: Mesh) -> list[bool]:
    """Tick ``node`` into its next round; for each DID_YOU_HEAR it sends, whether it carries
    a probe of the gossips. Everything sent is then delivered."""
    mesh.now += node.config.gossip_timer
    node.tick(mesh.now)
    out = node.outbox()
    probes = [json.loads(o.data)["body"].get("probe") is not None for o in out if o.verb == "did_you_hear"]
    for o in out:
        target = mesh.by_address(o.address)
        assert target is not None
        node.receive_response(o.request_id, target.handle_request(o.data, mesh.now), mesh.now)
    mesh.deliver()
    return probes


def test_rounds_leave_the_gossips_alone_while_the_nodes_pushes_are_under_way() -> None:
    """A difference found while the node's own pushes are queued or in flight is mostly those
    pushes: the round says hello without a gossip probe, at most SETTLED_BACKOFF_MAX rounds
    in a row, and probes again as soon as the pushes are done."""
    mesh = full_mesh(3)
    a = mesh.nodes[0]
    held = []
    for i in range(SETTLED_BACKOFF_MAX + 2):
        a.create_gossip(f"m{i}", mesh.now)
        unanswered = a.outbox()  # the push leaves; its answer comes after the round
        assert unanswered and {o.verb for o in unanswered} == {"push"}
        held.append(_round_probes(a, mesh))
        for o in unanswered:
            target = mesh.by_address(o.address)
            assert target is not None
            a.receive_response(o.request_id, target.handle_request(o.data, mesh.now), mesh.now)
        mesh.deliver()
    assert held == [[False]] * SETTLED_BACKOFF_MAX + [[True], [False]]
    assert a.stats["rounds_held"] == SETTLED_BACKOFF_MAX + 1  # /metrics: gossip_rounds_held_total
    assert _round_probes(a, mesh) == [True]  # nothing under way: the round probes
    assert all(n.gossip_count() == SETTLED_BACKOFF_MAX + 2 for n in mesh.nodes)


def test_a_held_round_still_probes_a_peer_that_just_registered() -> None:
    """The hold is for the sampled peers, which the pushes under way serve: a newcomer's
    first contact (the seed's bootstrap) carries the gossip probe whatever is under way."""
    mesh = full_mesh(3)
    a = mesh.nodes[0]
    for i in range(3):
        a.create_gossip(f"old {i}", mesh.now)
    mesh.deliver()
    newcomer = make_node(9)
    mesh.nodes.append(newcomer)
    newcomer.register(a.config.ip, a.config.port, mesh.now)
    mesh.deliver()
    a.create_gossip("under way", mesh.now)
    unanswered = a.outbox()
    assert unanswered and {o.verb for o in unanswered} == {"push"}
    mesh.now += a.config.gossip_timer
    a.tick(mesh.now)
    probes = {o.peer: json.loads(o.data)["body"].get("probe") is not None for o in a.outbox() if o.verb == "did_you_hear"}
    assert probes[newcomer.guid] is True
    assert not any(p for peer, p in probes.items() if peer != newcomer.guid)
