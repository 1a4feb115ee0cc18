"""The reconciled sets of a network: each owns its keys, builds its probes, answers a peer's
probe, and turns a peeled difference into the requests of a push-pull.

A network reconciles two sets with each peer (see :mod:`gossip.node`, "What is
reconciled"): its items (gossips and tombstones, :class:`GossipSet`) and its peer records
(:class:`PeerSet`). Both are reconciled the same way, by :class:`ReconciledSet`; they differ
only in the request that carries a probe (DID_YOU_HEAR or HELLO) and in what a difference
becomes (:meth:`ReconciledSet.exchange`). The third object, :class:`ActiveView`, holds
the peers a node gossips with once it knows more than ``full_view_limit`` nodes. Like the
node, nothing here does I/O or reads a clock, and chance comes only from the
``random.Random`` the node passes in: the node sends what these objects build.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass, field

from . import messages as m
from .digest import MAX_IBLT_SIZE, MIN_IBLT_SIZE, Iblt, KeySet, estimate_difference, iblt_size_for, key_hex, parse_key
from .errors import RemoteProtocolError
from .model import Peer

__all__ = [
    "ReconciledSet",
    "GossipSet",
    "PeerSet",
    "ActiveView",
    "Step",
    "Exchange",
    "record_key",
    "PAGE_SIZE",
    "ESTIMATE_ROUNDS",
]

#: Keys per page when two sets differ too much for an IBLT.
PAGE_SIZE = 2048
#: An answer sends its keys rather than an IBLT of ``size`` when it holds at most this many
#: keys per size unit (see :meth:`ReconciledSet.answer`; 6 measured best of 3, 4, 6 and 10 on
#: ``python -m gossip.sim --nodes 1000 --messages 100``).
PAGE_PER_SIZE = 6
#: The same when the table is sized from the strata estimate, which peels the first time
#: nearly always: a key of a page (43 bytes) against a size unit of table (176), about 4.
PAGE_PER_SIZE_ESTIMATED = 4
_LAST_KEY = (1 << 256) - 1
#: A key from its hex text, without parse_key's checks (for text the codec has checked).
_from_hex = functools.partial(int, base=16)
#: A set's probes carry its strata summary (the difference estimator, ``Probe.strata``) in
#: the round in which it changed and this many rounds after; 0 turns the estimator off.
#: A set that has not changed for longer is either in sync or the stale side of a
#: difference, whose size the count difference then tells: a settled network pays nothing.
ESTIMATE_ROUNDS = 1
#: A set's probes carry no strata summary while it holds at most this many keys: an
#: answerer holding about as few answers with a page of keys whatever the estimate
#: (:data:`PAGE_PER_SIZE` keys per size unit, and no table is smaller than MIN_IBLT_SIZE),
#: so the summary would buy nothing.
ESTIMATE_MIN_KEYS = PAGE_PER_SIZE * MIN_IBLT_SIZE


@functools.lru_cache(maxsize=65536)
def record_key(peer: Peer) -> int:
    """The 128-bit key of a peer record in the HELLO set (changes with any field but ``left``).

    ``left`` is left out so that a version-2 node, which does not know the field and drops
    it, keys a left record as its sender does (a left record always has a new incarnation).
    """
    fields = peer.to_dict()
    fields.pop("left", None)
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8"), digest_size=16).digest(), "big")


@dataclass(frozen=True, slots=True)
class Exchange:
    """What a difference becomes: requests to send the peer, keys it holds that this node
    lacks (hex), for the node to mark pending (those a request already asks for are not
    listed), and keys this node holds that the peer lacks (hex), for the node to give it."""

    requests: tuple[m.Message, ...] = ()
    heard: tuple[str, ...] = ()
    give: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Step:
    """The next step after a peer answered a probe.

    ``exchange``: the difference found, as requests (None: none found yet); ``probe``: a
    further probe to send after it (the next page, or a larger IBLT); ``rejected``: the
    answer was malformed (the stat to count); ``retry``: the IBLT did not peel.
    """

    exchange: Exchange | None = None
    probe: m.Probe | None = None
    rejected: str | None = None
    retry: bool = False


@dataclass(slots=True)
class ReconciledSet(ABC):
    """A set of 256-bit keys reconciled with peers by probe, IBLT or pages of keys."""

    #: Names the set in stats (``iblt_retry.<name>``).
    name: str = ""
    keys: KeySet = field(default_factory=KeySet)
    #: Rounds after a change in which probes carry the strata summary (see ESTIMATE_ROUNDS).
    estimate_rounds: int = field(default_factory=lambda: ESTIMATE_ROUNDS)
    #: ``keys.changes`` when :meth:`tick` last saw it change, and the rounds since.
    seen_changes: int = 0
    quiet: int = 0

    def tick(self) -> None:
        """Count a round (the node calls it as each round begins): how long the set has been
        unchanged decides whether its probes carry the strata summary."""
        if self.keys.changes != self.seen_changes:
            self.seen_changes, self.quiet = self.keys.changes, 0
        else:
            self.quiet += 1

    def settle(self) -> None:
        """Count the set as unchanged for long (what a node restored from its store)."""
        self.seen_changes, self.quiet = self.keys.changes, self.estimate_rounds

    def changed_lately(self) -> bool:
        """Whether the set changed in this round or in the last ``estimate_rounds``."""
        return self.keys.changes != self.seen_changes or self.quiet < self.estimate_rounds

    def probe(self, *, size: int = 0, start: int | None = None) -> m.Probe:
        """A probe of the whole set (``size``: ask for an IBLT at least that large; ``start``:
        ask for the page of keys from that key on).

        It carries the set's strata summary when it asks for a larger table (one did not
        peel: a difference is certain and the doubling may be short of it), and when it asks
        for neither while the set changed lately (:meth:`changed_lately`) and is not small.
        """
        keys = self.keys
        if start is not None or not self.estimate_rounds:
            summary = False
        elif size:
            summary = True
        else:
            summary = len(keys) > ESTIMATE_MIN_KEYS and self.changed_lately()
        return m.Probe(
            count=len(keys),
            fingerprint=keys.fingerprint,
            size=size,
            start=None if start is None else key_hex(start),
            strata=keys.strata if summary else None,
        )

    def estimate(self, probe: m.Probe) -> int:
        """How many keys this set and the probed one differ by: from the probe's strata
        summary when it has one, else (an older peer, or a set unchanged lately) the count
        difference."""
        difference = probe.count - len(self.keys)
        if probe.strata is None:
            return abs(difference)
        return estimate_difference(self.keys.strata, probe.strata, difference)

    @abstractmethod
    def request(self, probe: m.Probe) -> m.Message:
        """The request that carries a probe of this set on its own."""

    @abstractmethod
    def exchange(self, only_mine: set[int], only_theirs: set[int]) -> Exchange:
        """Both halves of a push-pull once the difference is known."""

    def answer(self, probe: m.Probe) -> m.ProbeAnswer:
        """In sync; else a page of keys when asked or when cheaper, else an IBLT.

        Raises:
            RemoteProtocolError: the probe asks for an IBLT size not allowed.
        """
        keys = self.keys
        count = len(keys)
        if probe.count == count and probe.fingerprint == keys.fingerprint:
            return m.ProbeAnswer(in_sync=True)
        if probe.size and (probe.size < MIN_IBLT_SIZE or probe.size > MAX_IBLT_SIZE or probe.size & (probe.size - 1)):
            raise RemoteProtocolError(f"probe size must be a power of two from {MIN_IBLT_SIZE} to {MAX_IBLT_SIZE}")
        # An asked size is a minimum: the estimate may call for more (a retry after a table
        # that did not peel carries a summary), never for less.
        size = probe.size
        if not size or probe.strata is not None:
            size = max(size, min(MAX_IBLT_SIZE, iblt_size_for(self.estimate(probe))))
        # A key costs 43 bytes in a (packed) page; a size unit of IBLT is 3 cells of 44 bytes,
        # 176 in base64, and a first table sized from the count difference alone fails to peel
        # about half the time and is sent again twice as large: past PAGE_PER_SIZE keys per
        # size unit the table is cheaper, below it the keys themselves. A table sized from
        # the strata estimate nearly always peels: there the ratio itself, about 4.
        per_size = PAGE_PER_SIZE if probe.strata is None else PAGE_PER_SIZE_ESTIMATED
        if probe.start is not None or (not probe.size and count <= per_size * size):
            start = 0 if probe.start is None else parse_key(probe.start)
            page, upto = keys.page(start, PAGE_SIZE)
            return m.ProbeAnswer(keys=tuple(map(key_hex, page)), upto=key_hex(upto))
        return m.ProbeAnswer(size=size, cells=keys.iblt(size).to_text())

    def reconcile(self, probe: m.Probe | None, answer: m.ProbeAnswer) -> Step:
        """Act on a peer's answer (not in sync) to ``probe``: the difference, and what to ask next."""
        keys = self.keys
        if answer.keys is not None and answer.upto is not None:
            start = 0 if probe is None or probe.start is None else parse_key(probe.start)
            upto = parse_key(answer.upto)
            theirs = set(map(_from_hex, answer.keys))  # 64 hex digits each: the codec checked them
            if upto < start or any(not start <= k <= upto for k in theirs):
                return Step(rejected="bad_page")
            mine = set(keys.between(start, upto))
            follow = self.probe(start=upto + 1) if upto < _LAST_KEY else None
            return Step(exchange=self.exchange(mine - theirs, theirs - mine), probe=follow)
        if answer.cells is None:
            return Step()
        try:
            table = Iblt.from_text(answer.cells, answer.size)
        except ValueError:
            return Step(rejected="bad_iblt")
        diff = keys.iblt(answer.size).subtract(table).decode()
        if diff is None:  # did not peel: twice the size, or pages past the largest
            bigger = answer.size * 2
            return Step(probe=self.probe(size=bigger) if bigger <= MAX_IBLT_SIZE else self.probe(start=0), retry=True)
        return Step(exchange=self.exchange(*diff))


