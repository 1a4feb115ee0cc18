"""Wire messages: one frozen dataclass per verb, the signed envelope, JSON encoding.

Every node-to-node request is one JSON object, its MAC last::

    {"v": 4, "type": "did_you_hear", "net": "default", "from": "<node guid>", "body": {...},
     "to": "<receiver's guid>", "ts": <ms since the epoch>, "nonce": "<16 base64url>", "mac": "<32 hex>"}

and every answer is ``{"v": 4, "type": "<verb>_reply", "net", "from", "body", "re": "<request
nonce>", "now": <the answerer's clock, ms>, "mac"}`` (``v`` is :data:`PROTOCOL_VERSION`). The MAC (see :mod:`gossip.auth`) covers the exact bytes before
it, so an answer is bound to the request it answers. Wire names never change: add fields, never
rename them; a receiver ignores fields it does not know.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import re
from dataclasses import dataclass, field
from itertools import chain
from typing import Any, Callable, ClassVar, Sequence

from . import auth
from .digest import STRATA_BYTES
from .errors import AuthenticationError, ErrorCode, GossipError, MessageTooLarge, RemoteProtocolError, clip, excerpt
from .model import Gossip, Peer, Retention, Tombstone, check_guid, check_network_name, remember

__all__ = [
    "PROTOCOL_VERSION",
    "MAX_MESSAGE_BYTES",
    "MAX_IDS",
    "MAX_PEERS",
    "Message",
    "Probe",
    "ProbeAnswer",
    "Register",
    "RegisterOk",
    "Hello",
    "HelloReply",
    "DidYouHear",
    "DidYouHearReply",
    "TellMeMore",
    "TellMeMoreReply",
    "Push",
    "PushReply",
    "Ring",
    "SealedKey",
    "Keys",
    "KeysReply",
    "MAX_RING_KEYS",
    "Link",
    "LinkReply",
    "LINK_OPS",
    "MAX_SHUFFLE",
    "Envelope",
    "encode",
    "decode",
    "error_body",
]

PROTOCOL_VERSION = 5
#: Largest message accepted, in bytes.
MAX_MESSAGE_BYTES = 1 << 20
#: Most ids (gossip or peer keys) in one message.
MAX_IDS = 4096
#: Most peer records in one message.
MAX_PEERS = 1024
_MAX_DEPTH = 8
#: Most keys a network's ring holds at once (two during a rotation; a few to spare).
MAX_RING_KEYS = 8


class _Bad(Exception):
    """Raised by the field readers; turned into RemoteProtocolError with context."""


def _obj(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _Bad(f"{what} must be a JSON object")
    return value


def _int(value: Any, what: str, lo: int = 0, hi: int = 2**53) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise _Bad(f"{what} must be an integer from {lo} to {hi}")
    return value


def _str(value: Any, what: str, max_len: int = 64) -> str:
    if not isinstance(value, str) or len(value) > max_len:
        raise _Bad(f"{what} must be a string of at most {max_len} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate ("\ud800") would break re-encoding
        raise _Bad(f"{what} must be valid Unicode text") from None
    return value


def _list(value: Any, what: str, max_len: int) -> list[Any]:
    if not isinstance(value, list):
        raise _Bad(f"{what} must be a JSON list")
    if len(value) > max_len:
        raise _Bad(f"{what} holds {len(value)} items, more than the {max_len} allowed")
    return value


_HEX_KEY = re.compile(r"[0-9a-fA-F]{64}")
_HEX_FP = re.compile(r"[0-9a-fA-F]{32}")


def _fp(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _HEX_FP.fullmatch(value):
        raise _Bad(f"{what} must be 32 hex digits")
    return value.lower()


def _key(value: Any, what: str) -> str:
    # parse_key() is int(text, 16), which also takes "0x", signs, spaces and underscores.
    if not isinstance(value, str) or not _HEX_KEY.fullmatch(value):
        raise _Bad(f"{what} must hold 64-hex-digit keys")
    return value.lower()


def _pack_keys(keys: Sequence[str]) -> str:
    """Keys (64 hex digits each) as they travel since version 4: one base64 string of their
    32-byte big-endian forms, 43 characters a key where a JSON list of hex took 67."""
    return base64.b64encode(bytes.fromhex("".join(keys))).decode("ascii")


#: Longest packed list of MAX_IDS keys, in base64 characters.
_MAX_PACKED = 4 * -(-MAX_IDS * 32 // 3)


def _keys(value: Any, what: str) -> tuple[str, ...]:
    """A packed list of keys (:func:`_pack_keys`) back as lower-case hex, at most MAX_IDS."""
    if not isinstance(value, str) or len(value) > _MAX_PACKED:
        raise _Bad(f"{what} must be a base64 string of at most {MAX_IDS} 32-byte keys")
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise _Bad(f"{what} must be valid base64") from None
    if len(raw) % 32:
        raise _Bad(f"{what} must hold whole 32-byte keys")
    text = raw.hex()
    return tuple(text[i : i + 64] for i in range(0, len(text), 64))


def _strata(value: Any, what: str) -> bytes:
    """A strata summary: base64 of exactly STRATA_BYTES bytes. Its layout is fixed: another
    layout would travel under another field name, never this one."""
    if not isinstance(value, str) or len(value) > 4 * STRATA_BYTES:
        raise _Bad(f"{what} must be base64 of {STRATA_BYTES} bytes")
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise _Bad(f"{what} must be valid base64") from None
    if len(raw) != STRATA_BYTES:
        raise _Bad(f"{what} must be base64 of {STRATA_BYTES} bytes, not {len(raw)}")
    return raw


def _bool(value: Any, what: str) -> bool:
    if not isinstance(value, bool):
        raise _Bad(f"{what} must be true or false")
    return value


def _guid(value: Any, what: str) -> str:
    try:
        return check_guid(value, what)
    except GossipError as exc:
        raise _Bad(str(exc)) from None


@dataclass(frozen=True, slots=True, kw_only=True)
class Probe:
    """A set summary: "I hold ``count`` keys with this fingerprint".

    ``size`` asks the answerer for an IBLT of that many cells per sub-table (0: you choose).
    ``start`` asks instead for a page of the answerer's sorted keys from that key on.
    ``strata``: the set's difference-estimator summary (:attr:`gossip.digest.KeySet.strata`),
    sent only while the set changed lately, so that the answerer sizes its first IBLT from
    an estimate of the difference rather than from the count difference alone.
    """

    count: int
    fingerprint: str
    size: int = 0
    start: str | None = None
    strata: bytes | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"n": self.count, "fp": self.fingerprint}
        if self.size:
            out["size"] = self.size
        if self.start is not None:
            out["start"] = self.start
        if self.strata is not None:
            out["st"] = base64.b64encode(self.strata).decode("ascii")
        return out

    @classmethod
    def from_wire(cls, data: Any) -> Probe:
        d = _obj(data, "probe")
        start = d.get("start")
        strata = d.get("st")
        return cls(
            count=_int(d.get("n"), "probe.n"),
            fingerprint=_fp(d.get("fp"), "probe.fp"),
            size=_int(d.get("size", 0), "probe.size", 0, 1 << 20),
            start=None if start is None else _key(start, "probe.start"),
            strata=None if strata is None else _strata(strata, "probe.st"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ProbeAnswer:
    """The answer to a :class:`Probe`: in sync, or an IBLT of ``size``, or a page of keys.

    An in-sync answer carries nothing else: it is the whole cost of a settled round.
    """

    in_sync: bool = False
    size: int = 0
    cells: str | None = None
    keys: tuple[str, ...] | None = None
    upto: str | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.in_sync:
            out["sync"] = True
        if self.cells is not None:
            out["size"] = self.size
            out["cells"] = self.cells
        if self.keys is not None:
            out["keys"] = _pack_keys(self.keys)
            out["upto"] = self.upto
        return out

    @classmethod
    def from_wire(cls, data: Any) -> ProbeAnswer:
        d = _obj(data, "answer")
        keys = d.get("keys")
        cells = d.get("cells")
        size = _int(d.get("size", 0), "answer.size", 0, 1 << 20)
        return cls(
            in_sync=d.get("sync") is True,
            size=size if cells is not None else 0,  # a size means nothing without its cells
            cells=None if cells is None else _str(cells, "answer.cells", MAX_MESSAGE_BYTES),
            keys=None
            if keys is None
            else _keys(keys, "answer.keys"),
            upto=None if keys is None else _key(d.get("upto"), "answer.upto"),
        )


_KEY_ID = re.compile(r"[0-9a-f]{%d}" % auth.KEY_ID_HEX)


def _key_id(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _KEY_ID.fullmatch(value):
        raise _Bad(f"{what} must be a key id ({auth.KEY_ID_HEX} lowercase hex digits)")
    return value


@dataclass(frozen=True, slots=True, kw_only=True)
class Ring:
    """What a node advertises of its key ring on a network: the ids (never the keys) of the
    keys it holds, which one is primary, and the ring's version.

    Rings are ordered by :meth:`rank`: the higher one wins, and the node holding it sends
    it (:class:`Keys`) to a peer that advertises a lower one.
    """

    version: int
    primary: str
    ids: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.primary not in self.ids:
            raise _Bad("ring: the primary key must be one of its ids")

    def rank(self) -> tuple[int, str]:
        """(version, digest): the version first; two rings of one version (two operators at
        once) are ordered by a digest of their contents, the same on every node."""
        text = self.primary + ":" + ",".join(sorted(self.ids))
        return self.version, hashlib.sha256(text.encode("ascii")).hexdigest()

    def to_wire(self) -> dict[str, Any]:
        return {"version": self.version, "primary": self.primary, "ids": list(self.ids)}

    @classmethod
    def from_wire(cls, data: Any) -> Ring:
        d = _obj(data, "ring")
        ids = tuple(_key_id(k, "ring.ids") for k in _list(d.get("ids"), "ring.ids", MAX_RING_KEYS))
        if len(set(ids)) != len(ids):
            raise _Bad("ring.ids must not repeat")
        return cls(version=_int(d.get("version"), "ring.version"), primary=_key_id(d.get("primary"), "ring.primary"), ids=ids)


class Message:
    """Base of every verb's body."""

    __slots__ = ()
    TYPE: ClassVar[str]

    def to_wire(self) -> dict[str, Any]:
        raise NotImplementedError

    def to_json(self) -> str:
        """``to_wire()`` as compact JSON: the ``body`` of the envelope."""
        return _dumps(self.to_wire())

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Message:
        raise NotImplementedError


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


