"""GossipNode: the whole protocol as a sans-I/O state machine.

Rule 1: nothing in this module imports socket, threading, time or os, and nothing calls
``random``'s module-level functions or ``uuid.uuid4()``. Time comes in as ``now`` (seconds
since the epoch, or any virtual clock) and chance from the ``random.Random`` passed in.
That is what lets the simulator replay a run byte for byte from its seed.

Theory of operation
-------------------
The runner (``gossip.http``, ``gossip.sim`` or your program) owns the I/O and loops::

    node.tick(now)                              # start rounds, expire requests
    for out in node.outbox():                   # addressed request bytes to send
        try:    node.receive_response(out.request_id, transport.request(...), now)
        except TransportError as e: node.delivery_failed(out.request_id, now, ...)
    answer = node.handle_request(data, now)     # a peer's request; raises GossipError
    while (event := node.next_event()): ...     # persist, then acknowledge
    sleep until node.next_deadline()

**What is reconciled.** A network's gossip set holds its gossips and tombstones (deleted
gossips), at most one item per guid, each under a 256-bit key that covers its content
(:func:`gossip.model.item_key`): two nodes' digests agree only when their contents do. When
two items of one guid meet, one rule decides on every node (:func:`gossip.model.wins`); the
loser leaves the set and the store. Items older than the network's retention are dropped at
each tick and refused on receipt, and the retention itself travels in the rounds
(:class:`gossip.model.Retention`). The wire's "ids" are these keys.

A new gossip spreads by **eager push** (:mod:`gossip.plumtree`): the node that creates it,
and every node that stores it for the first time, sends it at once in a PUSH to its eager
peers except the one it came from, so it crosses the network in hops, not rounds. A PUSH
that brought mostly duplicates prunes its link, a fetch grafts one, and the eager links settle
into a tree on which each body crosses each link about once. At most one PUSH per peer is
in flight; what is created meanwhile queues and leaves in the next one.

**Anti-entropy** repairs whatever the tree missed. A round (every ``gossip_timer``, the
first at a random moment of the first period) contacts one eligible peer of each network at
random (``gossip_max_peer_count`` of them with push off, when the rounds do all the
spreading), plus every peer that registered since the last round; while nothing changes,
rounds probe further and further apart (Trickle). Each contact is one DID_YOU_HEAR carrying
two probes: of its gossip ids and (``hello``) of its
peer records. A probe is a set's ``(count, fingerprint)``; an in-sync answer ends the
exchange. Otherwise the answer is an IBLT of the peer's set (:mod:`gossip.digest`) that the
initiator subtracts from its own and peels into "keys only I have" and "keys only you
have", both sides of a push-pull:

- peers: one HELLO pushes my extra records and asks for the keys I lack;
- gossip: DID_YOU_HEAR(ids) tells the peer what I hold that it lacks, and the ids I lack
  become *pending*, to be fetched with TELL_ME_MORE from a peer that has them.

A pending id shows in GOSSIP_STATUS with ``complete: false``. Without eager push it is
fetched at once; with it, at a later round, if no push brought it meanwhile, and the fetch
grafts the tree (Plumtree's IHAVE timer and GRAFT). How much later adapts: a fetch whose
bodies a push brought first doubles the wait, a useful one halves it (``_fetched``). A fetch that fails is retried from
another source each round until it lands.

**Undo.** The runner writes each batch of events before it lets the answer and the queued
requests out. When the write fails it calls :meth:`GossipNode.revert` with the events and
:meth:`GossipNode.cancel` with each request, so nothing of the batch stays in the node or
leaves it.
"""

from __future__ import annotations

import base64
import bisect
import functools
import heapq
import math
import random
import uuid
from collections import Counter, deque
from dataclasses import dataclass, field, replace
from itertools import filterfalse, repeat
from typing import Any, Iterable, Iterator, TypeVar

from . import messages as m
from .auth import DEFAULT_WINDOW, ReplayGuard, key_id, seal_key, unseal_key
from .digest import KeySet, key_hex, parse_key
from .errors import AuthenticationError, ErrorCode, GossipError, LocalProtocolError, RemoteProtocolError
from .events import (
    Event,
    GossipConflict,
    GossipReceived,
    GossipRemoved,
    RetentionChanged,
    TombstoneAdded,
    TombstoneRemoved,
    KeyringChanged,
    PeerForgotten,
    PeerJoined,
    PeerStatusChanged,
    PeerUpdated,
    RegisterFailed,
    Registered,
    _received,
)
from .liveness import Liveness, LivenessPolicy
from .model import (
    Gossip,
    Item,
    Retention,
    Tombstone,
    is_tombstone_key,
    item_key,
    wins,
    Network,
    NodeConfig,
    Peer,
    PeerStatus,
    PeerView,
    MAX_FUTURE_SKEW,
    Snapshot,
    check_guid,
    check_ip,
    check_msg,
    check_port,
    iso_from_timestamp,
)
from .plumtree import EagerPeers
from .sets import ActiveView, GossipSet, PeerSet, ReconciledSet, record_key

#: A received gossip or tombstone, for :meth:`GossipNode._admit` (which gives back what it got).
_Received = TypeVar("_Received", Gossip, Tombstone)

__all__ = ["GossipNode", "Outgoing", "GossipStatus", "KeyInfo", "KEYS_FANOUT", "record_key"]

Address = tuple[str, int]
#: Most gossip ids asked for in one TELL_ME_MORE.
TELL_ME_MORE_BATCH = 256
#: Bytes of gossip bodies put in one TELL_ME_MORE answer or PUSH; the rest follows later.
ANSWER_BUDGET = m.MAX_MESSAGE_BYTES // 2
#: Most gossip bytes one reconciliation pushes to a peer as a repair; the rest, and all of it
#: while a repair to that peer is still in flight, go as ids for the peer to fetch at its own
#: pace. Repairs mend what the tree missed; a peer far behind (a slow link, a restart, a
#: healed partition) catches up by pulling, or every peer that finds it behind would push it
#: the same bodies at once.
REPAIR_BUDGET = 64 * 1024
#: Most gossips queued for a link when it is pruned that still go to it as bodies (a flood
#: crossing the link); a longer queue is dropped (see GossipNode._prune).
PRUNE_FLUSH = 4
#: Least time between two pushes to one peer, in gossip timers (see gossip.plumtree).
PUSH_LINGER = 0.05
#: Peer records a network keeps free for REGISTER and first-hand records: hearsay (records
#: other peers pass on) may fill the peer list up to ``max_peers - max(1, max_peers //
#: PEER_RESERVE_DIVISOR)`` only.
PEER_RESERVE_DIVISOR = 8
#: A record never proven (never answered, never sent by its own node) whose requests failed
#: is forgotten once held this long: at least UNPROVEN_TTL seconds and UNPROVEN_TTL_ROUNDS
#: timers.
UNPROVEN_TTL = 120.0
UNPROVEN_TTL_ROUNDS = 60
#: A record forgotten as never answering is refused as hearsay for SHUN_TTLS unproven TTLs;
#: at most SHUN_FACTOR x max_peers such records are remembered.
SHUN_TTLS = 10
SHUN_FACTOR = 4
#: Most ids pending per network, and per source peer within it (one DID_YOU_HEAR's worth):
#: what a member announcing made-up ids can make a node hold.
MAX_PENDING = 16_384
MAX_PENDING_PER_SOURCE = m.MAX_IDS
#: An id pending this long without arriving is dropped (a source that has it will tell again
#: at a later reconciliation): at least PENDING_TTL seconds and PENDING_TTL_ROUNDS timers.
PENDING_TTL = 60.0
PENDING_TTL_ROUNDS = 32
#: Longest wait, in gossip timers, before fetching an id heard of by anti-entropy (_fetched).
MAX_FETCH_DELAY = 16
#: Most rounds between two probes while a network stays settled, or while the node's own
#: pushes stay under way (see _round).
SETTLED_BACKOFF_MAX = 8
#: Bytes a tombstone counts for in an answer's budget (its JSON, about).
TOMBSTONE_WIRE_SIZE = 96
#: A key refused (a losing version, an expired item) is not fetched again for REFUSED_TTL
#: seconds; at most MAX_REFUSED such keys are remembered per network, oldest forgotten first.
REFUSED_TTL = 3600.0
MAX_REFUSED = 16_384
#: Past full_view_limit, a node swaps a sample of SHUFFLE_SIZE peer records (its own among
#: them) with one active peer every SHUFFLE_ROUNDS rounds (see GossipNode._shuffle).
SHUFFLE_ROUNDS = 4
SHUFFLE_SIZE = 8
#: Most peers a node sends a new key ring to at once; the rounds' ring adverts take it to
#: the others (see GossipNode._change_ring).
KEYS_FANOUT = 32
#: Most versions a ring taken from a peer may be ahead of this node's (each change at a node
#: adds one; a node that missed a million changes is re-added by hand).
MAX_RING_STEP = 1_000_000
#: Key ids, cached: one is looked up for every request sent.
_key_id = functools.lru_cache(maxsize=256)(key_id)


@dataclass(frozen=True, slots=True, kw_only=True)
class Outgoing:
    """A request for the runner to send; answer with receive_response or delivery_failed."""

    request_id: int
    address: Address
    data: bytes
    verb: str
    network: str
    peer: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class GossipStatus:
    """One row of GOSSIP_STATUS. A pending gossip has only ``guid`` and ``complete=False``.

    Its JSON shape belongs to the client API (:func:`gossip.http.api.gossip_row`)."""

    network: str
    guid: str
    complete: bool
    date_time: str | None = None
    who_name: str | None = None
    msg: str | None = None
    sha2: str | None = None
    #: Where this node numbered the gossip in what it learnt (None while pending).
    cursor: int | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class KeyInfo:
    """One key of a network's ring, as ``gossip keys list`` shows it (never the key itself).

    ``nodes``: how many nodes hold it, this one included, as last heard from their ring
    adverts; ``known``: how many nodes are counted (this one and every peer not dead);
    ``unheard``: how many of those have not advertised a ring yet.
    """

    network: str
    id: str
    primary: bool
    nodes: int
    known: int
    unheard: int


@dataclass(slots=True)
class _PeerEntry:
    peer: Peer
    key: int
    #: When this node first held the record (restored ones: when the node started).
    learnt: float
    #: The node's last cursor then (restored ones: 0): gossips numbered after it came in
    #: while this node knew the peer (see GossipNode._give).
    since: int = 0
    liveness: Liveness = field(default_factory=Liveness)
    fresh: bool = False
    #: The record came from its own node (REGISTER, its answer, or its own HELLO), not as
    #: hearsay: only the node itself can then move it (see GossipNode._learn_peer).
    firsthand: bool = False
    #: The peer's gossip set as last known, (count, fingerprint): from its own probe, or ours
    #: when its answer said in sync; ``_DIFFERS`` when its answer said not. None: not known yet.
    summary: tuple[int, str] | None = None
    #: When ``summary`` was learnt (this node's clock).
    summary_at: float | None = None
    #: How far the peer's clock is ahead of this node's, in ms, from its last signed answer:
    #: requests to it are stamped on its clock (see GossipNode.handle_request).
    clock_offset_ms: int = 0
    #: The peer's key ring, as it last advertised it (None: not heard yet).
    ring: m.Ring | None = None
    #: The rank of the ring last sent to it in a KEYS still under way (sent once, not at
    #: every advert meanwhile).
    ring_offered: tuple[int, str] | None = None
    #: The key of the peer's last request to this node: until its ring is heard, requests to
    #: it are signed with that key (a node that joined with another key of the ring).
    last_key: bytes | None = field(default=None, repr=False)
    #: A record saying the peer left, heard while it looked alive, and when: believed only
    #: once a request sent since then fails (see GossipNode._claim_left).
    left_claim: Peer | None = None
    claim_at: float = 0.0
    #: The record came in a shuffle sample: left out of the size estimate's marked set
    #: (records that circulate between shuffles would be counted as recaptures).
    shuffled: bool = False

    @property
    def proven(self) -> bool:
        """The peer has answered or sent an authenticated message at least once."""
        return self.firsthand or self.liveness.last_seen is not None

    @property
    def doubtful(self) -> bool:
        """Never proven, and a request to it has already failed: maybe an address nobody
        answers at (a record made up by a member); contacted last (see GossipNode._round)."""
        return not self.proven and self.liveness.failures > 0

    def view(self) -> PeerView:
        lv = self.liveness
        return PeerView(peer=self.peer, status=lv.status, last_seen=lv.last_seen, failures=lv.failures)


@dataclass(slots=True)
class _Pending:
    sources: list[str]
    #: When the node first heard of the id.
    since: float
    asked: str | None = None


