"""Deterministic simulation: N in-memory nodes on a virtual clock; ``python -m gossip.sim``.

Virtual time advances one gossip timer per :meth:`Simulator.step`. Each live node ticks
whenever its :meth:`~gossip.node.GossipNode.next_deadline` comes, so every node runs one
round per step at its own phase (the node draws it from its seeded rng), and the
:class:`~gossip.transport.memory.MemoryNetwork` delivers every request and answer after its
latency (a hundredth of the timer) in between. An eager push leaves at once and reaches the
next hop a latency later, so a gossip crosses up to ~100 hops within one step.
Every random choice comes from generators seeded by ``seed``: the same arguments give the
same run and the same output, byte for byte.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import heapq
import json
import math
import os
import random
import resource
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence, TextIO
from xml.sax.saxutils import escape

from .auth import derive_key
from .errors import TransportError
from .events import RegisterFailed
from .model import ACTIVE_VIEW, FULL_VIEW_LIMIT, Network, NodeConfig, PeerView, Quota, Retention, Snapshot
from .node import PEER_RESERVE_DIVISOR, GossipNode
from .storage import MemoryStorage, persist
from .transport.memory import MemoryNetwork

__all__ = ["Simulator", "SimResult", "coverage_svg", "main", "push_pull_bound", "simulate"]

#: Virtual time the simulation starts at (2026-01-01T00:00:00Z), so gossip dates look real.
EPOCH = 1_767_225_600.0
NETWORK = "sim"
#: The simulator creates its gossips in bursts at one instant: the create rate is not what it studies.
SIM_QUOTA = Quota(creates_per_minute=2**52)


@contextlib.contextmanager
def _built_apart() -> Iterator[None]:
    """Run the block with Python's cyclic garbage collector off, then set apart what it
    built (``gc.freeze``: left out of every collection until ``gc.unfreeze``) and turn the
    collector back on.

    The block builds the simulated network, which lives as long as the run. Otherwise each
    collection (one every 700 allocations, a full one each time the heap grew by a quarter)
    walks it again to free nothing: 2 to 3 s of CPU at 1,000 nodes that know each other (a
    million peer entries). What the run allocates after it is collected as usual.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
        gc.freeze()
    finally:
        if enabled:
            gc.enable()


@dataclass(slots=True)
class _SimNode:
    index: int
    address: tuple[str, int]
    config: NodeConfig
    storage: MemoryStorage
    node: GossipNode
    up: bool = True
    seed: int = 0


class _SharedStartStorage(MemoryStorage):
    """A node's :class:`MemoryStorage` whose starting peer records are one list, shared.

    With ``bootstrap_mode="full"`` every node starts holding the same N - 1 of N records:
    N^2 copies in N stores would cost most of the set-up and hundreds of MiB. Each store
    keeps only what its node changed since (saved records, forgotten guids) on top of the
    shared list, and :meth:`load` gives the same list, in the same order, that a plain
    store holding them all would.
    """

    def __init__(self, shared: Sequence[PeerView], shared_guids: frozenset[str], own: str) -> None:
        super().__init__()
        self._shared = shared
        self._shared_guids = shared_guids
        #: This node's own guid, in the shared list but not a peer of its own.
        self._own = own
        self._gone: set[str] = set()

    def load(self) -> Snapshot:
        snapshot = super().load()
        saved = self._peers.get(NETWORK, {})
        start = [
            saved.get(v.peer.guid, v) for v in self._shared if v.peer.guid != self._own and v.peer.guid not in self._gone
        ]
        snapshot.peers[NETWORK] = start + [v for g, v in saved.items() if g not in self._shared_guids]
        return snapshot

    def save_peer(self, view: PeerView) -> None:
        super().save_peer(view)
        self._gone.discard(view.peer.guid)

    def forget_peers(self, peers: Iterable[tuple[str, str]]) -> None:
        peers = list(peers)
        super().forget_peers(peers)
        self._gone.update(guid for network, guid in peers if network == NETWORK)


