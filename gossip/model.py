"""Data types: Gossip, Peer, Network, NodeConfig; the canonical form and its sha2."""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any, TypeVar

from .errors import LocalProtocolError, excerpt

__all__ = [
    "Gossip",
    "Peer",
    "PeerStatus",
    "Network",
    "Quota",
    "Retention",
    "Tombstone",
    "is_tombstone_key",
    "Item",
    "item_key",
    "wins",
    "NodeConfig",
    "PeerView",
    "Snapshot",
    "canonical_bytes",
    "compute_sha2",
    "iso_from_timestamp",
    "iso_for_output",
    "timestamp_from_iso",
    "EARLIEST_TIME",
    "LATEST_TIME",
    "MAX_FUTURE_SKEW",
    "MAX_MSG_CHARS",
    "MAX_NAME_CHARS",
]

#: Longest gossip text accepted, in characters.
MAX_MSG_CHARS = 65_536
#: Longest node or network name accepted, in characters.
MAX_NAME_CHARS = 128

_NETWORK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_SHA2 = re.compile(r"[0-9a-f]{64}")
#: A UUID as ``str(uuid.UUID(...))`` writes it: lower-case hex, 8-4-4-4-12.
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
#: What the compact JSON of a gossip adds to its escaped date_time, who_name and msg: the
#: keys, separators and the guid and sha2, which are ASCII with nothing to escape (36 + 2 and
#: 64 + 2 bytes once quoted).
_WIRE_OVERHEAD = len('{"guid":,"date_time":,"who_name":,"msg":,"sha2":}') + 38 + 66
#: json.dumps's own string escaper for ensure_ascii=False (C-accelerated where available).
_json_string = json.encoder.encode_basestring


def _fail(message: str) -> LocalProtocolError:
    return LocalProtocolError(message)


def check_guid(value: Any, what: str = "guid") -> str:
    """Return ``value`` if it is a UUID in canonical lower-case form, else raise."""
    if isinstance(value, str) and _CANONICAL_UUID.fullmatch(value):
        return value  # the common case, checked fast: every received gossip and id passes here
    if not isinstance(value, str) or len(value) != 36:
        raise _fail(f"{what} must be a UUID string like '1b4e28ba-2fa1-11d2-883f-0016d3cca427'")
    try:
        uuid.UUID(value)
    except ValueError:
        raise _fail(f"{what} {excerpt(value)} is not a UUID") from None
    raise _fail(f"{what} {excerpt(value)} must be lower-case canonical UUID text")


def check_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(f"{what} must be a non-empty string")
    if len(value) > MAX_NAME_CHARS:
        raise _fail(f"{what} is longer than {MAX_NAME_CHARS} characters")
    if _CONTROL.search(value):
        raise _fail(f"{what} must not contain control characters")
    if value.isascii():
        return value  # ASCII text holds no lone surrogate
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _fail(f"{what} must be valid Unicode text (no lone surrogates)") from None
    return value


def check_network_name(value: Any) -> str:
    if not isinstance(value, str) or not _NETWORK_NAME.fullmatch(value):
        raise _fail(
            f"network name {excerpt(value)} must be 1-64 characters of letters, digits, '.', '_' or '-',"
            " starting with a letter or digit"
        )
    return value


def check_ip(value: Any) -> str:
    if not isinstance(value, str):
        raise _fail("ip must be a string holding an IPv4 or IPv6 address")
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise _fail(f"ip {excerpt(value)} is not an IPv4 or IPv6 address") from None
    # One spelling per address, on every Python: peer records are compared by their bytes.
    if isinstance(address, ipaddress.IPv6Address) and (address.scope_id or address.ipv4_mapped):
        raise _fail(f"ip {excerpt(value)}: give an IPv4 address as a.b.c.d, and IPv6 without a %scope")
    if address.is_unspecified or address.is_multicast:
        raise _fail(f"ip {excerpt(value)} cannot be a node's address (unspecified or multicast)")
    return str(address)


