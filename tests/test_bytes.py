"""The leaner wire (issue 11, "Bytes over the floor"): each mechanism that cuts bytes, and a
bound on the simulator's bytes over the floor."""

from __future__ import annotations

import json

from gossip.auth import derive_key
from gossip.node import GossipNode

from .helpers import T0, full_mesh


def _round_bodies(mesh, node: GossipNode) -> list[tuple[dict, dict]]:  # type: ignore[no-untyped-def]
    """Tick ``node`` alone and return its round's did_you_hear bodies with their answers' bodies."""
    mesh.now += 1
    node.tick(mesh.now)
    out = [o for o in node.outbox() if o.verb == "did_you_hear"]
    pairs = []
    for o in out:
        target = mesh.by_address(o.address)
        answer = target.handle_request(o.data, mesh.now)
        node.receive_response(o.request_id, answer, mesh.now)
        pairs.append((json.loads(o.data)["body"], json.loads(answer)["body"]))
    mesh.deliver()
    return pairs


def test_the_ring_is_advertised_only_while_the_peer_may_not_know_it() -> None:
    mesh = full_mesh(2, max_peers=1)
    a, b = mesh.nodes
    [(request, answer)] = _round_bodies(mesh, a)
    assert "ring" in request and "ring" in answer  # first contact: each tells its ring
    [(request, answer)] = _round_bodies(mesh, a)
    assert "ring" not in request and "ring" not in answer  # both known: neither is sent again
    [(request, answer)] = _round_bodies(mesh, b)
    assert "ring" not in request and "ring" not in answer
    # A new ring at A differs from what B advertised. The KEYS it sends at once is lost:
    # A's next request carries the ring, B answers with its own (it was asked), A sees that
    # B lags and sends the keys again.
    assert a.install_key(derive_key("default", "a new password"), mesh.now)
    [lost] = a.outbox()
    assert lost.verb == "keys"
    a.delivery_failed(lost.request_id, mesh.now, "lost", None)
    [(request, answer)] = _round_bodies(mesh, a)
    assert request["ring"]["version"] == 1 and answer["ring"]["version"] == 0
    assert b.keys() == a.keys()
    [(request, answer)] = _round_bodies(mesh, b)
    assert "ring" not in request and "ring" not in answer