@dataclass(frozen=True, slots=True, kw_only=True)
class SimResult:
    """What a run measured. ``rounds`` counts from the first gossip created to convergence.

    ``requests`` counts every request, ``pushes`` the PUSH requests among them. ``dropped``
    counts the network messages (requests and answers) lost. ``coverage`` holds, after each
    of the ``rounds``, the fraction of (node, gossip) pairs held.
    """

    nodes: int
    messages: int
    rounds: int
    converged: bool
    requests: int
    bytes: int
    bootstrap_rounds: int
    seed: int
    fanout: int
    loss: float
    dropped: int
    push: bool
    pushes: int
    coverage: tuple[float, ...]
    max_peers: int = 0
    crashed: int = 0
    lost: int = 0
    joined: int = 0
    #: Live nodes summed over every round, bootstrap rounds included (``nodes`` times the
    #: rounds when nothing crashes or joins).
    node_rounds: int = 0
    #: The least any gossip protocol must send: every gossip's body (its JSON) once to
    #: every node that did not create it (nodes that joined included, crashed ones not).
    floor: int = 0
    active_view: int = 6
    full_view_limit: int = 1000

    @property
    def over_floor(self) -> float:
        """Bytes sent over :attr:`floor` (0 when nothing had to travel)."""
        return self.bytes / self.floor if self.floor else 0.0

    @property
    def bytes_per_node_round(self) -> float:
        """Bytes sent per live node per round (bootstrap rounds included)."""
        node_rounds = self.node_rounds or self.nodes * (self.rounds + self.bootstrap_rounds)
        return self.bytes / max(1, node_rounds)

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodes": self.nodes,
            "messages": self.messages,
            "rounds": self.rounds,
            "converged": self.converged,
            "requests": self.requests,
            "bytes": self.bytes,
            "bootstrap_rounds": self.bootstrap_rounds,
            "seed": self.seed,
            "fanout": self.fanout,
            "loss": self.loss,
            "dropped": self.dropped,
            "push": self.push,
            "pushes": self.pushes,
            "coverage": list(self.coverage),
            "max_peers": self.max_peers,
            "crashed": self.crashed,
            "lost": self.lost,
            "joined": self.joined,
            "node_rounds": self.node_rounds,
            "bytes_per_node_round": round(self.bytes_per_node_round, 1),
            "floor": self.floor,
            "over_floor": round(self.over_floor, 3),
            "active_view": self.active_view,
            "full_view_limit": self.full_view_limit,
        }