def check_port(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise _fail(f"port {excerpt(value)} must be an integer from 1 to 65535")
    return value


def check_msg(value: Any) -> str:
    if not isinstance(value, str):
        raise _fail("msg must be a string")
    if len(value) > MAX_MSG_CHARS:
        raise _fail(f"msg is longer than {MAX_MSG_CHARS} characters")
    if value.isascii():
        return value  # ASCII text holds no lone surrogate
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _fail("msg must be valid Unicode text (no lone surrogates)") from None
    return value


#: The range every accepted time lies in once converted to UTC, both ends included: from the
#: POSIX epoch to the last whole second of year 9999. Nothing before 1970 can be a gossip's
#: creation time, and past 9999 (or before year 1) a time no longer converts to UTC:
#: ``astimezone`` and ``fromtimestamp`` raise OverflowError or ValueError. Within it, every
#: conversion and format of a time succeeds, its POSIX timestamp too (a float so close to the
#: end of 9999 that it rounds into year 10000 needs a fraction of the last second).
EARLIEST_TIME = datetime(1970, 1, 1, tzinfo=timezone.utc)
LATEST_TIME = datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc)
#: The same bounds as POSIX timestamps.
_EARLIEST_TS = EARLIEST_TIME.timestamp()
_LATEST_TS = LATEST_TIME.timestamp()
#: Seconds a received gossip's ``date_time`` may lie ahead of the receiving node's clock.
#: Gossips may be old (a node that was away brings them later), never from the future:
#: beyond this, the node refuses the gossip (``rejected.future_date``). A day covers any
#: honest clock error, which the replay window (15 minutes) bounds far more tightly.
MAX_FUTURE_SKEW = 24 * 3600.0


def iso_from_timestamp(ts: float) -> str:
    """ISO 8601 text in UTC with microseconds for a POSIX timestamp: a new gossip's date_time.

    Raises:
        LocalProtocolError: ``ts`` is not a time from 1970 to 9999 (or is NaN): the clock
            that gave it is broken, and a gossip dated by it would be refused everywhere.
    """
    if not _EARLIEST_TS <= ts <= _LATEST_TS:
        raise _fail(f"time {excerpt(ts)} is not from 1970 to 9999; is this node's clock right?")
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="microseconds")


def iso_for_output(ts: float) -> str:
    """:func:`iso_from_timestamp` for a status output, which must never fail: a time outside
    1970..9999 (only a virtual clock gives one) is written as the nearer bound."""
    if not ts >= _EARLIEST_TS:  # NaN too
        ts = _EARLIEST_TS
    elif ts > _LATEST_TS:
        ts = _LATEST_TS
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="microseconds")


def _check_date_time(value: Any, what: str = "date_time") -> str:
    """Return ``value`` if it is ISO 8601 text with a UTC offset, from 1970 to 9999 once in UTC."""
    _parse_date_time(value, what)
    text: str = value  # a str: _parse_date_time checked it
    return text


def _parse_date_time(value: Any, what: str = "date_time") -> datetime:
    """``value`` parsed, if it is ISO 8601 text with a UTC offset, from 1970 to 9999 once in UTC.

    On the path of every gossip received, so the range check is nearly free: an offset is
    less than a day, so a time in a year from 1971 to 9998 is in range whatever its offset,
    and only the others are compared with the bounds (aware comparisons, which never overflow).
    """
    if not isinstance(value, str) or len(value) > 64:
        raise _fail(f"{what} must be ISO 8601 text")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise _fail(f"{what} {excerpt(value)} is not ISO 8601") from None
    if parsed.tzinfo is None:
        raise _fail(f"{what} {excerpt(value)} must carry a UTC offset")
    if not 1970 < parsed.year < 9999 and not EARLIEST_TIME <= parsed <= LATEST_TIME:
        raise _fail(
            f"{what} {excerpt(value)} is out of range: once in UTC it must lie from"
            " 1970-01-01T00:00:00Z to 9999-12-31T23:59:59Z"
        )
    return parsed


