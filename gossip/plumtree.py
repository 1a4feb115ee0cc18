"""Eager push along a spanning tree (Plumtree): who gets a new gossip at once, and when.

After Leitão, Pereira and Rodrigues, "Epidemic Broadcast Trees" (SRDS 2007). Each network
keeps a set of *eager* peers. A gossip new to the node goes at once, body and all, to every
eager peer except the one it came from; everything else is left to the rounds'
anti-entropy, which plays the part of Plumtree's lazy IHAVE messages (an id learnt from it
is fetched at the node's next round, not at once: the round is the IHAVE timer). The rules
that turn the eager links into a tree, so that a body crosses each link about once:

- a PUSH that brought nothing new, or mostly gossips the receiver already held, is
  answered *prune*: both ends drop the link; what either had queued for the other
  (:meth:`EagerPeers.remove` returns it) goes as bodies if it is a few gossips (a flood
  crossing the link), and is dropped if more (a stream the peer gets by another link);
- a round that finds a peer lacks a gossip the tree should have brought it pushes the body
  at once, as a *repair*, which prunes no link and grafts one when it brought something;
- a peer that gave this node something new (by PUSH, or by a TELL_ME_MORE answer) joins
  its eager set, and a TELL_ME_MORE with ``graft`` makes the answerer add the asker: links
  are symmetric, and a fetch means the tree missed this node, so it is grafted back;
- the node's own ``target`` (``gossip_max_peer_count``) random eligible peers are picked on
  its first push, and again only when the set is empty: refilling it after a prune would
  undo what the prune saved;
- nothing grows the set beyond :attr:`EagerPeers.limit`, ``2 * target`` but at least 4: a
  tree that spans the network needs nodes with three links or more, which a bound of 2
  (fanout 1) would forbid.

Slow start: the first PUSH on a link carries at most :data:`PROBE` gossips; the link is
*proven* when a push of it is answered without a prune, and from then on a push carries as
many as the budget allows. In the first flood every redundant eager link (the ones the
prunes will cut) delivers one push of duplicates before its prune comes back: probes keep
that push small, and the prunes cut the cycles before the bulk of a burst crosses them. The
push after a link's proof leaves at once, without the gap.

Flow control: at most one PUSH per peer is in flight, and two pushes to one peer leave at
least a *gap* apart. The gap is ``linger`` (a twentieth of the gossip timer) on a quiet
link, and doubles with every push that follows the previous one closely (within twice the
gap: the link is busy), up to :data:`BUSY_LINGER` times ``linger``; a push after a quiet
spell sets it back. Gossips to push meanwhile queue per peer (at most :data:`QUEUE_LIMIT`, the
oldest dropped first; anti-entropy repairs) and leave together, so a burst of creates, or a
steady stream of them, costs a few requests per link and second, not one per gossip, and
the busier a link the more each push carries. A gossip after a quiet spell leaves at once.

This module keeps the state only; :class:`~gossip.node.GossipNode` sends the requests.
Sets here are insertion-ordered dicts: iterating a ``set[str]`` would depend on the
process's hash seed, and the simulator must replay byte for byte.
"""

from __future__ import annotations

import math
import random

from .messages import MAX_IDS

__all__ = ["EagerPeers", "PROBE", "QUEUE_LIMIT"]

#: Most gossips queued for one peer while a PUSH to it is in flight.
QUEUE_LIMIT = 4 * MAX_IDS
#: Longest gap between two pushes to a busy link, in ``linger``s.
BUSY_LINGER = 2
#: Most gossips in a push on a link not yet proven (slow start, see the module docstring).
PROBE = 16