@dataclass(slots=True)
class GossipSet(ReconciledSet):
    """A network's items (gossips and tombstones) by key (:func:`gossip.model.item_key`).

    A difference hands the node the keys only this node holds, to give the peer (their
    bodies in a PUSH, tombstones as DID_YOU_HEAR ids), and the keys only the peer holds, to
    fetch.
    """

    name: str = "gossip"

    def request(self, probe: m.Probe) -> m.Message:
        return m.DidYouHear(probe=probe)

    def exchange(self, only_mine: set[int], only_theirs: set[int]) -> Exchange:
        held = self.keys.members
        give = tuple(map(key_hex, sorted(k for k in only_mine if k in held)))
        return Exchange(heard=tuple(map(key_hex, sorted(only_theirs))), give=give)


@dataclass(slots=True)
class PeerSet(ReconciledSet):
    """A network's peer records (this node's own among them), by :func:`record_key`.

    A difference becomes HELLOs that push the records only this node holds and ask for
    the keys only the peer holds.
    """

    name: str = "peers"
    records: dict[int, Peer] = field(default_factory=dict)

    def add(self, peer: Peer) -> int:
        """Hold a record; returns its key."""
        key = record_key(peer)
        self.records[key] = peer
        self.keys.add(key)
        return key

    def update(self, peers: list[Peer]) -> list[int]:
        """Hold several records at once (a node restoring its peers); returns their keys, in
        order. The same as :meth:`add` for each, with the key set's batch update."""
        keys = list(map(record_key, peers))
        self.records.update(zip(keys, peers))
        self.keys.update(keys)
        return keys

    def drop(self, key: int) -> None:
        """Stop holding the record of this key (if held)."""
        self.records.pop(key, None)
        self.keys.discard(key)

    def wanted(self, keys: tuple[str, ...]) -> list[Peer]:
        """The records held of these keys (hex), in their order."""
        return [self.records[k] for k in map(parse_key, keys) if k in self.records]

    def request(self, probe: m.Probe) -> m.Message:
        return m.Hello(probe=probe)

    def exchange(self, only_mine: set[int], only_theirs: set[int]) -> Exchange:
        push = [self.records[k] for k in sorted(only_mine) if k in self.records]
        want = [key_hex(k) for k in sorted(only_theirs)]
        step = m.MAX_PEERS
        hellos = tuple(
            m.Hello(peers=tuple(push[i : i + step]), want=tuple(want[i : i + step]))
            for i in range(0, max(len(push), len(want)), step)
        )
        return Exchange(requests=hellos)


