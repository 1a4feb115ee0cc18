"""In-memory transport: a scripted network on a virtual clock, for tests and the simulator.

Every message still travels as bytes (the node encodes and decodes JSON as over HTTP), and
the network counts requests and bytes. It can lose messages at random (seeded), delay a
link, and partition nodes into groups that cannot reach each other.

Two ways to use it: :meth:`MemoryTransport.request` delivers synchronously (what the
transport contract tests and simple embeddings use), and :meth:`MemoryNetwork.send` with
:meth:`MemoryNetwork.run_until` delivers on the virtual clock after each link's latency
(what the simulator uses).
"""

from __future__ import annotations

import heapq
import itertools
import random
from dataclasses import dataclass
from typing import Callable

from ..errors import GossipError, TransportError

__all__ = ["MemoryNetwork", "MemoryTransport", "NetworkStats"]

Address = tuple[str, int]
Handler = Callable[[bytes], bytes]
#: Called with (answer, None) or (None, error) when a scheduled request completes.
ReplyCallback = Callable[[bytes | None, TransportError | None], None]


@dataclass(slots=True)
class NetworkStats:
    """Counters of what crossed the network; ``bytes`` sums request and answer bodies."""

    requests: int = 0
    bytes: int = 0
    dropped: int = 0
    failed: int = 0


class MemoryNetwork:
    """Addresses to handlers, plus loss, latency and partitions."""

    def __init__(self, *, rng: random.Random | None = None, loss: float = 0.0, latency: float = 0.0) -> None:
        if not 0.0 <= loss < 1.0:
            raise ValueError("loss must be a probability in [0, 1)")
        self.rng = rng or random.Random(0)
        self.loss = loss
        self.latency = latency
        self.stats = NetworkStats()
        self.now = 0.0
        self._handlers: dict[Address, Handler] = {}
        self._group: dict[Address, int] = {}
        self._delays: dict[tuple[Address, Address], float] = {}
        self._queue: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._ports = itertools.count(40000)

    # -- topology ---------------------------------------------------------------
    def attach(self, address: Address, handler: Handler) -> Address:
        if address[1] == 0:
            address = (address[0], next(self._ports))
            while address in self._handlers:
                address = (address[0], next(self._ports))
        if address in self._handlers:
            raise TransportError(f"address {address[0]}:{address[1]} is already in use")
        self._handlers[address] = handler
        return address

    def detach(self, address: Address) -> None:
        self._handlers.pop(address, None)

    def partition(self, *groups: list[Address] | set[Address] | tuple[Address, ...]) -> None:
        """Cut the network: addresses in different groups cannot reach each other.

        Addresses in no group form one more group of their own.
        """
        self._group = {addr: i + 1 for i, group in enumerate(groups) for addr in group}

    def heal(self) -> None:
        self._group = {}

    def set_delay(self, a: Address, b: Address, seconds: float) -> None:
        """Extra one-way delay on the link between ``a`` and ``b`` (both directions)."""
        self._delays[(a, b)] = self._delays[(b, a)] = seconds

    def reachable(self, src: Address | None, dst: Address) -> bool:
        if dst not in self._handlers:
            return False
        return src is None or self._group.get(src, 0) == self._group.get(dst, 0)

    # -- delivery -------------------------------------------------------------
    def _lost(self) -> bool:
        if self.loss and self.rng.random() < self.loss:
            self.stats.dropped += 1
            return True
        return False

    def _handle(self, dst: Address, data: bytes) -> bytes:
        """Run the handler; a GossipError becomes an error answer with its status."""
        try:
            return self._handlers[dst](data)
        except GossipError as exc:
            raise TransportError(f"refused by {dst[0]}:{dst[1]}: {exc}", status=exc.status_hint) from None

    def deliver(self, src: Address | None, dst: Address, data: bytes) -> bytes:
        """Deliver one request now and return the answer, or raise TransportError."""
        self.stats.requests += 1
        self.stats.bytes += len(data)
        if not self.reachable(src, dst):
            self.stats.failed += 1
            raise TransportError(f"{dst[0]}:{dst[1]} is unreachable")
        if self._lost():
            raise TransportError(f"request to {dst[0]}:{dst[1]} was lost")
        answer = self._handle(dst, data)
        self.stats.bytes += len(answer)
        if self._lost():
            raise TransportError(f"answer from {dst[0]}:{dst[1]} was lost")
        return answer

    def _link_delay(self, src: Address, dst: Address) -> float:
        return self.latency + self._delays.get((src, dst), 0.0)

    def schedule(self, at: float, action: Callable[[], None]) -> None:
        heapq.heappush(self._queue, (at, next(self._seq), action))

    def send(self, src: Address, dst: Address, data: bytes, on_reply: ReplyCallback) -> None:
        """Deliver a request after the link's latency; its answer comes back after as long."""
        delay = self._link_delay(src, dst)
        self.stats.requests += 1
        self.stats.bytes += len(data)

        def arrive() -> None:
            if not self.reachable(src, dst):
                self.stats.failed += 1
                on_reply(None, TransportError(f"{dst[0]}:{dst[1]} is unreachable"))
                return
            if self._lost():
                on_reply(None, TransportError(f"request to {dst[0]}:{dst[1]} was lost"))
                return
            try:
                answer = self._handle(dst, data)
            except TransportError as exc:
                error = exc
                self.schedule(self.now + delay, lambda: on_reply(None, error))
                return
            self.stats.bytes += len(answer)
            lost = self._lost() or not self.reachable(src, dst)
            if lost:
                self.schedule(self.now + delay, lambda: on_reply(None, TransportError("answer was lost")))
            else:
                self.schedule(self.now + delay, lambda: on_reply(answer, None))

        self.schedule(self.now + delay, arrive)

    def run_until(self, t: float) -> None:
        """Deliver everything due at or before virtual time ``t``; the clock ends at ``t``."""
        if t < self.now:
            raise ValueError(f"time can't go backwards ({t} < {self.now})")
        while self._queue and self._queue[0][0] <= t:
            at, _, action = heapq.heappop(self._queue)
            self.now = max(self.now, at)
            action()
        self.now = t

    def next_due(self) -> float | None:
        return self._queue[0][0] if self._queue else None

    def transport(self, ip: str = "127.0.0.1") -> MemoryTransport:
        return MemoryTransport(self, ip)


class MemoryTransport:
    """One endpoint on a :class:`MemoryNetwork`; implements the Transport protocol."""

    def __init__(self, network: MemoryNetwork, ip: str = "127.0.0.1") -> None:
        self.network = network
        self.ip = ip
        self.address: Address | None = None

    def serve(self, address: Address, handler: Handler) -> Address:
        if self.address is not None:
            raise TransportError("this transport is already serving")
        self.address = self.network.attach(address, handler)
        return self.address

    def request(self, address: Address, data: bytes, *, timeout: float = 5.0) -> bytes:
        return self.network.deliver(self.address, address, data)

    def close(self) -> None:
        if self.address is not None:
            self.network.detach(self.address)
            self.address = None
