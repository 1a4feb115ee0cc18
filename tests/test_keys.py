"""Key rotation in the core (memory network): several keys per network, spread by ring version."""

from __future__ import annotations

import json
import random
import uuid

import pytest

from gossip import messages as m
from gossip.auth import derive_key, key_id, seal_key, unseal_key
from gossip.configfile import config_from_dict, config_to_dict
from gossip.errors import AuthenticationError, ErrorCode, GossipError
from gossip.events import KeyringChanged
from gossip.model import Network, PeerView, Snapshot
from gossip.node import GossipNode
from tests.helpers import KEYS, T0, Mesh, full_mesh, make_config

OLD = KEYS["default"]
NEW = derive_key("default", "the new password")


def refusals(mesh: Mesh) -> int:
    """Requests refused or failed anywhere in the mesh (a rotation must cause none)."""
    return sum(n for node in mesh.nodes for k, n in node.stats.items() if k.startswith(("rejected.", "failed.")))


def holders(mesh: Mesh, key: bytes) -> int:
    """Nodes that hold ``key``."""
    return sum(key in node.keys() for node in mesh.nodes)


def rounds_until(mesh: Mesh, done, limit: int = 30) -> int:  # type: ignore[no-untyped-def]
    for i in range(limit):
        if done():
            return i
        mesh.round()
    raise AssertionError("not done within the rounds allowed")


def request_with(key: bytes, to: GossipNode, *, sender: str | None = None, body: m.Message | None = None) -> bytes:
    return m.encode(
        body or m.Hello(),
        network="default",
        sender=sender or str(uuid.UUID(int=7, version=4)),
        key=key,
        nonce=uuid.uuid4().hex,
        ts=int(T0 * 1000) + 500_000,
        to=to.guid,
    )


def chain(count: int) -> Mesh:
    """Nodes that know only their neighbours: 1 - 2 - ... - count."""
    configs = [make_config(i) for i in range(1, count + 1)]
    views = [PeerView(peer=c.self_peer("default")) for c in configs]
    nodes = []
    for i, c in enumerate(configs):
        known = [views[j] for j in (i - 1, i + 1) if 0 <= j < count]
        nodes.append(GossipNode(c, rng=random.Random(i), now=T0, snapshot=Snapshot(peers={"default": known})))
    return Mesh(nodes)


def test_a_rotation_while_gossip_is_created_loses_nothing_and_refuses_nothing() -> None:
    mesh = full_mesh(6)
    mesh.round()
    created: list[str] = []

    def step() -> None:  # a gossip somewhere, every round
        created.append(mesh.nodes[len(created) % 6].create_gossip(f"g{len(created)}", mesh.now).guid)

    a = mesh.nodes[0]
    assert a.install_key(NEW, mesh.now) is True
    assert a.install_key(NEW, mesh.now) is False  # installed already: no change
    mesh.deliver()
    rounds_until(mesh, lambda: (step(), holders(mesh, NEW) == 6)[1])
    # Every node heard every other's ring: `keys list` counts six holders on each.
    rounds_until(mesh, lambda: (step(), all(r.nodes == 6 for n in mesh.nodes for r in n.key_ring()))[1])
    assert a.use_key(key_id(NEW), mesh.now) is True
    mesh.deliver()
    rounds_until(mesh, lambda: (step(), all(n.keys()[0] == NEW for n in mesh.nodes))[1])
    a.remove_key(key_id(OLD), mesh.now)
    mesh.deliver()
    rounds_until(mesh, lambda: (step(), all(n.keys() == (NEW,) for n in mesh.nodes))[1])
    for _ in range(6):
        step()
        mesh.round()
    rounds_until(mesh, lambda: all(n.gossip_count() == len(created) for n in mesh.nodes))
    assert refusals(mesh) == 0
    for node in mesh.nodes:
        assert {g.guid for g in node.gossips()} == set(created)
        assert node.config.network("default").keys == (NEW,)
        with pytest.raises(AuthenticationError):
            node.handle_request(request_with(OLD, node), mesh.now)
        node.handle_request(request_with(NEW, node), mesh.now)  # the new password works


