"""Proof of the network password without sending it: key derivation, MACs, replay guard.

Pure ``hashlib``/``hmac``: the password is stretched with PBKDF2-HMAC-SHA256, salted
with the network name, into a 32-byte key. Every node-to-node message carries an HMAC-SHA256
(truncated to 128 bits) over its exact bytes, a timestamp and a nonce. A receiver
refuses a bad MAC, a timestamp outside its window and a nonce it has already seen.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import re
from typing import Callable, Mapping, Sequence
from .errors import AuthenticationError, ErrorCode

__all__ = [
    "derive_key",
    "sign",
    "verify",
    "ReplayGuard",
    "DEFAULT_WINDOW",
    "MAC_SUFFIX_LEN",
    "CLIENT_AUTH_HEADER",
    "client_auth_header",
    "check_client_auth",
    "key_id",
    "seal_key",
    "unseal_key",
    "KEY_ID_HEX",
]

#: Seconds a message's timestamp may differ from the receiver's clock. Wide enough
#: for clocks skewed by +-10 minutes; nonces are remembered for twice this long.
DEFAULT_WINDOW = 900.0

#: PBKDF2-HMAC-SHA256 iterations (OWASP's 2023 figure). PBKDF2 rather than scrypt because
#: browsers have it built in (WebCrypto), so the web client can derive the same key.
PBKDF2_ITERATIONS = 600_000


def derive_key(network_name: str, password: str) -> bytes:
    """Derive the network key from its password (PBKDF2-HMAC-SHA256, salted with the network name).

    Args:
        network_name: the network the password belongs to.
        password: the shared secret; never stored or sent.

    Returns:
        32 bytes. Holding them is as good as holding the password on this network.
    """
    if not isinstance(password, str) or not password:
        raise ValueError("the network password must be a non-empty string")
    salt = b"gossip/v1/network/" + network_name.encode("utf-8")
    return hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, PBKDF2_ITERATIONS, dklen=32)


_MAC_HEAD = b',"mac":"'
_MAC_HEX = 32
#: Bytes the MAC adds at the end of a signed JSON object: ``,"mac":"<32 hex>"}``.
MAC_SUFFIX_LEN = len(_MAC_HEAD) + _MAC_HEX + 2


def _mac(key: bytes, unsigned: bytes) -> bytes:
    return hmac.digest(key, unsigned, "sha256").hex()[:_MAC_HEX].encode("ascii")


def sign(key: bytes, unsigned: bytes) -> bytes:
    """Append a MAC to a serialised JSON object: ``{...}`` becomes ``{...,"mac":"..."}``.

    The MAC covers the exact bytes before it, so the receiver checks the bytes it got
    without re-serialising anything.
    """
    if not unsigned.endswith(b"}"):
        raise ValueError("sign() takes a serialised JSON object")
    return unsigned[:-1] + _MAC_HEAD + _mac(key, unsigned) + b'"}'


def verify(key: bytes, signed: bytes) -> bool:
    """True when ``signed`` ends in a MAC that ``key`` made over everything before it."""
    if len(signed) < MAC_SUFFIX_LEN + 2 or not signed.endswith(b'"}'):
        return False
    head = len(signed) - MAC_SUFFIX_LEN
    if signed[head : head + len(_MAC_HEAD)] != _MAC_HEAD:
        return False
    unsigned = signed[:head] + b"}"
    return hmac.compare_digest(signed[head + len(_MAC_HEAD) : -2], _mac(key, unsigned))


class ReplayGuard:
    """Refuses stale timestamps and nonces seen before, in bounded memory.

    A nonce is remembered until its timestamp leaves the window; anything older is
    refused as stale, so the memory holds at most the nonces of one window.
    """

    def __init__(self, window: float = DEFAULT_WINDOW, *, not_before: float = float("-inf")) -> None:
        self.window = window
        #: Timestamps before this (the node's start) are refused: the nonces seen before a
        #: restart are not remembered, so a request from then could otherwise come back.
        self.not_before = not_before
        self._seen: set[str] = set()
        self._expiry: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._seen)

    def check(self, nonce: str, ts: float, now: float) -> None:
        """Accept (and remember) a nonce, or raise.

        Raises:
            AuthenticationError: the timestamp is outside the window (code ``clock_skew``)
                or the nonce was seen (``replayed``).
        """
        self._forget(now)
        if abs(now - ts) > self.window:
            raise AuthenticationError(
                f"message timestamp is {now - ts:+.0f}s off this node's clock"
                f" (allowed: +-{self.window:.0f}s); check both clocks",
                code=ErrorCode.CLOCK_SKEW,
            )
        if ts < self.not_before:
            raise AuthenticationError(
                f"message from {self.not_before - ts:.0f}s before this node started: a replay, or a"
                " sender whose clock is behind; a fresh request is accepted",
                code=ErrorCode.REPLAYED,
            )
        if nonce in self._seen:
            raise AuthenticationError("replayed message (nonce already seen)", code=ErrorCode.REPLAYED)
        self._seen.add(nonce)
        heapq.heappush(self._expiry, (ts + self.window, nonce))

    def _forget(self, now: float) -> None:
        # A nonce whose ts + window has passed can only come back as a stale message.
        while self._expiry and self._expiry[0][0] < now:
            _, nonce = heapq.heappop(self._expiry)
            self._seen.discard(nonce)


#: The header that authenticates a client (CLI, web page) to a node's client API.
CLIENT_AUTH_HEADER = "X-Gossip-Auth"
_CLIENT_AUTH = re.compile(
    r"network=(?P<network>[A-Za-z0-9][A-Za-z0-9._-]{0,63}),"
    r" node=(?P<node>[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}), ts=(?P<ts>[0-9]{1,16}),"
    r" nonce=(?P<nonce>[0-9a-f]{16,64}), mac=(?P<mac>[0-9a-f]{32})"
)
#: The first line of the text a client MAC covers; a new line means a new format.
CLIENT_MAC_VERSION = "gossip-client-v2"


def _client_mac(
    key: bytes, node: str, method: str, path: str, query: Mapping[str, list[str]], body: bytes, ts: int, nonce: str
) -> str:
    canonical_query = "&".join(f"{k}={v}" for k in sorted(query) for v in query[k])
    text = "\n".join(
        [CLIENT_MAC_VERSION, node, method.upper(), path, canonical_query, str(ts), nonce, hashlib.sha256(body).hexdigest()]
    )
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()[:_MAC_HEX]


def client_auth_header(
    *,
    network: str,
    node: str,
    key: bytes,
    method: str,
    path: str,
    query: Mapping[str, list[str]] | None = None,
    body: bytes = b"",
    ts: int,
    nonce: str,
) -> str:
    """The :data:`CLIENT_AUTH_HEADER` value for one client request.

    The MAC covers the receiving node's guid (``node``: ``GET /healthz`` gives it), the
    method, path, query, body hash, ``ts`` (ms) and ``nonce``, with the network key: the
    password never travels, and a captured request is refused by every other node and by
    this one again, even after it restarts.
    """
    mac = _client_mac(key, node, method, path, query or {}, body, ts, nonce)
    return f"network={network}, node={node}, ts={ts}, nonce={nonce}, mac={mac}"


def check_client_auth(
    header: str | None,
    *,
    method: str,
    path: str,
    query: Mapping[str, list[str]],
    body: bytes,
    key_for: Callable[[str], bytes | Sequence[bytes] | None],
    guard_for: Callable[[str], ReplayGuard],
    now: float,
    node_guid: str,
) -> str:
    """Check a client request's :data:`CLIENT_AUTH_HEADER`.

    Args:
        key_for: the key of a network, or the keys it holds (any of them is accepted), or
            None when the node is not on it.

    Returns:
        The network the client proved it holds the key of.

    Raises:
        AuthenticationError: missing, malformed, wrong key, stale or replayed.
    """
    if not header:
        raise AuthenticationError(f"this request needs an {CLIENT_AUTH_HEADER} header (see docs/http-api.md)")
    match = _CLIENT_AUTH.fullmatch(header.strip())
    if match is None:
        if "node=" not in header:
            raise AuthenticationError(
                f"{CLIENT_AUTH_HEADER} header without node=: a client older than {CLIENT_MAC_VERSION};"
                " sign with this node's guid (GET /healthz gives it)"
            )
        raise AuthenticationError(f"malformed {CLIENT_AUTH_HEADER} header")
    network, ts, nonce = match["network"], int(match["ts"]), match["nonce"]
    found = key_for(network)
    if found is None:
        raise AuthenticationError(f"this node is not on network {network!r}")
    # Any key the node holds for the network will do (several while its password is rotated).
    keys = (found,) if isinstance(found, bytes) else found
    macs = [_client_mac(key, match["node"], method, path, query, body, ts, nonce) for key in keys]
    if not any(hmac.compare_digest(expected, match["mac"]) for expected in macs):
        raise AuthenticationError(f"wrong password for network {network!r}")
    if match["node"] != node_guid:
        raise AuthenticationError(
            f"request signed for node {match['node']}, not this one: replayed from elsewhere?",
            code=ErrorCode.REPLAYED,
        )
    guard_for(network).check(nonce, ts / 1000.0, now)
    return network


# ---------------------------------------------------------------------- key rotation
#: Hex digits of a key id: 64 bits of SHA-256, enough to tell a network's few keys apart.
KEY_ID_HEX = 16
_KEY_ID_RE = re.compile(r"[0-9a-f]{%d}" % KEY_ID_HEX)
_SEAL_NONCE = 16
_SEAL_TAG = 16


def key_id(key: bytes) -> str:
    """A key's public name: the first 64 bits of SHA-256 over a label and the key, in hex.

    It names the key in ``gossip keys list`` and in what nodes advertise; it reveals no more
    than any MAC made with the key does (a password guess can be checked against either,
    at the cost of one PBKDF2 per guess).
    """
    return hashlib.sha256(b"gossip/v1/key-id\0" + key).hexdigest()[:KEY_ID_HEX]


def _keystream(enc: bytes, nonce: bytes, kid: str, length: int) -> bytes:
    out = b""
    block = 0
    while len(out) < length:
        out += hmac.digest(enc, nonce + kid.encode("ascii") + block.to_bytes(4, "big"), "sha256")
        block += 1
    return out[:length]


def _seal_keys(wrap: bytes, context: str) -> tuple[bytes, bytes]:
    label = context.encode("utf-8")
    enc = hmac.digest(wrap, b"gossip/v1/keywrap/enc\0" + label, "sha256")
    mac = hmac.digest(wrap, b"gossip/v1/keywrap/mac\0" + label, "sha256")
    return enc, mac


def seal_key(wrap: bytes, key: bytes, *, nonce: bytes, context: str) -> str:
    """Encrypt ``key`` under ``wrap`` (a key the receiver holds), encrypt-then-MAC.

    The construction (docs/security.md, "Key rotation"): from ``wrap`` and ``context`` (the
    network name) HMAC-SHA256 derives an encryption key ``enc`` and a MAC key ``mac``; the
    keystream is HMAC-SHA256(enc, nonce || key id || block counter), XORed onto the key;
    the tag is HMAC-SHA256(mac, nonce || key id || ciphertext), 128 bits. The key id is in
    the keystream input, so two different keys never share a keystream even if a nonce
    repeats.

    Args:
        wrap: the key that protects the new one.
        key: the key to carry (16 to 64 bytes).
        nonce: 16 fresh bytes.
        context: binds the result to one network (its name).

    Returns:
        ``nonce || ciphertext || tag`` in hex.
    """
    if len(nonce) != _SEAL_NONCE or not 16 <= len(key) <= 64:
        raise ValueError("seal_key takes a 16-byte nonce and a key of 16 to 64 bytes")
    enc, mac = _seal_keys(wrap, context)
    kid = key_id(key)
    ciphertext = bytes(a ^ b for a, b in zip(key, _keystream(enc, nonce, kid, len(key))))
    tag = hmac.digest(mac, nonce + kid.encode("ascii") + ciphertext, "sha256")[:_SEAL_TAG]
    return (nonce + ciphertext + tag).hex()


def unseal_key(wraps: Sequence[bytes], kid: str, sealed: str, *, context: str) -> bytes | None:
    """The key :func:`seal_key` sealed, if one of ``wraps`` sealed it and it has id ``kid``.

    Returns:
        The key, or None when the text is malformed, no wrap key's tag matches, or the key
        inside does not have the id announced.
    """
    if not isinstance(sealed, str) or not isinstance(kid, str) or not _KEY_ID_RE.fullmatch(kid):
        return None
    try:
        raw = bytes.fromhex(sealed)
    except ValueError:
        return None
    size = len(raw) - _SEAL_NONCE - _SEAL_TAG
    if not 16 <= size <= 64:
        return None
    nonce, ciphertext, tag = raw[:_SEAL_NONCE], raw[_SEAL_NONCE:-_SEAL_TAG], raw[-_SEAL_TAG:]
    for wrap in wraps:
        enc, mac = _seal_keys(wrap, context)
        expected = hmac.digest(mac, nonce + kid.encode("ascii") + ciphertext, "sha256")[:_SEAL_TAG]
        if hmac.compare_digest(expected, tag):
            key = bytes(a ^ b for a, b in zip(ciphertext, _keystream(enc, nonce, kid, size)))
            return key if hmac.compare_digest(key_id(key), kid) else None
    return None
