"""Drive GossipNodes by hand, without sockets: pairs, meshes and a fake clock."""

from __future__ import annotations

import json
import math
import random
import uuid
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from gossip.auth import derive_key
from gossip.errors import GossipError
from gossip.model import Network, NodeConfig, PeerView, Quota, Snapshot
from gossip.node import GossipNode

KEYS = {name: derive_key(name, f"password-of-{name}") for name in ("default", "other", "third")}
T0 = 1_790_000_000.0
#: Tests create thousands of gossips at one instant: no create rate limit but for the quota's own tests.
UNLIMITED = Quota(creates_per_minute=2**52)


def make_config(index: int, networks: tuple[str, ...] = ("default",), *, keys: dict[str, bytes] | None = None, timer: float = 1.0, max_peers: int = 3) -> NodeConfig:
    keys = keys or KEYS
    return NodeConfig(
        node_guid=str(uuid.UUID(int=random.Random(index).getrandbits(128), version=4)),
        node_name=f"node-{index}",
        networks=tuple(Network(name=n, key=keys[n], quota=UNLIMITED) for n in networks),
        ip="127.0.0.1",
        port=9000 + index,
        gossip_timer=timer,
        gossip_max_peer_count=max_peers,
    )


def make_node(index: int, networks: tuple[str, ...] = ("default",), now: float = T0, **kw) -> GossipNode:  # type: ignore[no-untyped-def]
    keys = kw.pop("keys", None)
    config = make_config(index, networks, keys=keys, timer=kw.pop("timer", 1.0), max_peers=kw.pop("max_peers", 3))
    return GossipNode(config, rng=random.Random(index), now=now, **kw)


@dataclass
class Mesh:
    """Nodes that reach each other by address; deliver() pumps requests until quiet."""

    nodes: list[GossipNode]
    now: float = T0
    down: set[int] = field(default_factory=set)
    requests: int = 0
    bytes: int = 0
    #: Gossip bodies received in PUSH requests and TELL_ME_MORE answers.
    bodies: int = 0
    log: list[tuple[str, str]] = field(default_factory=list)

    def by_address(self, address: tuple[str, int]) -> GossipNode | None:
        for node in self.nodes:
            if (node.config.ip, node.config.port) == address and node.config.port not in self.down:
                return node
        return None

    def deliver(self, limit: int = 10_000) -> int:
        """Send every queued request, feed the answers back, repeat until quiet."""
        sent = 0
        while sent < limit:
            batch = [(n, o) for n in self.nodes if n.config.port not in self.down for o in n.outbox()]
            if not batch:
                if self._release_lingering_pushes():
                    continue
                return sent
            for sender, out in batch:
                sent += 1
                self.requests += 1
                self.bytes += len(out.data)
                self.log.append((sender.config.node_name, out.verb))
                target = self.by_address(out.address)
                if target is None:
                    sender.delivery_failed(out.request_id, self.now, "unreachable", None)
                    continue
                try:
                    answer = target.handle_request(out.data, self.now)
                except GossipError as exc:
                    sender.delivery_failed(out.request_id, self.now, str(exc), exc.status_hint)
                    continue
                self.bytes += len(answer)
                if out.verb in ("push", "tell_me_more"):
                    carrier = out.data if out.verb == "push" else answer
                    self.bodies += len(json.loads(carrier)["body"]["gossips"])
                sender.receive_response(out.request_id, answer, self.now)
        raise AssertionError("delivery did not settle")

    def _release_lingering_pushes(self) -> bool:
        """Let the pushes held back by their linger leave, the clock jumping to when they may
        (what a runner does by sleeping until next_deadline()), without starting a round.
        Reaches into the node on purpose: "deliver" means every push the last calls set off."""
        live = [n for n in self.nodes if n.config.port not in self.down]
        due = min((net.eager.due() for n in live for net in n._nets.values()), default=math.inf)
        if due == math.inf:
            return False
        self.now = max(self.now, due)
        for node in live:
            for net in node._nets.values():
                for peer in net.eager.ready(self.now):
                    node._push_next(net, peer, self.now)
        return True

    def round(self, seconds: float = 1.0) -> None:
        self.now += seconds
        for node in self.nodes:
            if node.config.port not in self.down:
                node.tick(self.now)
        self.deliver()

    def join_all(self) -> None:
        """Every node registers with node 0, then rounds until everybody knows everybody."""
        for node in self.nodes[1:]:
            node.register(self.nodes[0].config.ip, self.nodes[0].config.port, self.now)
        self.deliver()
        for _ in range(30):
            if all(n.peer_count() == len(self.nodes) - 1 for n in self.nodes):
                return
            self.round()
        raise AssertionError("membership did not converge in 30 rounds")


def full_mesh(count: int, *, max_peers: int = 3, **kw) -> Mesh:  # type: ignore[no-untyped-def]
    """Nodes 1..``count`` that start knowing each other, as after a bootstrap."""
    configs = [make_config(i, max_peers=max_peers) for i in range(1, count + 1)]
    views = [PeerView(peer=c.self_peer("default")) for c in configs]
    return Mesh(
        [
            GossipNode(c, rng=random.Random(i), now=T0, snapshot=Snapshot(peers={"default": views[: i - 1] + views[i:]}), **kw)
            for i, c in enumerate(configs, 1)
        ]
    )


def connected(views: Mapping[str, Iterable[str]]) -> bool:
    """Whether the nodes (keys) form one component when each links to the peers it names
    (either way; names that are not keys, such as crashed nodes, are left out)."""
    links: dict[str, set[str]] = {g: set() for g in views}
    for a, peers in views.items():
        for b in peers:
            if b in links:
                links[a].add(b)
                links[b].add(a)
    start = next(iter(views))
    seen, queue = {start}, deque([start])
    while queue:
        for other in links[queue.popleft()] - seen:
            seen.add(other)
            queue.append(other)
    return len(seen) == len(views)
