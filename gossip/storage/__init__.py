"""Storage adapters keep gossips and peers across restarts; the core never touches them.

The runner builds a node from ``storage.load()`` and writes each change the node reports
(its events) with :func:`persist` *before* it acknowledges the request that caused it.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Protocol

from ..events import Event, GossipReceived, PeerForgotten, PeerJoined, PeerUpdated, Registered
from ..model import Gossip, PeerView, Snapshot
from .jsonfile import JsonFileStorage
from .memory import MemoryStorage

__all__ = ["Storage", "MemoryStorage", "JsonFileStorage", "persist"]


class Storage(Protocol):
    """What the runner needs from a store."""

    def load(self) -> Snapshot:
        """Everything stored. Raises StorageError naming the file and line on corruption."""

    def save_gossip(self, network: str, gossip: Gossip) -> None:
        """Store one gossip durably before returning (idempotent by guid)."""

    def save_gossips(self, network: str, gossips: Iterable[Gossip], cursors: Mapping[str, int] | None = None) -> None:
        """Store several gossips durably before returning, in one write where possible, each
        with its cursor (by guid) when given; :meth:`load` gives the cursors back."""

    def save_peer(self, view: PeerView) -> None:
        """Store or replace one peer (by network and guid)."""

    def save_peers(self, views: Iterable[PeerView]) -> None:
        """Store or replace several peers, in one write where possible."""

    def forget_peers(self, peers: Iterable[tuple[str, str]]) -> None:
        """Remove peers, by (network, guid), in one write where possible; unknown ones are
        ignored."""

    def close(self) -> None:
        """Flush and release; idempotent."""


def persist(storage: Storage, events: Iterable[Event]) -> None:
    """Write what the given events changed: the gossips of each network, then the peers, each in one batch.

    Liveness changes alone (:class:`PeerStatusChanged`) are not written: they are this node's
    passing opinion, relearnt within rounds after a restart, and rewriting the peer file at
    every flip between alive and suspect would cost a write per flip.
    """
    gossips: dict[str, list[Gossip]] = {}
    cursors: dict[str, dict[str, int]] = {}
    peers: dict[tuple[str, str], PeerView] = {}
    forgotten: set[tuple[str, str]] = set()
    for event in events:
        if isinstance(event, GossipReceived):
            gossips.setdefault(event.network, []).append(event.gossip)
            if event.cursor:
                cursors.setdefault(event.network, {})[event.gossip.guid] = event.cursor
        elif isinstance(event, (PeerJoined, PeerUpdated, Registered)):
            key = (event.peer.peer.network_name, event.peer.peer.guid)
            peers[key] = event.peer
            forgotten.discard(key)
        elif isinstance(event, PeerForgotten):
            key = (event.peer.peer.network_name, event.peer.peer.guid)
            peers.pop(key, None)
            forgotten.add(key)
    for network, batch in gossips.items():
        storage.save_gossips(network, batch, cursors.get(network))
    if peers:
        storage.save_peers(peers.values())
    if forgotten:
        storage.forget_peers(forgotten)