@dataclass(slots=True)
class Simulator:
    """N nodes of one network on a :class:`MemoryNetwork` and a virtual clock.

    Args:
        nodes: how many nodes.
        seed: seeds every random choice of the run.
        fanout: ``gossip_max_peer_count`` of every node (peers pushed to; probed per round with push off).
        loss: probability that any one request or answer is lost.
        timer: the gossip timer, in virtual seconds.
        bootstrap_mode: ``"full"`` starts every node knowing every other (what the rumour
            spreading bounds assume); ``"register"`` starts each knowing none, and
            :meth:`bootstrap` joins them by REGISTER and HELLO; ``"sample"`` starts each
            knowing a uniform random sample of the others, as many as hearsay may fill
            (``max_peers`` less the first-hand reserve): a partial view with no N^2 set-up.
        push: eager push on every node; False measures the rounds' anti-entropy alone.
        retention: seconds the network keeps a gossip (None: for ever), as ``--retention``.
        max_peers: every node's ``max_peers``; None gives ``max(1024, 2 * nodes)``: room for
            everyone, hearsay included (the node's default on networks up to 512).
        active_view: every node's :attr:`ACTIVE_VIEW`.
        full_view_limit: every node's :attr:`FULL_VIEW_LIMIT`: past it a node
            gossips over its active view only.
    """

    nodes: int
    seed: int = 0
    fanout: int = 1
    loss: float = 0.0
    timer: float = 1.0
    bootstrap_mode: str = "full"
    push: bool = True
    retention: float | None = None
    max_peers: int | None = None
    active_view: int = ACTIVE_VIEW
    full_view_limit: int = FULL_VIEW_LIMIT
    rng: random.Random = field(init=False)
    network: MemoryNetwork = field(init=False)
    members: list[_SimNode] = field(init=False)
    now: float = field(init=False)
    round: int = field(init=False, default=0)
    created: dict[str, int] = field(init=False, default_factory=dict)
    #: Each created gossip's body size on the wire (what :meth:`floor` counts).
    body_sizes: dict[str, int] = field(init=False, default_factory=dict)
    pushes: int = field(init=False, default=0)
    #: Live nodes summed over the steps taken (what :attr:`SimResult.node_rounds` reports).
    node_rounds: int = field(init=False, default=0)
    #: Gossips that no live node held when :meth:`crash_fraction` crashed their holders.
    lost: set[str] = field(init=False, default_factory=set)
    #: Within step(): the nodes' deadlines, earliest first (entries may be stale).
    _due: list[tuple[float, int]] | None = field(init=False, default=None)
    #: Nodes to register again at the next step: their REGISTER failed.
    _rejoin: set[int] = field(init=False, default_factory=set)
    #: The one network every node belongs to (its key derived from the seed).
    _network_config: Network = field(init=False)

    def __post_init__(self) -> None:
        if self.nodes < 1:
            raise ValueError("a simulation needs at least one node")
        self.rng = random.Random(self.seed)
        self.network = MemoryNetwork(
            rng=random.Random(self.rng.getrandbits(64)), loss=self.loss, latency=self.timer / 100
        )
        self.now = EPOCH
        self.network.now = EPOCH
        if self.bootstrap_mode not in ("full", "register", "sample"):
            raise ValueError("bootstrap_mode must be 'full', 'register' or 'sample'")
        if self.max_peers is None:
            self.max_peers = max(1024, 2 * self.nodes)
        if self.max_peers < 2:
            raise ValueError("max_peers must be at least 2")
        key = derive_key(NETWORK, f"simulation-{self.seed}")
        retention = Retention() if self.retention is None else Retention(max_age=self.retention, set_at=1)
        self._network_config = Network(name=NETWORK, key=key, quota=SIM_QUOTA, retention=retention)
        self.members = []
        configs = [self._config(i) for i in range(self.nodes)]
        views = [PeerView(peer=c.self_peer(NETWORK)) for c in configs]
        # What hearsay may fill (GossipNode._takes_hearsay): a sample this large is a full view.
        sample = min(self.nodes - 1, self.max_peers - max(1, self.max_peers // PEER_RESERVE_DIVISOR))
        guids = frozenset(c.node_guid for c in configs)
        for i, config in enumerate(configs):
            storage: MemoryStorage
            if self.bootstrap_mode == "full":
                storage = _SharedStartStorage(views, guids, config.node_guid)
            else:
                storage = MemoryStorage()
            if self.bootstrap_mode == "sample":
                # Uniform over the others: draw from N-1 slots and skip over this node's own.
                for j in self.rng.sample(range(self.nodes - 1), sample):
                    storage.save_peer(views[j + (j >= i)])
            self._start(config, storage)

    def _config(self, index: int) -> NodeConfig:
        """The configuration of node ``index``: its guid drawn from the run's rng."""
        guid = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        n = index + 1
        # Loopback addresses: virtual here, but never anything outside this machine.
        return NodeConfig(
            node_guid=guid,
            node_name=f"node-{index}",
            networks=(self._network_config,),
            ip=f"127.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}",
            port=8470,
            gossip_timer=self.timer,
            gossip_max_peer_count=self.fanout,
            active_view=self.active_view,
            full_view_limit=self.full_view_limit,
        )

    def _start(self, config: NodeConfig, storage: MemoryStorage) -> _SimNode:
        """A new member: its node built from what ``storage`` holds, attached to the network."""
        seed = self.rng.getrandbits(64)
        node = GossipNode(
            config, rng=random.Random(seed), now=self.now, snapshot=storage.load(), push=self.push,
            max_peers=self.max_peers or 1024,
        )
        address = (config.ip, config.port)
        member = _SimNode(index=len(self.members), address=address, config=config, storage=storage, node=node, seed=seed)
        self.members.append(member)
        self.network.attach(address, self._handler(member))
        return member

    # -- wiring ---------------------------------------------------------------------
    def _handler(self, member: _SimNode):  # type: ignore[no-untyped-def]
        def handle(data: bytes) -> bytes:
            answer = member.node.handle_request(data, self.network.now)
            self._flush(member)
            return answer

        return handle

    def _flush(self, member: _SimNode) -> None:
        """Persist the node's events, then send what it queued."""
        node = member.node
        events = node.events()
        persist(member.storage, events)
        if any(isinstance(e, RegisterFailed) for e in events):
            self._rejoin.add(member.index)
        for out in node.outbox():
            if out.verb == "push":
                self.pushes += 1
            self.network.send(member.address, out.address, out.data, self._on_reply(member, node, out.request_id))
        if self._due is not None:  # within step(): tick it when its (maybe earlier) deadline comes
            heapq.heappush(self._due, (node.next_deadline(), member.index))

    def _on_reply(self, member: _SimNode, node: GossipNode, rid: int):  # type: ignore[no-untyped-def]
        def on_reply(answer: bytes | None, error: TransportError | None) -> None:
            if node is not member.node or not member.up:
                return  # the node crashed since it sent this
            if answer is not None:
                node.receive_response(rid, answer, self.network.now)
            else:
                assert error is not None
                node.delivery_failed(rid, self.network.now, str(error), error.status)
            self._flush(member)

        return on_reply

    # -- scenario steps ---------------------------------------------------------------
    def step(self) -> None:
        """One gossip timer of virtual time: each live node ticks when its deadline comes.

        Each node's rounds keep the phase its first round drew, as real nodes' do: the
        network delivers what is due between one node's tick and the next.
        """
        self.round += 1
        end = EPOCH + self.round * self.timer
        self._register_again()
        due = self._due = [(m.node.next_deadline(), m.index) for m in self.members if m.up]
        self.node_rounds += len(due)
        heapq.heapify(due)
        while True:
            tick_at = due[0][0] if due else math.inf
            deliver_at = self.network.next_due()
            if deliver_at is not None and deliver_at < tick_at and deliver_at <= end:
                self.network.run_until(deliver_at)  # what it sets off may bring a deadline forward
                continue
            if tick_at > end:
                break
            deadline, index = heapq.heappop(due)
            member = self.members[index]
            if not member.up or member.node.next_deadline() != deadline:
                continue  # stale: the node's deadline moved, and was queued again when it did
            self.network.run_until(max(deadline, self.network.now))
            member.node.tick(self.network.now)
            self._flush(member)
        self._due = None
        self.network.run_until(end)
        self.now = end

    def _register_again(self) -> None:
        """Nodes whose REGISTER failed (lost) register again, with a random live node, as
        ``python -m gossip.http --retry-join`` keeps trying until one answers: a node that
        others registered with but that never joined itself would stay an island."""
        rejoin, self._rejoin = sorted(self._rejoin), set()
        for index in rejoin:
            member = self.members[index]
            live = [m for m in self.members if m.up and m is not member]
            if member.up and live:
                target = live[self.rng.randrange(len(live))]
                member.node.register(*target.address, self.now)
                self._flush(member)

    def bootstrap(self, max_rounds: int = 200) -> int:
        """Each node registers with a random earlier one; run until all know all.

        With ``bootstrap_mode="sample"`` the nodes start with their views: nothing to do.

        Returns:
            The rounds it took (0 when every node already knows every other).
        """
        if self.bootstrap_mode == "sample" or self.membership_converged():
            return 0
        for member in self.members[1:]:
            target = self.members[self.rng.randrange(member.index)]
            member.node.register(*target.address, self.now)
            self._flush(member)
        self.network.run_until(self.now + self.timer * 0.5)
        start = self.round
        while not self.membership_converged() and self.round - start < max_rounds:
            self.step()
        return self.round - start

    def membership_converged(self) -> bool:
        live = [m for m in self.members if m.up]
        return all(m.node.peer_count() == len(live) - 1 for m in live)

    def create(self, count: int) -> list[str]:
        """Create ``count`` gossips at random live nodes."""
        live = [m for m in self.members if m.up]
        guids = []
        for i in range(count):
            member = live[self.rng.randrange(len(live))]
            gossip = member.node.create_gossip(f"gossip {len(self.created)} from {member.config.node_name}", self.now)
            self.created[gossip.guid] = member.index
            self.body_sizes[gossip.guid] = gossip.wire_size()
            guids.append(gossip.guid)
            self._flush(member)
        return guids

    def floor(self) -> int:
        """Bytes every gossip protocol must send: each created gossip's body (its JSON, as
        it travels) once to every other live node (:attr:`SimResult.floor`)."""
        live = sum(1 for m in self.members if m.up)
        return sum(
            size * (live - self.members[self.created[guid]].up)
            for guid, size in self.body_sizes.items()
            if guid not in self.lost
        )

    def converged(self) -> bool:
        total = len(self.created) - len(self.lost)
        return all(m.node.gossip_count() >= total for m in self.members if m.up)

    def coverage(self) -> float:
        """The fraction of (live node, gossip created and not lost) pairs held; 1.0 when there are none."""
        live = [m for m in self.members if m.up]
        pairs = len(live) * (len(self.created) - len(self.lost))
        if pairs == 0:
            return 1.0
        return min(1.0, sum(m.node.gossip_count() for m in live) / pairs)

    def crash_fraction(self, fraction: float) -> int:
        """Crash a uniform random ``fraction`` of the live nodes at once (churn).

        A gossip that no live node holds then is lost: it no longer counts towards
        convergence (:attr:`lost`).

        Returns:
            How many nodes crashed.
        """
        live = [m.index for m in self.members if m.up]
        victims = self.rng.sample(live, round(fraction * len(live)))
        for index in victims:
            self.crash(index)
        survivors = [m for m in self.members if m.up]
        self.lost |= {g for g in self.created if not any(m.node.has_gossip(g) for m in survivors)}
        return len(victims)

    def join(self, count: int) -> list[int]:
        """Start ``count`` new nodes that join through the protocol (churn).

        Each starts knowing no peer and REGISTERs with a random live member, as
        ``python -m gossip.http --join`` does; it learns the others, and they learn it, by
        the rounds' reconciliation of peer records. From now on it counts towards
        convergence like every live node.

        Returns:
            The new members' indexes.
        """
        live = [m for m in self.members if m.up]
        if count and not live:
            raise ValueError("nodes can only join while some node is up")
        joined = []
        for _ in range(count):
            target = live[self.rng.randrange(len(live))]
            member = self._start(self._config(len(self.members)), MemoryStorage())
            member.node.register(*target.address, self.now)
            self._flush(member)
            joined.append(member.index)
        return joined

    def run(self, max_rounds: int = 1000, on_round: Callable[[int], None] | None = None) -> int:
        """Step until every live node holds every gossip.

        Args:
            max_rounds: give up after this many steps.
            on_round: called after each step with the number of steps taken so far.

        Returns:
            The rounds taken.
        """
        start = self.round
        while not self.converged() and self.round - start < max_rounds:
            self.step()
            if on_round is not None:
                on_round(self.round - start)
        return self.round - start

    def crash(self, index: int) -> None:
        """Stop a node: it answers nothing and loses everything not in its storage."""
        member = self.members[index]
        member.up = False
        self.network.detach(member.address)

    def restart(self, index: int) -> None:
        """Start a crashed node again from its stored state."""
        member = self.members[index]
        member.seed = self.rng.getrandbits(64)
        member.node = GossipNode(
            member.config, rng=random.Random(member.seed), now=self.now, snapshot=member.storage.load(), push=self.push,
            max_peers=self.max_peers or 1024,
        )
        member.up = True
        self.network.attach(member.address, self._handler(member))

    def partition(self, *groups: Sequence[int]) -> None:
        """Cut the network between groups of node indexes."""
        self.network.partition(*[[self.members[i].address for i in g] for g in groups])

    def heal(self) -> None:
        self.network.heal()


def simulate(
    *,
    nodes: int,
    messages: int,
    seed: int = 0,
    fanout: int = 1,
    loss: float = 0.0,
    max_rounds: int = 1000,
    bootstrap: str = "full",
    push: bool = True,
    max_peers: int | None = None,
    active_view: int = ACTIVE_VIEW,
    full_view_limit: int = FULL_VIEW_LIMIT,
    crash: float = 0.0,
    crash_at: int = 2,
    join: float = 0.0,
    join_at: int = 2,
    progress: Callable[[int, float], None] | None = None,
) -> SimResult:
    """Bootstrap ``nodes`` nodes, create ``messages`` gossips, run to convergence.

    Args:
        crash: the fraction of the nodes that crash at once after round ``crash_at`` of the
            gossip rounds (churn); gossips no live node holds then are lost and not waited for.
        join: new nodes, as a fraction of ``nodes``, that join through the protocol after
            round ``join_at`` (churn; after the crash when both come at one round). The run
            then waits for them too.
        progress: called after each gossip round with the round and the coverage after it;
            it only watches: the run and its result are the same with it or without.
    """
    with _built_apart():
        sim = Simulator(
            nodes=nodes, seed=seed, fanout=fanout, loss=loss, bootstrap_mode=bootstrap, push=push, max_peers=max_peers,
            active_view=active_view, full_view_limit=full_view_limit,
        )
    coverage: list[float] = []
    crashed = joined = 0

    def on_round(taken: int) -> None:
        nonlocal crashed, joined
        if crash and taken == crash_at:
            crashed = sim.crash_fraction(crash)
        if join and taken == join_at:
            joined = len(sim.join(round(join * nodes)))
        coverage.append(sim.coverage())
        if progress is not None:
            progress(taken, coverage[-1])

    try:
        bootstrap_rounds = sim.bootstrap(max_rounds=max_rounds)
        sim.create(messages)
        rounds = sim.run(max_rounds=max_rounds, on_round=on_round)
    finally:
        gc.unfreeze()  # the run is over: what it built is the caller's to free
    stats = sim.network.stats
    return SimResult(
        nodes=nodes,
        messages=messages,
        rounds=rounds,
        converged=sim.converged(),
        requests=stats.requests,
        bytes=stats.bytes,
        bootstrap_rounds=bootstrap_rounds,
        seed=seed,
        fanout=fanout,
        loss=loss,
        dropped=stats.dropped,
        push=push,
        pushes=sim.pushes,
        coverage=tuple(coverage),
        max_peers=sim.max_peers or 0,
        crashed=crashed,
        lost=len(sim.lost),
        joined=joined,
        node_rounds=sim.node_rounds,
        floor=sim.floor(),
        active_view=active_view,
        full_view_limit=full_view_limit,
    )


def push_pull_bound(nodes: int) -> float | None:
    """Rounds for one gossip to reach ``nodes`` nodes by push-pull: log3 N + ln ln N + 1.

    The bound of Karp et al. (FOCS 2000) that ``docs/performance.md`` measures the rounds
    against; None below two nodes, where there is nothing to spread.
    """
    if nodes < 2:
        return None
    return math.log(nodes, 3) + math.log(math.log(nodes)) + 1


def _plural(count: int, singular: str, plural: str | None = None) -> str:
    return f"{count} {singular if count == 1 else plural or singular + 's'}"


def _human_bytes(count: int) -> str:
    """``4.9 MB``: decimal units, three significant digits (whole bytes below 1 kB)."""
    if count < 1000:
        return f"{count} B"
    value = float(count)
    for unit in ("kB", "MB", "GB", "TB"):
        value /= 1000
        shown = f"{value:.1f}" if value < 99.95 else f"{value:.0f}"
        if float(shown) < 1000 or unit == "TB":
            return f"{shown} {unit}"
    raise AssertionError("unreachable")  # pragma: no cover


class _Progress:
    """The progress line on a terminal's stderr: from one second into the run, rewritten in place.

    Nothing at all when the stream is not a terminal, so pipes and tests see clean output.
    """

    def __init__(self, stream: TextIO, clock: Callable[[], float], after: float = 1.0) -> None:
        self.stream = stream
        self.clock = clock
        self.enabled = stream.isatty()
        self.start = clock()
        self.after = after
        self.width = 0

    def __call__(self, round_: int, coverage: float) -> None:
        if not self.enabled or self.clock() - self.start < self.after:
            return
        # Floor, so a run short of convergence never shows 100%.
        line = f"round {round_}: {math.floor(coverage * 100)}% of (node, gossip) pairs held"
        self.stream.write("\r" + line.ljust(self.width))
        self.stream.flush()
        self.width = len(line)

    def clear(self) -> None:
        """Erase the line, so what is printed next starts on a clean one."""
        if self.width:
            self.stream.write("\r" + " " * self.width + "\r")
            self.stream.flush()
            self.width = 0


def _nice_step(span: float, ticks: int = 10) -> int:
    """A tick step of 1, 2 or 5 times a power of ten giving at most ``ticks`` ticks over ``span``."""
    step = 1
    while span / step > ticks:
        for factor in (2, 5 / 2, 2):  # 1 -> 2 -> 5 -> 10 -> 20 ...
            step = round(step * factor)
            if span / step <= ticks:
                break
    return step


def coverage_svg(result: SimResult) -> str:
    """Coverage per round as an SVG picture, with the push-pull bound as a dashed vertical line.

    Round 0 is the moment the gossips are created, each held by the node that made it.
    """
    width, height = 640, 400
    left, right, top, bottom = 70, 30, 64, 56
    plot_w, plot_h = width - left - right, height - top - bottom
    bound = push_pull_bound(result.nodes)
    points = [1 / result.nodes if result.messages else 1.0, *result.coverage]
    x_max = max(len(points) - 1, math.ceil(bound) if bound is not None else 0, 1)

    def x(r: float) -> str:
        return f"{left + r / x_max * plot_w:.1f}"

    def y(f: float) -> str:
        return f"{top + (1 - f) * plot_h:.1f}"

    state = "converged" if result.converged else "did not converge"
    title = f"Coverage per round: N = {_plural(result.nodes, 'node')}, M = {_plural(result.messages, 'gossip')}"
    subtitle = (
        f"seed {result.seed}, fanout {result.fanout}, loss {result.loss:g}, push {'on' if result.push else 'off'};"
        f" {state} in {_plural(result.rounds, 'round')}"
    )
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}"'
        f' viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        f"<title>{escape(title)}</title>",
        f'<rect width="{width}" height="{height}" fill="white"/>',
        f'<text id="title" x="{width / 2:.0f}" y="24" text-anchor="middle" font-size="16">{escape(title)}</text>',
        f'<text x="{width / 2:.0f}" y="42" text-anchor="middle" fill="#555">{escape(subtitle)}</text>',
        '<g id="y-axis" stroke="#ddd">',
    ]
    for pct in range(0, 101, 25):
        out.append(f'<line x1="{left}" y1="{y(pct / 100)}" x2="{left + plot_w}" y2="{y(pct / 100)}"/>')
    out.append("</g>")
    for pct in range(0, 101, 25):
        out.append(f'<text x="{left - 6}" y="{y(pct / 100)}" text-anchor="end" dy="4">{pct}%</text>')
    step = _nice_step(x_max)
    out.append('<g id="x-axis" stroke="black">')
    for r in range(0, x_max + 1, step):
        out.append(f'<line x1="{x(r)}" y1="{top + plot_h}" x2="{x(r)}" y2="{top + plot_h + 5}"/>')
    out.append("</g>")
    for r in range(0, x_max + 1, step):
        out.append(f'<text x="{x(r)}" y="{top + plot_h + 18}" text-anchor="middle">{r}</text>')
    out += [
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="black"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="black"/>',
        f'<text id="x-label" x="{left + plot_w / 2:.0f}" y="{height - 14}" text-anchor="middle">round</text>',
        f'<text id="y-label" transform="translate(18 {top + plot_h / 2:.0f}) rotate(-90)"'
        ' text-anchor="middle">(node, gossip) pairs held</text>',
    ]
    if bound is not None:
        out += [
            f'<line id="bound" x1="{x(bound)}" y1="{top}" x2="{x(bound)}" y2="{top + plot_h}"'
            ' stroke="#c0392b" stroke-width="1.5" stroke-dasharray="6 4"/>',
        ]
        # Beside the line, low in the plot (where the curve has usually risen), on the wider side.
        right_half = bound > x_max / 2
        label_x = f"{float(x(bound)) + (-6 if right_half else 6):.1f}"
        anchor = "end" if right_half else "start"
        for dy, text in ((-24, f"push-pull bound: {bound:.2f} rounds"), (-8, "log3 N + ln ln N + 1")):
            out.append(
                f'<text x="{label_x}" y="{top + plot_h + dy}" text-anchor="{anchor}" fill="#c0392b">{text}</text>'
            )
    coords = " ".join(f"{x(r)},{y(f)}" for r, f in enumerate(points))
    out.append(f'<polyline id="coverage" points="{coords}" fill="none" stroke="#2166ac" stroke-width="2"/>')
    if len(points) <= 100:
        out.append('<g id="rounds" fill="#2166ac">')
        out += [f'<circle cx="{x(r)}" cy="{y(f)}" r="3"/>' for r, f in enumerate(points)]
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m gossip.sim",
        description="Simulate N gossip nodes in memory until every node holds every gossip.",
    )
    p.add_argument("--nodes", type=int, default=50, help="number of nodes (>= 1; default 50)")
    p.add_argument("--messages", type=int, default=10, help="gossips created at random nodes (>= 0; default 10)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    p.add_argument("--fanout", type=int, default=1, help="every node's gossip_max_peer_count: peers a new gossip is pushed to (peers probed per round with --no-push; default 1)")
    p.add_argument("--loss", type=float, default=0.0, help="probability a network message is lost (default 0)")
    p.add_argument("--max-rounds", type=int, default=1000, help="give up after this many rounds")
    p.add_argument(
        "--bootstrap",
        choices=("full", "register", "sample"),
        default="full",
        help="full: nodes start knowing each other (default); register: they join by REGISTER"
        " and HELLO first, and the membership rounds are reported as bootstrap_rounds;"
        " sample: each starts knowing a random sample of the others that fills its --max-peers"
        " (a partial view: no N^2 set-up, for large N)",
    )
    p.add_argument(
        "--max-peers",
        type=int,
        metavar="K",
        help="every node's peer cap; with --bootstrap sample, the view size (about 7/8 of K)."
        " Default: room for every node (max(1024, 2N))",
    )
    p.add_argument(
        "--active-view",
        type=int,
        default=ACTIVE_VIEW,
        metavar="SIZE",
        help=f"every node's active view: the peers it gossips with once it knows more than"
        f" --full-view-limit nodes (default {ACTIVE_VIEW})",
    )
    p.add_argument(
        "--full-view-limit",
        type=int,
        default=FULL_VIEW_LIMIT,
        metavar="N",
        help=f"every node keeps and gossips with every node it knows up to this many; past it, with"
        f" its active view only (default {FULL_VIEW_LIMIT})",
    )
    p.add_argument(
        "--crash",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="churn: this fraction of the nodes crashes at once after gossip round --crash-at;"
        " the run then waits for the live nodes only (default 0)",
    )
    p.add_argument("--crash-at", type=int, default=2, metavar="ROUND", help="the round after which --crash strikes (default 2)")
    p.add_argument(
        "--join",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="churn: this many new nodes (a fraction of --nodes, up to 1) join after gossip round"
        " --join-at, each by REGISTER with a random live node; the run then waits for them too (default 0)",
    )
    p.add_argument("--join-at", type=int, default=2, metavar="ROUND", help="the round after which --join comes (default 2)")
    p.add_argument(
        "--stats",
        action="store_true",
        help="also print to stderr the CPU seconds, wall seconds and peak RSS of the run"
        " (they vary from run to run; stdout stays the same for the same seed)",
    )
    p.add_argument(
        "--no-push",
        dest="push",
        action="store_false",
        help="no eager push: new gossips spread by the rounds' anti-entropy alone",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--plot",
        metavar="FILE.svg",
        help="write the coverage per round, against the push-pull bound, as an SVG picture",
    )
    return p


def _summary(result: SimResult) -> str:
    state = "converged" if result.converged else "did NOT converge"
    membership = f" (membership took {_plural(result.bootstrap_rounds, 'round')})" if result.bootstrap_rounds else ""
    churn = []
    if result.crashed:
        churn.append(f"{_plural(result.crashed, 'node')} crashed ({_plural(result.lost, 'gossip')} lost with them)")
    if result.joined:
        churn.append(f"{_plural(result.joined, 'node')} joined")
    if churn:
        membership += " after " + " and ".join(churn)
    floor = f", {result.over_floor:.2f}x the floor" if result.floor else ""
    return (
        f"{_plural(result.nodes, 'node')}, {_plural(result.messages, 'gossip')}: {state}"
        f" in {_plural(result.rounds, 'round')}{membership}; {_plural(result.requests, 'request')}"
        f" ({_plural(result.pushes, 'push', 'pushes')}), {_human_bytes(result.bytes)}"
        f" ({_human_bytes(round(result.bytes_per_node_round))} per node per round{floor}),"
        f" {_plural(result.dropped, 'network message')} lost"
    )


def _resources(wall_start: float, cpu_start: float) -> str:
    """``cpu 12.3 s, wall 13.0 s, peak RSS 412 MiB``: what this process used since the starts."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    return (
        f"cpu {time.process_time() - cpu_start:.1f} s, wall {time.perf_counter() - wall_start:.1f} s,"
        f" peak RSS {peak / 2**20:.0f} MiB"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.nodes < 1 or args.messages < 0 or args.fanout < 1 or args.max_rounds < 1:
        parser.error("--nodes and --fanout must be >= 1, --messages >= 0, --max-rounds >= 1")
    if not 0.0 <= args.crash < 1.0 or args.crash_at < 1:
        parser.error("--crash must be a fraction from 0 up to (not including) 1, --crash-at >= 1")
    if not 0.0 <= args.join <= 1.0 or args.join_at < 1:
        parser.error("--join must be a fraction from 0 to 1, --join-at >= 1")
    if args.max_peers is not None and args.max_peers < 2:
        parser.error("--max-peers must be >= 2")
    if not 1 <= args.active_view <= 64 or args.full_view_limit < 1:
        parser.error("--active-view must be from 1 to 64, --full-view-limit >= 1")
    if not 0.0 <= args.loss < 1.0:
        parser.error("--loss must be a probability from 0 up to (not including) 1")
    plot = None
    if args.plot is not None:
        try:  # before the run, so a bad path costs no waiting
            plot = open(args.plot, "w", encoding="utf-8")
        except OSError as exc:
            parser.error(f"--plot: cannot write {args.plot}: {exc.strerror}")
    progress = _Progress(sys.stderr, time.monotonic)
    # Only when asked: the clocks read here are not the progress line's.
    wall_start, cpu_start = (time.perf_counter(), time.process_time()) if args.stats else (0.0, 0.0)
    try:
        result = simulate(
            nodes=args.nodes,
            messages=args.messages,
            seed=args.seed,
            fanout=args.fanout,
            loss=args.loss,
            max_rounds=args.max_rounds,
            bootstrap=args.bootstrap,
            push=args.push,
            max_peers=args.max_peers,
            active_view=args.active_view,
            full_view_limit=args.full_view_limit,
            crash=args.crash,
            crash_at=args.crash_at,
            join=args.join,
            join_at=args.join_at,
            progress=progress,
        )
        if plot is not None:
            plot.write(coverage_svg(result))
    except KeyboardInterrupt:
        progress.clear()
        if plot is not None:  # opened for this run, and empty: leave nothing behind
            plot.close()
            os.unlink(args.plot)
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        progress.clear()
        if plot is not None:
            plot.close()
    if args.stats:
        print(_resources(wall_start, cpu_start), file=sys.stderr)
    if args.json:
        print(json.dumps(result.to_dict(), sort_keys=True))
    else:
        print(_summary(result))
        if args.plot is not None:
            print(f"coverage per round: {args.plot}")
    return 0 if result.converged else 1


if __name__ == "__main__":  # pragma: no cover
    code = main()
    # The process ends here. What the run built is garbage now (at 1,000 nodes that know each
    # other, millions of objects): frozen, no last collection walks and frees it (about 1 s of
    # CPU), and the OS takes the memory back at once.
    gc.freeze()
    raise SystemExit(code)
