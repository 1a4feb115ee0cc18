"""What an embedding application is told: drained from ``GossipNode.next_event()``."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ErrorCode
from .model import Gossip, Network, PeerStatus, PeerView, Retention, Tombstone

__all__ = [
    "Event",
    "GossipReceived",
    "GossipRemoved",
    "GossipConflict",
    "TombstoneAdded",
    "TombstoneRemoved",
    "RetentionChanged",
    "PeerJoined",
    "PeerUpdated",
    "PeerStatusChanged",
    "PeerForgotten",
    "Registered",
    "RegisterFailed",
    "KeyringChanged",
]


class Event:
    """Base of every event."""

    __slots__ = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class GossipReceived(Event):
    """A gossip new to this node, verified. ``source`` is the peer guid, or None if created here.

    ``cursor`` numbers what this node learns, across its networks: it grows with each gossip
    stored, survives restarts (the store keeps it), and is never reused; gaps are normal.
    """

    network: str
    gossip: Gossip
    source: str | None
    cursor: int = 0


_set_network, _set_gossip, _set_source, _set_cursor = (
    getattr(GossipReceived, name).__set__ for name in ("network", "gossip", "source", "cursor")
)
_new = object.__new__


def _received(network: str, gossip: Gossip, source: str | None, cursor: int) -> GossipReceived:
    """``GossipReceived(network=..., gossip=..., source=..., cursor=...)`` for the core's path
    of every gossip learnt: the generated ``__init__`` of a frozen dataclass sets each field
    through ``object.__setattr__``, a lookup by name; writing the slots through their
    descriptors, positionally and with no call into ``__init__``, takes half the instructions."""
    event = _new(GossipReceived)
    _set_network(event, network)
    _set_gossip(event, gossip)
    _set_source(event, source)
    _set_cursor(event, cursor)
    return event


@dataclass(frozen=True, slots=True, kw_only=True)
class GossipRemoved(Event):
    """A gossip left this node: ``reason`` is ``expired`` (older than the retention),
    ``deleted`` (a tombstone took its place) or ``replaced`` (another version of its guid won
    the conflict rule, :func:`gossip.model.wins`)."""

    network: str
    gossip: Gossip
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class GossipConflict(Event):
    """Two versions of one guid met here; ``kept`` won, ``lost`` is gone or refused. Reported
    once per losing version (for the log), whichever side this node held."""

    network: str
    kept: Gossip
    lost: Gossip


@dataclass(frozen=True, slots=True, kw_only=True)
class TombstoneAdded(Event):
    """A tombstone new to this node: created here (``gossip delete``) or learnt."""

    network: str
    tombstone: Tombstone
    source: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class TombstoneRemoved(Event):
    """A tombstone left this node: expired, or replaced by a later-dated one."""

    network: str
    tombstone: Tombstone


@dataclass(frozen=True, slots=True, kw_only=True)
class RetentionChanged(Event):
    """This node adopted a network's newer retention (from a peer, or at REGISTER)."""

    network: str
    retention: Retention


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerJoined(Event):
    """A peer new to this node on ``peer.network_name``."""

    peer: PeerView


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerUpdated(Event):
    """A known peer announced a newer record (name or address changed)."""

    peer: PeerView


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerStatusChanged(Event):
    """This node's opinion of a peer's liveness changed."""

    peer: PeerView
    old: PeerStatus


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerForgotten(Event):
    """This node dropped a peer record (``reason`` says why): one it never heard from
    first-hand, evicted to make room or never answered within the unproven TTL; or a peer
    left or dead for longer than ``NodeConfig.forget_after``."""

    peer: PeerView
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Registered(Event):
    """A REGISTER started with :meth:`GossipNode.register` was accepted by ``peer``."""

    request_id: int
    peer: PeerView


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisterFailed(Event):
    """A REGISTER failed: unreachable, or refused (``status`` 401: wrong network or password).

    ``code`` is the refusal's :class:`~gossip.errors.ErrorCode` (``clock_skew``, ``bad_mac``,
    ...) when the other node answered with one; None when nothing (usable) answered.
    """

    request_id: int
    network: str
    address: tuple[str, int]
    reason: str
    status: int | None
    code: ErrorCode | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyringChanged(Event):
    """A network's key ring changed (``gossip keys``, here or spread from a peer).

    The runner writes the node's new configuration (``server.json``) before it acknowledges;
    ``old`` is what :meth:`GossipNode.revert` restores when that write fails. ``source`` is
    the peer the ring came from, None when changed at this node.
    """

    network: Network
    old: Network
    source: str | None = None