def timestamp_from_iso(value: Any, what: str = "date_time") -> float:
    """POSIX timestamp of a time checked as a gossip's date_time is (see :func:`_check_date_time`).

    Raises:
        LocalProtocolError: ``value`` is not such a time; the message names ``what``.
    """
    return _parse_date_time(value, what).timestamp()


def canonical_bytes(*, guid: str, date_time: str, who_name: str, msg: str) -> bytes:
    """The canonical form that ``sha2`` is computed over (see CONTRACT.md).

    That is ``json.dumps({...}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``
    of the four fields, written out by hand (keys in sorted order, each value escaped by the
    same function ``json.dumps`` uses): it is computed for every gossip received, and this
    is five times faster. ``tests/test_model.py`` checks both agree on hostile text.
    """
    esc = _json_string
    return f'{{"date_time":{esc(date_time)},"guid":{esc(guid)},"msg":{esc(msg)},"who_name":{esc(who_name)}}}'.encode("utf-8")


def compute_sha2(*, guid: str, date_time: str, who_name: str, msg: str) -> str:
    """SHA-256 hex of the canonical form."""
    data = canonical_bytes(guid=guid, date_time=date_time, who_name=who_name, msg=msg)
    return hashlib.sha256(data).hexdigest()


#: The JSON of the gossips written lately: by sha2, the gossip (this very object: another
#: with the same sha2 may differ, forged) and its text. A gossip's JSON goes into its store
#: line and into every push and answer that carries it, and in a process that runs many
#: nodes (a simulation, the benchmarks) into each node's: it is written once. Bounded to
#: _JSON_WRITTEN_ENTRIES gossips of at most _JSON_WRITTEN_MAX_CHARS, oldest out first (about
#: 2 MB at most); a field on each gossip would hold it for as long as the gossip is held.
_JSON_WRITTEN: dict[str, tuple[Gossip, str]] = {}
_JSON_WRITTEN_ENTRIES = 1024
_JSON_WRITTEN_MAX_CHARS = 1024
_K = TypeVar("_K")
_V = TypeVar("_V")


def remember(table: dict[_K, _V], key: _K, value: _V, entries: int) -> None:
    """Put ``key`` in a bounded cache (a dict, oldest entry first) that keeps ``entries``.

    For caches shared by a process's threads (a store's writer thread builds JSON too): an
    eviction that another thread's change interrupts is left to the next put.
    """
    table[key] = value
    if len(table) > entries:
        try:
            del table[next(iter(table))]
        except (KeyError, RuntimeError, StopIteration):
            pass