class EagerPeers:
    """One network's eager peers, the gossips queued for each, and the pushes in flight.

    Args:
        target: how many random peers to pick when the set is first needed or empty.
        linger: least seconds between two pushes to one peer.
    """

    def __init__(self, target: int, linger: float = 0.0) -> None:
        self.target = target
        self.linger = linger
        #: Per peer: when the last push to it left, and the gap before the next may.
        self._sent_at: dict[str, float] = {}
        self._gap: dict[str, float] = {}
        #: Most eager peers (see the module docstring).
        self.limit = max(4, 2 * target)
        self._peers: dict[str, None] = {}
        self._started = False
        #: Per peer: guid -> wire size of the gossip, oldest first.
        self._queues: dict[str, dict[str, int]] = {}
        self._busy: set[str] = set()
        #: Peers whose link is proven: a push to them was answered without a prune.
        self._proven: set[str] = set()

    def __len__(self) -> int:
        return len(self._peers)

    @property
    def started(self) -> bool:
        """Whether the node's own random peers were picked (on its first push)."""
        return self._started

    def peers(self) -> tuple[str, ...]:
        return tuple(self._peers)

    def add(self, peer: str) -> None:
        """Make ``peer`` eager if there is room."""
        if len(self._peers) < self.limit:
            self._peers[peer] = None

    def remove(self, peer: str) -> list[str]:
        """The link turns lazy: no more pushes to ``peer``. Returns the guids that were
        queued for it (the queue is dropped)."""
        self._peers.pop(peer, None)
        self._no_gap(peer)
        self._proven.discard(peer)
        return list(self._queues.pop(peer, ()))

    def pick(self, candidates: list[str], rng: random.Random) -> None:
        """Top the set up to ``target`` random candidates (on the first push, or when empty)."""
        self._started = True
        others = [c for c in candidates if c not in self._peers]
        for peer in rng.sample(others, max(0, min(self.target - len(self._peers), len(others)))):
            self._peers[peer] = None

    def enqueue(self, gossips: dict[str, int], exclude: str | None) -> list[str]:
        """Queue gossips (guid -> wire size) for every eager peer but ``exclude``.

        Returns:
            The peers with no push in flight, to which a push should go now.
        """
        ready = []
        for peer in self._peers:
            if peer == exclude:
                continue
            queue = self._queues.setdefault(peer, {})
            queue.update(gossips)
            while len(queue) > QUEUE_LIMIT:
                del queue[next(iter(queue))]
            if peer not in self._busy:
                ready.append(peer)
        return ready

    def take(self, peer: str, budget: int, now: float) -> list[str]:
        """The next push's guids for ``peer``: the oldest queued, up to :data:`MAX_IDS`
        (:data:`PROBE` on a link not yet proven) and ``budget`` bytes (the first always).
        Empty while a push to it is in flight, or until the link's gap has passed since the
        last one left."""
        queue = self._queues.get(peer)
        last = self._sent_at.get(peer, -math.inf)
        gap = self._gap.get(peer, self.linger)
        if not queue or peer in self._busy or now < last + gap:
            return []
        busy = now < last + 2 * gap
        self._gap[peer] = min(2 * gap, BUSY_LINGER * self.linger) if busy else self.linger
        self._sent_at[peer] = now
        batch: list[str] = []
        most = MAX_IDS if peer in self._proven else PROBE
        for guid, size in queue.items():
            budget -= size
            if len(batch) == most or (budget < 0 and batch):
                break
            batch.append(guid)
        for guid in batch:
            del queue[guid]
        if not queue:
            del self._queues[peer]
        self._busy.add(peer)
        return batch

    @property
    def spreading(self) -> bool:
        """Whether a push is queued or in flight to any peer."""
        return bool(self._queues or self._busy)

    def due(self) -> float:
        """When the next lingering push may leave (``inf``: none waits)."""
        waiting = [self._next(p) for p in self._queues if p not in self._busy]
        return min(waiting, default=math.inf)

    def _next(self, peer: str) -> float:
        return self._sent_at.get(peer, -math.inf) + self._gap.get(peer, self.linger)

    def ready(self, now: float) -> list[str]:
        """The peers a push may go to now: something queued, none in flight, linger over."""
        return [p for p in self._queues if p not in self._busy and now >= self._next(p)]

    def unsent(self, peer: str) -> None:
        """The push just taken for ``peer`` will not leave: no linger for it, nothing in flight."""
        self._no_gap(peer)
        self._busy.discard(peer)

    def finished(self, peer: str) -> None:
        """The push in flight to ``peer`` is over: the next one may go."""
        self._busy.discard(peer)

    def proved(self, peer: str) -> None:
        """A push to ``peer`` was answered without a prune: the link is proven. On its
        first proof the next push leaves at once, full size (slow start is over)."""
        if peer in self._peers and peer not in self._proven:
            self._proven.add(peer)
            self._no_gap(peer)

    def _no_gap(self, peer: str) -> None:
        """The next push to ``peer`` may leave at once, and its gap starts again at ``linger``."""
        self._sent_at.pop(peer, None)
        self._gap.pop(peer, None)

    def clear(self, peer: str) -> None:
        """Drop the gossips queued for ``peer``."""
        self._queues.pop(peer, None)

    def held_by(self, peer: str, guids: list[str]) -> None:
        """``peer`` holds these gossips (it sent them, or said it holds them): none of them
        is queued for it any more."""
        queue = self._queues.get(peer)
        if queue is None:
            return
        for guid in guids:
            queue.pop(guid, None)
        if not queue:
            del self._queues[peer]

    def forget(self, guid: str) -> None:
        """A gossip the node no longer holds leaves every queue."""
        for peer, queue in list(self._queues.items()):
            queue.pop(guid, None)
            if not queue:
                del self._queues[peer]