@dataclass(slots=True)
class _Net:
    """Everything the node holds for one network. Nothing here ever crosses networks."""

    network: Network
    self_peer: Peer
    eager: EagerPeers
    #: The reconciled set is the gossips and the tombstones, at most one item per guid (the
    #: conflict rule, :func:`gossip.model.wins`, decides which); ``gossip_set`` holds their
    #: keys (:func:`gossip.model.item_key`).
    gossips: dict[str, Gossip] = field(default_factory=dict)
    tombstones: dict[str, Tombstone] = field(default_factory=dict)
    gossip_set: GossipSet = field(default_factory=GossipSet)
    #: The cursor of each gossip held, and the feed: (cursor, guid) in cursor order. The feed
    #: may still name a gossip since removed (revert, deletion); readers skip those.
    cursors: dict[str, int] = field(default_factory=dict)
    feed: list[tuple[int, str]] = field(default_factory=list)
    #: Every item held, by (date timestamp, key), oldest first, for expiry; entries of items
    #: gone since are skipped when they come up. Built at the first expiry under a retention
    #: (``expiry_kept``), then kept: a network that keeps gossip for ever (the default) holds
    #: no entry per item.
    expiry: list[tuple[float, int]] = field(default_factory=list)
    expiry_kept: bool = False
    #: Keys refused (losing versions, expired items) and until when they are not fetched again.
    refused: dict[int, float] = field(default_factory=dict)
    #: (peer, key) of gossips a repair PUSH brought a peer for nothing, and until when they
    #: are told to it as ids instead (oldest first; at most MAX_REFUSED).
    unwanted: dict[tuple[str, int], float] = field(default_factory=dict)
    #: Peers a repair PUSH is in flight to (at most one each).
    repairing: set[str] = field(default_factory=set)
    #: Pending keys (hex), waiting for their item's body.
    pending: dict[str, _Pending] = field(default_factory=dict)
    #: Record keys forgotten as never answering, and until when hearsay of them is refused
    #: (else peers that have not tried them yet hand them straight back). Oldest first.
    shunned: dict[int, float] = field(default_factory=dict)
    #: How many pending ids name each peer as a source (for MAX_PENDING_PER_SOURCE).
    pending_by: Counter[str] = field(default_factory=Counter)
    peers: dict[str, _PeerEntry] = field(default_factory=dict)
    #: The guids of the peers that are not plain (GossipNode._note): fresh, or not alive, or
    #: failed since they last answered; at times a few plain ones too. Every other peer is
    #: eligible at any time and not doubtful, so what a round picks from comes from these
    #: and a copy of ``peers``' keys, without looking at each peer.
    irregular: set[str] = field(default_factory=set)
    #: The peer records, this node's own among them (the second reconciled set).
    peer_set: PeerSet = field(default_factory=PeerSet)
    replay: ReplayGuard = field(default_factory=ReplayGuard)
    #: Something changed, or a probe found a difference, since the last round started: the
    #: next round contacts ``gossip_max_peer_count`` peers rather than one.
    unsettled: bool = True
    #: While settled, rounds between two probes grow 1, 2, 4 (Trickle); ``rest`` counts down.
    backoff: int = 1
    rest: int = 0
    #: Round probes that may still be sent again to another peer this round after one
    #: failed (see :meth:`GossipNode.delivery_failed`).
    retries: int = 0
    #: Bytes of gossip JSON held (Quota.max_network_bytes), and the create token bucket
    #: (Quota.creates_per_minute): tokens left, and when it was last filled.
    held_bytes: int = 0
    create_tokens: float = -1.0
    tokens_at: float = 0.0
    #: With eager push, how long an id must have been pending before it is fetched
    #: (Plumtree's IHAVE timeout), adapted to how long pushes take to arrive: see
    #: :meth:`GossipNode._fetched`.
    fetch_delay: float = 0.0
    #: Rounds in a row that left the gossips alone, the node's pushes being under way
    #: (see :meth:`GossipNode._round`).
    held: int = 0
    #: The active view (used past ``full_view_limit``), and rounds until its next shuffle.
    active: ActiveView = field(default_factory=ActiveView)
    shuffle_in: int = 0

    @property
    def gossip_keys(self) -> KeySet:
        return self.gossip_set.keys

    @property
    def peer_keys(self) -> KeySet:
        return self.peer_set.keys


@dataclass(slots=True)
class _Inflight:
    net: str
    peer: str | None
    address: Address
    body: m.Message
    nonce: str
    sent: float
    deadline: float
    #: A PUSH of what a reconciliation found the peer lacks, not of the eager tree: its
    #: answer leaves the tree's links and flow control alone.
    repair: bool = False


#: A peer's set summary when the last exchange found it differs from this node's.
_DIFFERS = (-1, "")


@functools.lru_cache(maxsize=1 << 14)
def _key_guid(key: int) -> str:
    """The guid an item key names (its high 128 bits), as ``str(uuid.UUID(int=...))`` writes
    it, four times faster (every difference an IBLT finds). Cached, bounded: while gossips
    are on their way, every round finds the same keys missing again."""
    h = f"{key >> 128:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _first(entry: tuple[int, str]) -> int:
    return entry[0]


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