@dataclass(frozen=True, slots=True, kw_only=True, init=False)
class Gossip:
    """One message. Immutable; ``sha2`` is checked with :meth:`verify`, not on construction.

    A received gossip whose sha2 does not verify is never stored or forwarded,
    so the node calls :meth:`verify` on everything that arrives from a peer.
    """

    guid: str
    date_time: str
    who_name: str
    msg: str
    sha2: str
    # Derived once, on the path of every gossip received: its timestamp (from the parse that
    # checks date_time), and on first use its reconciliation key and its wire size. Not
    # fields of the gossip: not compared, not printed, not on the wire.
    _ts: float = field(default=0.0, init=False, repr=False, compare=False)
    _key: int = field(default=-1, init=False, repr=False, compare=False)
    _size: int = field(default=-1, init=False, repr=False, compare=False)
    _sound: bool = field(default=False, init=False, repr=False, compare=False)  # verify() passed

    def __init__(self, *, guid: str, date_time: str, who_name: str, msg: str, sha2: str) -> None:
        # Written out rather than generated with a __post_init__: every gossip a node receives
        # is built here, and one pass that checks each field as it sets it costs a third less.
        check_guid(guid)
        ts = _parse_date_time(date_time).timestamp()
        check_name(who_name, "who_name")
        check_msg(msg)
        if not isinstance(sha2, str) or not _SHA2.fullmatch(sha2):
            raise _fail("sha2 must be 64 lower-case hex digits")
        # Frozen: each slot is set once, here, through its descriptor (object.__setattr__
        # looks each name up first: a third more instructions).
        _put_guid(self, guid)
        _put_date_time(self, date_time)
        _put_who_name(self, who_name)
        _put_msg(self, msg)
        _put_sha2(self, sha2)
        _put_ts(self, ts)
        _put_key(self, -1)
        _put_size(self, -1)
        _put_sound(self, False)

    @classmethod
    def create(cls, *, guid: str, date_time: str, who_name: str, msg: str) -> Gossip:
        """Build a gossip and compute its sha2."""
        check_msg(msg)
        sha2 = compute_sha2(guid=guid, date_time=date_time, who_name=who_name, msg=msg)
        return cls(guid=guid, date_time=date_time, who_name=who_name, msg=msg, sha2=sha2)

    def timestamp(self) -> float:
        """``date_time`` as a POSIX timestamp, to compare with a node's clock (``now``)."""
        return self._ts

    def verify(self) -> bool:
        """True when ``sha2`` matches the canonical form (computed once: the fields are frozen,
        and the node and its store both check every gossip received)."""
        if self._sound:
            return True
        expected = compute_sha2(
            guid=self.guid, date_time=self.date_time, who_name=self.who_name, msg=self.msg
        )
        if expected != self.sha2:
            return False
        _put_sound(self, True)
        return True

    def wire_size(self) -> int:
        """Bytes of :meth:`to_json` in UTF-8, counted without building it (pushes and answers
        budget by it, for every gossip sent)."""
        size = self._size
        if size < 0:
            size = _WIRE_OVERHEAD
            for value in (self.date_time, self.who_name, self.msg):
                text = _json_string(value)
                size += len(text) if text.isascii() else len(text.encode("utf-8"))
            _put_size(self, size)
        return size

    def to_json(self) -> str:
        """``json.dumps(self.to_dict(), separators=(",", ":"), ensure_ascii=False)``, written out
        by hand as :func:`canonical_bytes` is (every gossip stored or sent passes here)."""
        hit = _JSON_WRITTEN.get(self.sha2)
        if hit is not None and hit[0] is self:
            return hit[1]
        esc = _json_string
        text = (
            f'{{"guid":"{self.guid}","date_time":{esc(self.date_time)},'
            f'"who_name":{esc(self.who_name)},"msg":{esc(self.msg)},"sha2":"{self.sha2}"}}'
        )
        if len(text) <= _JSON_WRITTEN_MAX_CHARS:
            remember(_JSON_WRITTEN, self.sha2, (self, text), _JSON_WRITTEN_ENTRIES)
        return text

    def to_dict(self) -> dict[str, str]:
        return {
            "guid": self.guid,
            "date_time": self.date_time,
            "who_name": self.who_name,
            "msg": self.msg,
            "sha2": self.sha2,
        }

    @classmethod
    def from_dict(cls, data: Any) -> Gossip:
        if not isinstance(data, dict):
            raise _fail("a gossip must be a JSON object")
        try:
            return cls(
                guid=data["guid"],
                date_time=data["date_time"],
                who_name=data["who_name"],
                msg=data["msg"],
                sha2=data["sha2"],
            )
        except KeyError as exc:
            raise _fail(f"gossip is missing field {excerpt(exc.args[0])}") from None


