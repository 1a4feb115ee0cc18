"""In-memory storage: the twin of the JSON-file store, for tests and the simulator."""

from __future__ import annotations

from typing import Iterable, Mapping

from ..model import Gossip, PeerView, Snapshot

__all__ = ["MemoryStorage"]


class MemoryStorage:
    """Keeps gossips and peers in dicts; survives a node "crash" in the simulator."""

    def __init__(self) -> None:
        self._gossips: dict[str, dict[str, Gossip]] = {}
        self._peers: dict[str, dict[str, PeerView]] = {}
        self._cursors: dict[str, dict[str, int]] = {}
        self.closed = False

    def load(self) -> Snapshot:
        return Snapshot(
            gossips={net: list(g.values()) for net, g in self._gossips.items()},
            peers={net: list(p.values()) for net, p in self._peers.items()},
            cursors={net: dict(c) for net, c in self._cursors.items()},
        )

    def save_gossip(self, network: str, gossip: Gossip) -> None:
        self._gossips.setdefault(network, {}).setdefault(gossip.guid, gossip)

    def save_gossips(self, network: str, gossips: Iterable[Gossip], cursors: Mapping[str, int] | None = None) -> None:
        for gossip in gossips:
            if gossip.guid not in self._gossips.get(network, {}) and cursors and gossip.guid in cursors:
                self._cursors.setdefault(network, {})[gossip.guid] = cursors[gossip.guid]
            self.save_gossip(network, gossip)

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
