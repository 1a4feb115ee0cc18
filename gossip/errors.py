"""Errors raised from this package."""

from __future__ import annotations

from enum import StrEnum

__all__ = [
    "ErrorCode",
    "GossipError",
    "LocalProtocolError",
    "RemoteProtocolError",
    "AuthenticationError",
    "MessageTooLarge",
    "TransportError",
    "AnswerTooLarge",
    "StorageError",
    "StorageInUse",
    "ConfigError",
    "excerpt",
    "clip",
    "EXCERPT_CHARS",
]

#: Most characters of a value from outside (a peer, a client, a file) that an error message
#: or a log line quotes; the rest is only counted.
EXCERPT_CHARS = 100


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """``repr(value)`` for an error message, of at most about ``limit`` characters of the value
    and its full length: ``'aaaa…' (1048576 characters)``. A megabyte of hostile text must not
    become a megabyte of error body and log, twice."""
    if isinstance(value, str):
        if len(value) <= limit:
            return repr(value)
        return f"{value[:limit]!r}… ({len(value)} characters)"
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def clip(text: str, limit: int = 4 * EXCERPT_CHARS) -> str:
    """A whole message cut to ``limit`` characters, saying how long it was (for the last line
    of defence: an error body or a log line built from text that was not excerpted)."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


class ErrorCode(StrEnum):
    """The ``code`` of every error answer a node sends: stable, for programs to switch on.

    The one list of them (docs/http-api.md shows it as a table). Values are wire names: add
    members, never rename or reuse one. A client that meets a code it does not know treats
    the answer by its HTTP status alone.
    """

    #: 400, 411: malformed request (JSON, types, values, framing, no Content-Length).
    BAD_REQUEST = "bad_request"
    #: 401: not signed with the network's key (no or malformed signature, wrong password).
    BAD_MAC = "bad_mac"
    #: 401: this node is not on the network named; 403: signed for another network than asked.
    WRONG_NETWORK = "wrong_network"
    #: 401: the request's timestamp is outside the window around this node's clock.
    CLOCK_SKEW = "clock_skew"
    #: 401: the request's nonce was seen before (a replay).
    REPLAYED = "replayed"
    #: 403: ``POST /v1/register``: the other node refused; ``cause`` holds its code.
    PEER_REFUSED = "peer_refused"
    #: 404: no such path.
    NOT_FOUND = "not_found"
    #: 405: the path exists, not with this method.
    METHOD_NOT_ALLOWED = "method_not_allowed"
    #: 408: the request body did not arrive in time.
    TIMEOUT = "timeout"
    #: 413, 431: body or head over its size limit.
    TOO_LARGE = "too_large"
    #: 429: a per-network limit (rate or size) was reached; try later.
    QUOTA = "quota"
    #: 500: a bug; the node logged the details.
    INTERNAL = "internal"
    #: 502: ``POST /v1/register``: the other node did not answer.
    PEER_UNREACHABLE = "peer_unreachable"
    #: 503: the node is starting, busy, or its peer list is full; try again shortly.
    UNAVAILABLE = "unavailable"
    #: 507: the change could not be written to disk; nothing was kept.
    STORAGE_FAILED = "storage_failed"
    #: 404: ``/v1/keys``: no key of that id (or password) is installed on the network.
    UNKNOWN_KEY = "unknown_key"
    #: 409: ``/v1/keys``: the primary key cannot be removed; ``use`` another one first.
    PRIMARY_KEY = "primary_key"
    #: 409: ``/v1/keys``: the network's last key cannot be removed.
    LAST_KEY = "last_key"
    #: 409: ``/v1/keys``: a known node holds no other key yet (removing it would cut that
    #: node off), or the ring is full.
    KEY_IN_USE = "key_in_use"
    #: 404: no peer of that name or guid (``force-leave``).
    UNKNOWN_PEER = "unknown_peer"
    #: 409: that name belongs to several peers; the ``error`` lists their guids.
    AMBIGUOUS_PEER = "ambiguous_peer"
    #: 409: ``force-leave`` of a peer that is not dead (alive or suspect).
    PEER_NOT_DEAD = "peer_not_dead"
    #: 429: ``GET /v1/gossip/stream``: too many streams open (from this address, or in all).
    TOO_MANY_STREAMS = "too_many_streams"
    #: 403: ``POST /v1/leave`` from another machine: stopping a node is for its own host.
    LOCAL_ONLY = "local_only"

    @classmethod
    def for_status(cls, status: int) -> ErrorCode:
        """The code of an error that names none: by its HTTP status."""
        code = _BY_STATUS.get(status)
        if code is not None:
            return code
        return cls.BAD_REQUEST if 400 <= status < 500 else cls.INTERNAL

    @classmethod
    def from_wire(cls, value: object) -> ErrorCode | None:
        """The code an error body carries; None when it has none or one this version does not know."""
        try:
            return cls(value) if isinstance(value, str) else None
        except ValueError:
            return None


#: The code of each status, for errors that name none (several codes share 401 and 403).
_BY_STATUS = {
    400: ErrorCode.BAD_REQUEST,
    401: ErrorCode.BAD_MAC,
    403: ErrorCode.WRONG_NETWORK,
    404: ErrorCode.NOT_FOUND,
    405: ErrorCode.METHOD_NOT_ALLOWED,
    408: ErrorCode.TIMEOUT,
    411: ErrorCode.BAD_REQUEST,
    413: ErrorCode.TOO_LARGE,
    429: ErrorCode.QUOTA,
    431: ErrorCode.TOO_LARGE,
    500: ErrorCode.INTERNAL,
    502: ErrorCode.PEER_UNREACHABLE,
    503: ErrorCode.UNAVAILABLE,
    507: ErrorCode.STORAGE_FAILED,
}


class GossipError(Exception):
    """Root of every error this package raises on purpose.

    ``status_hint`` is the HTTP status a transport should answer with when the
    error was caused by an incoming request, so that transports can map errors
    to responses without knowing any protocol rules; :attr:`code` is the
    :class:`ErrorCode` that answer carries.
    """

    status_hint: int = 500
    _code: ErrorCode | None = None

    def __init__(self, message: str, *, status_hint: int | None = None, code: ErrorCode | None = None) -> None:
        super().__init__(message)
        if status_hint is not None:
            self.status_hint = status_hint
        if code is not None:
            self._code = code

    @property
    def code(self) -> ErrorCode:
        """The error answer's code: the one given, else the one of :attr:`status_hint`."""
        return self._code if self._code is not None else ErrorCode.for_status(self.status_hint)


