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

    def write_items(
        self,
        added: Mapping[str, Iterable[Item]],
        removed: Mapping[str, Iterable[Item]],
        cursors: Mapping[str, Mapping[str, int]] | None = None,
    ) -> None:
        """Store items (gossips and tombstones, by network, a gossip with its cursor from
        ``cursors[network][guid]`` when given) and remove others, durably and as one change:
        if it raises, none of it is stored."""

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
    """Write what the given events changed: the new gossips and tombstones and the items
    removed, of every network, as one change (:meth:`Storage.write_items`); then the peers.

    Additions go before removals: a crash that tears the write between them leaves both
    versions of a guid (or a tombstone and its gossip) on disk, and the node keeps the right
    one when it restarts (the conflict rule), while the other order could lose an
    acknowledged change. A write that fails leaves none of the items (the runner then takes
    the batch back out of the node); the peer file is only what the node relearns anyway.

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
    if any(added.values()) or any(removed.values()):
        # One change: a batch that fails is written not at all, rather than in part (a
        # delete whose tombstone was written and its removal not came back after a restart
        # as a delete answered 507 that had happened).
        storage.write_items(
            {n: items.values() for n, items in added.items() if items},
            {n: items.values() for n, items in removed.items() if items},
            cursors,
        )
    if peers:
        storage.save_peers(peers.values())
    if forgotten:
        storage.forget_peers(forgotten)