def test_install_spreads_to_nodes_never_contacted_directly() -> None:
    mesh = chain(5)
    first, last = mesh.nodes[0], mesh.nodes[-1]
    first.install_key(NEW, mesh.now)
    mesh.deliver()
    # The first node knows only the second, the last only the fourth: it came hop by hop.
    assert first.peer_count() == 1 and last.peer_count() == 1
    assert [verb for _, verb in mesh.log] == ["keys"] * 4
    assert all(NEW in n.keys() and n.config.network("default").key_version == 1 for n in mesh.nodes)
    assert refusals(mesh) == 0


def test_a_node_that_missed_the_changes_catches_up_from_the_rounds() -> None:
    mesh = full_mesh(4)
    late = mesh.nodes[3]
    mesh.down.add(late.config.port)
    a = mesh.nodes[0]
    a.install_key(NEW, mesh.now)
    mesh.deliver()
    a.use_key(key_id(NEW), mesh.now)
    mesh.deliver()
    mesh.down.clear()
    # It missed the install and the use: its first exchange with anyone brings the whole ring,
    # sealed under the old key it still holds.
    rounds_until(mesh, lambda: late.keys() == (NEW, OLD))
    assert late.config.network("default").key_version == 2


def test_a_request_signed_with_any_installed_key_is_answered_with_that_key() -> None:
    mesh = full_mesh(2)
    a, b = mesh.nodes
    b.install_key(NEW, mesh.now)
    b.use_key(key_id(NEW), mesh.now)
    b.outbox()  # (its KEYS to a are not delivered here)
    sender = a.guid
    for key in (OLD, NEW):
        answer = b.handle_request(request_with(key, b, sender=sender), mesh.now)
        env = m.decode(answer, lambda net: key)
        assert env.key == key  # only that key verifies it


def test_an_outsider_cannot_install_a_key() -> None:
    mesh = full_mesh(2)
    a, b = mesh.nodes
    outsider = derive_key("default", "not the password")
    ring = m.Ring(version=99, primary=key_id(outsider), ids=(key_id(outsider),))
    sealed = seal_key(outsider, outsider, nonce=b"n" * 16, context="default")
    keys = m.Keys(ring=ring, keys=(m.SealedKey(id=key_id(outsider), sealed=sealed),))
    with pytest.raises(AuthenticationError):
        b.handle_request(request_with(outsider, b, sender=a.guid, body=keys), mesh.now)
    # A member's MAC with a key sealed under another key: refused too, nothing changes.
    with pytest.raises(AuthenticationError):
        b.handle_request(request_with(OLD, b, sender=a.guid, body=keys), mesh.now)
    assert b.keys() == (OLD,) and b.next_event() is None


def test_removal_refusals_carry_their_codes() -> None:
    mesh = full_mesh(3)
    mesh.round()  # every node hears the others' rings
    a = mesh.nodes[0]
    with pytest.raises(GossipError) as info:
        a.remove_key(key_id(OLD), mesh.now)
    assert info.value.code is ErrorCode.LAST_KEY and info.value.status_hint == 409
    with pytest.raises(GossipError) as info:
        a.use_key("0" * 16, mesh.now)
    assert info.value.code is ErrorCode.UNKNOWN_KEY and info.value.status_hint == 404
    a.install_key(NEW, mesh.now)
    with pytest.raises(GossipError) as info:
        a.remove_key(key_id(OLD), mesh.now)
    assert info.value.code is ErrorCode.PRIMARY_KEY
    a.outbox()  # its KEYS never arrive: the peers still advertise the old key only
    a.use_key(key_id(NEW), mesh.now)
    a.outbox()
    with pytest.raises(GossipError) as info:
        a.remove_key(key_id(OLD), mesh.now)
    assert info.value.code is ErrorCode.KEY_IN_USE and "node-" in str(info.value)
    assert a.keys() == (NEW, OLD)