class LocalProtocolError(GossipError, ValueError):
    """The caller misused the API or passed an invalid value."""

    status_hint = 400


class RemoteProtocolError(GossipError):
    """A peer sent something malformed or not allowed; nothing was changed."""

    status_hint = 400


class AuthenticationError(RemoteProtocolError):
    """A message failed authentication: wrong key, stale timestamp or replayed nonce.

    :attr:`code` says which (``bad_mac`` unless given: ``wrong_network``, ``clock_skew``, ``replayed``).
    """

    status_hint = 401


class MessageTooLarge(RemoteProtocolError):
    """A message exceeded a size limit."""

    status_hint = 413


class TransportError(GossipError):
    """A request could not be delivered or answered (unreachable, timeout, refused)."""

    status_hint = 502

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        remote_code: ErrorCode | None = None,
        reason: str | None = None,
        timed_out: bool = False,
    ) -> None:
        super().__init__(message)
        #: HTTP-like status of the remote's error answer, or None when nothing answered.
        self.status = status
        #: The ``code`` of the remote's error answer, or None (nothing answered, or no known code).
        self.remote_code = remote_code
        #: What went wrong, short and without the address (e.g. ``connection refused``).
        self.reason = message if reason is None else reason
        #: The call's deadline passed before a whole answer arrived.
        self.timed_out = timed_out


class AnswerTooLarge(TransportError):
    """An answer was larger than the caller accepts; it was not read beyond that."""

    def __init__(self, message: str, *, limit: int) -> None:
        super().__init__(message, reason=f"the answer exceeds {limit} bytes")
        #: The most bytes the caller accepted.
        self.limit = limit


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
