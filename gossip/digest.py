"""Set reconciliation: a fingerprint to tell "in sync" in O(1) bytes, IBLTs for the difference.

Each set (a network's gossips and tombstones, a network's peer records) is a
:class:`KeySet` of 256-bit keys. Two nodes first compare ``(count, fingerprint)``; equal means in sync and
the round costs a few hundred bytes whatever the set size. Otherwise they exchange an
invertible Bloom lookup table (Eppstein et al., "What's the Difference?", 2011) sized for
the difference, subtract, and peel out exactly the keys one side has and the other lacks:
O(d) bytes for d differences. A table that does not peel is asked for again at twice the
size; past :data:`MAX_IBLT_SIZE` the sides page through their sorted keys instead, which
costs O(total) but only happens when d is of the order of the whole set anyway.

Theory of operation: every key hashes (blake2b) to three cell indexes, one in each of three
sub-tables of ``size`` cells, a 64-bit check value and a 128-bit fingerprint share. Sizes
are powers of two and an index is ``h & (size - 1)``, so a table can be *folded* to any
smaller power of two by adding cells. Each KeySet keeps one table incrementally (O(1) per
add or remove) and folds it for the size asked, so answering a probe costs O(size), not O(n).

The difference estimator (the paper's strata estimator, with one xor byte per stratum in
place of a small IBLT, and stochastic averaging over groups): a key falls in one of
:data:`STRATA_GROUPS` groups (the low bits of its check value) and, within it, in stratum
``i`` with probability ``2**-(i+1)`` (the number of trailing zero bits of the rest, capped at
``STRATA - 1``). Each KeySet keeps, per stratum, the xor of its keys' fingerprint shares'
low byte (O(1) per add or remove, :data:`STRATA_BYTES` bytes a set). Two sets' strata differ
where a differing key falls (but for one chance in 256 that the xor cancels), and which ones
differ tells how large the difference is: :func:`estimate_difference`.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import functools
import hashlib
import math
import struct
from typing import AbstractSet, Iterable

__all__ = [
    "KeySet",
    "Iblt",
    "MIN_IBLT_SIZE",
    "MAX_IBLT_SIZE",
    "iblt_size_for",
    "estimate_difference",
    "STRATA",
    "STRATA_GROUPS",
    "STRATA_BYTES",
    "key_hex",
    "parse_key",
]

MIN_IBLT_SIZE = 8
#: Largest sub-table size sent on the wire: 3 * 4096 cells of 28 bytes, about 340 KiB.
MAX_IBLT_SIZE = 4096
#: Largest table kept incrementally per set; larger ones are built on demand in O(n).
_MAX_BASE_SIZE = 1024
_CELL = struct.Struct(">i32s8s")
_MASK64 = (1 << 64) - 1
#: Keys are 256-bit: a gossip's is its guid (high half) and a hash of its content (low half),
#: see :func:`gossip.model.item_key`; a peer record's is a 128-bit hash.
KEY_BITS = 256
_KEY_LIMIT = 1 << KEY_BITS


def key_hex(key: int) -> str:
    return format(key, "064x")


def parse_key(text: object) -> int:
    """A key from its 64-hex-digit text; raises ValueError."""
    if not isinstance(text, str) or len(text) != 64:
        raise ValueError("a key must be 64 hex digits")
    return int(text, 16)


_HASH_FIELDS = struct.Struct(">IIIQQQ")
#: Keys whose hashes are kept, process-wide. Every node of a process (the simulator's
#: thousands, or one real node's sets) hashes the same keys again and again: a peer record
#: known to N nodes, a gossip held by all of them, each rebuild of a table. Bounded, so
#: hostile keys peeled from a peer's table only evict entries, and cost what they cost uncached.
HASH_CACHE_SIZE = 1 << 16


_Hashes = tuple[int, int, int, int, int, int]


@functools.lru_cache(maxsize=HASH_CACHE_SIZE)
def _hashes(key: int) -> _Hashes:
    """Three cell indexes, a 64-bit check value and a 128-bit fingerprint share of ``key``,
    and its place in a strata summary: the stratum's index << 8 | the byte it XORs in."""
    d = hashlib.blake2b(key.to_bytes(32, "big"), digest_size=36, person=b"gossip-iblt-v3").digest()
    i1, i2, i3, check, high, low = _HASH_FIELDS.unpack(d)
    return i1, i2, i3, check, (high << 64) | low, _stratum(check) << 8 | (low & 0xFF)


