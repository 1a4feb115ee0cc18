"""Key derivation, MACs over exact bytes, and the replay guard, on virtual time."""

from __future__ import annotations

import hashlib
import json
import random

import pytest

from gossip.auth import DEFAULT_WINDOW, MAC_SUFFIX_LEN, ReplayGuard, derive_key, sign, verify
from gossip.errors import AuthenticationError

from .helpers import KEYS, T0

KEY = KEYS["default"]
UNSIGNED = json.dumps({"v": 1, "type": "hello", "msg": "héllo ✓"}, separators=(",", ":"), ensure_ascii=False).encode()


# ---------------------------------------------------------------------------- derive_key

def test_derive_key_is_deterministic_and_32_bytes() -> None:
    key = derive_key("default", "password-of-default")
    assert key == KEYS["default"]  # the helpers derived it independently, at import
    assert isinstance(key, bytes) and len(key) == 32


def test_derive_key_is_pbkdf2_salted_with_the_network_name() -> None:
    """Pinned: the web client derives the same key with WebCrypto's PBKDF2."""
    expected = hashlib.pbkdf2_hmac("sha256", "pässword".encode(), b"gossip/v1/network/net-1", 600_000, dklen=32)
    assert derive_key("net-1", "pässword") == expected


def test_derive_key_differs_by_network_and_by_password() -> None:
    assert KEYS["default"] != KEYS["other"]  # same pattern of password, other network
    assert derive_key("other", "password-of-default") != KEYS["default"]  # same password
    assert derive_key("default", "password-of-defaulT") != KEYS["default"]


@pytest.mark.parametrize("password", ["", None, b"bytes"])
def test_derive_key_rejects_empty_or_non_text_password(password: object) -> None:
    with pytest.raises(ValueError, match="password"):
        derive_key("default", password)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- sign / verify

def test_sign_appends_a_mac_field_and_verify_accepts_it() -> None:
    signed = sign(KEY, UNSIGNED)
    assert signed.startswith(UNSIGNED[:-1]) and len(signed) == len(UNSIGNED) - 1 + MAC_SUFFIX_LEN
    parsed = json.loads(signed)
    assert list(parsed) == ["v", "type", "msg", "mac"]
    assert len(parsed["mac"]) == 32 and int(parsed["mac"], 16) >= 0
    assert verify(KEY, signed)


def test_mac_is_truncated_hmac_sha256_over_the_exact_bytes() -> None:
    import hmac

    mac = json.loads(sign(KEY, UNSIGNED))["mac"]
    assert mac == hmac.new(KEY, UNSIGNED, hashlib.sha256).hexdigest()[:32]


def test_sign_is_deterministic_and_key_dependent() -> None:
    assert sign(KEY, UNSIGNED) == sign(KEY, UNSIGNED)
    assert sign(KEY, UNSIGNED) != sign(KEYS["other"], UNSIGNED)


@pytest.mark.parametrize("data", [b"[1,2]", b'{"a":1} ', b"", b'"x"'])
def test_sign_takes_only_a_serialised_object(data: bytes) -> None:
    with pytest.raises(ValueError):
        sign(KEY, data)


def test_verify_is_false_for_any_tampered_byte() -> None:
    signed = sign(KEY, UNSIGNED)
    for i in range(len(signed)):
        for flip in (0x01, 0x20, 0x80):
            bad = bytearray(signed)
            bad[i] ^= flip
            assert not verify(KEY, bytes(bad)), (i, flip)


def test_verify_is_false_when_truncated_or_extended() -> None:
    signed = sign(KEY, UNSIGNED)
    for n in range(len(signed)):
        assert not verify(KEY, signed[:n])
    assert not verify(KEY, signed + b" ")
    assert not verify(KEY, b" " + signed)


def test_verify_is_false_with_the_wrong_key() -> None:
    signed = sign(KEY, UNSIGNED)
    assert not verify(KEYS["other"], signed)
    assert not verify(b"\x00" * 32, signed)
    assert not verify(KEY[:-1], signed)


def test_verify_is_false_without_the_mac_suffix() -> None:
    signed = sign(KEY, UNSIGNED)
    mac = json.loads(signed)["mac"]
    assert not verify(KEY, UNSIGNED)
    assert not verify(KEY, UNSIGNED[:-1] + f',"MAC":"{mac}"}}'.encode())  # wrong field name
    assert not verify(KEY, UNSIGNED[:-1] + f',"mac":"{mac.upper()}"}}'.encode())  # other spelling of the MAC
    assert not verify(KEY, UNSIGNED[:-1] + f', "mac":"{mac}"}}'.encode())  # re-serialised
    assert not verify(KEY, b'{"mac":"' + mac.encode() + b'"}')


