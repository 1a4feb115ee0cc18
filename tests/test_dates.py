"""Dates that broke every node (issue 10, item 8): the receiver's rules and the status outputs.

Every date a node accepts converts to UTC within 1970..9999 (tests/test_model.py), none lies
more than MAX_FUTURE_SKEW ahead of the receiving node's clock, and nothing stored can make a
status output fail.
"""

from __future__ import annotations

import json
import math
import random
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from gossip import messages as m
from gossip.errors import GossipError, LocalProtocolError
from gossip.events import GossipReceived
from gossip.model import MAX_FUTURE_SKEW, Gossip, PeerView, Snapshot, compute_sha2, iso_from_timestamp
from gossip.node import GossipNode
from gossip.storage.jsonfile import JsonFileStorage

from .helpers import KEYS, T0, Mesh, full_mesh, make_config


def dated(when: str | float, number: int, msg: str = "m") -> Gossip:
    date_time = when if isinstance(when, str) else iso_from_timestamp(when)
    return Gossip.create(guid=str(uuid.UUID(int=number, version=4)), date_time=date_time, who_name="x", msg=msg)


def push(node: GossipNode, sender: GossipNode, gossips: tuple[Gossip, ...], nonce: str) -> m.Message:
    """Send ``node`` a PUSH of these gossips from ``sender``, at T0; returns its answer."""
    data = m.encode(m.Push(gossips=gossips), network="default", sender=sender.guid, key=KEYS["default"], nonce=nonce,
                    ts=int(T0 * 1000), to=node.guid)
    return m.decode(node.handle_request(data, T0), lambda net: KEYS["default"]).body


def received(node: GossipNode) -> list[Gossip]:
    return [e.gossip for e in node.events() if isinstance(e, GossipReceived)]


def test_a_push_keeps_its_gossips_in_time_and_refuses_those_from_the_future() -> None:
    mesh = full_mesh(2)
    a, b = mesh.nodes
    old = dated("1970-01-01T00:00:00+00:00", 1, "as old as can be")
    edge = dated(T0 + MAX_FUTURE_SKEW, 2, "exactly the skew ahead")
    future = dated(T0 + MAX_FUTURE_SKEW + 1, 3, "a second too far ahead")
    # Written with an offset that makes its text look earlier than its time: compared in UTC.
    west = timezone(-timedelta(hours=23))
    far = dated(datetime.fromtimestamp(T0 + MAX_FUTURE_SKEW + 3600, west).isoformat(), 4, "an hour too far, at -23:00")
    assert far.date_time < edge.date_time

    assert push(b, a, (old, future, edge, far), "e" * 24) == m.PushReply(prune=False)
    assert sorted(g.guid for g in b.gossips()) == sorted([old.guid, edge.guid])
    assert received(b) == [old, edge]
    assert b.stats["rejected.future_date"] == 2


def test_a_push_of_only_future_gossips_stores_nothing() -> None:
    mesh = full_mesh(2)
    a, b = mesh.nodes
    assert push(b, a, (dated(T0 + 2 * MAX_FUTURE_SKEW, 5),), "d" * 24) == m.PushReply(prune=True)
    assert b.gossip_count() == 0 and b.events() == [] and b.stats["rejected.future_date"] == 1


def test_a_year_one_gossip_on_the_wire_is_a_400_and_changes_nothing() -> None:
    """The issue's gossip, sent by a member running other software: the codec refuses it."""
    mesh = full_mesh(2)
    a, b = mesh.nodes
    hostile = dated(T0, 6)
    year_one = "0001-01-01T00:00:00+01:00"
    object.__setattr__(hostile, "date_time", year_one)  # what Gossip() itself refuses to build
    object.__setattr__(hostile, "sha2", compute_sha2(guid=hostile.guid, date_time=year_one, who_name="x", msg="m"))
    with pytest.raises(GossipError) as info:
        push(b, a, (hostile,), "c" * 24)
    assert info.value.status_hint == 400 and "out of range" in str(info.value)
    assert b.gossip_count() == 0 and b.events() == []


