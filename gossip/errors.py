"""Errors raised from this package."""

from __future__ import annotations

__all__ = [
    "GossipError",
    "LocalProtocolError",
    "RemoteProtocolError",
    "AuthenticationError",
    "MessageTooLarge",
    "TransportError",
    "StorageError",
    "StorageInUse",
    "ConfigError",
]


class GossipError(Exception):
    """Root of every error this package raises on purpose.

    ``status_hint`` is the HTTP status a transport should answer with when the
    error was caused by an incoming request, so that transports can map errors
    to responses without knowing any protocol rules.
    """

    status_hint: int = 500

    def __init__(self, message: str, *, status_hint: int | None = None) -> None:
        super().__init__(message)
        if status_hint is not None:
            self.status_hint = status_hint


class LocalProtocolError(GossipError, ValueError):
    """The caller misused the API or passed an invalid value."""

    status_hint = 400


class RemoteProtocolError(GossipError):
    """A peer sent something malformed or not allowed; nothing was changed."""

    status_hint = 400


class AuthenticationError(RemoteProtocolError):
    """A message failed authentication: wrong key, stale timestamp or replayed nonce."""

    status_hint = 401


class MessageTooLarge(RemoteProtocolError):
    """A message exceeded a size limit."""

    status_hint = 413


class TransportError(GossipError):
    """A request could not be delivered or answered (unreachable, timeout, refused)."""

    status_hint = 502

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        #: HTTP-like status of the remote's error answer, or None when nothing answered.
        self.status = status


class StorageError(GossipError):
    """A store could not be read or written; the message names the file and the line.

    Answered as 507 (Insufficient Storage): nothing was acknowledged.
    """

    status_hint = 507


class StorageInUse(StorageError):
    """Another process (or another open store in this one) owns the storage directory."""

    def __init__(self, message: str, *, pid: int | None = None) -> None:
        super().__init__(message)
        #: The owner's process id, when it could be read.
        self.pid = pid


class ConfigError(GossipError, ValueError):
    """A node configuration is missing, invalid or unreadable."""

    status_hint = 400