#: The JSON arrays written lately for gossips, by sha2 (the same gossip goes to several
#: peers, and, in one process, from every node of a simulation): bounded like _DECODED.
_ARRAYS_WRITTEN: dict[str, tuple[Gossip, str]] = {}


def _gossip_array(gossip: Gossip) -> str:
    """A gossip as it travels between nodes: the JSON array ``[guid, date_time, who_name, msg,
    sha2]`` (compact, ``ensure_ascii=False``). Names are left out: 43 bytes less a gossip than
    its JSON object (:meth:`Gossip.to_json`, which stores and the client API keep), and about
    half the parsing."""
    hit = _ARRAYS_WRITTEN.get(gossip.sha2)
    if hit is not None and hit[0] is gossip:
        return hit[1]
    esc = json.encoder.encode_basestring
    text = f'["{gossip.guid}",{esc(gossip.date_time)},{esc(gossip.who_name)},{esc(gossip.msg)},"{gossip.sha2}"]'
    if len(gossip.msg) <= _DECODED_MAX_CHARS:
        remember(_ARRAYS_WRITTEN, gossip.sha2, (gossip, text), _DECODED_ENTRIES)
    return text


def _gossip_list(gossip: Gossip) -> list[str]:
    """:func:`_gossip_array` as a Python list (for ``to_wire``)."""
    return [gossip.guid, gossip.date_time, gossip.who_name, gossip.msg, gossip.sha2]


