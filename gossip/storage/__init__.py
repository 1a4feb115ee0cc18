"""Storage adapters keep gossips and peers across restarts; the core never touches them.

The runner builds a node from ``storage.load()`` and writes each change the node reports
(its events) with :func:`persist` *before* it acknowledges the request that caused it.
"""

from __future__ import annotations

from typing import Iterable, Mapping, Protocol

from ..events import (
    Event,
    GossipReceived,
    GossipRemoved,
    PeerForgotten,
    PeerJoined,
    PeerUpdated,
    Registered,
    TombstoneAdded,
    TombstoneRemoved,
)
from ..model import Gossip, Item, PeerView, Snapshot, Tombstone, item_key
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

    def save_tombstones(self, network: str, tombstones: Iterable[Tombstone]) -> None:
        """Store tombstones durably before returning (idempotent), in one write where possible."""

    def remove_items(self, network: str, items: Iterable[Item]) -> None:
        """Remove stored gossips (by guid and sha2) or tombstones durably before returning, in
        one write where possible; those not stored are ignored."""

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
    """Write what the given events changed: per network the new gossips and tombstones, then
    the items removed, then the peers, each in one batch.

    Additions go before removals: a crash between them leaves both versions of a guid (or a
    tombstone and its gossip) on disk, and the node keeps the right one when it restarts (the
    conflict rule), while the other order could lose an acknowledged change.

    Liveness changes alone (:class:`PeerStatusChanged`) are not written: they are this node's
    passing opinion, relearnt within rounds after a restart, and rewriting the peer file at
    every flip between alive and suspect would cost a write per flip.
    """
    added: dict[str, dict[int, Item]] = {}
    removed: dict[str, dict[int, Item]] = {}
    cursors: dict[str, dict[str, int]] = {}
    peers: dict[tuple[str, str], PeerView] = {}
    forgotten: set[tuple[str, str]] = set()
    for event in events:  # one per gossip a node learns: no dict made or call spared per event
        if isinstance(event, (GossipReceived, TombstoneAdded)):
            network = event.network
            if isinstance(event, GossipReceived):
                item: Item = event.gossip
                if event.cursor:
                    numbered = cursors.get(network)
                    if numbered is None:
                        numbered = cursors[network] = {}
                    numbered[item.guid] = event.cursor
            else:
                item = event.tombstone
            key = item_key(item)
            into = added.get(network)
            if into is None:
                into = added[network] = {}
            into[key] = item
            if network in removed:
                removed[network].pop(key, None)
        elif isinstance(event, (GossipRemoved, TombstoneRemoved)):
            item = event.gossip if isinstance(event, GossipRemoved) else event.tombstone
            key = item_key(item)
            removed.setdefault(event.network, {})[key] = item
            added.get(event.network, {}).pop(key, None)
        elif isinstance(event, (PeerJoined, PeerUpdated, Registered)):
            at = (event.peer.peer.network_name, event.peer.peer.guid)
            peers[at] = event.peer
            forgotten.discard(at)
        elif isinstance(event, PeerForgotten):
            at = (event.peer.peer.network_name, event.peer.peer.guid)
            peers.pop(at, None)
            forgotten.add(at)
    for network, items in added.items():
        gossips = [i for i in items.values() if isinstance(i, Gossip)]
        tombstones = [i for i in items.values() if isinstance(i, Tombstone)]
        if tombstones:
            storage.save_tombstones(network, tombstones)
        if gossips:
            storage.save_gossips(network, gossips, cursors.get(network))
    for network, items in removed.items():
        if items:
            storage.remove_items(network, items.values())
    if peers:
        storage.save_peers(peers.values())
    if forgotten:
        storage.forget_peers(forgotten)