class GossipNode:
    """One node's protocol state. Feed it requests, answers, failures and time; drain its output.

    Args:
        config: the node's properties, networks and keys.
        rng: the only source of chance (peer choice, guids, nonces). Seed it for replay.
        now: the current time, in seconds.
        snapshot: stored gossips and peers to start from (see :mod:`gossip.storage`).
        window: seconds a request's timestamp may be off this node's clock.
        request_timeout: seconds after which an unanswered request counts as failed.
        max_peers: most peers kept per network (protects memory from a flood of records).
        liveness: how failures turn peers suspect and dead.
        push: spread new gossips by eager push (:mod:`gossip.plumtree`). False leaves the
            rounds' anti-entropy alone, to measure it; pushes from peers are still taken.
    """

    def __init__(
        self,
        config: NodeConfig,
        *,
        rng: random.Random,
        now: float,
        snapshot: Snapshot | None = None,
        window: float = DEFAULT_WINDOW,
        request_timeout: float | None = None,
        max_peers: int = 1024,
        liveness: LivenessPolicy | None = None,
        push: bool = True,
    ) -> None:
        if not isinstance(rng, random.Random):
            raise LocalProtocolError("rng must be a random.Random instance (seed it for replay)")
        self.config = config
        self._rng = rng
        self._window = window
        #: When this node started (ms): requests stamped earlier are refused (handle_request).
        self._started_ms = int(now * 1000)
        self._request_timeout = request_timeout or max(5.0, 2 * config.gossip_timer)
        self._max_peers = max_peers
        self._push = push
        # Left and dead peers are forgotten after this (NodeConfig.forget_after); until then a
        # dead peer is retried with backoff, so that a partition longer than any failure
        # timeout still heals when the link returns.
        self._forget_after = float(config.forget_after)
        #: The node announced that it leaves (:meth:`leave`): no more rounds, requests refused.
        self._left = False
        self._policy = liveness or LivenessPolicy(
            base_backoff=config.gossip_timer, max_backoff=max(60.0, 10 * config.gossip_timer)
        )
        self._nets: dict[str, _Net] = {}
        for network in config.networks:
            net = _Net(
                network=network,
                self_peer=config.self_peer(network.name),
                eager=EagerPeers(config.gossip_max_peer_count, PUSH_LINGER * config.gossip_timer),
                active=ActiveView(size=config.active_view),
            )
            net.replay = ReplayGuard(window)
            net.peer_set.add(net.self_peer)
            self._nets[network.name] = net
        self._inflight: dict[int, _Inflight] = {}
        self._outbox: list[Outgoing] = []
        self._events: deque[Event] = deque()
        self._next_id = 1
        #: The last cursor given (see :class:`GossipReceived`); restored from the snapshot.
        self.last_cursor = 0
        # The first round comes at a random moment of the first period, and the next ones a
        # period apart: nodes started together must not run their rounds in lockstep, or
        # every node that the eager-push tree missed repairs at the same instant, and the
        # duplicate pushes of that parallel repair prune the tree apart.
        self._next_round = now + config.gossip_timer * (1.0 - rng.random())
        #: Counters: rounds, sent.<verb>, received.<verb>, failed.<verb>, rejected.<reason>.
        self.stats: Counter[str] = Counter()
        if snapshot is not None:
            self._restore(snapshot, now)

    # ------------------------------------------------------------------ public API
    @property
    def guid(self) -> str:
        return self.config.node_guid

    @property
    def networks(self) -> tuple[str, ...]:
        return tuple(self._nets)

    def tick(self, now: float) -> None:
        """Run what is due at ``now``: expire unanswered requests, start a round."""
        for rid in [r for r, f in self._inflight.items() if f.deadline <= now]:
            self.delivery_failed(rid, now, reason="timed out")
        if self._left:
            return
        for net in self._nets.values():
            self._expire(net, now)
            for peer in net.eager.ready(now):
                self._push_next(net, peer, now)
        if now >= self._next_round:
            self._next_round = now + self.config.gossip_timer
            self._round(now)

    def next_deadline(self) -> float:
        """When :meth:`tick` next has work: the next round, a lingering push, or the oldest
        request's timeout."""
        if self._left:  # no more rounds or pushes: only the announcement's timeouts
            return min((f.deadline for f in self._inflight.values()), default=math.inf)
        deadline = self._next_round
        for net in self._nets.values():
            deadline = min(deadline, net.eager.due())
        for flight in self._inflight.values():
            deadline = min(deadline, flight.deadline)
        return deadline

    def outbox(self) -> list[Outgoing]:
        """Take the requests to send, oldest first."""
        out, self._outbox = self._outbox, []
        return out

    def next_event(self) -> Event | None:
        """The oldest event not yet taken, or None."""
        return self._events.popleft() if self._events else None

    def events(self) -> list[Event]:
        """Take every pending event."""
        out = list(self._events)
        self._events.clear()
        return out

    def create_gossip(self, msg: str, now: float, network: str | None = None) -> Gossip:
        """CREATE_GOSSIP: a new gossip from this node, pushed at once to its eager peers.

        Raises:
            LocalProtocolError: ``msg`` is not acceptable text, the network is unknown, or
                ``now`` is not a time from 1970 to 9999 (the gossip is dated ``now``, so the
                receivers' rule against future dates cannot refuse it).
        """
        net = self._net(network)
        date_time = iso_from_timestamp(now)
        quota = net.network.quota
        size = len(check_msg(msg).encode("utf-8"))  # text rules first (400), then the quota
        if size > quota.max_gossip_bytes:
            raise GossipError(
                f"a gossip on network {net.network.name!r} holds at most {quota.max_gossip_bytes} bytes"
                f" of text; this one has {size}",
                status_hint=413,
                code=ErrorCode.TOO_LARGE,
            )
        guid = str(uuid.UUID(int=self._rng.getrandbits(128), version=4))
        gossip = Gossip.create(
            guid=guid, date_time=date_time, who_name=self.config.node_name, msg=msg
        )
        if net.held_bytes + gossip.wire_size() > quota.max_network_bytes:
            raise GossipError(
                f"network {net.network.name!r} is full: it holds at most {quota.max_network_bytes} bytes"
                " of gossip (its quota)",
                status_hint=429,
                code=ErrorCode.QUOTA,
            )
        self._take_create_token(net, now)
        self._store(net, [gossip], None, now)
        return gossip

    def _take_create_token(self, net: _Net, now: float) -> None:
        """Creates at this node: a token bucket of one minute's worth, refilled continuously."""
        rate = net.network.quota.creates_per_minute
        if net.create_tokens < 0:
            net.create_tokens, net.tokens_at = float(rate), now
        net.create_tokens = min(float(rate), net.create_tokens + max(0.0, now - net.tokens_at) * rate / 60.0)
        net.tokens_at = now
        if net.create_tokens < 1.0:
            wait = (1.0 - net.create_tokens) * 60.0 / rate
            raise GossipError(
                f"network {net.network.name!r} takes at most {rate} creates a minute at this node;"
                f" try again in {wait:.1f} s",
                status_hint=429,
                code=ErrorCode.QUOTA,
            )
        net.create_tokens -= 1.0

    def delete_gossip(self, guid: str, now: float, network: str | None = None) -> Tombstone:
        """Delete a gossip: its tombstone takes its place here and spreads like a gossip, and
        every node that learns it drops the gossip and never takes it again.

        Returns:
            The tombstone (the one already held, if the gossip was deleted before).

        Raises:
            LocalProtocolError: ``guid`` is not a guid, or the network is unknown.
            GossipError: this node holds no gossip with that guid (404 ``not_found``).
        """
        net = self._net(network)
        check_guid(guid)
        self._expire(net, now)
        tombstone = net.tombstones.get(guid)
        if tombstone is not None:
            return tombstone
        gossip = net.gossips.get(guid)
        if gossip is None:
            raise GossipError(
                f"this node holds no gossip {guid} on network {net.network.name!r}",
                status_hint=404,
                code=ErrorCode.NOT_FOUND,
            )
        tombstone = Tombstone(guid=guid, date_time=gossip.date_time)
        self._store(net, [tombstone], None, now)
        return tombstone

    def retention(self, network: str | None = None) -> Retention:
        """The network's retention as this node holds it."""
        return self._net(network).network.retention

    def tombstone_count(self, network: str | None = None) -> int:
        return len(self._net(network).tombstones)

    def register(self, ip: str, port: int, now: float, network: str | None = None) -> int:
        """REGISTER this node with the node at ``ip:port`` on ``network``.

        Returns:
            The request id; a :class:`Registered` or :class:`RegisterFailed` event follows.
        """
        net = self._net(network)
        address = (check_ip(ip), check_port(port))
        if address == (self.config.ip, self.config.port):
            raise LocalProtocolError("a node cannot register with itself")
        return self._send(net, None, address, m.Register(node=net.self_peer), now)

    def peer_in_sync(self, network: str, guid: str) -> tuple[bool | None, float | None]:
        """Whether the peer held the same gossip set as this node holds now, as last known
        (from the latest probe either way), and when that was learnt; ``(None, None)`` when
        not known yet or not a peer."""
        net = self._net(network)
        entry = net.peers.get(guid)
        if entry is None or entry.summary is None:
            return None, None
        return entry.summary == (len(net.gossip_keys), net.gossip_keys.fingerprint), entry.summary_at

    def peer_view(self, network: str, guid: str) -> PeerView | None:
        """One known peer's view (record, status) on ``network``; None if not a known peer."""
        entry = self._net(network).peers.get(guid)
        return None if entry is None else entry.view()

    def network_status(self, network: str | None = None) -> list[PeerView]:
        """NETWORK_STATUS: every peer known on one network (or all of them), by name."""
        nets = [self._net(network)] if network else list(self._nets.values())
        views = [e.view() for net in nets for e in net.peers.values()]
        return sorted(views, key=lambda v: (v.peer.network_name, v.peer.name, v.peer.guid))

    def gossip_status(self, network: str | None = None) -> list[GossipStatus]:
        """GOSSIP_STATUS: every gossip known, oldest first, then the pending ids."""
        nets = [self._net(network)] if network else list(self._nets.values())
        rows: list[GossipStatus] = []
        for net in nets:
            name = net.network.name
            for g in sorted(net.gossips.values(), key=lambda g: (g.date_time, g.guid)):
                rows.append(
                    GossipStatus(
                        network=name,
                        guid=g.guid,
                        complete=True,
                        date_time=g.date_time,
                        who_name=g.who_name,
                        msg=g.msg,
                        sha2=g.sha2,
                        cursor=net.cursors.get(g.guid),
                    )
                )
            rows.extend(self._pending_rows(net))
        return rows

    def gossip_page(
        self,
        network: str | None = None,
        *,
        after: int = 0,
        before: int | None = None,
        limit: int = 1000,
        newest: bool = False,
        text: str | None = None,
    ) -> tuple[list[GossipStatus], bool]:
        """A page of the complete gossips of one network, in cursor order (the change feed).

        Args:
            after: only gossips with a cursor above this.
            before: only gossips with a cursor below this (None: no bound).
            limit: most rows returned (at least 1).
            newest: highest cursors first (else lowest first).
            text: only gossips whose msg or who_name holds it, ignoring case.

        Returns:
            The rows, and whether more rows match beyond the last one (the next page starts
            after that row's cursor, oldest first, or before it, newest first).
        """
        net = self._net(network)
        folded = text.casefold() if text else None
        if len(net.feed) > 2 * len(net.gossips) + 1024:  # many removed since: drop their entries
            net.feed = [(c, g) for c, g in net.feed if net.cursors.get(g) == c]
        lo = bisect.bisect_right(net.feed, after, key=_first)
        hi = len(net.feed) if before is None else bisect.bisect_left(net.feed, before, key=_first)
        indices = range(hi - 1, lo - 1, -1) if newest else range(lo, hi)
        rows: list[GossipStatus] = []
        for i in indices:
            cursor, guid = net.feed[i]
            gossip = net.gossips.get(guid)
            if gossip is None or net.cursors.get(guid) != cursor:
                continue
            if folded is not None and folded not in gossip.msg.casefold() and folded not in gossip.who_name.casefold():
                continue
            if len(rows) == limit:
                return rows, True
            rows.append(GossipStatus(
                network=net.network.name, guid=guid, complete=True, date_time=gossip.date_time,
                who_name=gossip.who_name, msg=gossip.msg, sha2=gossip.sha2, cursor=cursor,
            ))
        return rows, False

    def cursor_of(self, guid: str, network: str | None = None) -> int | None:
        """The cursor of a gossip this node holds (None: not held)."""
        return self._net(network).cursors.get(guid)

    def pending_status(self, network: str | None = None) -> list[GossipStatus]:
        """The ids of one network heard of but not yet fetched (``complete=False``)."""
        return self._pending_rows(self._net(network))

    @staticmethod
    def _pending_rows(net: _Net) -> list[GossipStatus]:
        guids = sorted(_key_guid(parse_key(k)) for k in net.pending)
        return [GossipStatus(network=net.network.name, guid=guid, complete=False) for guid in guids]

    def gossips(self, network: str | None = None) -> list[Gossip]:
        """The complete gossips of one network (default: this node's first)."""
        return list(self._net(network).gossips.values())

    def has_gossip(self, guid: str, network: str | None = None) -> bool:
        return guid in self._net(network).gossips

    def gossip_count(self, network: str | None = None) -> int:
        return len(self._net(network).gossips)

    def pending_count(self, network: str | None = None) -> int:
        """Ids of one network heard of whose body has not arrived yet."""
        return len(self._net(network).pending)

    def peer_count(self, network: str | None = None) -> int:
        return len(self._net(network).peers)

    def active_peers(self, network: str | None = None) -> tuple[str, ...]:
        """The guids of the peers in the active view of one network (empty while the node
        knows at most ``full_view_limit`` nodes and nobody asked it for a link)."""
        return self._net(network).active.peers()

    def uses_active_view(self, network: str | None = None) -> bool:
        """Whether rounds and eager push on this network run over the active view: the node
        knows more than ``full_view_limit`` nodes, itself included."""
        return self._partial(self._net(network))

    def network_size(self, network: str | None = None) -> int:
        """An estimate of how many nodes the network has (this one included).

        Up to ``full_view_limit`` it is the nodes this node knows that are neither dead nor
        left. Past it, it is Schnabel's capture-recapture estimate over the samples that
        shuffles bring (:meth:`gossip.sets.ActiveView.estimate`), never below the known count.
        """
        net = self._net(network)
        known = 1 + len(self._known(net))
        return net.active.estimate(known) if self._partial(net) else known

    @staticmethod
    def _known(net: _Net) -> set[str]:
        """The peers this node counts as members: neither dead nor left."""
        gone = (PeerStatus.DEAD, PeerStatus.LEFT)
        return set(net.peers).difference(g for g in net.irregular if net.peers[g].liveness.status in gone)

    def eager_peers(self, network: str | None = None) -> tuple[str, ...]:
        """The guids of the peers a new gossip is pushed to at once (one network)."""
        return self._net(network).eager.peers()

    @property
    def has_left(self) -> bool:
        """True once :meth:`leave` was called: no more rounds, peer requests get 503."""
        return self._left

    def leave(self, now: float) -> int:
        """Announce to every peer not known to have left that this node leaves, and stop.

        On each network the node's record gets ``incarnation + 1`` and ``left``; it is sent
        first-hand in a HELLO to each peer, which then checks it (one request, answered 503
        from now on) and passes it on. After this call no round starts and no push leaves;
        the runner sends the outbox, waits a bounded time for the answers, and exits. To come
        back, the node must start with ``incarnation + 2`` (or more), so that its new record
        outranks the left one everywhere (the HTTP runner saves that before calling this).

        Returns:
            How many HELLOs were queued (peers told, over all networks).

        Raises:
            LocalProtocolError: the incarnation is already at its limit (2^53 - 2).
        """
        if self._left:
            return 0
        records = {  # all built first: one that cannot be raises before anything changed
            name: replace(net.self_peer, incarnation=net.self_peer.incarnation + 1, left=True)
            for name, net in self._nets.items()
        }
        self._left = True
        told = 0
        for name, net in self._nets.items():
            net.peer_set.drop(record_key(net.self_peer))
            net.self_peer = records[name]
            net.peer_set.add(net.self_peer)
            hello = m.Hello(peers=(net.self_peer,))
            for entry in list(net.peers.values()):
                if entry.liveness.status is not PeerStatus.LEFT:
                    self._send(net, entry.peer.guid, entry.peer.address, hello, now)
                    told += 1
        return told

    def force_leave(self, target: str, now: float, network: str | None = None) -> tuple[PeerView, bool]:
        """Mark a dead peer as left, for every node: its record gets ``incarnation + 1`` and
        ``left``, and spreads as hearsay (a node that still reaches it checks the claim and
        keeps it alive). It is then forgotten like any peer that left.

        Args:
            target: the peer's guid or name.

        Returns:
            ``(peer, changed)``: the peer as now held; ``changed`` is False if it had left.

        Raises:
            GossipError: no such peer (404 ``unknown_peer``); the name is ambiguous (409
                ``ambiguous_peer``, the candidates listed); the peer is not dead (409
                ``peer_not_dead``).
        """
        net = self._net(network)
        matches = [e for e in net.peers.values() if target in (e.peer.guid, e.peer.name)]
        if len(matches) > 1:
            exact = [e for e in matches if e.peer.guid == target]
            if not exact:
                ordered = sorted(matches, key=lambda e: e.peer.guid)
                listed = ", ".join(f"{e.peer.guid} ({e.liveness.status})" for e in ordered)
                raise GossipError(
                    f"{len(matches)} peers are named {target!r} on network {net.network.name!r}:"
                    f" {listed}; give the guid",
                    status_hint=409,
                    code=ErrorCode.AMBIGUOUS_PEER,
                )
            matches = exact
        if not matches:
            raise GossipError(
                f"no peer {target[:100]!r} on network {net.network.name!r}"
                " (give a name or guid that gossip network lists)",
                status_hint=404,
                code=ErrorCode.UNKNOWN_PEER,
            )
        entry = matches[0]
        status = entry.liveness.status
        if status is PeerStatus.LEFT:
            return entry.view(), False
        if status is not PeerStatus.DEAD:
            raise GossipError(
                f"peer {entry.peer.name!r} ({entry.peer.guid}) is {status}, not dead: only a dead node can be"
                " forced out (a live node leaves with: gossip leave, on that node)",
                status_hint=409,
                code=ErrorCode.PEER_NOT_DEAD,
            )
        self._take_left(net, entry, replace(entry.peer, incarnation=entry.peer.incarnation + 1, left=True), now)
        return entry.view(), True

    # ------------------------------------------------------------------ incoming
    def handle_request(self, data: bytes, now: float) -> bytes:
        """Answer one request from a peer.

        Returns:
            The signed answer bytes. Any state change is reported as events first.

        Raises:
            GossipError: the request is malformed (400), unauthenticated, stale or replayed
                (401), or too large (413). Nothing was changed.
        """
        try:
            env = m.decode(data, self._key_for)
            if env.re is not None:
                raise RemoteProtocolError("expected a request, got an answer")
            net = self._nets[env.network]
            assert env.nonce is not None and env.ts is not None
            if env.to is not None and env.to != self.guid:
                raise AuthenticationError(
                    f"request addressed to node {env.to}, not this one: replayed from elsewhere?",
                    code=ErrorCode.REPLAYED,
                )
            net.replay.check(env.nonce, env.ts / 1000.0, now)
            # The nonces seen before a restart are gone: a request stamped before this node
            # started is refused. Peers stamp requests on this node's clock (they learn it from
            # its answers), so a sender whose own clock is behind is not refused for it. A
            # REGISTER is exempt: it goes to an address before its sender knows that clock, and
            # a replayed one only adds the genuine member again.
            if env.ts < self._started_ms and not isinstance(env.body, m.Register):
                raise AuthenticationError(
                    f"request stamped {(self._started_ms - env.ts) / 1000:.0f}s before this node started:"
                    " replayed from before a restart?",
                    code=ErrorCode.REPLAYED,
                )
            if self._left:
                # A peer checking a left claim (see _claim_left) must see a failure.
                raise GossipError("this node has left the network", status_hint=503, code=ErrorCode.UNAVAILABLE)
        except GossipError as exc:
            self.stats[f"rejected.{type(exc).__name__}"] += 1
            raise
        self.stats[f"received.{env.body.TYPE}"] += 1
        reply: m.Message
        if isinstance(env.body, m.Keys):
            reply = self._take_ring(net, env.sender, env.body, env.key, now)
        else:
            reply = self._answer(net, env.sender, env.body, now)
        self._seen(net, env.sender, now)
        entry = net.peers.get(env.sender)
        if entry is not None:
            entry.last_key = env.key
        # Signed with the key the request used: a sender that does not hold this node's
        # primary key yet (a rotation under way) still understands the answer.
        return m.encode(reply, network=net.network.name, sender=self.guid, key=env.key, re=env.nonce, now=int(now * 1000))

    def receive_response(self, request_id: int, data: bytes, now: float) -> None:
        """Take the answer to a request from :meth:`outbox`.

        A malformed or unauthenticated answer counts as a failed delivery.
        """
        flight = self._inflight.get(request_id)
        if flight is None:
            self.stats["rejected.unknown_request"] += 1
            return
        try:
            env = m.decode(data, self._key_for)
            expected = m.REPLY_TYPES[type(flight.body)]
            if env.re != flight.nonce or env.network != flight.net or type(env.body) is not expected:
                raise RemoteProtocolError("answer does not match its request")
            if flight.peer is not None and env.sender != flight.peer:
                raise RemoteProtocolError("answer comes from another node than asked")
        except GossipError as exc:
            self.stats[f"rejected.{type(exc).__name__}"] += 1
            self.delivery_failed(request_id, now, reason=f"bad answer: {exc}", status=exc.status_hint, code=exc.code)
            return
        del self._inflight[request_id]
        net = self._nets[flight.net]
        self._on_reply(net, env.sender, request_id, flight, env.body, now)
        self._seen(net, env.sender, now)
        entry = net.peers.get(env.sender)
        if entry is not None and entry.left_claim is not None and flight.sent >= entry.claim_at:
            # It answered a request sent since the claim: it did not leave (a member's lie,
            # or a stale record). Hearsay of that record is refused for a while.
            self._shun(net, record_key(entry.left_claim), now + self._forget_after)
            entry.left_claim = None
            self.stats["refuted.left_claim"] += 1
        if entry is not None and env.now is not None:
            # Its clock at about the middle of the exchange (signed, by a key holder), followed
            # only within the replay window: beyond it the clocks are wrong, and the window
            # check says so.
            offset = env.now - int((flight.sent + now) * 500)
            entry.clock_offset_ms = offset if abs(offset) <= self._window * 1000 else 0

    def delivery_failed(
        self, request_id: int, now: float, reason: str = "", status: int | None = None, code: ErrorCode | None = None
    ) -> None:
        """A request from :meth:`outbox` got no usable answer.

        Args:
            reason: what went wrong, for the events and logs.
            status: the remote's error status if it answered with one (401: it does not
                accept our key or our clock), None if nothing answered. Either way the
                peer's liveness counts a failure, and it leaves the eager set.
            code: the ``code`` of the remote's error answer, if any (passed on in events).
        """
        flight = self._inflight.pop(request_id, None)
        if flight is None:
            return
        net = self._nets[flight.net]
        self.stats[f"failed.{flight.body.TYPE}"] += 1
        if isinstance(flight.body, m.Register):
            self._events.append(
                RegisterFailed(
                    request_id=request_id,
                    network=flight.net,
                    address=flight.address,
                    reason=reason or "no answer",
                    status=status,
                    code=code,
                )
            )
        self._release(net, flight)
        if flight.peer is None:
            return
        net.eager.remove(flight.peer)  # a peer we cannot reach is no link of the tree
        self._unlink(net, flight.peer, now, tell=True)  # nor of the active view
        entry = net.peers.get(flight.peer)
        # Any failure counts, a refusal too: "alive" must mean "we can gossip with it".
        # A peer may have several requests out at once (a round's probe, a fetch, a push):
        # count one failure per wave, not per request.
        if entry is not None and entry.left_claim is not None and flight.sent >= entry.claim_at:
            self._take_left(net, entry, entry.left_claim, now)  # checked: it did leave
            return
        if entry is not None and isinstance(flight.body, m.DidYouHear) and entry.liveness.status is not PeerStatus.DEAD:
            # A round whose probe reached no one checked nothing: the next round probes again
            # instead of waiting out the settled backoff (in a view half dead after a crash a
            # node would otherwise wait up to SETTLED_BACKOFF_MAX rounds after each miss).
            # Reconnect probes go to dead peers and are left out: a settled node with a dead
            # peer stays settled.
            net.rest = 0
            if flight.body.probe is not None and net.retries > 0:
                # A round's probe that failed is sent once more, to another peer, in the same
                # round (issue 11): under loss a node otherwise waits a whole round for its
                # next exchange, and rounds to spread grow with the loss rate. Once a round:
                # when most peers fail (a partition, a crash of half the nodes) the retries
                # must not multiply the requests.
                others = [g for g in self._eligible(net, now) if g != flight.peer]
                if others:
                    net.retries -= 1
                    self.stats["retried.did_you_hear"] += 1
                    self._send_to(net, self._rng.choice(others), flight.body, now)
        if entry is not None and flight.sent > entry.liveness.failed_at:
            old = entry.liveness.failed(now, self._policy, 0.5 + 0.5 * self._rng.random())
            self._note(net, entry)
            if old is not None:
                self._events.append(PeerStatusChanged(peer=entry.view(), old=old))

    def cancel(self, request_id: int) -> None:
        """Forget a request from :meth:`outbox` that the runner will not send.

        The runner cancels the requests of a batch whose events it could not write, and
        reverts the events (:meth:`revert`; either order). No failure is counted and no event
        follows, not even for a REGISTER. A cancelled TELL_ME_MORE's ids can be asked for again. A cancelled PUSH
        frees its peer for the next one and drops the gossips queued behind it: they may
        belong to writes still under way, and the rounds deliver those that were written.

        Args:
            request_id: an id from :meth:`outbox`; unknown or settled ids are ignored.
        """
        flight = self._inflight.pop(request_id, None)
        if flight is not None:
            self._release(self._nets[flight.net], flight, sent=False)

    def revert(self, events: Iterable[Event]) -> None:
        """Undo what these events reported: the runner could not persist them.

        Each gossip a :class:`GossipReceived` stored (or tombstone a :class:`TombstoneAdded`
        did) leaves the node: its set, fingerprint, listing and push queues; each one a
        :class:`GossipRemoved` or :class:`TombstoneRemoved` removed comes back. Each
        :class:`KeyringChanged` is undone (the ring before it comes back). Each peer a
        :class:`PeerJoined` added is forgotten, with its
        record and eager link. The other events need no undo: a newer peer record or a
        liveness change stays true, and the next write that touches the peer stores it.

        Args:
            events: the batch as taken from :meth:`events` or :meth:`next_event`.
        """
        # The last change first: back to the ring before the batch, and a replacement is
        # undone removal last.
        for event in reversed(list(events)):
            if isinstance(event, KeyringChanged):
                self._set_network(self._nets[event.old.name], event.old)
            if isinstance(event, GossipReceived):
                self._take(self._nets[event.network], event.gossip)
            elif isinstance(event, TombstoneAdded):
                self._take(self._nets[event.network], event.tombstone)
            elif isinstance(event, GossipRemoved):
                self._put(self._nets[event.network], event.gossip)
            elif isinstance(event, TombstoneRemoved):
                self._put(self._nets[event.network], event.tombstone)
            elif isinstance(event, PeerJoined):
                peer = event.peer.peer
                self._forget_peer(self._nets[peer.network_name], peer.guid)

    # ------------------------------------------------------------------ internals
    def _release(self, net: _Net, flight: _Inflight, *, sent: bool = True) -> None:
        """A request ends without an answer (``sent``: it left; else it was cancelled): free
        what it held."""
        if isinstance(flight.body, m.TellMeMore):
            for guid in flight.body.ids:
                pending = net.pending.get(guid)
                if pending is not None:
                    pending.asked = None
        elif isinstance(flight.body, m.Keys) and flight.peer is not None:
            entry = net.peers.get(flight.peer)
            if entry is not None:
                entry.ring_offered = None  # the next advert that shows it behind sends it again
        elif isinstance(flight.body, m.Link) and flight.peer is not None:
            net.active.asking.discard(flight.peer)
        elif isinstance(flight.body, m.Push) and flight.peer is not None and flight.repair:
            net.repairing.discard(flight.peer)  # not the tree's: its flow control is untouched
        elif isinstance(flight.body, m.Push) and flight.peer is not None:
            if sent:
                net.eager.finished(flight.peer)
            else:
                net.eager.unsent(flight.peer)
            net.eager.clear(flight.peer)

    def _net(self, name: str | None) -> _Net:
        if name is None:
            return next(iter(self._nets.values()))
        net = self._nets.get(name)
        if net is None:
            raise LocalProtocolError(f"this node is not on network {name!r}; it is on {list(self._nets)}")
        return net

    def _key_for(self, network: str) -> tuple[bytes, ...] | None:
        net = self._nets.get(network)
        return None if net is None else net.network.keys

    def _restore(self, snapshot: Snapshot, now: float) -> None:
        known = [c for cursors in snapshot.cursors.values() for c in cursors.values()]
        self.last_cursor = max([snapshot.last_cursor, *known])
        for name, held in self._nets.items():
            items: list[Item] = [*snapshot.tombstones.get(name, ())]
            for gossip in snapshot.gossips.get(name, ()):
                if snapshot.verified or gossip.verify():
                    items.append(gossip)
                else:
                    self.stats["rejected.bad_sha2"] += 1
            for item in items:
                # A store may hold two items of one guid (a crash between the two lines of a
                # replacement): the conflict rule picks, and the loser leaves the store too.
                old = self._held(held, item.guid)
                if old is not None and item_key(old) == item_key(item):
                    continue
                if old is not None and not wins(item, old):
                    self._removed(held, item, "replaced")
                    continue
                if old is not None:
                    self._take(held, old)
                    self._removed(held, old, "replaced")
                self._put(held, item)
            # The feed in cursor order; a gossip stored by a version without cursors is
            # numbered after the rest, in store order.
            cursors = snapshot.cursors.get(name, {})
            for guid in held.gossips:
                cursor = cursors.get(guid)
                if cursor is None:
                    self.last_cursor += 1
                    cursor = self.last_cursor
                held.cursors[guid] = cursor
            held.feed = sorted((c, g) for g, c in held.cursors.items())
        for name, views in snapshot.peers.items():
            net = self._nets.get(name)
            if net is not None:
                own = [v for v in views if v.peer.guid != self.guid and v.peer.network_name == name]
                self._restore_peers(net, own, now)
        for net in self._nets.values():  # what a node restores is not news: no estimator for it
            net.gossip_set.settle()
            net.peer_set.settle()

    def _restore_peers(self, net: _Net, views: list[PeerView], now: float) -> None:
        """Hold the stored peers, each with its stored liveness (its record decides ``left``).

        Records that are all new and fit under ``max_peers`` (a node's start, unless its
        store holds more than the cap) are taken in one batch: restoring is most of the
        start of a node that knows a thousand peers, and of each of the simulator's
        thousand nodes. Otherwise one at a time, making room or refused as any new record.
        """
        peers = [v.peer for v in views]
        guids = [p.guid for p in peers]
        fits = len(net.peers) + len(guids) <= self._max_peers
        if fits and len(set(guids)) == len(guids) and net.peers.keys().isdisjoint(guids):
            # (_PeerEntry(peer, key, learnt) made by map: no Python step of ours per record.)
            net.peers.update(zip(guids, map(_PeerEntry, peers, net.peer_set.update(peers), repeat(now))))
            # New entries are alive and unseen (plain): only the others need their liveness.
            seen = [
                v for v in views
                if v.status is not PeerStatus.ALIVE or v.last_seen is not None or v.failures or v.peer.left
            ]
            for view in seen:
                self._restore_liveness(net, net.peers[view.peer.guid], view)
            return
        for view in views:  # the liveness at once: the cap's evictions depend on it
            entry = self._put_peer(net, view.peer, now, limit=self._max_peers)
            if entry is not None:
                self._restore_liveness(net, entry, view)

    def _restore_liveness(self, net: _Net, entry: _PeerEntry, view: PeerView) -> None:
        entry.liveness = Liveness(status=view.status, last_seen=view.last_seen, failures=view.failures)
        entry.liveness.set_left(view.peer.left)  # the record decides ``left``
        self._note(net, entry)

    def _send(
        self, net: _Net, peer: str | None, address: Address, body: m.Message, now: float, key: bytes | None = None,
        *, repair: bool = False,
    ) -> int:
        rid = self._next_id
        self._next_id += 1
        # 96 random bits as 16 base64url characters (24 in hex): the nonce travels in every
        # request and, as "re", in every answer.
        nonce = base64.urlsafe_b64encode(self._rng.getrandbits(96).to_bytes(12, "big")).decode("ascii")
        entry = None if peer is None else net.peers.get(peer)
        offset = 0 if entry is None else entry.clock_offset_ms
        data = m.encode(
            body,
            network=net.network.name,
            sender=self.guid,
            key=key or self._key_to(net, entry),
            nonce=nonce,
            ts=int(now * 1000) + offset,
            to=peer,
        )
        self._inflight[rid] = _Inflight(
            net=net.network.name,
            peer=peer,
            address=address,
            body=body,
            nonce=nonce,
            sent=now,
            deadline=now + self._request_timeout,
            repair=repair,
        )
        self._outbox.append(
            Outgoing(request_id=rid, address=address, data=data, verb=body.TYPE, network=net.network.name, peer=peer)
        )
        self.stats[f"sent.{body.TYPE}"] += 1
        return rid

    def _send_to(self, net: _Net, peer: str, body: m.Message, now: float) -> None:
        entry = net.peers.get(peer)
        if entry is not None:
            self._send(net, peer, entry.peer.address, body, now)

    def _eligible(self, net: _Net, now: float) -> list[str]:
        """Peers that may be contacted now (past ``full_view_limit``, active ones only),
        leaving out doubtful ones if there are others (pushes go to peers that answer, not
        to addresses nobody answered at)."""
        if self._partial(net):
            entries = [net.peers[g] for g in net.active.peers() if g in net.peers]
            eligible = [e for e in entries if e.liveness.eligible(now)]
            sound = [e.peer.guid for e in eligible if not e.doubtful]
            return sound or [e.peer.guid for e in eligible]
        odd = self._irregular(net)  # plain peers are eligible and sound
        barred = {e.peer.guid for e in odd if not e.liveness.eligible(now)}
        doubtful = {e.peer.guid for e in odd if e.peer.guid not in barred and e.doubtful}
        return self._peers_but(net, barred | doubtful) or self._peers_but(net, barred)

    # -- plain and irregular peers ----------------------------------------------------
    # Rule: a peer that is not fresh and whose liveness is plain (alive, no failure since it
    # last answered: Liveness.plain) may be contacted at any time and is not doubtful. Most
    # peers are plain; the others are kept in ``net.irregular``, and every choice among
    # peers (a round's picks, its dead peer, the repair and passive pools, what is forgotten)
    # looks at those only and takes the plain ones wholesale. So ``_note`` follows every
    # change that can make a peer not plain: a failure, ``left``, ``fresh``, a restored
    # liveness. Leaving a plain peer in the set costs time only; missing one that is not
    # plain would pick a dead peer as if it were alive.
    @staticmethod
    def _note(net: _Net, entry: _PeerEntry) -> None:
        """Put the peer in ``net.irregular`` or take it out, after a change to its ``fresh``
        flag or its liveness."""
        if entry.fresh or not entry.liveness.plain():
            net.irregular.add(entry.peer.guid)
        else:
            net.irregular.discard(entry.peer.guid)

    @staticmethod
    def _irregular(net: _Net) -> list[_PeerEntry]:
        """The entries of ``net.irregular``, in ``net.peers`` order (nothing to scan while
        every peer is plain)."""
        irregular, peers = net.irregular, net.peers
        return [peers[g] for g in peers if g in irregular] if irregular else []

    @staticmethod
    def _peers_but(net: _Net, skip: set[str]) -> list[str]:
        """Every peer's guid, in ``net.peers`` order, but those in ``skip`` (a copy made in C:
        no Python step per peer)."""
        return list(filterfalse(skip.__contains__, net.peers)) if skip else list(net.peers)

    def _round(self, now: float) -> None:
        self.stats["rounds"] += 1
        k = self.config.gossip_max_peer_count
        for net in self._nets.values():
            self._forget_unproven(net, now)
            self._forget_gone(net, now)
            # Past full_view_limit the round probes active peers only, once the view is
            # repaired (fresh registrations and the reconnect below still go out).
            partial = self._partial(net)
            net.active.forced = 0
            if partial:
                self._repair(net, now)
            # Fresh peers, then the eligible ones (past full_view_limit, active only), sound
            # or doubtful: only irregular peers can be anything but sound (see _note).
            odd = self._irregular(net)
            fresh = [e.peer.guid for e in odd if e.fresh]
            unsound = {e.peer.guid for e in odd if e.fresh or e.doubtful or not e.liveness.eligible(now)}
            doubtful = [
                e.peer.guid for e in odd
                if not e.fresh and (not partial or e.peer.guid in net.active)
                and e.liveness.eligible(now) and e.doubtful
            ]
            # With eager push, pushes carry what is new to k peers and the rounds only repair
            # what a push missed: one peer per round is enough for that (push-pull spreads in
            # O(log N) rounds at fanout 1), and more would race the pushes still in flight and
            # bring their bodies twice. Without push the rounds spread everything: k peers.
            # As in Trickle (Levis et al., NSDI 2004; RFC 6206), while nothing changes a node
            # probes in rounds further and further apart (every 1, 2, 4, then
            # SETTLED_BACKOFF_MAX rounds); any change, a difference a probe found or an id
            # still pending brings back a probe every round.
            if net.unsettled or net.pending:
                fanout, net.backoff, net.rest = (1 if self._push else k), 1, 0
            elif net.rest:
                fanout, net.rest = 0, net.rest - 1
            else:
                fanout, net.rest = 1, net.backoff - 1
                net.backoff = min(2 * net.backoff, SETTLED_BACKOFF_MAX)
            # While this node's own pushes are under way (queued or in flight to an eager
            # peer), the spread is passing through it, and a difference a probe finds is
            # mostly those pushes and others still in flight: reconciling it costs a table
            # each way and brings the bodies twice (bench_spread.py, 50 nodes at timer 0.2:
            # 102 reconciliations and 8,432 repair bodies in one spread, 20 and 536 with
            # this rule). The round leaves the gossips alone with its sampled peers (it still
            # says hello) and the set stays unsettled, so probing resumes as soon as the
            # pushes are done; never for more than SETTLED_BACKOFF_MAX rounds in a row, so
            # that under a steady stream of creates a push that was lost is still repaired.
            hold = net.eager.spreading and net.held < SETTLED_BACKOFF_MAX
            net.held = net.held + 1 if hold else 0
            if hold:
                self.stats["rounds_held"] += 1
            else:
                net.unsettled = False
            net.retries = 1
            # Peers are picked uniformly (rumour spreading needs it), except doubtful ones:
            # addresses never proven that already failed to answer fill only the slots the
            # others leave, or one slot one round in four (a peer that was merely down gets
            # another chance before its record's TTL runs out). Made-up records cannot then
            # take the rounds away from the peers that answer.
            slots = max(0, fanout - len(fresh))
            others: list[str] = []
            if slots and partial:
                others = [g for g in net.peers if g in net.active and g not in unsound]
            elif slots:
                others = self._peers_but(net, unsound)
            picked = self._rng.sample(others, min(slots, len(others)))
            short = slots - len(picked)
            if doubtful and picked and not short and self._rng.random() < 0.25:
                picked.pop()
                short = 1
            sampled = picked + self._rng.sample(doubtful, min(short, len(doubtful)))
            targets = fresh + sampled
            # Reconnect (serf's reconnect_interval, every round): besides the sample, one
            # random dead peer, settled or not, whatever its own backoff (which only keeps it
            # out of the sample). A settled node probes rarely, and a dead peer's backoff
            # grows to a minute: without this the two sides of a healed partition wait that
            # long for a sample to cross; with it the first contact comes within a round.
            # One a round at most: a thousand dead peers cost one request a round, not more.
            dead = [
                e.peer.guid for e in odd
                if e.liveness.status is PeerStatus.DEAD and not e.doubtful and e.peer.guid not in targets
            ]
            if dead:
                targets.append(self._rng.choice(dead))
            if partial and net.shuffle_in == 0:
                # A random passive peer too, in each shuffle round: active views are a
                # random graph that may split (small views, or after a crash), and this
                # probe crosses any split, so every live node still converges.
                unfit = {e.peer.guid for e in odd if e.doubtful or not e.liveness.eligible(now)}
                passive = self._peers_but(net, unfit.union(net.active.members, targets))
                if passive:
                    targets.append(self._rng.choice(passive))
            net.gossip_set.tick()
            net.peer_set.tick()
            probes = m.DidYouHear(
                probe=net.gossip_set.probe(),
                hello=net.peer_set.probe() if self._takes_hearsay(net) else None,
                retention=self._told(net),
            )
            # A held round leaves the probe out for the sampled peers only: a fresh peer
            # (its bootstrap), a dead one reconnecting and a passive one across the views
            # are not what the pushes under way serve.
            bare = replace(probes, probe=None) if hold else probes
            for guid in targets:
                entry = net.peers[guid]
                entry.fresh = False
                self._note(net, entry)
                ring = self._ring_for(net, entry)
                body = bare if guid in sampled else probes
                self._send_to(net, guid, body if ring is None else replace(body, ring=ring), now)
            self._fetch_pending(net, now)
            if partial:
                self._shuffle(net, now)

    # -- the active view (past full_view_limit) --------------------------------------
    def _partial(self, net: _Net) -> bool:
        """Rounds and eager push use the active view: the node knows more than
        ``full_view_limit`` nodes, itself included."""
        return len(net.peers) >= self.config.full_view_limit

    def _linkable(self, net: _Net, guid: str) -> bool:
        """May ``guid`` be an eager peer: a known peer, and past ``full_view_limit`` an
        active one (the Plumtree runs over the active view)."""
        return guid in net.peers and (guid in net.active or not self._partial(net))

    def _repair(self, net: _Net, now: float) -> None:
        """Drop active members no longer alive, and ask passive peers to fill the room: one
        ``join`` (which must be taken) when the view is empty, else an ``ask`` per free slot."""
        for guid in net.active.peers():
            entry = net.peers.get(guid)
            if entry is None or entry.liveness.status is not PeerStatus.ALIVE:
                self._unlink(net, guid, now, tell=False)
        missing = net.active.missing()
        if missing <= 0:
            return
        unfit = {e.peer.guid for e in self._irregular(net) if e.doubtful or not e.liveness.eligible(now)}
        pool = self._peers_but(net, unfit.union(net.active.members, net.active.asking))
        op = "ask" if len(net.active) or net.active.asking else "join"
        for guid in self._rng.sample(pool, min(1 if op == "join" else missing, len(pool))):
            net.active.asking.add(guid)
            self._send_to(net, guid, m.Link(op=op, node=net.self_peer), now)

    def _link(self, net: _Net, guid: str, now: float) -> None:
        """Take ``guid`` into the active view; a member evicted to make room is told."""
        evicted = net.active.add(guid, self._rng)
        if evicted is not None:
            net.eager.remove(evicted)
            self._send_to(net, evicted, m.Link(op="drop"), now)
            self.stats["active.evicted"] += 1

    def _unlink(self, net: _Net, guid: str, now: float, *, tell: bool) -> None:
        """Drop ``guid`` from the active view (and the eager set); ``tell``: send it a ``drop``
        so that the link ends on both sides (a peer that lost one answer is still alive)."""
        if net.active.remove(guid):
            net.eager.remove(guid)
            if tell:
                self._send_to(net, guid, m.Link(op="drop"), now)

    def _shuffle_sample(self, net: _Net, exclude: str) -> tuple[Peer, ...]:
        """This node's record and up to SHUFFLE_SIZE - 1 random records it holds of peers
        neither dead nor left (nor ``exclude``), and not taken from a shuffle itself: a
        record passed on once is not passed on again, so samples do not come back to the
        nodes they left (which would bias the size estimate low)."""
        gone = (PeerStatus.DEAD, PeerStatus.LEFT)
        pool = [
            e.peer for g, e in net.peers.items()
            if g != exclude and not e.shuffled and e.liveness.status not in gone
        ]
        return (net.self_peer, *self._rng.sample(pool, min(SHUFFLE_SIZE - 1, len(pool))))

    def _shuffle(self, net: _Net, now: float) -> None:
        """Every SHUFFLE_ROUNDS rounds, swap a sample of records with one active peer: the
        passive view takes in records from elsewhere in the network, and the samples feed
        the size estimate."""
        if net.shuffle_in > 0:
            net.shuffle_in -= 1
            return
        members = [g for g in net.active.peers() if g in net.peers and net.peers[g].liveness.eligible(now)]
        if not members:
            return
        net.shuffle_in = SHUFFLE_ROUNDS - 1
        guid = self._rng.choice(members)
        self._send_to(net, guid, m.Link(op="shuffle", peers=self._shuffle_sample(net, guid)), now)

    def _take_sample(self, net: _Net, sender: str, peers: tuple[Peer, ...], now: float) -> None:
        """Take a shuffle's records (the sender's own first-hand, the others as hearsay),
        after counting how many were known already (the capture-recapture estimate)."""
        sample = [p for p in peers if p.guid != sender and p.network_name == net.network.name]
        if sample:
            marked = {g for g in self._known(net) if not net.peers[g].shuffled}
            already = sum(1 for p in sample if p.guid in marked or p.guid == self.guid)
            net.active.sample_seen(len(marked) + 1, len(sample), already)
        for peer in peers:
            entry = self._learn_peer(net, peer, now, firsthand=peer.guid == sender)
            if entry is not None and peer.guid != sender and entry.liveness.last_seen is None:
                entry.shuffled = True

    def _answer_link(self, net: _Net, sender: str, body: m.Link, now: float) -> m.LinkReply:
        if body.op == "drop":
            self._unlink(net, sender, now, tell=False)
            return m.LinkReply(accepted=True)
        if body.op == "shuffle":
            # Shuffles go to active peers: ``accepted`` says whether the link holds on this
            # side too. A LINK answer and a ``drop`` can cross, and leave a link on one side
            # only; the next shuffle over it finds that, and the sender drops it as well.
            sample = self._shuffle_sample(net, sender)  # drawn before taking theirs
            self._take_sample(net, sender, body.peers, now)
            return m.LinkReply(accepted=sender in net.active, peers=sample)
        node = body.node
        if node is None or node.guid != sender or node.network_name != net.network.name:
            raise RemoteProtocolError(f"link {body.op}: node must be the sender's own record on this network")
        self._learn_peer(net, node, now, firsthand=True)
        if sender not in net.peers:
            return m.LinkReply(accepted=False)  # its peer list is full of proven peers
        if sender not in net.active and len(net.active) >= net.active.size:
            if body.op == "ask" or net.active.forced:  # one forced eviction a round at most
                return m.LinkReply(accepted=False)
            net.active.forced += 1
        self._link(net, sender, now)
        return m.LinkReply(accepted=True)

    def _fetched(self, net: _Net, *, useful: int, late: int) -> None:
        """Adapt the fetch delay to one TELL_ME_MORE answer.

        Bodies that arrived by push while their fetch was under way mean the node fetched
        too early: the delay doubles (from a quarter of the timer, up to
        :data:`MAX_FETCH_DELAY` timers). Answers that were mostly news halve it, down to
        nothing. A fast network keeps fetching at the next round; a slow or busy one waits
        about as long as its pushes take instead of bringing every body twice.
        """
        timer = self.config.gossip_timer
        if late > useful:
            net.fetch_delay = min(max(2 * net.fetch_delay, timer / 4), MAX_FETCH_DELAY * timer)
        elif useful:
            net.fetch_delay = 0.0 if net.fetch_delay < timer / 4 else net.fetch_delay / 2

    def _fetch_pending(self, net: _Net, now: float) -> None:
        """Ask for pending bodies not currently asked for, from a source that looks alive.

        With eager push on, the fetch grafts: the tree missed these gossips, so the source
        and this node become eager peers of each other.
        """
        ttl = max(PENDING_TTL, PENDING_TTL_ROUNDS * self.config.gossip_timer)
        for guid in [g for g, p in net.pending.items() if now - p.since > ttl and p.asked is None]:
            self.stats["expired.pending"] += 1
            self._unpend(net, guid)
        by_source: dict[str, list[str]] = {}
        for guid, pending in net.pending.items():
            if pending.asked is not None or now - pending.since < net.fetch_delay:
                continue
            live = [s for s in pending.sources if s in net.peers and net.peers[s].liveness.eligible(now)]
            if not live:
                continue
            source = live[0]
            pending.sources.remove(source)
            pending.sources.append(source)  # rotate, so a failing source is not asked forever
            by_source.setdefault(source, []).append(guid)
        for source, guids in by_source.items():
            for batch in _chunks(guids, TELL_ME_MORE_BATCH):
                for guid in batch:
                    net.pending[guid].asked = source
                self._send_to(net, source, m.TellMeMore(ids=tuple(batch), graft=self._push), now)

    # -- answering ----------------------------------------------------------------
    def _answer(self, net: _Net, sender: str, body: m.Message, now: float) -> m.Message:
        if isinstance(body, m.Register):
            node = body.node
            if node.guid != sender or node.network_name != net.network.name:
                raise RemoteProtocolError("register: the record must describe the sender on this network")
            if node.guid == self.guid:
                raise RemoteProtocolError("register: that guid is this node's own")
            entry = self._learn_peer(net, node, now, firsthand=True) or net.peers.get(node.guid)
            if entry is None:
                raise GossipError(f"this node's peer list for {net.network.name!r} is full", status_hint=503)
            entry.fresh = True  # contacted in the very next round: the seed's bootstrap
            self._note(net, entry)
            if self._linkable(net, node.guid):
                net.eager.add(node.guid)
            return body.response(net.self_peer, self._told(net))
        if isinstance(body, m.Hello):
            answer = None if body.probe is None else self._probe_answer(net, net.peer_set, body.probe)
            for peer in body.peers:
                self._learn_peer(net, peer, now, firsthand=peer.guid == sender)
            wanted = net.peer_set.wanted(body.want)
            return m.HelloReply(answer=answer, peers=tuple(wanted[: m.MAX_PEERS]))
        if isinstance(body, m.DidYouHear):
            answer = None if body.probe is None else self._probe_answer(net, net.gossip_set, body.probe)
            hello = None if body.hello is None else self._probe_answer(net, net.peer_set, body.hello)
            entry = net.peers.get(sender)
            if entry is not None and body.probe is not None and not body.probe.size and body.probe.start is None:
                entry.summary = (body.probe.count, body.probe.fingerprint)  # its whole set, as it says
                entry.summary_at = now
            self._heard_of(net, sender, body.ids, now)
            if body.retention is not None:
                self._adopt(net, body.retention)
            if body.ring is not None:
                self._heard_ring(net, sender, body.ring, now)
            # Our ring when the sender asked (it sent its own) or may not know it yet.
            ring = self._ring(net) if body.ring is not None else self._ring_for(net, entry)
            return m.DidYouHearReply(answer=answer, hello=hello, ring=ring, retention=self._told(net))
        if isinstance(body, m.Link):
            return self._answer_link(net, sender, body, now)
        if isinstance(body, m.Push):
            net.eager.held_by(sender, [g.guid for g in body.gossips])
            held = net.gossip_keys.members
            fresh = [g for g in body.gossips if item_key(g) not in held]
            dups = len(body.gossips) - len(fresh)
            self.stats["duplicate.push"] += dups
            new = self._store(net, self._admit(net, fresh, now), sender, now)
            # A repair (what a reconciliation found missing here) grafts the sender when it
            # brings something, as a fetch does (_store makes the source eager); one that
            # brought nothing new prunes no link. Its "prune" answer only tells the sender
            # to tell those gossips as ids from now on.
            if body.repair:
                return m.PushReply(prune=not new)
            # A tree push prunes its link when most of it came here first by another link:
            # with many sources every batch mixes gossips this link brought first with
            # others, and waiting for a batch of duplicates only kept every cycle open
            # (2.4 duplicate bodies per useful one in bench_load.py). The link stays lazy;
            # what only it would have brought comes by another link or by a round.
            prune = not new or 2 * dups > len(body.gossips)
            if prune:
                self._prune(net, sender, now)
            return m.PushReply(prune=prune)
        if isinstance(body, m.TellMeMore):
            if body.graft and self._linkable(net, sender):
                net.eager.add(sender)
            out: list[Gossip] = []
            marks: list[Tombstone] = []
            budget = ANSWER_BUDGET
            for k in body.ids:
                key = parse_key(k)
                item = self._held(net, _key_guid(key))
                if item is None or item_key(item) != key:
                    continue
                budget -= item.wire_size() if isinstance(item, Gossip) else TOMBSTONE_WIRE_SIZE
                if budget < 0 and (out or marks):
                    break
                if isinstance(item, Gossip):
                    out.append(item)
                else:
                    marks.append(item)
            net.eager.held_by(sender, [g.guid for g in out])  # this answer brings them
            return m.TellMeMoreReply(gossips=tuple(out), tombstones=tuple(marks))
        raise RemoteProtocolError(f"{body.TYPE} is not a request")

    @staticmethod
    def _probe_answer(net: _Net, kset: ReconciledSet, probe: m.Probe) -> m.ProbeAnswer:
        """Answer a peer's probe of one set; a difference unsettles the network."""
        answer = kset.answer(probe)
        if not answer.in_sync:
            net.unsettled = True
        return answer

    def _heard_of(self, net: _Net, source: str, keys: tuple[str, ...], now: float) -> None:
        """Keys a peer holds that I lack: mark them pending, with the peer as a source (a
        key this node refused lately, or a version of a gossip it holds a tombstone for, is
        not asked for).

        Without eager push they are asked for at once. With it they wait for the next round
        (:meth:`_fetch_pending`), which plays Plumtree's IHAVE timer: an id heard of is most
        likely on its way down the tree, and fetching it now would bring its body twice and
        graft a link the tree does not need.
        """
        if source not in net.peers:
            return
        ask = []
        refused = 0
        held, refusing = net.gossip_keys.members, net.refused
        for k in keys:  # pending ids are keys, in hex
            key = parse_key(k)
            if key in held or refusing.get(key, 0.0) > now:
                continue
            if net.tombstones and not is_tombstone_key(key) and _key_guid(key) in net.tombstones:
                continue  # a version of a deleted gossip: the tombstone beats it
            pending = net.pending.get(k)
            if pending is None or source not in pending.sources:
                if net.pending_by[source] >= MAX_PENDING_PER_SOURCE or (
                    pending is None and len(net.pending) >= MAX_PENDING
                ):
                    refused += 1
                    continue
                if pending is None:
                    pending = net.pending[k] = _Pending(sources=[], since=now)
                pending.sources.append(source)
                net.pending_by[source] += 1
            if pending.asked is None and not self._push:
                pending.asked = source
                ask.append(k)
        if refused:
            self.stats["rejected.pending_cap"] += refused
        for batch in _chunks(ask, TELL_ME_MORE_BATCH):
            self._send_to(net, source, m.TellMeMore(ids=tuple(batch)), now)

    def _unpend(self, net: _Net, guid: str, source: str | None = None) -> None:
        """Forget ``source`` as a source of a pending id (every source if None); an id left
        with no source stops being pending."""
        pending = net.pending.get(guid)
        if pending is None:
            return
        gone = list(pending.sources) if source is None else [source] if source in pending.sources else []
        for peer in gone:
            pending.sources.remove(peer)
            net.pending_by[peer] -= 1
            if net.pending_by[peer] <= 0:
                del net.pending_by[peer]
        if not pending.sources:
            del net.pending[guid]

    # -- answers to my requests -----------------------------------------------------
    def _on_reply(
        self, net: _Net, peer: str, request_id: int, flight: _Inflight, reply: m.Message, now: float
    ) -> None:
        if isinstance(reply, m.RegisterOk):
            node = reply.node
            entry = None
            if node.network_name == net.network.name and node.guid == peer and node.guid != self.guid:
                entry = self._learn_peer(net, node, now, firsthand=True) or net.peers.get(node.guid)
            if entry is None:
                self.stats["rejected.register_ok"] += 1
                reason = "its answer did not describe itself" if node.guid != peer else "this node's peer list is full"
                self._events.append(
                    RegisterFailed(request_id=request_id, network=flight.net, address=flight.address, reason=reason, status=None)
                )
                return
            entry.fresh = True
            self._note(net, entry)
            if self._linkable(net, node.guid):
                net.eager.add(node.guid)
            if reply.retention is not None:
                self._adopt(net, reply.retention)
            self._events.append(Registered(request_id=request_id, peer=entry.view()))
        elif isinstance(reply, m.HelloReply):
            assert isinstance(flight.body, m.Hello)
            for record in reply.peers:
                self._learn_peer(net, record, now, firsthand=record.guid == peer)
            if reply.answer is not None:
                self._reconcile(net, peer, net.peer_set, flight.body.probe, reply.answer, now)
        elif isinstance(reply, m.DidYouHearReply):
            assert isinstance(flight.body, m.DidYouHear)
            if reply.answer is not None:
                entry = net.peers.get(peer)
                if entry is not None:  # what the answer says of the peer's gossip set
                    keys = net.gossip_keys
                    entry.summary = (len(keys), keys.fingerprint) if reply.answer.in_sync else _DIFFERS
                    entry.summary_at = now
                self._reconcile(net, peer, net.gossip_set, flight.body.probe, reply.answer, now)
            if reply.hello is not None:
                self._reconcile(net, peer, net.peer_set, flight.body.hello, reply.hello, now)
            if reply.retention is not None:
                self._adopt(net, reply.retention)
            if reply.ring is not None:
                self._heard_ring(net, peer, reply.ring, now)
        elif isinstance(reply, m.KeysReply):
            entry = net.peers.get(peer)
            if entry is not None:
                entry.ring, entry.ring_offered = reply.ring, None  # the rounds repair the rest
        elif isinstance(reply, m.TellMeMoreReply):
            assert isinstance(flight.body, m.TellMeMore)
            asked = set(flight.body.ids)
            fresh: list[Gossip] = []
            marks: list[Tombstone] = []
            returned: set[str] = set()
            late = 0
            got: list[Item] = [*reply.gossips, *reply.tombstones]
            for item in got:
                key = item_key(item)
                k = key_hex(key)
                if k not in asked:
                    self.stats["rejected.unsolicited"] += 1
                    continue
                returned.add(k)
                if key in net.gossip_keys:
                    late += 1  # a push brought it while the fetch was under way
                elif isinstance(item, Tombstone):
                    marks.append(item)
                else:
                    fresh.append(item)
            marks, fresh = self._admit(net, marks, now), self._admit(net, fresh, now)
            self.stats["duplicate.fetched"] += late
            if self._push:
                self._fetched(net, useful=len(fresh) + len(marks), late=late)
            self._store(net, [*marks, *fresh], peer, now)
            # The answerer walks the ids in order and skips those it lacks, stopping only at
            # its budget, after at least one: an id before the last one it sent, or any id of
            # an empty answer, is one it does not hold. It stops being a source of that id.
            last = max((i for i, guid in enumerate(flight.body.ids) if guid in returned), default=len(flight.body.ids))
            for i, guid in enumerate(flight.body.ids):
                pending = net.pending.get(guid)
                if pending is None:
                    continue
                if pending.asked == peer:
                    pending.asked = None
                if i < last and guid not in returned:
                    self._unpend(net, guid, peer)
        elif isinstance(reply, m.LinkReply):
            assert isinstance(flight.body, m.Link)
            net.active.asking.discard(peer)
            if flight.body.op == "shuffle":
                if not reply.accepted:
                    self._unlink(net, peer, now, tell=False)  # a link held on this side only
                self._take_sample(net, peer, reply.peers, now)
            elif flight.body.op != "drop" and reply.accepted:
                if peer in net.peers:
                    self._link(net, peer, now)
                else:  # forgotten meanwhile: end the link its side holds
                    self._send(net, peer, flight.address, m.Link(op="drop"), now)
        elif isinstance(reply, m.PushReply):
            if flight.repair:  # the tree missed the peer: a useful repair grafts it
                net.repairing.discard(peer)
                if not reply.prune and self._linkable(net, peer):
                    net.eager.add(peer)
                elif reply.prune and isinstance(flight.body, m.Push):
                    # It took none of them (expired by its clock, refused, or brought by
                    # the tree meanwhile): from now on they are told as ids, which it can
                    # refuse for a few bytes, not sent again body and all every round.
                    for gossip in flight.body.gossips:
                        net.unwanted.pop((peer, item_key(gossip)), None)
                        net.unwanted[(peer, item_key(gossip))] = now + REFUSED_TTL
                    while len(net.unwanted) > MAX_REFUSED:
                        del net.unwanted[next(iter(net.unwanted))]
                return
            net.eager.finished(peer)
            if reply.prune:
                self._prune(net, peer, now)
            else:
                net.eager.proved(peer)
                self._push_next(net, peer, now)

    def _reconcile(
        self, net: _Net, peer: str, kset: ReconciledSet, probe: m.Probe | None, answer: m.ProbeAnswer, now: float
    ) -> None:
        """Act on a peer's answer to my probe of one set: send what the difference calls
        for, then the next probe if the difference is not all known yet."""
        if answer.in_sync:
            return
        net.unsettled = True
        step = kset.reconcile(probe, answer)
        if step.rejected is not None:
            self.stats[f"rejected.{step.rejected}"] += 1
        if step.retry:
            self.stats[f"iblt_retry.{kset.name}"] += 1
        if step.exchange is not None:
            for request in step.exchange.requests:
                self._send_to(net, peer, request, now)
            self._heard_of(net, peer, step.exchange.heard, now)
            self._give(net, peer, step.exchange.give, now)
        if step.probe is not None:
            self._send_to(net, peer, kset.request(step.probe), now)

    # -- state changes ----------------------------------------------------------------
    def _admit(self, net: _Net, items: list[_Received], now: float) -> list[_Received]:
        """The received items (new to this node) that it takes; each one refused is counted,
        and the rest of its batch is taken:

        - a gossip's sha2 must verify;
        - an item may be old, never dated more than MAX_FUTURE_SKEW ahead of this node's
          clock, nor older than the network's retention. An expired key is not fetched
          again: a node never takes back what it (or, a little earlier by its clock, another
          node) dropped;
        - a gossip must be within the network's quota: none over the size limit, and none
          once the network holds its most bytes (each counted, not stored).

        One pass with the bounds looked up once: every gossip pushed or fetched passes here.
        """
        stats = self.stats
        quota = net.network.quota
        most, room = quota.max_gossip_bytes, quota.max_network_bytes - net.held_bytes
        latest = now + MAX_FUTURE_SKEW
        age = net.network.retention.max_age
        oldest = -math.inf if age is None else now - age
        kept = []
        for item in items:
            gossip = item if isinstance(item, Gossip) else None
            if gossip is not None and not gossip.verify():
                stats["rejected.bad_sha2"] += 1
                continue
            ts = item.timestamp()
            if ts > latest:
                stats["rejected.future_date"] += 1
                continue
            if ts < oldest:
                stats["rejected.expired"] += 1
                self._refuse(net, item_key(item), now)
                continue
            if gossip is not None:
                # UTF-8 takes at most 4 bytes a character: encode only when the text could be over.
                if 4 * len(gossip.msg) > most and len(gossip.msg.encode("utf-8")) > most:
                    stats["rejected.quota_gossip_bytes"] += 1
                    continue
                size = gossip.wire_size()
                if size > room:
                    stats["rejected.quota_network_bytes"] += 1
                    continue
                room -= size
            kept.append(item)
        return kept

    def _refuse(self, net: _Net, key: int, now: float) -> bool:
        """Remember a refused key for REFUSED_TTL, and stop waiting for it. Returns whether it
        was new (to report once)."""
        self._unpend(net, key_hex(key))
        known = net.refused.get(key, 0.0) > now
        net.refused.pop(key, None)
        net.refused[key] = now + REFUSED_TTL
        while len(net.refused) > MAX_REFUSED:
            del net.refused[next(iter(net.refused))]
        return not known

    def _told(self, net: _Net) -> Retention | None:
        """The retention to pass on in a round: none while it is the default."""
        retention = net.network.retention
        return retention if retention.set_at else None

    def _adopt(self, net: _Net, retention: Retention) -> None:
        """Take a peer's retention if it supersedes this node's (the same rule everywhere,
        so every node ends with the same); the next tick expires what it no longer keeps."""
        if not retention.supersedes(net.network.retention):
            return
        self._set_network(net, replace(net.network, retention=retention))
        net.unsettled = True
        self._events.append(RetentionChanged(network=net.network.name, retention=retention))

    def _expire(self, net: _Net, now: float) -> None:
        """Drop the items dated before now - retention, oldest first (O(1) when none is due)."""
        age = net.network.retention.max_age
        if age is None:
            return
        if not net.expiry_kept:
            net.expiry = [(i.timestamp(), item_key(i)) for d in (net.gossips, net.tombstones) for i in d.values()]
            heapq.heapify(net.expiry)
            net.expiry_kept = True
        cutoff = now - age
        while net.expiry and net.expiry[0][0] < cutoff:
            _, key = heapq.heappop(net.expiry)
            item = self._held(net, _key_guid(key))
            if item is None or item_key(item) != key:
                continue  # replaced or removed since
            self._take(net, item)
            self._refuse(net, key, now)
            self.stats["expired.tombstone" if isinstance(item, Tombstone) else "expired.gossip"] += 1
            self._removed(net, item, "expired")

    def _held(self, net: _Net, guid: str) -> Item | None:
        """The item (gossip or tombstone) this node holds under ``guid``, if any."""
        return net.gossips.get(guid) or net.tombstones.get(guid)

    def _put(self, net: _Net, item: Item, key: int | None = None) -> None:
        """Hold an item (its guid's slot must be free), without events (``key``: its
        :func:`item_key`, when the caller has it)."""
        if key is None:
            key = item_key(item)
        if isinstance(item, Gossip):
            net.gossips[item.guid] = item
            net.held_bytes += item.wire_size()
        else:
            net.tombstones[item.guid] = item
        net.gossip_set.keys.add(key)
        if net.expiry_kept:
            heapq.heappush(net.expiry, (item.timestamp(), key))
        if net.pending:
            self._unpend(net, key_hex(key))

    def _take(self, net: _Net, item: Item) -> None:
        """Stop holding exactly this item (nothing if another one holds its guid), without events."""
        key = item_key(item)
        if key not in net.gossip_keys:
            return
        net.gossip_keys.discard(key)
        if isinstance(item, Gossip):
            del net.gossips[item.guid]
            net.cursors.pop(item.guid, None)  # its feed entry is skipped; the cursor is not given again
            net.held_bytes -= item.wire_size()
            net.eager.forget(item.guid)
        else:
            del net.tombstones[item.guid]

    def _removed(self, net: _Net, item: Item, reason: str) -> None:
        """Report an item removed (for the store)."""
        name = net.network.name
        if isinstance(item, Gossip):
            self._events.append(GossipRemoved(network=name, gossip=item, reason=reason))
        else:
            self._events.append(TombstoneRemoved(network=name, tombstone=item))

    def _store(self, net: _Net, items: Iterable[Item], source: str | None, now: float) -> list[Gossip]:
        """Keep the items (gossips verified by the caller, tombstones) new to this node under
        the conflict rule, report them, push the gossips on. Expired items are refused.

        Returns:
            The gossips that were new.
        """
        new: list[Gossip] = []
        changed = False
        sizes: dict[str, int] = {}  # guid -> wire size: the quota's count and the push budget's
        name = net.network.name
        # Every gossip a node learns passes here: what each item needs is looked up once.
        held_keys, gossips, tombstones, events = net.gossip_keys.members, net.gossips, net.tombstones, self._events
        cursors, feed = net.cursors, net.feed
        age = net.network.retention.max_age
        oldest = -math.inf if age is None else now - age
        for item in items:
            key = item_key(item)
            if key in held_keys:
                continue
            if item.timestamp() < oldest:  # expired (see _admit)
                self.stats["rejected.expired"] += 1
                self._refuse(net, key, now)
                continue
            guid = item.guid
            old = gossips.get(guid) or tombstones.get(guid)
            if old is not None and not wins(item, old):
                # The same rule on every node: the loser is refused here, and replaced where
                # it is held when the winner gets there.
                self.stats["rejected.conflict"] += 1
                if self._refuse(net, key, now) and isinstance(item, Gossip) and isinstance(old, Gossip):
                    self._events.append(GossipConflict(network=name, kept=old, lost=item))
                continue
            if old is not None:
                self._take(net, old)
                if self._refuse(net, item_key(old), now) and isinstance(item, Gossip) and isinstance(old, Gossip):
                    self._events.append(GossipConflict(network=name, kept=item, lost=old))
                self.stats["replaced"] += 1
                self._removed(net, old, "deleted" if isinstance(item, Tombstone) else "replaced")
            self._put(net, item, key)
            changed = True
            if isinstance(item, Tombstone):
                events.append(TombstoneAdded(network=name, tombstone=item, source=source))
                continue
            sizes[guid] = item.wire_size()
            self.last_cursor = cursor = self.last_cursor + 1
            cursors[guid] = cursor
            feed.append((cursor, guid))
            events.append(_received(name, item, source, cursor))
            new.append(item)
        if not changed:
            return new
        net.unsettled = True
        if self._push and sizes:
            self._push_new(net, sizes, source, now)
        return new

    def _push_new(self, net: _Net, sizes: dict[str, int], source: str | None, now: float) -> None:
        """Push gossips new to this node (guid -> wire size) to its eager peers, except the one
        they came from.

        The source joins the eager set: it just proved a useful link (a push, or the answer
        to a grafting TELL_ME_MORE). The node's own random peers are picked on its first
        push, before the source joins so that the flood goes on past it, and again only when
        the set is empty even with the source: a node whose links were all pruned and that
        now hears by anti-entropy stays a leaf of the tree instead of flooding random peers.
        """
        if not net.eager.started:
            net.eager.pick(self._eligible(net, now), self._rng)
        if source is not None and self._linkable(net, source):
            net.eager.add(source)
        if not net.eager:
            net.eager.pick(self._eligible(net, now), self._rng)
        for peer in net.eager.enqueue(sizes, exclude=source):
            self._push_next(net, peer, now)

    def _give(self, net: _Net, peer: str, keys: tuple[str, ...], now: float) -> None:
        """Give a peer the items a reconciliation found it lacks (hex keys).

        A gossip that came to this node after it learnt of the peer is one the eager tree
        should have brought the peer too: its body goes at once, in one PUSH marked
        ``repair`` of at most REPAIR_BUDGET bytes (the push half of push-pull; telling its id
        would cost a TELL_ME_MORE and a round more). Everything else goes as DID_YOU_HEAR ids
        for the peer to fetch with TELL_ME_MORE, at its own pace:

        - what is over the budget, or finds a repair to the peer still in flight: a peer far
          behind pulls, rather than every peer that finds it behind pushing it the same
          bodies at once (which swamped a 1 mbit link in ``tests/test_multihost.py``);
        - gossips older than this node's knowledge of the peer: its history (the seed's
          bootstrap: a newcomer is told the network's gossips and asks for them);
        - tombstones, which never travel by PUSH;
        - a gossip the peer took nothing of from a repair (``unwanted``: it can refuse an id
          for a few bytes, where a body would be sent again every round);
        - everything with push off: the rounds alone spread.
        """
        entry = net.peers.get(peer)
        if entry is None or not keys:
            return
        gossips: list[Gossip] = []
        ids: list[str] = []
        budget = 0 if peer in net.repairing else REPAIR_BUDGET
        for k in keys:
            key = parse_key(k)
            item = self._held(net, _key_guid(key))
            if item is None or item_key(item) != key:
                continue  # gone since the probe
            if (
                self._push and isinstance(item, Gossip) and net.cursors.get(item.guid, 0) > entry.since
                and net.unwanted.get((peer, key), -math.inf) < now and item.wire_size() <= budget
            ):
                gossips.append(item)
                budget -= item.wire_size()
            else:
                ids.append(k)
        if gossips:
            # The tree must not bring them to it again: a push of them queued for this peer
            # would now be a duplicate, which prunes the very link the repair just proved.
            net.eager.held_by(peer, [g.guid for g in gossips])
            self._send_repair(net, entry, gossips, now)
        self._tell_ids(net, entry, ids, now)

    def _prune(self, net: _Net, peer: str, now: float) -> None:
        """The link to ``peer`` turns lazy; a short queue for it still goes, as a repair.

        A few queued gossips (at most PRUNE_FLUSH) are most likely a flood from another
        source crossing the link the other way than the duplicates that pruned it: dropped,
        they would be missing from the whole subtree behind the link until a round found
        the difference, so their bodies go once, as a repair (within its budget, one in
        flight). A longer queue is a stream that the peer, as the duplicates show, gets by
        another link: it is dropped, and a round brings the peer whatever nothing else did.
        Telling it as ids cost a request at every prune and, fetched with a graft before the
        other link's push came, reopened the cycle the prune had cut (``bench_load.py``, 3,000
        gossips: 25,781 requests and 172,089 duplicate bodies, against 16,359 and 127,893).
        """
        queued = [net.gossips[g] for g in net.eager.remove(peer) if g in net.gossips]
        entry = net.peers.get(peer)
        if not queued or entry is None:
            return
        if (
            len(queued) <= PRUNE_FLUSH and peer not in net.repairing
            and sum(g.wire_size() for g in queued) <= REPAIR_BUDGET
        ):
            self._send_repair(net, entry, queued, now)

    def _send_repair(self, net: _Net, entry: _PeerEntry, gossips: list[Gossip], now: float) -> None:
        """One PUSH marked ``repair`` (not the tree's: its answer leaves the tree's links and
        flow control alone), the one in flight to that peer until answered or failed."""
        net.repairing.add(entry.peer.guid)
        body = m.Push(gossips=tuple(gossips), repair=True)
        self._send(net, entry.peer.guid, entry.peer.address, body, now, repair=True)

    def _tell_ids(self, net: _Net, entry: _PeerEntry, ids: list[str], now: float) -> None:
        """DID_YOU_HEAR with these keys (hex), for the peer to fetch what it lacks."""
        for chunk in _chunks(ids, m.MAX_IDS):
            self._send(net, entry.peer.guid, entry.peer.address, m.DidYouHear(ids=tuple(chunk)), now)

    def _push_next(self, net: _Net, peer: str, now: float) -> None:
        """Send ``peer`` the gossips queued for it, unless a push to it is in flight."""
        guids = net.eager.take(peer, ANSWER_BUDGET, now)
        if guids:
            self._send_to(net, peer, m.Push(gossips=tuple(net.gossips[g] for g in guids)), now)

    def _put_peer(self, net: _Net, peer: Peer, now: float, *, limit: int) -> _PeerEntry | None:
        """Insert or replace a peer's record, without events. None if refused.

        A new record may take the peer list up to ``limit``; past it, the unproven record
        held longest makes room (:meth:`_evict_unproven`), or else the new one is refused.
        """
        entry = net.peers.get(peer.guid)
        if entry is None:
            if len(net.peers) >= limit and not self._evict_unproven(net):
                self.stats["rejected.peer_cap"] += 1
                return None
            entry = net.peers[peer.guid] = _PeerEntry(
                peer=peer, key=net.peer_set.add(peer), learnt=now, since=self.last_cursor
            )
            return entry
        net.peer_set.drop(entry.key)
        entry.peer = peer
        entry.key = net.peer_set.add(peer)
        return entry

    def _forget_peer(self, net: _Net, guid: str) -> _PeerEntry | None:
        entry = net.peers.pop(guid, None)
        if entry is not None:
            net.irregular.discard(guid)
            net.peer_set.drop(entry.key)
            net.eager.remove(guid)
            net.active.remove(guid)
        return entry

    def _evict_unproven(self, net: _Net) -> bool:
        """Forget a record never proven (never answered, never sent by its own node, not just
        registered, not asked for an active link), a doubtful one first, else the one held
        longest: hearsay makes room before anything is refused."""
        victim = min(
            (
                e for e in net.peers.values()
                if not e.proven and not e.fresh and e.peer.guid not in net.active.asking
            ),
            key=lambda e: (not e.doubtful, e.learnt),
            default=None,
        )
        if victim is None:
            return False
        self._forget_peer(net, victim.peer.guid)
        self.stats["evicted.unproven_peer"] += 1
        self._events.append(PeerForgotten(peer=victim.view(), reason="evicted to make room"))
        return True

    def _forget_unproven(self, net: _Net, now: float) -> None:
        """Forget doubtful records held longer than the unproven TTL: an address that never
        answered does not stay for ever (a peer that does reach it passes it on again at a
        later reconciliation). Records not yet tried stay: most of a large network is."""
        ttl = max(UNPROVEN_TTL, UNPROVEN_TTL_ROUNDS * self.config.gossip_timer)
        while net.shunned and (len(net.shunned) > SHUN_FACTOR * self._max_peers or next(iter(net.shunned.values())) < now):
            del net.shunned[next(iter(net.shunned))]
        for entry in [e for e in self._irregular(net) if now - e.learnt > ttl and e.doubtful]:
            self._forget_peer(net, entry.peer.guid)
            net.shunned.pop(entry.key, None)
            net.shunned[entry.key] = now + SHUN_TTLS * ttl
            self.stats["expired.unproven_peer"] += 1
            self._events.append(PeerForgotten(peer=entry.view(), reason="never answered"))

    def _learn_peer(self, net: _Net, peer: Peer, now: float, *, firsthand: bool = False) -> _PeerEntry | None:
        """Take a peer record. Returns its entry if it was new or changed.

        ``firsthand``: the record comes from its own node (the sender of the message is the
        record's guid). A member holds the network key and can send any record, so records
        are believed by where they come from:

        - a record from its own node is taken whatever its incarnation: a node can always
          reclaim its guid, however high an incarnation someone else announced for it;
        - hearsay (a record passed on by another peer) must carry a higher incarnation, and
          never replaces a record its own node gave while that peer answers (it is alive):
          only the node itself moves its record;
        - hearsay may fill the peer list up to ``max_peers`` minus a reserve kept for
          REGISTER and first-hand records; a new record past the limit evicts the unproven
          one held longest, or is refused.
        """
        if peer.network_name != net.network.name:
            self.stats["rejected.peer_wrong_network"] += 1
            return None
        if peer.guid == self.guid:
            return None
        entry = net.peers.get(peer.guid)
        if entry is not None:
            if firsthand:
                if peer == entry.peer:
                    entry.firsthand = True
                    return None
            elif peer.incarnation <= entry.peer.incarnation:
                return None
            elif entry.firsthand and entry.liveness.status is PeerStatus.ALIVE and not peer.left:
                self.stats["rejected.peer_hearsay"] += 1
                return None
        is_new = entry is None
        if not firsthand and net.shunned.get(record_key(peer), 0.0) > now:
            self.stats["rejected.peer_shunned"] += 1
            return None
        if entry is not None and peer.left and entry.proven and entry.liveness.status is PeerStatus.ALIVE:
            self._claim_left(net, entry, peer, now)
            return None
        limit = self._max_peers if firsthand else self._max_peers - max(1, self._max_peers // PEER_RESERVE_DIVISOR)
        old = None if entry is None else entry.peer
        entry = self._put_peer(net, peer, now, limit=limit)
        if entry is None:
            return None
        entry.firsthand = firsthand
        entry.left_claim = None
        if old is not None and old.left and not peer.left:
            # Back (a restart, or the real node reclaiming its guid): hearsay of the left
            # record it replaces must not undo that.
            self._shun(net, record_key(old), now + self._forget_after)
        status_was = entry.liveness.set_left(peer.left)
        self._note(net, entry)
        if peer.left:
            net.eager.remove(peer.guid)
        self._events.append(PeerJoined(peer=entry.view()) if is_new else PeerUpdated(peer=entry.view()))
        if status_was is not None and not is_new:
            self._events.append(PeerStatusChanged(peer=entry.view(), old=status_was))
        net.unsettled = True
        return entry

    def _takes_hearsay(self, net: _Net) -> bool:
        """Whether this round reconciles peer records (the HELLO probe).

        Rule: a node reconciles its peer set only while hearsay could still add a record,
        that is below ``max_peers`` minus the first-hand reserve. Reconciling all records
        with every peer is what makes membership cost N^2 on a network larger than the cap:
        past it the node keeps the sample it holds (a bounded partial view), still answers
        others' HELLOs, and takes records first-hand (REGISTER). Records it forgets (dead,
        left, never answering) bring it back under the cap, and the HELLOs of the next
        rounds refill the view from its peers: that is the repair. Below the cap nothing
        changes: on a network that fits under the limit (896 nodes with the default
        ``max_peers`` of 1,024) every node still shows every node.
        """
        return len(net.peers) < self._max_peers - max(1, self._max_peers // PEER_RESERVE_DIVISOR)

    # -- leaving ------------------------------------------------------------------------

    def _claim_left(self, net: _Net, entry: _PeerEntry, claim: Peer, now: float) -> None:
        """A record says that a peer which answers left: check before believing it.

        Any member can send any record, so "left" about a live node is checked: the peer is
        asked at once (a DID_YOU_HEAR). An answer to a request sent since then refutes the
        claim; a failure (a node that left answers 503, or nothing answers) confirms it
        (:meth:`delivery_failed`). One check at a time per peer; a newer claim replaces the
        one being checked.
        """
        pending = entry.left_claim
        if pending is not None and pending.incarnation >= claim.incarnation:
            return
        entry.left_claim = claim
        if pending is None:
            entry.claim_at = now
            self.stats["checked.left_claim"] += 1
            probes = m.DidYouHear(probe=net.gossip_set.probe(), hello=net.peer_set.probe())
            self._send_to(net, entry.peer.guid, probes, now)

    def _take_left(self, net: _Net, entry: _PeerEntry, record: Peer, now: float) -> None:
        """Hold ``record`` (which says ``left``) for the peer: it is not contacted again."""
        entry.left_claim = None
        self._put_peer(net, record, now, limit=self._max_peers)
        net.eager.remove(record.guid)
        net.unsettled = True  # the new record spreads at the next reconciliations
        old = entry.liveness.set_left(True)
        self._note(net, entry)
        self._events.append(PeerUpdated(peer=entry.view()))
        if old is not None:
            self._events.append(PeerStatusChanged(peer=entry.view(), old=old))

    @staticmethod
    def _shun(net: _Net, key: int, until: float) -> None:
        """Refuse hearsay of the record with this key until ``until`` (newest last)."""
        net.shunned.pop(key, None)
        net.shunned[key] = until

    def _forget_gone(self, net: _Net, now: float) -> None:
        """Forget peers left or dead and not heard from for ``forget_after`` (events say so),
        and refuse hearsay of their records as long again, so that peers which forget later
        do not hand them back. A node that comes back speaks first-hand, which is taken."""
        gone = (PeerStatus.LEFT, PeerStatus.DEAD)
        for entry in [e for e in self._irregular(net) if e.liveness.status in gone]:
            since = entry.liveness.last_seen if entry.liveness.last_seen is not None else entry.learnt
            if now - since <= self._forget_after:
                continue
            self._forget_peer(net, entry.peer.guid)
            self._shun(net, entry.key, now + self._forget_after)
            status = entry.liveness.status
            self.stats[f"forgotten.{status}"] += 1
            reason = f"{status} for over {self._forget_after:g} s"
            self._events.append(PeerForgotten(peer=entry.view(), reason=reason))

    def _seen(self, net: _Net, guid: str, now: float) -> None:
        entry = net.peers.get(guid)
        if entry is None:
            return
        old = entry.liveness.succeeded(now)
        self._note(net, entry)
        if old is not None:
            self._events.append(PeerStatusChanged(peer=entry.view(), old=old))

    # ------------------------------------------------------------------ key rotation
    # A network's key ring: the primary key (signs what this node sends) and the others it
    # accepts. Every change (install, use, remove) raises the ring's version; nodes advertise
    # their ring (ids, never keys) in each round's DID_YOU_HEAR and its answer, and a node
    # that sees a peer advertise a lower ring sends it its own (KEYS), each key sealed under
    # a key that peer holds. The highest ring wins everywhere, so a node that missed a change
    # catches up at its next exchange with any node that has it. A request to a peer is
    # signed with the primary when the peer holds it, else with a key it does hold, and every
    # answer with the key its request used: no request between members is refused while
    # the rotation is done in order (install everywhere, use, remove), and removing a key
    # that a known node still needs is refused.
    def keys(self, network: str | None = None) -> tuple[bytes, ...]:
        """The keys this node accepts on a network, the primary first."""
        return self._net(network).network.keys

    def key_ring(self, network: str | None = None) -> list[KeyInfo]:
        """``gossip keys list``: each key's id, whether it is primary, and how many nodes hold it."""
        net = self._net(network)
        # Nodes gone (dead, or left) neither hold nor need a key until they come back.
        counted = [e for e in net.peers.values() if e.liveness.status not in (PeerStatus.DEAD, PeerStatus.LEFT)]
        unheard = sum(1 for e in counted if e.ring is None)
        rows = []
        for key in net.network.keys:
            kid = _key_id(key)
            holders = 1 + sum(1 for e in counted if e.ring is not None and kid in e.ring.ids)
            rows.append(
                KeyInfo(
                    network=net.network.name,
                    id=kid,
                    primary=key == net.network.key,
                    nodes=holders,
                    known=1 + len(counted),
                    unheard=unheard,
                )
            )
        return rows

    def install_key(self, key: bytes, now: float, network: str | None = None) -> bool:
        """``gossip keys install``: accept ``key`` too (the primary stays), and spread the ring.

        Returns:
            False when the key was already installed (nothing changed).

        Raises:
            LocalProtocolError: not 16 to 64 bytes.
            GossipError: the ring already holds :data:`~gossip.messages.MAX_RING_KEYS` keys
                (409, ``key_in_use``).
        """
        net = self._net(network)
        if not isinstance(key, bytes) or not 16 <= len(key) <= 64:
            raise LocalProtocolError("a network key must be 16 to 64 bytes")
        old = net.network
        if key in old.keys:
            return False
        if len(old.keys) >= m.MAX_RING_KEYS:
            raise GossipError(
                f"network {old.name!r} already holds {len(old.keys)} keys; remove one first",
                status_hint=409,
                code=ErrorCode.KEY_IN_USE,
            )
        self._change_ring(net, replace(old, extra_keys=(*old.extra_keys, key), key_version=old.key_version + 1), None, now)
        return True

    def use_key(self, kid: str, now: float, network: str | None = None) -> bool:
        """``gossip keys use``: make the installed key of id ``kid`` the primary, and spread it.

        Returns:
            False when it was the primary already.

        Raises:
            GossipError: no installed key has that id (404, ``unknown_key``).
        """
        net = self._net(network)
        old = net.network
        key = self._installed(old, kid)
        if key == old.key:
            return False
        others = tuple(k for k in old.keys if k != key)
        self._change_ring(net, replace(old, key=key, extra_keys=others, key_version=old.key_version + 1), None, now)
        return True

    def remove_key(self, kid: str, now: float, network: str | None = None) -> None:
        """``gossip keys remove``: stop accepting the key of id ``kid``, here and everywhere.

        Raises:
            GossipError: no installed key has that id (404, ``unknown_key``); it is the last
                key (409, ``last_key``) or the primary (409, ``primary_key``); or a known node
                last advertised no other key of this ring (409, ``key_in_use``): removing
                this one would cut it off.
        """
        net = self._net(network)
        old = net.network
        key = self._installed(old, kid)
        if len(old.keys) == 1:
            raise GossipError(
                f"key {kid} is the last key of network {old.name!r}; install another one first",
                status_hint=409,
                code=ErrorCode.LAST_KEY,
            )
        if key == old.key:
            raise GossipError(
                f"key {kid} is the primary key of network {old.name!r}; `use` another key first",
                status_hint=409,
                code=ErrorCode.PRIMARY_KEY,
            )
        remaining = {_key_id(k) for k in old.keys if k != key}
        for entry in net.peers.values():
            gone = entry.liveness.status in (PeerStatus.DEAD, PeerStatus.LEFT)
            if entry.ring is not None and not gone and remaining.isdisjoint(entry.ring.ids):
                raise GossipError(
                    f"node {entry.peer.name} ({entry.peer.guid}) last said it holds no other key of network"
                    f" {old.name!r}: removing {kid} would cut it off; wait until `gossip keys list` shows"
                    " the new key on every node",
                    status_hint=409,
                    code=ErrorCode.KEY_IN_USE,
                )
        others = tuple(k for k in old.extra_keys if k != key)
        self._change_ring(net, replace(old, extra_keys=others, key_version=old.key_version + 1), None, now)

    @staticmethod
    def _installed(network: Network, kid: str) -> bytes:
        for key in network.keys:
            if _key_id(key) == kid:
                return key
        raise GossipError(
            f"no key {kid!r} is installed on network {network.name!r}; `gossip keys list` shows the ids",
            status_hint=404,
            code=ErrorCode.UNKNOWN_KEY,
        )

    def _ring(self, net: _Net) -> m.Ring:
        network = net.network
        return m.Ring(version=network.key_version, primary=_key_id(network.key), ids=tuple(map(_key_id, network.keys)))

    def _ring_for(self, net: _Net, entry: _PeerEntry | None) -> m.Ring | None:
        """This node's ring, to advertise to a peer that may not know it: one whose last
        advert (its own ring) differs from ours, or that never advertised one. None when the
        peer advertised the very ring we hold: each side sends its ring only while the
        other may lack it, and a ring that changes differs from what every peer advertised,
        so it goes out again in the next exchange with each (about 80 bytes a round saved
        on every settled link)."""
        ring = self._ring(net)
        return None if entry is not None and entry.ring == ring else ring

    def _key_to(self, net: _Net, entry: _PeerEntry | None) -> bytes:
        """The key to sign a request to this peer with: the primary, unless the peer's last
        advert says it lacks it and holds another of this node's keys (or, before any advert,
        the key of its last request)."""
        primary = net.network.key
        if entry is not None and entry.ring is None and entry.last_key in net.network.keys:
            return entry.last_key  # its ring not heard yet: the key it signs with
        if entry is None or entry.ring is None or _key_id(primary) in entry.ring.ids:
            return primary
        return next((k for k in net.network.extra_keys if _key_id(k) in entry.ring.ids), primary)

    def _set_network(self, net: _Net, network: Network) -> None:
        net.network = network
        self.config = self.config.with_changes(
            networks=tuple(network if n.name == network.name else n for n in self.config.networks)
        )

    def _change_ring(self, net: _Net, new: Network, source: str | None, now: float) -> None:
        """Take a new ring, report it (the runner writes it before any answer), and send it to
        up to :data:`KEYS_FANOUT` peers not known to hold it."""
        self._events.append(KeyringChanged(network=new, old=net.network, source=source))
        self._set_network(net, new)
        net.unsettled = True
        rank = self._ring(net).rank()
        behind = [
            guid for guid, e in net.peers.items()
            if guid != source and e.liveness.eligible(now) and (e.ring is None or e.ring.rank() < rank)
            and e.ring_offered != rank
        ]
        for guid in self._rng.sample(behind, min(KEYS_FANOUT, len(behind))):
            self._send_ring(net, guid, now)

    def _send_ring(self, net: _Net, guid: str, now: float) -> None:
        """KEYS to one peer: this node's ring, each key sealed under a key the peer holds."""
        entry = net.peers.get(guid)
        if entry is None:
            return
        wrap = self._key_to(net, entry)
        nonce = self._rng.getrandbits(128).to_bytes(16, "big")
        ring = self._ring(net)
        sealed = tuple(
            m.SealedKey(id=_key_id(k), sealed=seal_key(wrap, k, nonce=nonce, context=net.network.name))
            for k in net.network.keys
        )
        self._send(net, guid, entry.peer.address, m.Keys(ring=ring, keys=sealed), now, key=wrap)
        entry.ring_offered = ring.rank()
        self.stats["ring.sent"] += 1

    def _heard_ring(self, net: _Net, sender: str, ring: m.Ring, now: float) -> None:
        """A peer advertised its ring: note it, and send ours if it is newer."""
        entry = net.peers.get(sender)
        if entry is None:
            return
        entry.ring = ring
        mine = self._ring(net).rank()
        if ring.rank() < mine and entry.ring_offered != mine:
            self._send_ring(net, sender, now)

    def _take_ring(self, net: _Net, sender: str, body: m.Keys, wrap: bytes, now: float) -> m.KeysReply:
        """KEYS from a peer: adopt its ring when it ranks above ours (else answer with ours,
        and send ours back when it is the newer)."""
        if body.ring.rank() > self._ring(net).rank():
            name = net.network.name
            keys = [unseal_key((wrap,), k.id, k.sealed, context=name) for k in body.keys]
            if any(k is None for k in keys):
                raise AuthenticationError(
                    "keys: a sealed key does not open with the key that signed the request",
                    code=ErrorCode.BAD_MAC,
                )
            # A member may change the ring, but not cut this node off nor end rotation for
            # good: the new ring must keep the key its request is signed with (an honest
            # sender signs with a key of its own ring, so it always does; without that key
            # this node could no longer talk to the nodes that hold it), and may be at most
            # MAX_RING_STEP versions ahead (one request at version 2^53 - 1 would leave no
            # version for any later change).
            if _key_id(wrap) not in body.ring.ids:
                raise RemoteProtocolError("keys: the ring must hold the key its request is signed with")
            if body.ring.version > net.network.key_version + MAX_RING_STEP:
                raise RemoteProtocolError(f"keys: the ring is more than {MAX_RING_STEP} versions ahead of this node's")
            opened = [k for k in keys if k is not None]
            primary = opened[body.ring.ids.index(body.ring.primary)]
            try:
                new = replace(
                    net.network,
                    key=primary,
                    extra_keys=tuple(k for k in opened if k != primary),
                    key_version=body.ring.version,
                )
            except LocalProtocolError as exc:
                raise RemoteProtocolError(f"keys: {exc}") from None
            self._change_ring(net, new, sender, now)
            self.stats["ring.adopted"] += 1
        self._heard_ring(net, sender, body.ring, now)
        return m.KeysReply(ring=self._ring(net))