#: Strata per group of the difference estimator; the last one takes every key past it.
STRATA = 12
#: Groups of strata (a power of two): four estimates averaged, each of a quarter of the
#: difference. One group is within a factor of 2 of the true difference about 70% of the
#: time, four about 95% (measured from d = 3 to 8,000, see tests/test_estimator.py).
STRATA_GROUPS = 4
_GROUP_BITS = STRATA_GROUPS.bit_length() - 1
#: Bytes of a set's strata summary on the wire: one a stratum.
STRATA_BYTES = STRATA * STRATA_GROUPS
#: The candidate differences the estimator weighs: 2**(j/4) for j in 0..64, up to 65,536.
_GRID: list[float] = [2.0 ** (j / 4) for j in range(65)]
_STRATUM_P: list[float] = [2.0 ** -(i + 1) for i in range(STRATA - 1)] + [2.0 ** -(STRATA - 1)]
#: Per candidate d and stratum i, with x = d * p_i / groups (a group's expected differing keys
#: in stratum i): the log-likelihood of the stratum differing, log(1 - e^-x), and of it being
#: equal, -x (Poisson approximation of the binomial).
_LOG_DIFFERS: list[list[float]] = [[math.log(-math.expm1(-d * p / STRATA_GROUPS)) for p in _STRATUM_P] for d in _GRID]
_LOG_EQUAL: list[list[float]] = [[-d * p / STRATA_GROUPS for p in _STRATUM_P] for d in _GRID]


def _stratum(check: int) -> int:
    """The index of a key's stratum in a summary, from its 64-bit check value."""
    rest = check >> _GROUP_BITS
    level = (rest & -rest).bit_length() - 1 if rest else STRATA - 1
    return (check & (STRATA_GROUPS - 1)) * STRATA + min(level, STRATA - 1)


def estimate_difference(mine: bytes, theirs: bytes, count_difference: int = 0) -> int:
    """How many keys two sets differ by (in either direction), from their strata summaries.

    The maximum-likelihood d on a geometric grid (four points an octave): stratum ``i``
    of a group differs with probability ``1 - exp(-d * p_i / groups)``. Never below
    ``count_difference`` (at least that many keys differ) nor below the number of differing
    strata (each holds at least one differing key); 0 when the summaries are equal.

    Raises:
        ValueError: a summary is not :data:`STRATA_BYTES` long.
    """
    if len(mine) != STRATA_BYTES or len(theirs) != STRATA_BYTES:
        raise ValueError(f"a strata summary is {STRATA_BYTES} bytes")
    differs = [0] * STRATA
    for index, (a, b) in enumerate(zip(mine, theirs)):
        if a != b:
            differs[index % STRATA] += 1
    found = sum(differs)
    if not found:
        return abs(count_difference)
    equal = [STRATA_GROUPS - k for k in differs]

    def likelihood(j: int) -> float:
        return sum(k * a for k, a in zip(differs, _LOG_DIFFERS[j]) if k) + sum(
            k * e for k, e in zip(equal, _LOG_EQUAL[j]) if k
        )

    # The log-likelihood is concave in d (a sum of log(1 - e^-cd) and -cd terms), so over the
    # increasing grid it rises to its maximum and then falls: a binary search on its slope.
    lo, hi = 0, len(_GRID) - 1
    while lo < hi:
        mid = (lo + hi) // 2
        if likelihood(mid) < likelihood(mid + 1):
            lo = mid + 1
        else:
            hi = mid
    return max(round(_GRID[lo]), found, abs(count_difference))


