"""Set reconciliation: fingerprints, IBLT folding, peeling, paging."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gossip.digest import MAX_IBLT_SIZE, Iblt, KeySet, iblt_size_for

keys_st = st.sets(st.integers(min_value=0, max_value=(1 << 128) - 1), max_size=60)


@given(common=keys_st, only_a=keys_st, only_b=keys_st)
@settings(max_examples=200, deadline=None)
def test_iblt_finds_exactly_the_difference(common: set[int], only_a: set[int], only_b: set[int]) -> None:
    only_a, only_b = only_a - common - only_b, only_b - common - only_a
    a, b = KeySet(common | only_a), KeySet(common | only_b)
    size = iblt_size_for(len(only_a) + len(only_b))
    while True:
        diff = a.iblt(size).subtract(b.iblt(size)).decode()
        if diff is not None or size == MAX_IBLT_SIZE:
            break
        size *= 2
    assert diff == (only_a, only_b)


def test_fingerprint_is_order_independent_and_tracks_removal() -> None:
    keys = [random.Random(1).getrandbits(128) for _ in range(100)]
    a, b = KeySet(keys), KeySet(reversed(keys))
    assert a.fingerprint == b.fingerprint
    b.discard(keys[0])
    assert a.fingerprint != b.fingerprint
    b.add(keys[0])
    assert a.fingerprint == b.fingerprint
    assert not b.add(keys[0]) and not b.discard(12345)


def test_folded_table_equals_a_table_built_at_that_size() -> None:
    rng = random.Random(2)
    ks = KeySet(rng.getrandbits(128) for _ in range(5000))
    folded = ks.iblt(16)
    built = Iblt(16)
    for k in ks:
        built.toggle(k, 1)
    assert (folded.counts, folded.keys, folded.checks) == (built.counts, built.keys, built.checks)


def test_text_round_trip_and_bad_input() -> None:
    table = KeySet(range(1, 50)).iblt(8)
    again = Iblt.from_text(table.to_text(), 8)
    assert (again.counts, again.keys, again.checks) == (table.counts, table.keys, table.checks)
    with pytest.raises(ValueError):
        Iblt.from_text(table.to_text(), 16)
    with pytest.raises(ValueError):
        Iblt.from_text("!!!", 8)
    with pytest.raises(ValueError):
        Iblt.from_text(table.to_text(), 12)


def test_too_small_table_does_not_peel() -> None:
    a = KeySet(range(1, 400))
    assert a.iblt(8).subtract(KeySet().iblt(8)).decode() is None


def test_pages_cover_the_set_in_order() -> None:
    rng = random.Random(3)
    keys = {rng.getrandbits(128) for _ in range(1000)}
    ks = KeySet(keys)
    seen: list[int] = []
    start = 0
    while True:
        page, upto = ks.page(start, 300)
        assert page == sorted(page) and all(start <= k <= upto for k in page)
        assert ks.between(start, upto) == page
        seen += page
        if upto == (1 << 256) - 1:
            break
        start = upto + 1
    assert seen == sorted(keys)
    assert ks.page(sorted(keys)[5], 2)[0] == sorted(keys)[5:7]  # the start is included