def _gossips_json(gossips: tuple[Gossip, ...]) -> str:
    """``_dumps({"gossips": [[g.guid, ...] ...]})`` from each gossip's own array text, twice
    as fast: pushes and TELL_ME_MORE answers carry thousands."""
    return '{"gossips":[' + ",".join(map(_gossip_array, gossips)) + "]}"


@functools.lru_cache(maxsize=65536)
def _peer(guid: Any, name: Any, ip: Any, port: Any, network_name: Any, incarnation: Any, left: Any = False) -> Peer:
    # The same records arrive from many peers: validate each distinct one once.
    return Peer(guid=guid, name=name, ip=ip, port=port, network_name=network_name, incarnation=incarnation, left=left)


def _peers(value: Any, what: str) -> tuple[Peer, ...]:
    out = []
    for item in _list(value, what, MAX_PEERS):
        try:
            if not isinstance(item, dict):
                raise _Bad(f"{what}: a peer must be a JSON object")
            fields = (item.get(f) for f in ("guid", "name", "ip", "port", "network_name"))
            args = (*fields, item.get("incarnation", 0))
            if not all(isinstance(a, (str, int)) and not isinstance(a, bool) for a in args):
                raise _Bad(f"{what}: a peer needs guid, name, ip, port and network_name")
            left = item.get("left", False)
            if not isinstance(left, bool):  # checked here: lru_cache keys 1 and True alike
                raise _Bad(f"{what}: a peer's left must be true or false")
            out.append(_peer(*args, left))
        except GossipError as exc:
            raise _Bad(f"{what}: {exc}") from None
    return tuple(out)