def test_verify_does_not_accept_a_mac_moved_to_other_bytes() -> None:
    """A MAC proves only the bytes it was made over: a swapped body fails."""
    mac_a = sign(KEY, b'{"a":1}')[-MAC_SUFFIX_LEN:]
    assert not verify(KEY, b'{"a":2' + mac_a)
    assert verify(KEY, b'{"a":1' + mac_a)


# ---------------------------------------------------------------------------- ReplayGuard

def test_replay_guard_accepts_fresh_nonces() -> None:
    guard = ReplayGuard()
    assert guard.window == DEFAULT_WINDOW == 900.0
    guard.check("n1", T0, T0)
    guard.check("n2", T0, T0)
    guard.check("n3", T0 - 899, T0)
    guard.check("n4", T0 + 899, T0)
    assert len(guard) == 4


def test_replay_guard_refuses_a_replay() -> None:
    guard = ReplayGuard()
    guard.check("n1", T0, T0)
    with pytest.raises(AuthenticationError, match="replayed") as info:
        guard.check("n1", T0, T0 + 1)
    assert info.value.status_hint == 401
    with pytest.raises(AuthenticationError, match="replayed"):
        guard.check("n1", T0 + 5, T0 + 5)  # a new timestamp does not launder an old nonce
    assert len(guard) == 1


@pytest.mark.parametrize("skew", [-901.0, 901.0, -1e9, 1e9])
def test_replay_guard_refuses_stale_timestamps_in_both_directions(skew: float) -> None:
    guard = ReplayGuard()
    with pytest.raises(AuthenticationError, match="clock") as info:
        guard.check("n1", T0 + skew, T0)
    assert "900" in str(info.value)  # says what is allowed
    assert len(guard) == 0  # a refused nonce is not remembered
    guard.check("n1", T0, T0)  # and can still be used fresh


def test_replay_guard_window_edges_are_inclusive() -> None:
    guard = ReplayGuard(window=10)
    guard.check("early", T0 - 10, T0)
    guard.check("late", T0 + 10, T0)
    with pytest.raises(AuthenticationError, match="clock"):
        guard.check("too-late", T0 + 10.001, T0)


def test_replay_guard_remembers_a_nonce_as_long_as_it_could_be_fresh() -> None:
    guard = ReplayGuard(window=10)
    guard.check("n1", T0 + 10, T0)  # from a clock 10 s ahead: fresh until T0 + 20
    with pytest.raises(AuthenticationError, match="replayed"):
        guard.check("n1", T0 + 10, T0 + 20)
    assert len(guard) == 1


def test_replay_guard_forgets_nonces_once_they_can_only_be_stale() -> None:
    guard = ReplayGuard(window=10)
    guard.check("n1", T0, T0)
    guard.check("n2", T0 + 5, T0 + 5)
    guard.check("n3", T0 + 10, T0 + 10)  # n1 expires after T0 + 10
    assert len(guard) == 3
    with pytest.raises(AuthenticationError, match="clock"):
        guard.check("n1", T0, T0 + 10.5)  # forgotten, yet still refused: as stale
    assert len(guard) == 2
    guard.check("n4", T0 + 16, T0 + 16)  # n2 gone too
    assert len(guard) == 2


def test_replay_guard_memory_is_bounded_over_a_long_run() -> None:
    rng = random.Random(7)
    guard = ReplayGuard()
    sizes = []
    now = T0
    for i in range(10_000):
        now += rng.uniform(0.5, 1.5)  # ~10,000 s of virtual time, about 11 windows
        guard.check(f"nonce-{i}", now + rng.uniform(-DEFAULT_WINDOW, DEFAULT_WINDOW), now)
        sizes.append(len(guard))
    # A nonce lives at most 2 windows (ts up to one window ahead, plus the window),
    # so at most 2 * 900 s / 0.5 s = 3600 of them; in practice about 1 per second.
    assert max(sizes) <= 2 * DEFAULT_WINDOW / 0.5
    assert sizes[-1] < 2_100
    assert max(sizes[5000:]) - min(sizes[5000:]) < 500  # steady state, not growth
    assert len(guard._expiry) == len(guard)  # noqa: SLF001 - the heap is bounded too


def test_replay_guard_replays_within_a_long_run_are_all_refused() -> None:
    guard = ReplayGuard(window=30)
    now = T0
    sent: list[tuple[str, float]] = []
    for i in range(2_000):
        now += 1.0
        guard.check(f"n{i}", now, now)
        sent.append((f"n{i}", now))
    for nonce, ts in sent:
        with pytest.raises(AuthenticationError):
            guard.check(nonce, ts, now)  # either "replayed" or stale: never accepted twice
    assert len(guard) <= 31
