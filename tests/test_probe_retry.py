"""A round probe that fails is sent once more, to another peer, in the same round (issue 11:
rounds to spread under loss)."""

from __future__ import annotations

from gossip.model import PeerStatus
from tests.helpers import full_mesh


def _probes(outs):  # type: ignore[no-untyped-def]
    return [o for o in outs if o.verb == "did_you_hear"]


def test_a_failed_round_probe_goes_once_to_another_peer_in_the_same_round() -> None:
    mesh = full_mesh(6)
    a = mesh.nodes[0]
    mesh.now += 1
    a.tick(mesh.now)
    [first] = _probes(a.outbox())
    a.delivery_failed(first.request_id, mesh.now, "lost")
    [again] = _probes(a.outbox())
    assert again.peer not in (None, first.peer) and again.address != first.address
    assert a.stats["retried.did_you_hear"] == 1
    # The retry failing too sends nothing more this round: losses cannot multiply requests.
    a.delivery_failed(again.request_id, mesh.now, "lost")
    assert _probes(a.outbox()) == []
    # The next round probes (its failed probe made it unsettled) and may retry once again.
    mesh.now += 1
    a.tick(mesh.now)
    probes = _probes(a.outbox())
    assert probes
    a.delivery_failed(probes[0].request_id, mesh.now, "lost")
    assert len(_probes(a.outbox())) == 1 and a.stats["retried.did_you_hear"] == 2


def test_only_round_probes_are_retried_and_never_to_a_dead_peer() -> None:
    mesh = full_mesh(3, push=False)
    a, b, c = mesh.nodes
    # A DID_YOU_HEAR that tells ids (a push-pull's half, not a probe) is not re-sent elsewhere.
    a.create_gossip("told", mesh.now)
    mesh.now += 1
    a.tick(mesh.now)
    for out in _probes(a.outbox()):
        target = mesh.by_address(out.address)
        assert target is not None
        a.receive_response(out.request_id, target.handle_request(out.data, mesh.now), mesh.now)
    told = _probes(a.outbox())
    assert told and all(b"ids" in o.data for o in told)
    for out in told:
        a.delivery_failed(out.request_id, mesh.now, "lost")
    assert a.stats["retried.did_you_hear"] == 0 and _probes(a.outbox()) == []
    # With every other peer dead there is no one to retry with: nothing is sent.
    mesh.down.update({b.config.port, c.config.port})
    for _ in range(8):
        mesh.round()
    assert {v.status for v in a.network_status()} == {PeerStatus.DEAD}
    retried = a.stats["retried.did_you_hear"]
    for _ in range(3):
        mesh.round()
    assert a.stats["retried.did_you_hear"] == retried
