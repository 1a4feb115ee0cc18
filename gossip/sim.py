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
import heapq
import math
import json
import random
import uuid
from dataclasses import dataclass, field
from typing import Any, Sequence

from .auth import derive_key
from .errors import TransportError
from .model import Network, NodeConfig, PeerView, Quota
from .node import GossipNode
from .storage import MemoryStorage, persist
from .transport.memory import MemoryNetwork

__all__ = ["Simulator", "SimResult", "main"]

#: Virtual time the simulation starts at (2026-01-01T00:00:00Z), so gossip dates look real.
EPOCH = 1_767_225_600.0
NETWORK = "sim"
#: The simulator creates its gossips in bursts at one instant: the create rate is not what it studies.
SIM_QUOTA = Quota(creates_per_minute=2**52)


@dataclass(slots=True)
class _SimNode:
    index: int
    address: tuple[str, int]
    config: NodeConfig
    storage: MemoryStorage
    node: GossipNode
    up: bool = True
    seed: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class SimResult:
    """What a run measured. ``rounds`` counts from the first gossip created to convergence.

    ``requests`` counts every request, ``pushes`` the PUSH requests among them.
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
            :meth:`bootstrap` joins them by REGISTER and HELLO.
        push: eager push on every node; False measures the rounds' anti-entropy alone.
    """

    nodes: int
    seed: int = 0
    fanout: int = 1
    loss: float = 0.0
    timer: float = 1.0
    bootstrap_mode: str = "full"
    push: bool = True
    rng: random.Random = field(init=False)
    network: MemoryNetwork = field(init=False)
    members: list[_SimNode] = field(init=False)
    now: float = field(init=False)
    round: int = field(init=False, default=0)
    created: dict[str, int] = field(init=False, default_factory=dict)
    pushes: int = field(init=False, default=0)
    #: Within step(): the nodes' deadlines, earliest first (entries may be stale).
    _due: list[tuple[float, int]] | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        if self.nodes < 1:
            raise ValueError("a simulation needs at least one node")
        self.rng = random.Random(self.seed)
        self.network = MemoryNetwork(
            rng=random.Random(self.rng.getrandbits(64)), loss=self.loss, latency=self.timer / 100
        )
        self.now = EPOCH
        self.network.now = EPOCH
        if self.bootstrap_mode not in ("full", "register"):
            raise ValueError("bootstrap_mode must be 'full' or 'register'")
        key = derive_key(NETWORK, f"simulation-{self.seed}")
        self.members = []
        configs = []
        for i in range(self.nodes):
            guid = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
            # Loopback addresses: virtual here, but never anything outside this machine.
            ip = f"127.{(i + 1) >> 16 & 255}.{(i + 1) >> 8 & 255}.{(i + 1) & 255}"
            config = NodeConfig(
                node_guid=guid,
                node_name=f"node-{i}",
                networks=(Network(name=NETWORK, key=key, quota=SIM_QUOTA),),
                ip=ip,
                port=8470,
                gossip_timer=self.timer,
                gossip_max_peer_count=self.fanout,
            )
            configs.append(config)
        views = [PeerView(peer=c.self_peer(NETWORK)) for c in configs]
        for i, config in enumerate(configs):
            storage = MemoryStorage()
            if self.bootstrap_mode == "full":
                for view in views[:i] + views[i + 1 :]:
                    storage.save_peer(view)
            seed = self.rng.getrandbits(64)
            node = GossipNode(config, rng=random.Random(seed), now=self.now, snapshot=storage.load(), push=self.push)
            address = (config.ip, config.port)
            member = _SimNode(index=i, address=address, config=config, storage=storage, node=node, seed=seed)
            self.members.append(member)
            self.network.attach(address, self._handler(member))

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
        persist(member.storage, node.events())
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
        due = self._due = [(m.node.next_deadline(), m.index) for m in self.members if m.up]
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

    def bootstrap(self, max_rounds: int = 200) -> int:
        """Each node registers with a random earlier one; run until all know all.

        Returns:
            The rounds it took (0 when every node already knows every other).
        """
        if self.membership_converged():
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
        want = self.nodes - 1
        return all(m.node.peer_count() == want for m in self.members if m.up)

    def create(self, count: int) -> list[str]:
        """Create ``count`` gossips at random live nodes."""
        live = [m for m in self.members if m.up]
        guids = []
        for i in range(count):
            member = live[self.rng.randrange(len(live))]
            gossip = member.node.create_gossip(f"gossip {len(self.created)} from {member.config.node_name}", self.now)
            self.created[gossip.guid] = member.index
            guids.append(gossip.guid)
            self._flush(member)
        return guids

    def converged(self) -> bool:
        total = len(self.created)
        return all(m.node.gossip_count() == total for m in self.members if m.up)

    def run(self, max_rounds: int = 1000) -> int:
        """Step until every live node holds every gossip. Returns the rounds taken."""
        start = self.round
        while not self.converged() and self.round - start < max_rounds:
            self.step()
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
            member.config, rng=random.Random(member.seed), now=self.now, snapshot=member.storage.load(), push=self.push
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
) -> SimResult:
    """Bootstrap ``nodes`` nodes, create ``messages`` gossips, run to convergence."""
    sim = Simulator(nodes=nodes, seed=seed, fanout=fanout, loss=loss, bootstrap_mode=bootstrap, push=push)
    bootstrap_rounds = sim.bootstrap(max_rounds=max_rounds)
    sim.create(messages)
    rounds = sim.run(max_rounds=max_rounds)
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
    )


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m gossip.sim",
        description="Simulate N gossip nodes in memory until every node holds every gossip.",
    )
    p.add_argument("--nodes", type=int, required=True, help="number of nodes (>= 1)")
    p.add_argument("--messages", type=int, required=True, help="gossips created at random nodes (>= 0)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random choice (default 0)")
    p.add_argument("--fanout", type=int, default=1, help="every node's gossip_max_peer_count: peers a new gossip is pushed to (peers probed per round with --no-push; default 1)")
    p.add_argument("--loss", type=float, default=0.0, help="probability a message is lost (default 0)")
    p.add_argument("--max-rounds", type=int, default=1000, help="give up after this many rounds")
    p.add_argument(
        "--bootstrap",
        choices=("full", "register"),
        default="full",
        help="full: nodes start knowing each other (default); register: they join by REGISTER"
        " and HELLO first, and the membership rounds are reported as bootstrap_rounds",
    )
    p.add_argument(
        "--no-push",
        dest="push",
        action="store_false",
        help="no eager push: new gossips spread by the rounds' anti-entropy alone",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.nodes < 1 or args.messages < 0 or args.fanout < 1 or args.max_rounds < 1:
        parser.error("--nodes and --fanout must be >= 1, --messages >= 0, --max-rounds >= 1")
    if not 0.0 <= args.loss < 1.0:
        parser.error("--loss must be a probability from 0 up to (not including) 1")
    result = simulate(
        nodes=args.nodes,
        messages=args.messages,
        seed=args.seed,
        fanout=args.fanout,
        loss=args.loss,
        max_rounds=args.max_rounds,
        bootstrap=args.bootstrap,
        push=args.push,
    )
    if args.json:
        print(json.dumps(result.to_dict(), sort_keys=True))
    else:
        state = "converged" if result.converged else "did NOT converge"
        print(
            f"{result.nodes} nodes, {result.messages} gossips: {state} in {result.rounds} rounds"
            f" (membership took {result.bootstrap_rounds}); {result.requests} requests"
            f" ({result.pushes} pushes), {result.bytes} bytes, {result.dropped} messages lost"
        )
    return 0 if result.converged else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