def test_a_rushed_use_still_talks_to_peers_without_the_new_key() -> None:
    # The operator switches before the install spread: requests to a peer known to lack the
    # primary are signed with a key it holds, so nothing is refused.
    mesh = full_mesh(3)
    mesh.round()  # every node hears the others' rings
    a = mesh.nodes[0]
    a.install_key(NEW, mesh.now)
    a.use_key(key_id(NEW), mesh.now)
    a.outbox()  # lost
    a.create_gossip("after the switch", mesh.now)
    mesh.deliver()
    mesh.round()
    assert refusals(mesh) == 0 and all(n.gossip_count() == 1 for n in mesh.nodes)


def test_revert_restores_the_ring_before_the_batch() -> None:
    mesh = full_mesh(2)
    a = mesh.nodes[0]
    a.install_key(NEW, mesh.now)
    a.use_key(key_id(NEW), mesh.now)
    events = a.events()
    assert [type(e) for e in events] == [KeyringChanged, KeyringChanged]
    a.revert(events)
    assert a.keys() == (OLD,) and a.config.network("default") == Network(name="default", key=OLD, quota=a.config.networks[0].quota)


def test_the_ring_survives_the_config_file_and_the_ring_advert_never_holds_a_key() -> None:
    mesh = full_mesh(2)
    a = mesh.nodes[0]
    a.install_key(NEW, mesh.now)
    data = config_to_dict(a.config)
    assert data["networks"][0]["other_keys"] == [NEW.hex()] and data["networks"][0]["key_version"] == 1
    restored = config_from_dict(json.loads(json.dumps(data)))
    assert restored.network("default").keys == (OLD, NEW)
    for out in a.outbox():
        assert NEW.hex() not in out.data.decode() and OLD.hex() not in out.data.decode()


def test_seal_and_unseal() -> None:
    sealed = seal_key(OLD, NEW, nonce=b"\x01" * 16, context="default")
    assert unseal_key((NEW, OLD), key_id(NEW), sealed, context="default") == NEW
    assert unseal_key((NEW,), key_id(NEW), sealed, context="default") is None  # wrong wrap key
    assert unseal_key((OLD,), key_id(NEW), sealed, context="other") is None  # another network
    assert unseal_key((OLD,), key_id(OLD), sealed, context="default") is None  # another id
    flipped = sealed[:40] + ("0" if sealed[40] != "0" else "1") + sealed[41:]
    assert unseal_key((OLD,), key_id(NEW), flipped, context="default") is None  # tampered
    assert unseal_key((OLD,), key_id(NEW), "zz", context="default") is None
    # A fresh nonce, a fresh ciphertext; the key itself never shows.
    again = seal_key(OLD, NEW, nonce=b"\x02" * 16, context="default")
    assert again != sealed and NEW.hex() not in sealed


def test_two_changes_at_once_settle_on_one_ring_everywhere() -> None:
    mesh = full_mesh(4)
    mesh.round()
    other = derive_key("default", "a third password")
    mesh.nodes[0].install_key(NEW, mesh.now)
    mesh.nodes[3].install_key(other, mesh.now)  # same version, another ring: the digest decides
    mesh.deliver()
    rounds_until(mesh, lambda: len({n.keys() for n in mesh.nodes}) == 1)
    [ring] = {n.keys() for n in mesh.nodes}
    assert ring[0] == OLD and len(ring) == 2 and ring[1] in (NEW, other)
    assert refusals(mesh) == 0


def test_a_node_that_joins_mid_rotation_with_the_new_password_is_answered_in_its_key() -> None:
    mesh = full_mesh(3)
    mesh.round()
    mesh.nodes[0].install_key(NEW, mesh.now)
    mesh.deliver()
    assert all(n.keys() == (OLD, NEW) for n in mesh.nodes)
    joiner = GossipNode(make_config(9, keys={"default": NEW}), rng=random.Random(9), now=mesh.now)
    mesh.nodes.append(joiner)
    joiner.register(mesh.nodes[0].config.ip, mesh.nodes[0].config.port, mesh.now)
    mesh.deliver()
    mesh.round()  # node 0 contacts the fresh joiner at once: in the key the joiner signed with
    assert refusals(mesh) == 0
    rounds_until(mesh, lambda: joiner.keys() == (OLD, NEW))  # and it takes the ring
