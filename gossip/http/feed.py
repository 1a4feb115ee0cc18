"""The change feed's server side: how far it is written, waiting for more, and stream slots.

The runner calls :meth:`Feed.advance` once a batch of new gossips is on disk; readers (the
paged listing, the streams) show nothing past :attr:`Feed.committed`, so a client never sees a
cursor that a crash or a failed write could take back. A stream sleeps in :meth:`Feed.wait`
until a commit moves the feed, the keep-alive interval passes, or the node stops: no polling.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Callable

from ..errors import ErrorCode, GossipError

__all__ = ["Feed", "KEEPALIVE", "MAX_STREAMS", "MAX_STREAMS_PER_CLIENT"]

#: Seconds between keep-alive comments on an idle stream.
KEEPALIVE = 15.0
#: Streams open at once, in all and from one client address. Each holds a trusted connection
#: (never evicted) for as long as it lasts: bounded well below the server's connection cap,
#: so streams can never take the capacity the node keeps for its peers.
MAX_STREAMS = 64
MAX_STREAMS_PER_CLIENT = 8


class Feed:
    """What is written of the change feed, and the streams that follow it (one event loop).

    Args:
        committed: the highest cursor already on disk (the node's, at start).
        keepalive: seconds between keep-alive comments on an idle stream.
        max_streams: most streams open at once.
        max_per_client: most streams open at once from one client address.
    """

    def __init__(
        self,
        committed: int,
        *,
        keepalive: float = KEEPALIVE,
        max_streams: int = MAX_STREAMS,
        max_per_client: int = MAX_STREAMS_PER_CLIENT,
    ) -> None:
        #: The highest cursor on disk: readers show nothing beyond it.
        self.committed = committed
        self.keepalive = keepalive
        self.max_streams = max_streams
        self.max_per_client = max_per_client
        #: True once the node stops: streams end.
        self.closed = False
        self._waiters: set[asyncio.Future[None]] = set()
        self._streams: Counter[str] = Counter()

    @property
    def streams(self) -> int:
        """Streams open now."""
        return sum(self._streams.values())

    def advance(self, cursor: int) -> None:
        """Gossips up to ``cursor`` are on disk: wake the streams."""
        if cursor > self.committed:
            self.committed = cursor
            self._wake()

    def close(self) -> None:
        """The node stops: every stream ends (its client resumes elsewhere or later)."""
        self.closed = True
        self._wake()

    async def wait(self, after: int, timeout: float) -> bool:
        """Wait until the feed passes ``after`` or the node stops (True), or ``timeout``
        seconds pass (False)."""
        if self.committed > after or self.closed:
            return True
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        try:
            await asyncio.wait_for(waiter, timeout)
            return True
        except TimeoutError:
            return False
        finally:
            self._waiters.discard(waiter)

    def claim_stream(self, client: str) -> Callable[[], None]:
        """Take one of the stream slots for ``client`` (an address); returns the function
        that gives it back (calling it again does nothing).

        Raises:
            GossipError: 429 ``too_many_streams``: too many streams are open, from that
                address or in all.
        """
        if self._streams[client] >= self.max_per_client:
            raise _too_many(f"{self.max_per_client} streams are open from {client[:64]} already")
        if self.streams >= self.max_streams:
            raise _too_many(f"{self.max_streams} streams are open already")
        self._streams[client] += 1
        released = False

        def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            self._streams[client] -= 1
            if self._streams[client] <= 0:
                del self._streams[client]

        return release

    def _wake(self) -> None:
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()


def _too_many(text: str) -> GossipError:
    return GossipError(f"{text}; close one, or try again later", status_hint=429, code=ErrorCode.TOO_MANY_STREAMS)