@dataclass(slots=True)
class ActiveView:
    """The peers a node gossips with once it knows more than ``full_view_limit`` nodes
    (HyParView's active view; the peer records are its passive view).

    Links are symmetric: a peer enters the view when it accepted this node's LINK, or when
    this node accepted its LINK; it leaves when either side drops the link (a ``drop``,
    or a failed request). Taking a member into a full view evicts one at random, which the
    node tells with a ``drop``.
    """

    size: int = 6
    #: The members, in the order they entered (a dict: ordered, O(1) membership).
    members: dict[str, None] = field(default_factory=dict)
    #: Peers asked (LINK join or ask) whose answer has not come yet.
    asking: set[str] = field(default_factory=set)
    #: Members evicted for a ``join`` since the round began: at most one a round, so that
    #: a member sending joins under made-up guids cannot empty the view faster than the
    #: repair refills it.
    forced: int = 0
    #: Schnabel's capture-recapture sums over the shuffle samples received: sum of
    #: (records known x sample size), and sum of the sampled records already known.
    captured: float = 0.0
    recaptured: float = 0.0

    def __contains__(self, guid: object) -> bool:
        return guid in self.members

    def __len__(self) -> int:
        return len(self.members)

    def peers(self) -> tuple[str, ...]:
        return tuple(self.members)

    def missing(self) -> int:
        """Members to ask for: room left, less the requests already out."""
        return self.size - len(self.members) - len(self.asking)

    def add(self, guid: str, rng: random.Random) -> str | None:
        """Take a member; returns the member evicted to make room (None if none was)."""
        self.asking.discard(guid)
        if guid in self.members:
            return None
        evicted = None
        if len(self.members) >= self.size:
            evicted = rng.choice(list(self.members))
            del self.members[evicted]
        self.members[guid] = None
        return evicted

    def remove(self, guid: str) -> bool:
        """Drop a member (and any request to it); returns whether it was one."""
        self.asking.discard(guid)
        return self.members.pop(guid, 0) is None

    def sample_seen(self, known: int, sampled: int, already: int) -> None:
        """Count a shuffle sample: ``sampled`` records, ``already`` of them among the
        ``known`` this node held (itself included). Older samples weigh less (x 0.9 each) so
        that the estimate follows a network that grows or shrinks."""
        self.captured = 0.9 * self.captured + known * sampled
        self.recaptured = 0.9 * self.recaptured + already

    def estimate(self, known: int) -> int:
        """The network's size: Schnabel's estimate sum(C x M) / sum(R) over the shuffles,
        never below the ``known`` nodes (nor, before any recapture, below the sums)."""
        if not self.captured:
            return known
        return max(known, round(self.captured / max(self.recaptured, 1.0)))
