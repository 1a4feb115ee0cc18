"""What one member can do with a KEYS message: change the ring, as any member may, but not cut
a node off from the others nor end rotation for good (docs/security.md, "Key rotation")."""

from __future__ import annotations

import os

import pytest

from gossip import messages as m
from gossip.auth import key_id, seal_key
from gossip.errors import RemoteProtocolError
from gossip.node import MAX_RING_STEP
from tests.helpers import full_mesh
from tests.test_keys import OLD, request_with


def _keys(version: int, keys: tuple[bytes, ...], wrap: bytes = OLD) -> m.Keys:
    """A KEYS body: a ring of ``keys`` (the first primary), each sealed under ``wrap``."""
    ring = m.Ring(version=version, primary=key_id(keys[0]), ids=tuple(map(key_id, keys)))
    sealed = tuple(m.SealedKey(id=key_id(k), sealed=seal_key(wrap, k, nonce=os.urandom(16), context="default"))
                   for k in keys)
    return m.Keys(ring=ring, keys=sealed)


def test_a_ring_without_the_key_that_signed_it_is_refused_and_the_node_stays_connected() -> None:
    mesh = full_mesh(3)
    a, b, c = mesh.nodes  # a is the hostile member
    theirs = os.urandom(32)
    with pytest.raises(RemoteProtocolError, match="must hold the key its request is signed with"):
        b.handle_request(request_with(OLD, b, sender=a.guid, body=_keys(1, (theirs,))), mesh.now)
    assert b.keys() == (OLD,)
    # b still talks to the others: a gossip made at c reaches it.
    gossip = c.create_gossip("after the attempt", mesh.now)
    for _ in range(10):
        mesh.round()
    assert any(row.guid == gossip.guid for row in b.gossip_status())


def test_a_ring_too_far_ahead_is_refused_and_rotation_goes_on() -> None:
    mesh = full_mesh(2)
    a, b = mesh.nodes
    theirs = os.urandom(32)
    with pytest.raises(RemoteProtocolError, match="versions ahead"):
        b.handle_request(request_with(OLD, b, sender=a.guid, body=_keys(2**53 - 1, (theirs, OLD))), mesh.now)
    assert b.keys() == (OLD,)
    assert b.install_key(theirs, mesh.now) is True  # the ring can still change here


def test_a_member_may_still_change_the_ring_within_the_rules() -> None:
    mesh = full_mesh(2)
    a, b = mesh.nodes
    new = os.urandom(32)
    b.handle_request(request_with(OLD, b, sender=a.guid, body=_keys(MAX_RING_STEP, (new, OLD))), mesh.now)
    assert b.keys() == (new, OLD)  # a rotation by a member: the new key primary, the old one kept