#: The slots' setters of a frozen Gossip: its __init__ and its lazily derived values use them.
_put_guid, _put_date_time, _put_who_name, _put_msg, _put_sha2, _put_ts, _put_key, _put_size, _put_sound = (
    getattr(Gossip, name).__set__
    for name in ("guid", "date_time", "who_name", "msg", "sha2", "_ts", "_key", "_size", "_sound")
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Tombstone:
    """The mark a deleted gossip leaves: a member of the reconciled set like a gossip, under
    the same guid, that beats every version of it (see :func:`wins`).

    ``date_time`` is the deleted gossip's: the tombstone lives as long as the gossip could
    have (until ``date_time`` + the network's retention; for ever when it keeps everything).
    """

    guid: str
    date_time: str

    def __post_init__(self) -> None:
        check_guid(self.guid)
        _check_date_time(self.date_time)

    def timestamp(self) -> float:
        """``date_time`` as a POSIX timestamp."""
        return datetime.fromisoformat(self.date_time).timestamp()

    def to_dict(self) -> dict[str, str]:
        return {"guid": self.guid, "date_time": self.date_time}

    @classmethod
    def from_dict(cls, data: Any) -> Tombstone:
        if not isinstance(data, dict):
            raise _fail("a tombstone must be a JSON object")
        try:
            return cls(guid=data["guid"], date_time=data["date_time"])
        except KeyError as exc:
            raise _fail(f"tombstone is missing field {excerpt(exc.args[0])}") from None


#: What a network's reconciled set holds: gossips and tombstones.
Item = Gossip | Tombstone
#: The low half of a tombstone's key has its top bit set, a gossip's has it clear, so that a
#: key says what it names (a node holding a tombstone need not fetch a version it would refuse).
_TOMBSTONE_BIT = 1 << 127


def item_key(item: Item) -> int:
    """The 256-bit reconciliation key of a gossip or tombstone: its guid (high 128 bits) and
    128 bits of BLAKE2b over its content (person ``gossip-key-v3``): for a gossip its sha2,
    for a tombstone its date_time, with the top bit set. So two nodes agree on a key only
    if they agree on the content, and a key names its guid."""
    if isinstance(item, Gossip):
        key = item._key
        if key >= 0:
            return key
        data, flag = b"gossip\0" + item.sha2.encode("ascii"), 0
    else:
        data, flag = b"tombstone\0" + item.date_time.encode("ascii"), _TOMBSTONE_BIT
    low = int.from_bytes(hashlib.blake2b(data, digest_size=16, person=b"gossip-key-v3").digest(), "big")
    key = (int(item.guid.replace("-", ""), 16) << 128) | (low & (_TOMBSTONE_BIT - 1)) | flag
    if not flag:
        _put_key(item, key)  # asked for several times on a gossip's way in
    return key


def is_tombstone_key(key: int) -> bool:
    """Whether a key (:func:`item_key`) names a tombstone."""
    return bool(key & _TOMBSTONE_BIT)


def wins(new: Item, old: Item) -> bool:
    """The conflict rule, the same on every node: of two items with the same guid, which one
    the network keeps. A tombstone beats any gossip; of two tombstones the later-dated one
    (it lives longer), then the lower key; of two gossips the one with the lower sha2."""
    if isinstance(new, Tombstone) != isinstance(old, Tombstone):
        return isinstance(new, Tombstone)
    if isinstance(new, Tombstone):
        a, b = new.timestamp(), old.timestamp()
        return a > b or (a == b and item_key(new) < item_key(old))
    assert isinstance(old, Gossip)
    return new.sha2 < old.sha2


class PeerStatus(StrEnum):
    """What this node believes about a peer's liveness. Local opinion, never gossiped."""

    #: Answered the last request (or sent us an authenticated message).
    ALIVE = "alive"
    #: The last request to it failed; still contacted, with backoff.
    SUSPECT = "suspect"
    #: Several requests in a row failed; retried only after an exponential backoff.
    DEAD = "dead"
    #: Left the network on purpose (its record says ``left``): never contacted, never turned
    #: suspect or dead; back to alive only with a newer record of its own (docs/protocol.md).
    LEFT = "left"


@dataclass(frozen=True, slots=True, kw_only=True)
class Peer:
    """A node as known on one network: identity and address.

    ``incarnation`` is raised by the node itself whenever its name or address
    changes, so that the newest record of a guid wins everywhere.
    ``left``: the node announced that it leaves (or a member forced a dead node out); such a
    record carries a higher incarnation than the one it ends.
    Liveness (status, last_seen) is kept beside it by the node, see ``PeerView``.
    """

    guid: str
    name: str
    ip: str
    port: int
    network_name: str
    incarnation: int = 0
    left: bool = False

    def __post_init__(self) -> None:
        check_guid(self.guid, "peer guid")
        check_name(self.name, "peer name")
        object.__setattr__(self, "ip", check_ip(self.ip))
        check_port(self.port)
        check_network_name(self.network_name)
        if (
            isinstance(self.incarnation, bool)
            or not isinstance(self.incarnation, int)
            or not 0 <= self.incarnation < 2**53
        ):
            raise _fail("incarnation must be a non-negative integer")
        if not isinstance(self.left, bool):
            raise _fail("peer left must be true or false")

    @property
    def address(self) -> tuple[str, int]:
        return (self.ip, self.port)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "guid": self.guid,
            "name": self.name,
            "ip": self.ip,
            "port": self.port,
            "network_name": self.network_name,
            "incarnation": self.incarnation,
        }
        if self.left:  # only then: a record that did not leave keeps its version-2 form
            out["left"] = True
        return out

    @classmethod
    def from_dict(cls, data: Any) -> Peer:
        if not isinstance(data, dict):
            raise _fail("a peer must be a JSON object")
        try:
            return cls(
                guid=data["guid"],
                name=data["name"],
                ip=data["ip"],
                port=data["port"],
                network_name=data["network_name"],
                incarnation=data.get("incarnation", 0),
                left=data.get("left", False),
            )
        except KeyError as exc:
            raise _fail(f"peer is missing field {excerpt(exc.args[0])}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerView:
    """A peer plus this node's opinion of its liveness: one row of NETWORK_STATUS."""

    peer: Peer
    status: PeerStatus = PeerStatus.ALIVE
    last_seen: float | None = None
    failures: int = 0

    def to_dict(self) -> dict[str, Any]:
        out = self.peer.to_dict()
        out["status"] = str(self.status)
        out["last_seen"] = None if self.last_seen is None else iso_for_output(self.last_seen)
        out["failures"] = self.failures
        return out

    @classmethod
    def from_dict(cls, data: Any) -> PeerView:
        peer = Peer.from_dict(data)
        try:
            status = PeerStatus(data.get("status", "alive"))
        except ValueError:
            raise _fail(f"peer status must be one of {[s.value for s in PeerStatus]}") from None
        last_seen = data.get("last_seen")
        if last_seen is not None:
            last_seen = timestamp_from_iso(last_seen, "last_seen")
        failures = data.get("failures", 0)
        if isinstance(failures, bool) or not isinstance(failures, int) or failures < 0:
            raise _fail("peer failures must be a non-negative integer")
        return cls(peer=peer, status=status, last_seen=last_seen, failures=failures)


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    """Everything a node needs to start again: gossips and peers by network name."""

    gossips: dict[str, list[Gossip]] = field(default_factory=dict)
    peers: dict[str, list[PeerView]] = field(default_factory=dict)
    #: Each stored gossip's cursor, by network and guid (see :class:`~gossip.events.GossipReceived`).
    #: A gossip without one is numbered at restore, after every known cursor, in list order.
    cursors: dict[str, dict[str, int]] = field(default_factory=dict)
    #: The highest cursor ever given, even to a gossip since removed (0: as the cursors say).
    last_cursor: int = 0
    #: Tombstones of deleted gossips, by network name.
    tombstones: dict[str, list[Tombstone]] = field(default_factory=dict)
    #: The store already checked every gossip's sha2 (the node then need not check again).
    #: Not part of what the snapshot holds, so not compared.
    verified: bool = field(default=False, compare=False)


@dataclass(frozen=True, slots=True, kw_only=True)
class Network:
    """A network this node belongs to, with the key derived from its password.

    The password itself is never kept: see :func:`gossip.auth.derive_key`.
    """

    name: str
    key: bytes = field(repr=False)
    #: This network's limits (:class:`Quota`); the defaults are safe for most uses.
    quota: Quota = field(default_factory=lambda: Quota())
    #: How long the network keeps a gossip (:class:`Retention`); travels with the network.
    retention: Retention = field(default_factory=lambda: Retention())
    #: Keys accepted besides ``key`` (the primary, which signs), while a password is being
    #: rotated (``gossip keys``).
    extra_keys: tuple[bytes, ...] = field(default=(), repr=False)
    #: The key ring's version: each install, use or remove raises it, and nodes adopt the
    #: ring of the highest version (docs/security.md, "Key rotation").
    key_version: int = 0

    def __post_init__(self) -> None:
        check_network_name(self.name)
        if not isinstance(self.quota, Quota):
            raise _fail("a network's quota must be a Quota")
        if not isinstance(self.retention, Retention):
            raise _fail("a network's retention must be a Retention")
        object.__setattr__(self, "extra_keys", tuple(self.extra_keys))
        for key in (self.key, *self.extra_keys):
            if not isinstance(key, bytes) or not 16 <= len(key) <= 64:
                raise _fail("a network key must be at least 16 bytes (and at most 64)")
        if len(set(self.keys)) != len(self.keys):
            raise _fail("a network's keys must differ from each other")
        if isinstance(self.key_version, bool) or not isinstance(self.key_version, int) or not 0 <= self.key_version < 2**53:
            raise _fail("a network's key_version must be a non-negative integer")

    @property
    def keys(self) -> tuple[bytes, ...]:
        """Every key accepted, the primary first."""
        return (self.key, *self.extra_keys)


@dataclass(frozen=True, slots=True, kw_only=True)
class Quota:
    """A network's limits, as this node applies them (give every node of a network the same).

    A gossip over ``max_gossip_bytes`` or past ``max_network_bytes`` is refused at create
    (413, 429) and not stored when it arrives; creates at this node beyond
    ``creates_per_minute`` (a token bucket holding one minute's worth) get 429.
    """

    #: Most UTF-8 bytes of one gossip's ``msg``. The default is what MAX_MSG_CHARS characters
    #: can take (4 bytes each at most): no limit beyond the text rule's, until set lower.
    max_gossip_bytes: int = 4 * MAX_MSG_CHARS
    #: Most creates per minute at this node on this network.
    creates_per_minute: int = 1200
    #: Most bytes of gossip (their JSON) held on this network.
    max_network_bytes: int = 1 << 30

    def __post_init__(self) -> None:
        for name in ("max_gossip_bytes", "creates_per_minute", "max_network_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value < 2**53:
                raise _fail(f"quota {name} must be a positive integer, not {excerpt(value)}")


@dataclass(frozen=True, slots=True, kw_only=True, order=False)
class Retention:
    """How long a network keeps a gossip, and when that was decided.

    It travels with the network: each node passes its own in its rounds and adopts one that
    :meth:`supersedes` it, so every node ends with the same. ``max_age`` None keeps everything.
    """

    #: Seconds a gossip is kept after its date_time; None: for ever.
    max_age: float | None = None
    #: When the policy was set (ms since the epoch, on the clock of the node where it was
    #: set); 0 for the default, which any set policy supersedes.
    set_at: int = 0

    def __post_init__(self) -> None:
        age = self.max_age
        if age is not None and (isinstance(age, bool) or not isinstance(age, (int, float)) or not 1 <= age <= 1e11):
            raise _fail(f"retention max_age must be a number of seconds from 1 to 1e11, not {excerpt(age)}")
        if isinstance(self.set_at, bool) or not isinstance(self.set_at, int) or not 0 <= self.set_at < 2**53:
            raise _fail("retention set_at must be a non-negative integer of ms")

    def supersedes(self, other: Retention) -> bool:
        """The later decision wins; at the same instant, the longer age (keeping is safer)."""
        inf = float("inf")
        mine = (self.set_at, inf if self.max_age is None else self.max_age)
        theirs = (other.set_at, inf if other.max_age is None else other.max_age)
        return mine > theirs

    def to_dict(self) -> dict[str, Any]:
        return {"max_age": self.max_age, "set_at": self.set_at}

    @classmethod
    def from_dict(cls, data: Any) -> Retention:
        if not isinstance(data, dict):
            raise _fail("a retention must be a JSON object")
        return cls(max_age=data.get("max_age"), set_at=data.get("set_at", 0))


#: Default of NodeConfig.forget_after: a day.
FORGET_AFTER = 24 * 3600.0
#: Longest NodeConfig.forget_after: ten years.
MAX_FORGET_AFTER = 10 * 365 * 24 * 3600.0


#: NodeConfig's defaults for the active view's size and the known nodes up to which a node
#: gossips with every one of them.
ACTIVE_VIEW = 6
FULL_VIEW_LIMIT = 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeConfig:
    """A node's properties (the seed's SERVER_FILES)."""

    node_guid: str
    node_name: str
    networks: tuple[Network, ...]
    ip: str = "127.0.0.1"
    port: int = 8470
    gossip_timer: float = 1.0
    gossip_max_peer_count: int = 3
    incarnation: int = 0
    #: Seconds after which a peer that left, or is dead, and was not heard from since is
    #: forgotten (serf's reconnect_timeout); until then a dead peer is retried with backoff.
    forget_after: float = FORGET_AFTER
    #: Peers in the active view (the links rounds and eager push use) once the node knows
    #: more than ``full_view_limit`` nodes (see gossip.sets.ActiveView).
    active_view: int = ACTIVE_VIEW
    #: Known nodes (this one included) up to which every known peer is gossiped with.
    full_view_limit: int = FULL_VIEW_LIMIT

    def __post_init__(self) -> None:
        check_guid(self.node_guid, "node_guid")
        check_name(self.node_name, "node_name")
        object.__setattr__(self, "networks", tuple(self.networks))
        if not self.networks:
            raise _fail("a node needs at least one network")
        names = [n.name for n in self.networks]
        if len(set(names)) != len(names):
            raise _fail(f"network names must be unique, got {names}")
        object.__setattr__(self, "ip", check_ip(self.ip))
        check_port(self.port)
        timer = self.gossip_timer
        if isinstance(timer, bool) or not isinstance(timer, (int, float)) or not 0.001 <= timer <= 86400:
            raise _fail("gossip_timer must be a number of seconds from 0.001 to 86400")
        count = self.gossip_max_peer_count
        if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= 1000:
            raise _fail("gossip_max_peer_count must be an integer from 1 to 1000")
        forget = self.forget_after
        if isinstance(forget, bool) or not isinstance(forget, (int, float)) or not 1 <= forget <= MAX_FORGET_AFTER:
            raise _fail(f"forget_after must be a number of seconds from 1 to {MAX_FORGET_AFTER:g} (10 years)")
        for name, value, hi in (("active_view", self.active_view, 64), ("full_view_limit", self.full_view_limit, 10**9)):
            if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= hi:
                raise _fail(f"{name} must be an integer from 1 to {hi}")

    @property
    def network_names(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.networks)

    def network(self, name: str) -> Network:
        for net in self.networks:
            if net.name == name:
                return net
        raise LocalProtocolError(f"this node is not on network {excerpt(name)}")

    def self_peer(self, network_name: str) -> Peer:
        """This node's own record on one of its networks."""
        return Peer(
            guid=self.node_guid,
            name=self.node_name,
            ip=self.ip,
            port=self.port,
            network_name=network_name,
            incarnation=self.incarnation,
        )

    def with_changes(self, **changes: Any) -> NodeConfig:
        return replace(self, **changes)