def _next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def iblt_size_for(estimate: int) -> int:
    """The sub-table size to try first for an estimated difference of ``estimate`` keys."""
    return min(MAX_IBLT_SIZE, max(MIN_IBLT_SIZE, _next_pow2(-(-estimate * 3 // 5))))


def _check_size(size: int) -> None:
    if size < MIN_IBLT_SIZE or size > MAX_IBLT_SIZE or size & (size - 1):
        raise ValueError(
            f"IBLT size must be a power of two from {MIN_IBLT_SIZE} to {MAX_IBLT_SIZE}, got {size}"
        )


class Iblt:
    """Three sub-tables of ``size`` cells: (count, xor of keys, xor of check values)."""

    __slots__ = ("size", "counts", "keys", "checks")

    def __init__(self, size: int) -> None:
        self.size = size
        n = 3 * size
        self.counts = [0] * n
        self.keys = [0] * n
        self.checks = [0] * n

    def toggle(self, key: int, sign: int, hashes: _Hashes | None = None) -> None:
        """Add (sign=1) or remove (sign=-1) one key."""
        i1, i2, i3, chk, _, _ = hashes or _hashes(key)
        size = self.size
        mask = size - 1
        counts, keys, checks = self.counts, self.keys, self.checks
        a, b, c = i1 & mask, size + (i2 & mask), 2 * size + (i3 & mask)
        counts[a] += sign
        counts[b] += sign
        counts[c] += sign
        keys[a] ^= key
        keys[b] ^= key
        keys[c] ^= key
        checks[a] ^= chk
        checks[b] ^= chk
        checks[c] ^= chk

    def fold(self, size: int) -> Iblt:
        """This table folded down to a smaller power-of-two ``size``.

        Cell ``i`` of a sub-table lands in cell ``i % size``; the table is halved until it is
        that size, each half added (counts) or xored (keys, checks) onto the other, whole
        lists at a time.
        """
        if size == self.size:
            return self.copy()
        counts, keys, checks = self.counts, self.keys, self.checks
        half = self.size
        while half > size:
            half //= 2
            cuts = [(t * 2 * half, t * 2 * half + half, (t + 1) * 2 * half) for t in range(3)]
            counts = [x + y for a, m, b in cuts for x, y in zip(counts[a:m], counts[m:b])]
            keys = [x ^ y for a, m, b in cuts for x, y in zip(keys[a:m], keys[m:b])]
            checks = [x ^ y for a, m, b in cuts for x, y in zip(checks[a:m], checks[m:b])]
        out = Iblt(size)
        out.counts, out.keys, out.checks = counts, keys, checks
        return out

    def copy(self) -> Iblt:
        out = Iblt(self.size)
        out.counts, out.keys, out.checks = list(self.counts), list(self.keys), list(self.checks)
        return out

    def subtract(self, other: Iblt) -> Iblt:
        if other.size != self.size:
            raise ValueError("cannot subtract IBLTs of different sizes")
        out = Iblt(self.size)
        out.counts = [a - b for a, b in zip(self.counts, other.counts)]
        out.keys = [a ^ b for a, b in zip(self.keys, other.keys)]
        out.checks = [a ^ b for a, b in zip(self.checks, other.checks)]
        return out

    def decode(self) -> tuple[set[int], set[int]] | None:
        """Peel a difference table (mine minus theirs).

        Returns:
            ``(only_mine, only_theirs)``, or None when the table is too small to peel.
        """
        t = self.copy()
        mine: set[int] = set()
        theirs: set[int] = set()
        stack = list(range(3 * t.size))
        while stack:
            cell = stack.pop()
            count = t.counts[cell]
            if count not in (1, -1):
                continue
            key = t.keys[cell]
            if key >= _KEY_LIMIT:
                continue
            hashes = _hashes(key)
            if hashes[3] != t.checks[cell]:
                continue
            (mine if count == 1 else theirs).add(key)
            t.toggle(key, -count, hashes)
            mask = t.size - 1
            stack.extend((hashes[0] & mask, t.size + (hashes[1] & mask), 2 * t.size + (hashes[2] & mask)))
        if any(t.counts) or any(t.keys) or any(t.checks):
            return None
        return mine, theirs

    def to_text(self) -> str:
        buf = bytearray()
        for c, k, h in zip(self.counts, self.keys, self.checks):
            buf += _CELL.pack(c, k.to_bytes(32, "big"), h.to_bytes(8, "big"))
        return base64.b64encode(bytes(buf)).decode("ascii")

    @classmethod
    def from_text(cls, text: str, size: int) -> Iblt:
        """Parse a table sent by a peer; raises ValueError on any malformation."""
        _check_size(size)
        try:
            raw = base64.b64decode(text.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError):
            raise ValueError("IBLT cells are not valid base64") from None
        if len(raw) != 3 * size * _CELL.size:
            raise ValueError(f"IBLT of size {size} must be {3 * size * _CELL.size} bytes")
        out = cls(size)
        for i, (c, k, h) in enumerate(_CELL.iter_unpack(raw)):
            out.counts[i] = c
            out.keys[i] = int.from_bytes(k, "big")
            out.checks[i] = int.from_bytes(h, "big")
        return out


class KeySet:
    """A set of 256-bit keys with an O(1) fingerprint and IBLTs of any power-of-two size."""

    def __init__(self, keys: Iterable[int] = ()) -> None:
        self._keys: set[int] = set()
        self._fp = 0
        #: The table kept incrementally; None until the first :meth:`iblt`, so that loading
        #: a set (a node restoring a thousand peer records) costs no cell updates at all.
        self._base: Iblt | None = None
        self._sorted: list[int] | None = None
        #: The difference estimator's summary, kept incrementally (see the module docstring).
        self._strata = bytearray(STRATA_BYTES)
        #: Adds and removes so far: a node tells from it whether the set changed lately.
        self.changes = 0
        self.update(keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: object) -> bool:
        return key in self._keys

    @property
    def members(self) -> AbstractSet[int]:
        """The keys, read-only, for loops over every gossip received: taken once a batch,
        ``key in members`` then costs no Python call (change the set through the methods)."""
        return self._keys

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self._keys)

    @property
    def fingerprint(self) -> str:
        """128-bit xor of the keys' hashes, as hex; with the count it identifies the set."""
        return format(self._fp, "032x")

    @property
    def strata(self) -> bytes:
        """The difference estimator's summary of this set (:data:`STRATA_BYTES` bytes)."""
        return bytes(self._strata)

    def add(self, key: int) -> bool:
        """Add one key; returns whether it was new. The common case, so without
        :meth:`update`'s batching."""
        if key in self._keys:
            return False
        if not 0 <= key < _KEY_LIMIT:
            raise ValueError("keys are 256-bit non-negative integers")
        self._keys.add(key)
        self._sorted = None
        self.changes += 1
        hashes = _hashes(key)
        self._fp ^= hashes[4]
        slot = hashes[5]
        self._strata[slot >> 8] ^= slot & 0xFF
        if self._base is not None:
            self._base.toggle(key, 1, hashes)
        return True

    def update(self, keys: Iterable[int]) -> int:
        """Add several keys; returns how many were new."""
        new = [key for key in dict.fromkeys(keys) if key not in self._keys]
        if not all(0 <= key < _KEY_LIMIT for key in new):
            raise ValueError("keys are 256-bit non-negative integers")  # and none was added
        if not new:
            return 0
        self._keys.update(new)
        self._sorted = None
        self.changes += len(new)
        base, fp, strata = self._base, self._fp, self._strata
        for key in new:
            hashes = _hashes(key)
            fp ^= hashes[4]
            slot = hashes[5]
            strata[slot >> 8] ^= slot & 0xFF
            if base is not None:
                base.toggle(key, 1, hashes)
        self._fp = fp
        return len(new)

    def discard(self, key: int) -> bool:
        if key not in self._keys:
            return False
        self._keys.remove(key)
        self.changes += 1
        hashes = _hashes(key)
        self._fp ^= hashes[4]
        slot = hashes[5]
        self._strata[slot >> 8] ^= slot & 0xFF
        if self._base is not None:
            self._base.toggle(key, -1, hashes)
        self._sorted = None
        return True

    def _build(self, size: int) -> Iblt:
        table = Iblt(size)
        for key in self._keys:
            table.toggle(key, 1, _hashes(key))
        return table

    def iblt(self, size: int) -> Iblt:
        """This set as an IBLT with ``size`` cells per sub-table.

        The kept table is first built here, and grows here, not on add: to a quarter of the
        set's size (so that folding it stays O(n)), rebuilt once however many keys came in
        since, up to
        :data:`_MAX_BASE_SIZE`. A burst of adds then costs one hash each, not a rebuild at
        every doubling.
        """
        _check_size(size)
        base = self._base
        grown = MIN_IBLT_SIZE if base is None else base.size
        while len(self._keys) > 4 * grown and grown < _MAX_BASE_SIZE:
            grown *= 2
        if base is None or grown != base.size:
            base = self._base = self._build(grown)
        if size <= base.size:
            return base.fold(size)
        return self._build(size)

    def page(self, start: int, limit: int) -> tuple[list[int], int]:
        """Up to ``limit`` keys from ``start`` on, sorted, and the end of the range covered.

        Returns:
            ``(keys, upto)``: every key of this set in ``[start, upto]`` is in ``keys``;
            ``upto`` is ``2**256 - 1`` once the set is exhausted.
        """
        if self._sorted is None:
            self._sorted = sorted(self._keys)
        first = bisect.bisect_left(self._sorted, start)
        keys = self._sorted[first : first + limit]
        more = len(keys) == limit and first + limit < len(self._sorted)
        return keys, keys[-1] if more else _KEY_LIMIT - 1

    def between(self, start: int, upto: int) -> list[int]:
        """Every key in ``[start, upto]``."""
        if self._sorted is None:
            self._sorted = sorted(self._keys)
        lo = bisect.bisect_left(self._sorted, start)
        hi = bisect.bisect_right(self._sorted, upto)
        return self._sorted[lo:hi]