def test_a_fetched_gossip_from_the_future_waits_until_it_is_in_time() -> None:
    """TELL_ME_MORE answers: the future gossip is refused (and stays pending, shown as
    incomplete), the rest of the answer is kept; once the clock has caught up it is taken."""
    configs = [make_config(1), make_config(2)]
    future = dated(T0 + 2 * MAX_FUTURE_SKEW, 7, "from the day after tomorrow")
    past = dated(T0 - 3600, 8, "an hour ago")
    snapshot_a = Snapshot(gossips={"default": [future, past]}, peers={"default": [PeerView(peer=configs[1].self_peer("default"))]})
    a = GossipNode(configs[0], rng=random.Random(1), now=T0, snapshot=snapshot_a, push=False)
    b = GossipNode(
        configs[1], rng=random.Random(2), now=T0, snapshot=Snapshot(peers={"default": [PeerView(peer=configs[0].self_peer("default"))]}), push=False
    )
    mesh = Mesh([a, b])
    for _ in range(3):
        mesh.round()
    assert b.gossips() == [past]
    assert b.stats["rejected.future_date"] >= 1
    assert [(row.guid, row.complete) for row in b.gossip_status()] == [(past.guid, True), (future.guid, False)]

    mesh.now = T0 + MAX_FUTURE_SKEW + 1  # now the gossip is at most a day ahead
    for _ in range(3):
        mesh.round()
    assert sorted(g.guid for g in b.gossips()) == sorted([past.guid, future.guid])


@pytest.mark.parametrize("now", [-1.0, -62135600400.0, 253402300800.0, 1e20, math.inf, math.nan])
def test_create_gossip_refuses_a_clock_out_of_range(now: float) -> None:
    """The client API's create path dates the gossip by the node's clock (so it can never be
    ahead of it): a clock before 1970 or past 9999 gets a 400, and nothing is stored."""
    node = full_mesh(2).nodes[0]
    with pytest.raises(LocalProtocolError, match="from 1970 to 9999") as info:
        node.create_gossip("hello", now)
    assert info.value.status_hint == 400
    assert node.gossip_count() == 0 and node.events() == [] and node.outbox() == []


def test_no_stored_date_can_break_a_status_output(tmp_path: Path) -> None:
    """A store written before the rules: a year-1 gossip and a year-1 last_seen. The node
    starts, and every status output (``gossip status``, ``GET /v1/peers``) formats."""
    store_dir = tmp_path / "store"
    store = JsonFileStorage(store_dir)
    store.load()
    good = dated(T0, 9, "fine")
    store.save_gossip("default", good)
    peer = make_config(2).self_peer("default")
    store.save_peer(PeerView(peer=peer, last_seen=T0))
    store.close()
    fields = dict(guid=str(uuid.UUID(int=10, version=4)), date_time="0001-01-01T00:00:00+01:00", who_name="x", msg="year 1")
    line = json.dumps({"network": "default", "gossip": dict(fields, sha2=compute_sha2(**fields))})
    with open(store_dir / "gossip.jsonl", "a") as f:
        f.write(line + "\n")
    peers = json.loads((store_dir / "peers.json").read_text())
    peers["peers"][0]["last_seen"] = "0001-01-01T00:00:00+01:00"
    (store_dir / "peers.json").write_text(json.dumps(peers))

    node = GossipNode(make_config(1), rng=random.Random(1), now=T0, snapshot=JsonFileStorage(store_dir).load())
    rows = node.gossip_status()
    assert [row.guid for row in rows] == [good.guid]
    for row in rows:  # what `gossip status` prints
        assert row.date_time is not None
        datetime.fromisoformat(row.date_time).astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    views = node.network_status()
    assert [v.last_seen for v in views] == [None]
    json.dumps([v.to_dict() for v in views])  # what GET /v1/peers answers
