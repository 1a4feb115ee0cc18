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
from .errors import AuthenticationError

__all__ = ["derive_key", "sign", "verify", "ReplayGuard", "DEFAULT_WINDOW", "MAC_SUFFIX_LEN"]

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
    return hmac.new(key, unsigned, hashlib.sha256).hexdigest()[:_MAC_HEX].encode("ascii")


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

    def __init__(self, window: float = DEFAULT_WINDOW) -> None:
        self.window = window
        self._seen: set[str] = set()
        self._expiry: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self._seen)

    def check(self, nonce: str, ts: float, now: float) -> None:
        """Accept (and remember) a nonce, or raise.

        Raises:
            AuthenticationError: the timestamp is outside the window or the nonce was seen.
        """
        self._forget(now)
        if abs(now - ts) > self.window:
            raise AuthenticationError(
                f"message timestamp is {now - ts:+.0f}s off this node's clock"
                f" (allowed: +-{self.window:.0f}s); check both clocks"
            )
        if nonce in self._seen:
            raise AuthenticationError("replayed message (nonce already seen)")
        self._seen.add(nonce)
        heapq.heappush(self._expiry, (ts + self.window, nonce))

    def _forget(self, now: float) -> None:
        # A nonce whose ts + window has passed can only come back as a stale message.
        while self._expiry and self._expiry[0][0] < now:
            _, nonce = heapq.heappop(self._expiry)
            self._seen.discard(nonce)