def _tombstones(value: Any, what: str) -> tuple[Tombstone, ...]:
    out = []
    for item in _list(value, what, MAX_IDS):
        try:
            out.append(Tombstone.from_dict(item))
        except GossipError as exc:
            raise _Bad(f"{what}: {exc}") from None
    return tuple(out)


def _retention(value: Any, what: str) -> Retention | None:
    if value is None:
        return None
    try:
        return Retention.from_dict(_obj(value, what))
    except GossipError as exc:
        raise _Bad(f"{what}: {exc}") from None


#: The gossips decoded lately in this process, by sha2, oldest first. A gossip arrives many
#: times: at each node of a network run in one process (a simulation, the benchmarks), and
#: again as a duplicate at one node. Decoding one equal to a gossip decoded lately gives that
#: gossip back, already checked, its sha2 verified and its key computed once, and shared: a
#: gossip held by every node of a simulation is one object, not one per node. Bounded (at
#: most _DECODED_ENTRIES gossips of at most _DECODED_MAX_CHARS of text, about 5 MB): a table
#: of every gossip held, even a weak one, would cost memory for each.
_DECODED: dict[str, Gossip] = {}
_DECODED_ENTRIES = 2048
_DECODED_MAX_CHARS = 1024


def _gossip(item: Any) -> Gossip:
    """A gossip from its wire array (see :func:`_gossip_array`), or the equal gossip decoded
    lately (see ``_DECODED``)."""
    if type(item) is not list or len(item) != 5:
        raise _Bad("a gossip must be a JSON array [guid, date_time, who_name, msg, sha2]")
    guid, date_time, who_name, msg, sha2 = item
    if type(sha2) is str:
        known = _DECODED.get(sha2)
        if (
            known is not None and known.guid == guid and known.msg == msg
            and known.date_time == date_time and known.who_name == who_name
        ):
            return known
    gossip = Gossip(guid=guid, date_time=date_time, who_name=who_name, msg=msg, sha2=sha2)
    if len(gossip.msg) <= _DECODED_MAX_CHARS:
        remember(_DECODED, gossip.sha2, gossip, _DECODED_ENTRIES)
    return gossip


def _gossips(value: Any, what: str) -> tuple[Gossip, ...]:
    out = []
    for item in _list(value, what, MAX_IDS):
        try:
            out.append(_gossip(item))
        except (GossipError, _Bad) as exc:
            raise _Bad(f"{what}: {exc}") from None
    return tuple(out)


@dataclass(frozen=True, slots=True, kw_only=True)
class Register(Message):
    """REGISTER: "add me to this network"; the MAC proves the sender holds the key."""

    TYPE: ClassVar[str] = "register"
    node: Peer

    def to_wire(self) -> dict[str, Any]:
        return {"node": self.node.to_dict()}

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Register:
        return cls(node=_peers([data.get("node")], "node")[0])

    def response(self, node: Peer, retention: Retention | None = None) -> RegisterOk:
        return RegisterOk(node=node, retention=retention)


@dataclass(frozen=True, slots=True, kw_only=True)
class RegisterOk(Message):
    """The answer to REGISTER: the receiver's own record; its MAC proves it holds the key."""

    TYPE: ClassVar[str] = "register_ok"
    node: Peer
    #: The network's retention as the answerer holds it: a joining node adopts it at once.
    retention: Retention | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"node": self.node.to_dict()}
        if self.retention is not None:
            out["retention"] = self.retention.to_dict()
        return out

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> RegisterOk:
        return cls(node=_peers([data.get("node")], "node")[0], retention=_retention(data.get("retention"), "retention"))


