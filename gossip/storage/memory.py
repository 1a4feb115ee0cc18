"""In-memory storage: the twin of the JSON-file store, for tests and the simulator."""

from __future__ import annotations

from typing import Iterable, Mapping

from ..model import Gossip, Item, PeerView, Snapshot, Tombstone

__all__ = ["MemoryStorage"]


class MemoryStorage:
    """Keeps gossips and peers in dicts; survives a node "crash" in the simulator."""

    def __init__(self) -> None:
        #: By network, then by (guid, sha2): a replacement may briefly hold two versions.
        self._gossips: dict[str, dict[tuple[str, str], Gossip]] = {}
        self._tombstones: dict[str, dict[tuple[str, str], Tombstone]] = {}
        self._peers: dict[str, dict[str, PeerView]] = {}
        self._cursors: dict[str, dict[str, int]] = {}
        #: The highest cursor ever stored, kept when its gossip is removed: never given twice.
        self._last_cursor = 0
        self.closed = False

    def load(self) -> Snapshot:
        return Snapshot(
            gossips={net: list(g.values()) for net, g in self._gossips.items()},
            peers={net: list(p.values()) for net, p in self._peers.items()},
            cursors={net: dict(c) for net, c in self._cursors.items()},
            last_cursor=self._last_cursor,
            tombstones={net: list(t.values()) for net, t in self._tombstones.items()},
        )

    def save_gossip(self, network: str, gossip: Gossip) -> None:
        self._gossips.setdefault(network, {}).setdefault((gossip.guid, gossip.sha2), gossip)

    def save_gossips(self, network: str, gossips: Iterable[Gossip], cursors: Mapping[str, int] | None = None) -> None:
        for gossip in gossips:
            if (gossip.guid, gossip.sha2) not in self._gossips.get(network, {}) and cursors and gossip.guid in cursors:
                self._cursors.setdefault(network, {})[gossip.guid] = cursors[gossip.guid]
                self._last_cursor = max(self._last_cursor, cursors[gossip.guid])
            self.save_gossip(network, gossip)

    def save_tombstones(self, network: str, tombstones: Iterable[Tombstone]) -> None:
        for tombstone in tombstones:
            self._tombstones.setdefault(network, {}).setdefault((tombstone.guid, tombstone.date_time), tombstone)

    def remove_items(self, network: str, items: Iterable[Item]) -> None:
        for item in items:
            if isinstance(item, Gossip):
                self._gossips.get(network, {}).pop((item.guid, item.sha2), None)
            else:
                self._tombstones.get(network, {}).pop((item.guid, item.date_time), None)

    def write_items(
        self,
        added: Mapping[str, Iterable[Item]],
        removed: Mapping[str, Iterable[Item]],
        cursors: Mapping[str, Mapping[str, int]] | None = None,
    ) -> None:
        given = cursors or {}
        for network, items in added.items():
            batch = list(items)
            self.save_tombstones(network, [i for i in batch if isinstance(i, Tombstone)])
            self.save_gossips(network, [i for i in batch if isinstance(i, Gossip)], given.get(network))
        for network, items in removed.items():
            self.remove_items(network, items)

    def save_peer(self, view: PeerView) -> None:
        self._peers.setdefault(view.peer.network_name, {})[view.peer.guid] = view

    def save_peers(self, views: Iterable[PeerView]) -> None:
        for view in views:
            self.save_peer(view)

    def forget_peers(self, peers: Iterable[tuple[str, str]]) -> None:
        for network, guid in peers:
            self._peers.get(network, {}).pop(guid, None)

    def close(self) -> None:
        self.closed = True
