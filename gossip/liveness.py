"""Peer liveness: alive, suspect or dead, from answered and failed requests and ``now``.

Liveness is this node's own opinion and is never gossiped. The rules, as data:

- any authenticated answer or request from a peer makes it ``alive``;
- a request that gets no answer makes it ``suspect``, and ``dead`` after
  ``dead_after`` failures in a row;
- a peer that failed is not contacted again before ``retry_at``, an exponential
  backoff from one gossip timer up to ``max_backoff``, shortened by a random jitter (the
  node's RNG) so that the peers of a network do not retry in step; dead peers are thus
  retried rarely and come back to ``alive`` as soon as they answer;
- ``left`` comes from the peer's record, not from requests (the node sets it, see
  ``GossipNode``): answers and failures leave it as it is, and a left peer is never contacted.
"""

from __future__ import annotations

from dataclasses import dataclass

from .model import PeerStatus

__all__ = ["LivenessPolicy", "Liveness", "ON_SUCCESS", "ON_FAILURE"]

#: Status after an answer, by status before.
ON_SUCCESS: dict[PeerStatus, PeerStatus] = {
    PeerStatus.ALIVE: PeerStatus.ALIVE,
    PeerStatus.SUSPECT: PeerStatus.ALIVE,
    PeerStatus.DEAD: PeerStatus.ALIVE,
    PeerStatus.LEFT: PeerStatus.LEFT,
}
#: Status after a failure, by status before (SUSPECT turns DEAD by count, see Liveness.failed).
ON_FAILURE: dict[PeerStatus, PeerStatus] = {
    PeerStatus.ALIVE: PeerStatus.SUSPECT,
    PeerStatus.SUSPECT: PeerStatus.SUSPECT,
    PeerStatus.DEAD: PeerStatus.DEAD,
    PeerStatus.LEFT: PeerStatus.LEFT,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class LivenessPolicy:
    """How quickly failures turn a peer suspect, then dead, and how it is retried."""

    #: Consecutive failures after which a suspect peer is declared dead.
    dead_after: int = 3
    #: First backoff after a failure, in seconds (the node passes its gossip timer).
    base_backoff: float = 1.0
    #: Longest backoff, in seconds.
    max_backoff: float = 60.0


@dataclass(slots=True)
class Liveness:
    """What this node knows of one peer's liveness."""

    status: PeerStatus = PeerStatus.ALIVE
    last_seen: float | None = None
    failures: int = 0
    retry_at: float = 0.0
    #: When the last failure was recorded; requests sent before it do not count again.
    failed_at: float = float("-inf")

    def succeeded(self, now: float) -> PeerStatus | None:
        """Record an authenticated message from the peer. Returns the old status if it changed."""
        old = self.status
        self.status = ON_SUCCESS[old]
        self.last_seen = now
        self.failures = 0
        self.retry_at = 0.0
        return old if old != self.status else None

    def failed(self, now: float, policy: LivenessPolicy, jitter: float = 1.0) -> PeerStatus | None:
        """Record a request that got no answer. Returns the old status if it changed.

        Args:
            jitter: the share of the backoff to wait, from 0.5 to 1 (drawn by the caller
                from its RNG; 1: none).
        """
        old = self.status
        self.failures += 1
        self.failed_at = now
        new = ON_FAILURE[old]
        if new is PeerStatus.SUSPECT and self.failures >= policy.dead_after:
            new = PeerStatus.DEAD
        self.status = new
        backoff = policy.base_backoff * 2 ** min(self.failures - 1, 30)
        self.retry_at = now + min(policy.max_backoff, backoff) * min(1.0, max(0.5, jitter))
        return old if old != new else None

    def set_left(self, left: bool) -> PeerStatus | None:
        """Follow the peer's record: ``left`` or back to ``alive``. Returns the old status if
        it changed."""
        old = self.status
        if left:
            self.status = PeerStatus.LEFT
        elif old is PeerStatus.LEFT:
            self.status, self.failures, self.retry_at = PeerStatus.ALIVE, 0, 0.0
        return old if old != self.status else None

    def eligible(self, now: float) -> bool:
        """May this peer be contacted at ``now``? Never once it left."""
        return self.status is not PeerStatus.LEFT and now >= self.retry_at

    def plain(self) -> bool:
        """Alive, and no failure since its last answer: eligible at any time, whatever ``now``.

        Only :meth:`failed` and :meth:`set_left` make a plain liveness not plain, and only
        :meth:`succeeded` and :meth:`set_left` make it plain again: a node that keeps the
        few peers that are not plain apart (``GossipNode``) need not look at the others
        to know which peers a round may pick.
        """
        return self.status is PeerStatus.ALIVE and not self.failures and not self.retry_at