@dataclass(frozen=True, slots=True, kw_only=True)
class Hello(Message):
    """HELLO: reconcile peer lists. Either a probe, or peer records pushed plus keys wanted."""

    TYPE: ClassVar[str] = "hello"
    probe: Probe | None = None
    peers: tuple[Peer, ...] = ()
    want: tuple[str, ...] = ()

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.probe is not None:
            out["probe"] = self.probe.to_wire()
        if self.peers:
            out["peers"] = [p.to_dict() for p in self.peers]
        if self.want:
            out["want"] = _pack_keys(self.want)
        return out

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Hello:
        probe = data.get("probe")
        return cls(
            probe=None if probe is None else Probe.from_wire(probe),
            peers=_peers(data.get("peers", []), "peers"),
            want=_keys(data.get("want", ""), "want"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class HelloReply(Message):
    TYPE: ClassVar[str] = "hello_reply"
    answer: ProbeAnswer | None = None
    peers: tuple[Peer, ...] = ()

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.answer is not None:
            out["answer"] = self.answer.to_wire()
        if self.peers:
            out["peers"] = [p.to_dict() for p in self.peers]
        return out

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> HelloReply:
        answer = data.get("answer")
        return cls(
            answer=None if answer is None else ProbeAnswer.from_wire(answer),
            peers=_peers(data.get("peers", []), "peers"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class DidYouHear(Message):
    """DID_YOU_HEAR: a probe of my gossip set, or the keys I hold that you lack.

    A round's request also carries ``hello``, a probe of my peer records, so that one
    request per peer checks both sets; what follows a peer-record difference is plain HELLO.
    It carries the network's ``retention`` as the sender holds it, when one was ever set.
    """

    TYPE: ClassVar[str] = "did_you_hear"
    probe: Probe | None = None
    ids: tuple[str, ...] = ()
    hello: Probe | None = None
    retention: Retention | None = None
    #: The sender's key ring (a round's request carries it; see :class:`Ring`).
    ring: Ring | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.probe is not None:
            out["probe"] = self.probe.to_wire()
        if self.ids:
            out["ids"] = _pack_keys(self.ids)
        if self.hello is not None:
            out["hello"] = self.hello.to_wire()
        if self.retention is not None:
            out["retention"] = self.retention.to_dict()
        if self.ring is not None:
            out["ring"] = self.ring.to_wire()
        return out

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> DidYouHear:
        probe = data.get("probe")
        hello = data.get("hello")
        ring = data.get("ring")
        return cls(
            probe=None if probe is None else Probe.from_wire(probe),
            ids=_keys(data.get("ids", ""), "ids"),
            hello=None if hello is None else Probe.from_wire(hello),
            retention=_retention(data.get("retention"), "retention"),
            ring=None if ring is None else Ring.from_wire(ring),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class DidYouHearReply(Message):
    """``answer`` answers the gossip-id probe, ``hello`` the peer-record probe."""

    TYPE: ClassVar[str] = "did_you_hear_reply"
    answer: ProbeAnswer | None = None
    hello: ProbeAnswer | None = None
    retention: Retention | None = None
    #: The answerer's key ring, when the request carried one.
    ring: Ring | None = None

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.answer is not None:
            out["answer"] = self.answer.to_wire()
        if self.hello is not None:
            out["hello"] = self.hello.to_wire()
        if self.retention is not None:
            out["retention"] = self.retention.to_dict()
        if self.ring is not None:
            out["ring"] = self.ring.to_wire()
        return out

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> DidYouHearReply:
        answer = data.get("answer")
        hello = data.get("hello")
        ring = data.get("ring")
        return cls(
            answer=None if answer is None else ProbeAnswer.from_wire(answer),
            hello=None if hello is None else ProbeAnswer.from_wire(hello),
            retention=_retention(data.get("retention"), "retention"),
            ring=None if ring is None else Ring.from_wire(ring),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TellMeMore(Message):
    """TELL_ME_MORE: send me the gossips and tombstones of these keys.

    ``graft``: the eager-push tree missed these gossips; the answerer adds the asker to its
    eager peers (Plumtree's GRAFT), so the next gossips reach it by PUSH.
    """

    TYPE: ClassVar[str] = "tell_me_more"
    ids: tuple[str, ...]
    graft: bool = False

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ids": _pack_keys(self.ids)}
        if self.graft:
            out["graft"] = True
        return out

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> TellMeMore:
        return cls(
            ids=_keys(data.get("ids"), "ids"),
            graft=_bool(data.get("graft", False), "graft"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class TellMeMoreReply(Message):
    """The gossips and tombstones asked for that the answerer holds (as many as fit in one
    message)."""

    TYPE: ClassVar[str] = "tell_me_more_reply"
    gossips: tuple[Gossip, ...] = ()
    tombstones: tuple[Tombstone, ...] = ()

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"gossips": [_gossip_list(g) for g in self.gossips]}
        if self.tombstones:
            out["tombstones"] = [t.to_dict() for t in self.tombstones]
        return out

    def to_json(self) -> str:
        if self.tombstones:
            return _dumps(self.to_wire())
        return _gossips_json(self.gossips)

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> TellMeMoreReply:
        return cls(
            gossips=_gossips(data.get("gossips", []), "gossips"),
            tombstones=_tombstones(data.get("tombstones", []), "tombstones"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class Push(Message):
    """PUSH: gossips new to the sender, sent at once to its eager peers (Plumtree's GOSSIP)."""

    TYPE: ClassVar[str] = "push"
    gossips: tuple[Gossip, ...]
    #: Not the eager tree's: gossips a reconciliation found the receiver lacks. The
    #: receiver keeps them and leaves its eager links as they are (no prune, no graft).
    repair: bool = False

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"gossips": [_gossip_list(g) for g in self.gossips]}
        if self.repair:
            out["repair"] = True
        return out

    def to_json(self) -> str:
        text = _gossips_json(self.gossips)
        return text[:-1] + ',"repair":true}' if self.repair else text

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Push:
        return cls(gossips=_gossips(data.get("gossips"), "gossips"), repair=_bool(data.get("repair", False), "repair"))


@dataclass(frozen=True, slots=True, kw_only=True)
class PushReply(Message):
    """The answer to PUSH. ``prune``: it brought nothing new, stop pushing to me (Plumtree's PRUNE)."""

    TYPE: ClassVar[str] = "push_reply"
    prune: bool = False

    def to_wire(self) -> dict[str, Any]:
        return {"prune": True} if self.prune else {}

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> PushReply:
        return cls(prune=_bool(data.get("prune", False), "prune"))


@dataclass(frozen=True, slots=True, kw_only=True)
class SealedKey:
    """One key of a ring in a :class:`Keys` request: its id and the key sealed
    (:func:`gossip.auth.seal_key`) under the key that signs the request."""

    id: str
    sealed: str

    def to_wire(self) -> dict[str, Any]:
        return {"id": self.id, "sealed": self.sealed}

    @classmethod
    def from_wire(cls, data: Any) -> SealedKey:
        d = _obj(data, "keys[]")
        return cls(id=_key_id(d.get("id"), "keys[].id"), sealed=_str(d.get("sealed"), "keys[].sealed", 512))


@dataclass(frozen=True, slots=True, kw_only=True)
class Keys(Message):
    """KEYS: "here is my key ring, newer than yours": the ring (ids, primary, version) and
    each key sealed under the key this request is signed with, which the receiver holds."""

    TYPE: ClassVar[str] = "keys"
    ring: Ring
    keys: tuple[SealedKey, ...]

    def __post_init__(self) -> None:
        if tuple(k.id for k in self.keys) != self.ring.ids:
            raise _Bad("keys: one sealed key per ring id, in the ring's order")

    def to_wire(self) -> dict[str, Any]:
        return {"ring": self.ring.to_wire(), "keys": [k.to_wire() for k in self.keys]}

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Keys:
        return cls(
            ring=Ring.from_wire(data.get("ring")),
            keys=tuple(SealedKey.from_wire(k) for k in _list(data.get("keys"), "keys", MAX_RING_KEYS)),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class KeysReply(Message):
    """The answer to KEYS: the answerer's ring, after it took the one sent (or not)."""

    TYPE: ClassVar[str] = "keys_reply"
    ring: Ring

    def to_wire(self) -> dict[str, Any]:
        return {"ring": self.ring.to_wire()}

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> KeysReply:
        return cls(ring=Ring.from_wire(data.get("ring")))


#: What a LINK asks: to become an active neighbour (``join``: must be taken, the sender has
#: none; ``ask``: taken only if there is room), to end the link (``drop``), or to swap a
#: sample of peer records (``shuffle``).
LINK_OPS = ("join", "ask", "drop", "shuffle")
#: Most peer records a shuffle carries either way.
MAX_SHUFFLE = 32


def _shuffle(value: Any) -> tuple[Peer, ...]:
    if isinstance(value, list) and len(value) > MAX_SHUFFLE:
        raise _Bad(f"peers holds {len(value)} records, more than the {MAX_SHUFFLE} a shuffle carries")
    return _peers(value, "peers")


@dataclass(frozen=True, slots=True, kw_only=True)
class Link(Message):
    """LINK: the active view's request (sent only past ``full_view_limit``, see
    :class:`gossip.sets.ActiveView`). ``join`` and ``ask`` carry ``node``, the sender's own
    record; ``shuffle`` carries ``peers``, a sample of the sender's records (its own first)."""

    TYPE: ClassVar[str] = "link"
    op: str
    node: Peer | None = None
    peers: tuple[Peer, ...] = ()

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"op": self.op}
        if self.node is not None:
            out["node"] = self.node.to_dict()
        if self.peers:
            out["peers"] = [p.to_dict() for p in self.peers]
        return out

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> Link:
        op = data.get("op")
        if op not in LINK_OPS:
            raise _Bad(f"op must be one of {list(LINK_OPS)}")
        node = data.get("node")
        return cls(
            op=op,
            node=None if node is None else _peers([node], "node")[0],
            peers=_shuffle(data.get("peers", [])),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkReply(Message):
    """The answer to LINK: whether the link was taken (``join``/``ask``), and for a
    ``shuffle`` a sample of the answerer's records."""

    TYPE: ClassVar[str] = "link_reply"
    accepted: bool = False
    peers: tuple[Peer, ...] = ()

    def to_wire(self) -> dict[str, Any]:
        out: dict[str, Any] = {"accepted": self.accepted}
        if self.peers:
            out["peers"] = [p.to_dict() for p in self.peers]
        return out

    @classmethod
    def from_wire(cls, data: dict[str, Any]) -> LinkReply:
        return cls(accepted=_bool(data.get("accepted", False), "accepted"), peers=_shuffle(data.get("peers", [])))


#: Every message type by its wire tag. ONLY APPEND: the tags are part of the protocol.
MESSAGE_TYPES: dict[str, type[Message]] = {
    cls.TYPE: cls
    for cls in (
        Register,
        RegisterOk,
        Hello,
        HelloReply,
        DidYouHear,
        DidYouHearReply,
        TellMeMore,
        TellMeMoreReply,
        Push,
        PushReply,
        Keys,
        KeysReply,
        Link,
        LinkReply,
    )
}
#: The answer type each request type expects.
REPLY_TYPES: dict[type[Message], type[Message]] = {
    Register: RegisterOk,
    Hello: HelloReply,
    DidYouHear: DidYouHearReply,
    TellMeMore: TellMeMoreReply,
    Push: PushReply,
    Keys: KeysReply,
    Link: LinkReply,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class Envelope:
    """A decoded, authenticated message: who sent it on which network, and the body."""

    network: str
    sender: str
    body: Message
    nonce: str | None = None
    ts: int | None = None
    re: str | None = None
    #: A request's addressee: the receiving node's guid, None only for REGISTER (sent to an
    #: address, before the sender knows who answers there).
    to: str | None = None
    #: An answer's clock: the answerer's time in ms when it answered. The requester stamps
    #: its next requests to that node on that clock (see GossipNode: the restart floor).
    now: int | None = None
    #: The key whose MAC matched (one of the network's keys): the answer is signed with it.
    key: bytes = field(default=b"", repr=False, compare=False)

    @property
    def is_request(self) -> bool:
        return self.re is None


def encode(
    body: Message,
    *,
    network: str,
    sender: str,
    key: bytes,
    nonce: str | None = None,
    ts: int | None = None,
    re: str | None = None,
    to: str | None = None,
    now: int | None = None,
) -> bytes:
    """Sign and serialise a message. Requests carry ``to`` (the receiver's guid; None only for
    REGISTER), ``nonce`` and ``ts`` (ms); answers ``re`` and ``now`` (the answerer's clock, ms)."""
    head = _dumps({"v": PROTOCOL_VERSION, "type": body.TYPE, "net": network, "from": sender})
    tail = _dumps({"to": to, "ts": ts, "nonce": nonce} if re is None else {"re": re, "now": now})
    # The body is spliced in as its own JSON: a gossip's JSON is written once, not as a dict.
    unsigned = head[:-1] + ',"body":' + body.to_json() + "," + tail[1:]
    return auth.sign(key, unsigned.encode("utf-8"))


_CONTAINERS = frozenset((dict, list))
#: Containers in one level of a message past which _depth_ok types the level's values in C.
_WIDE = 16


def _depth_ok(value: Any) -> bool:
    """True when no container in ``value`` lies more than :data:`_MAX_DEPTH` levels down.

    Level by level over the containers alone: every message a node receives is walked here.
    A wide level (a push's gossips, thousands of arrays of strings) has its values typed by
    ``map`` and ``set``, in C, instead of a Python step per value; a narrow one (a round's
    probe) is walked plainly, which costs less for a few containers.
    """
    level = [value] if type(value) is dict or type(value) is list else []
    for _ in range(_MAX_DEPTH):
        if not level:
            return True
        if len(level) > _WIDE:
            values = list(chain.from_iterable([c.values() if type(c) is dict else c for c in level]))
            if set(map(type, values)).isdisjoint(_CONTAINERS):
                return True
            level = [v for v in values if type(v) is dict or type(v) is list]
        else:
            inner = []
            for container in level:
                items = container.values() if type(container) is dict else container
                inner += [v for v in items if type(v) is dict or type(v) is list]
            level = inner
    return not level


def decode(data: bytes, key_for: Callable[[str], bytes | Sequence[bytes] | None]) -> Envelope:
    """Parse, authenticate and validate one message.

    Args:
        data: the raw body as received.
        key_for: the key of a network name, or the keys it holds (any is accepted, the one that
            matched is ``Envelope.key``), or None if this node is not on it.

    Raises:
        MessageTooLarge: over :data:`MAX_MESSAGE_BYTES`.
        AuthenticationError: unknown network or bad MAC (nothing else is trusted before).
        RemoteProtocolError: anything malformed.
    """
    if len(data) > MAX_MESSAGE_BYTES:
        raise MessageTooLarge(f"message of {len(data)} bytes exceeds {MAX_MESSAGE_BYTES}")
    try:
        env = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise RemoteProtocolError(f"message is not UTF-8 JSON: {exc}") from None
    except ValueError:  # int() refuses more than 4,300 digits (CVE-2020-10735)
        raise RemoteProtocolError("message holds a number too long to read") from None
    if not isinstance(env, dict):
        raise RemoteProtocolError("message must be a JSON object")
    if env.get("v") != PROTOCOL_VERSION:
        raise RemoteProtocolError(
            f"unsupported protocol version {excerpt(env.get('v'))}; this node speaks {PROTOCOL_VERSION}"
        )
    network = env.get("net")
    if not isinstance(network, str):
        raise RemoteProtocolError("message lacks its network name ('net')")
    found = key_for(network)
    if found is None:
        raise AuthenticationError(f"this node is not on network {excerpt(network, 64)}")
    # Any of the network's keys (several while its password is rotated), the primary first.
    key = next((k for k in ((found,) if isinstance(found, bytes) else found) if auth.verify(k, data)), None)
    if key is None:
        raise AuthenticationError(f"bad MAC: the sender does not hold the key of network {network!r}")
    if not _depth_ok(env):
        raise RemoteProtocolError("message is nested too deeply")
    tag = env.get("type")
    cls = MESSAGE_TYPES.get(tag) if isinstance(tag, str) else None
    if cls is None:
        raise RemoteProtocolError(f"unknown message type {excerpt(env.get('type'), 64)}")
    try:
        check_network_name(network)
        sender = _guid(env.get("from"), "from")
        body = cls.from_wire(_obj(env.get("body"), "body"))
        if "re" in env:
            answers = _str(env["re"], "re")
            return Envelope(
                network=network, sender=sender, body=body, re=answers, now=_int(env.get("now"), "now"), key=key
            )
        nonce = _str(env.get("nonce"), "nonce")
        ts = _int(env.get("ts"), "ts")
        if "to" not in env:
            raise _Bad("a request names its addressee ('to': a guid, or null for register)")
        to = None if env["to"] is None else _guid(env["to"], "to")
        if to is None and cls is not Register:
            raise _Bad("only a register may leave its addressee ('to') null")
    except _Bad as exc:
        raise RemoteProtocolError(f"{cls.TYPE}: {exc}") from None
    except GossipError as exc:
        raise RemoteProtocolError(f"{cls.TYPE}: {exc}") from None
    return Envelope(network=network, sender=sender, body=body, nonce=nonce, ts=ts, to=to, key=key)


def error_body(status: int, message: str, code: ErrorCode | None = None, *, cause: ErrorCode | None = None) -> bytes:
    """The JSON body of every error answer, from any path (unsigned: it changes nothing).

    ``{"v": 4, "type": "error", "status": 401, "code": "clock_skew", "error": "..."}``: ``code``
    (an :class:`~gossip.errors.ErrorCode`; by default the one of ``status``) is for programs,
    ``error`` for people. ``cause``: why another node refused us (``peer_refused``), if known.
    """
    body: dict[str, Any] = {"v": PROTOCOL_VERSION, "type": "error", "status": status}
    body["code"] = str(code if code is not None else ErrorCode.for_status(status))
    if cause is not None:
        body["cause"] = str(cause)
    body["error"] = clip(message)  # the last line of defence: values are excerpted at the source
    return json.dumps(body).encode()
