"""Transports carry opaque request bytes to an address and bring the answer back.

A transport knows nothing of the protocol: the node's handler turns request bytes into
answer bytes, or raises a :class:`~gossip.errors.GossipError` whose ``status_hint`` the
transport sends back as an error (HTTP status, or the in-memory equivalent). The client
side raises :class:`~gossip.errors.TransportError` with ``status`` set to that status, or
None when nothing answered (unreachable, timed out, dropped).

Two implementations pass one contract suite (``tests/test_transport_contract.py``): the
in-memory twin here, and :class:`gossip.http.HttpTransport` (HTTP/1.1 over pooled
persistent connections, which also offers ``*_async`` twins of these methods for callers
on its event loop).
"""

from __future__ import annotations

from typing import Callable, Protocol

from .memory import MemoryNetwork, MemoryTransport

__all__ = ["Address", "Handler", "Transport", "MemoryNetwork", "MemoryTransport"]

Address = tuple[str, int]
Handler = Callable[[bytes], bytes]


class Transport(Protocol):
    """What the runner needs from a transport."""

    def serve(self, address: Address, handler: Handler) -> Address:
        """Start answering requests sent to ``address`` (port 0: pick a free one).

        Returns:
            The address actually bound.
        """

    def request(self, address: Address, data: bytes, *, timeout: float) -> bytes:
        """Send one request and wait for its answer.

        Raises:
            TransportError: no answer (``status`` None) or an error answer (``status`` set).
        """

    def close(self) -> None:
        """Stop serving and release everything; idempotent."""
