"""Peer liveness: the transition tables, suspect then dead, backoff, recovery."""

from __future__ import annotations

import dataclasses

import pytest

from gossip.liveness import ON_FAILURE, ON_SUCCESS, Liveness, LivenessPolicy
from gossip.model import PeerStatus

ALIVE, SUSPECT, DEAD, LEFT = PeerStatus.ALIVE, PeerStatus.SUSPECT, PeerStatus.DEAD, PeerStatus.LEFT
POLICY = LivenessPolicy(dead_after=3, base_backoff=1.0, max_backoff=60.0)


def test_transition_tables_cover_every_status() -> None:
    assert set(ON_SUCCESS) == set(ON_FAILURE) == set(PeerStatus)
    assert ON_SUCCESS == {ALIVE: ALIVE, SUSPECT: ALIVE, DEAD: ALIVE, LEFT: LEFT}
    assert ON_FAILURE == {ALIVE: SUSPECT, SUSPECT: SUSPECT, DEAD: DEAD, LEFT: LEFT}


def test_status_values_are_the_contracts_words() -> None:
    assert [str(s) for s in PeerStatus] == ["alive", "suspect", "dead", "left"]
    assert PeerStatus("suspect") is SUSPECT


def test_defaults() -> None:
    live = Liveness()
    assert (live.status, live.last_seen, live.failures, live.retry_at) == (ALIVE, None, 0, 0.0)
    assert live.eligible(0.0)
    assert LivenessPolicy() == LivenessPolicy(dead_after=3, base_backoff=1.0, max_backoff=60.0)
    with pytest.raises(dataclasses.FrozenInstanceError):
        POLICY.dead_after = 5  # type: ignore[misc]


def test_failures_turn_alive_into_suspect_then_dead_after_dead_after() -> None:
    live = Liveness()
    changes = [live.failed(100.0 + i, POLICY) for i in range(5)]
    assert changes == [ALIVE, None, SUSPECT, None, None]  # the old status, when it changed
    assert live.status is DEAD and live.failures == 5


@pytest.mark.parametrize("dead_after", [1, 2, 5])
def test_dead_after_counts_consecutive_failures(dead_after: int) -> None:
    policy = LivenessPolicy(dead_after=dead_after)
    live = Liveness()
    statuses = []
    for i in range(dead_after + 1):
        live.failed(float(i), policy)
        statuses.append(live.status)
    assert statuses[dead_after - 1] is DEAD
    assert all(s is SUSPECT for s in statuses[: dead_after - 1])
    assert statuses[-1] is DEAD


def test_dead_after_one_goes_straight_from_alive_to_dead() -> None:
    live = Liveness()
    assert live.failed(0.0, LivenessPolicy(dead_after=1)) is ALIVE
    assert live.status is DEAD


def test_backoff_doubles_from_base_and_caps_at_max() -> None:
    live = Liveness()
    delays = []
    for i in range(10):
        now = 1000.0 * i
        live.failed(now, POLICY)
        delays.append(live.retry_at - now)
    assert delays == [1, 2, 4, 8, 16, 32, 60, 60, 60, 60]


def test_backoff_follows_the_policy() -> None:
    policy = LivenessPolicy(base_backoff=0.25, max_backoff=3.0)
    live = Liveness()
    delays = []
    for _ in range(6):
        live.failed(0.0, policy)
        delays.append(live.retry_at)
    assert delays == [0.25, 0.5, 1.0, 2.0, 3.0, 3.0]


def test_backoff_survives_very_many_failures() -> None:
    live = Liveness(status=DEAD, failures=10**6)
    live.failed(5.0, POLICY)  # 2 ** 999999 would not fit a float: the exponent is capped
    assert live.retry_at == 65.0 and live.status is DEAD


def test_eligible_only_once_the_backoff_has_passed() -> None:
    live = Liveness()
    live.failed(100.0, POLICY)
    assert not live.eligible(100.0) and not live.eligible(100.999)
    assert live.eligible(101.0) and live.eligible(500.0)
    live.failed(101.0, POLICY)
    assert not live.eligible(102.9) and live.eligible(103.0)


@pytest.mark.parametrize("status", [ALIVE, SUSPECT, DEAD])  # LEFT: see test_left_follows_the_record...
def test_succeeded_from_any_state_returns_to_alive_and_resets(status: PeerStatus) -> None:
    live = Liveness(status=status, last_seen=1.0, failures=7, retry_at=999.0)
    old = live.succeeded(50.0)
    assert old == (None if status is ALIVE else status)
    assert (live.status, live.last_seen, live.failures, live.retry_at) == (ALIVE, 50.0, 0, 0.0)
    assert live.eligible(50.0)


def test_a_recovered_peer_starts_counting_again() -> None:
    live = Liveness()
    for i in range(3):
        live.failed(float(i), POLICY)
    assert live.status is DEAD
    assert live.succeeded(10.0) is DEAD
    assert live.failed(11.0, POLICY) is ALIVE
    assert live.status is SUSPECT and live.retry_at == 12.0  # backoff restarts from base


def test_failed_and_succeeded_walk_the_tables() -> None:
    """Every transition the node can cause agrees with the tables (beyond the dead_after count)."""
    policy = LivenessPolicy(dead_after=10**9)
    for start in PeerStatus:
        live = Liveness(status=start)
        live.failed(0.0, policy)
        assert live.status is ON_FAILURE[start]
        live = Liveness(status=start)
        live.succeeded(0.0)
        assert live.status is ON_SUCCESS[start]


def test_left_follows_the_record_not_requests_and_is_never_contacted() -> None:
    live = Liveness()
    live.failed(0.0, POLICY)
    assert live.set_left(True) is SUSPECT and live.status is LEFT
    assert not live.eligible(10**9)  # whatever the backoff: a left peer is not contacted
    assert live.succeeded(5.0) is None and live.status is LEFT  # an old request's answer
    assert live.failed(6.0, POLICY) is None and live.status is LEFT  # nor suspect, nor dead
    assert live.set_left(True) is None
    assert live.set_left(False) is LEFT
    assert (live.status, live.failures, live.eligible(6.0)) == (ALIVE, 0, True)
    assert Liveness().set_left(False) is None


def test_jitter_shortens_the_backoff_within_bounds() -> None:
    delays = []
    for jitter in (0.0, 0.5, 0.75, 1.0, 2.0):
        live = Liveness()
        for _ in range(3):
            live.failed(0.0, POLICY, jitter)
        delays.append(live.retry_at)
    assert delays == [2.0, 2.0, 3.0, 4.0, 4.0]  # 4 s backoff, times the jitter kept in [0.5, 1]
