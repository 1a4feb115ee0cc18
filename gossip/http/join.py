"""``--join`` and ``--retry-join``: register with the first of several nodes that answers.

Rules:

- Targets are tried in the order given; a host name is resolved every round (a Kubernetes
  headless service resolves to whichever pods are up *now*) and its addresses are tried one by
  one. The first REGISTER that is accepted ends the join.
- Without retry, one round is all: the caller reports every failure and gives up.
- With retry, a failed round is followed by another after a delay that doubles from
  :data:`RETRY_FIRST` up to :data:`RETRY_CAP`, with jitter (so that nodes started together do
  not knock in step), and each failed round is one WARNING line saying what failed and when
  the next try is. It ends only when a node answers or the caller cancels it (a stop).
- A refusal (wrong password, clock skew) is a failure like any other: with retry it is tried
  again, since the other node may be given the key later (key rotation); the log says why.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass
from typing import Awaitable, Callable

from ..errors import GossipError
from ..events import Event, RegisterFailed, Registered
from .api import RESOLVE_WAIT, refusal, split_hostport
from .client import getaddrinfo_within
from .server import hostport

__all__ = [
    "JoinTarget",
    "JoinFailure",
    "JoinOutcome",
    "Resolver",
    "Register",
    "parse_join_target",
    "resolve_all",
    "retry_delay",
    "join_network",
    "RETRY_FIRST",
    "RETRY_CAP",
]

logger = logging.getLogger(__name__)

#: Seconds before the second round of ``--retry-join``; each later wait doubles it.
RETRY_FIRST = 1.0
#: The longest wait between two rounds (serf's ``retry_interval`` is 30 s too).
RETRY_CAP = 30.0

#: ``(host, port) -> [(ip, port), ...]``: every address a name has, in the resolver's order.
Resolver = Callable[[str, int], list[tuple[str, int]]]
#: ``(ip, port) -> Registered | RegisterFailed``: one REGISTER (NodeRunner.register_async).
Register = Callable[[str, int], Awaitable[Event]]


@dataclass(frozen=True, slots=True, kw_only=True)
class JoinTarget:
    """One ``--join HOST:PORT`` as given (``text``), split but not resolved."""

    text: str
    host: str
    port: int


@dataclass(frozen=True, slots=True, kw_only=True)
class JoinFailure:
    """Why one target (or one of its addresses) did not take our REGISTER."""

    target: JoinTarget
    #: The address tried; None when the name did not resolve.
    address: tuple[str, int] | None
    reason: str

    def __str__(self) -> str:
        return f"{_where(self.target, self.address)}: {self.reason}"


@dataclass(frozen=True, slots=True, kw_only=True)
class JoinOutcome:
    """The end of a join: ``registered`` (with the target and address that took it) or None
    (only without retry), and the last round's ``failures``: all of them when nothing took
    the REGISTER, else those tried before the address that did."""

    registered: Registered | None
    target: JoinTarget | None
    address: tuple[str, int] | None
    failures: tuple[JoinFailure, ...]
    rounds: int

    def describe(self) -> str:
        """One line: who took the REGISTER, or every failure of the last round."""
        if self.registered is not None and self.target is not None:
            peer = self.registered.peer.peer
            return f"registered with {peer.name} at {_where(self.target, self.address)}"
        return "; ".join(map(str, self.failures))


def _where(target: JoinTarget, address: tuple[str, int] | None) -> str:
    if address is None or address == (target.host, target.port):
        return target.text
    return f"{target.text} ({hostport(*address)})"


def parse_join_target(text: str) -> JoinTarget:
    """A ``--join`` value, checked for form only: the name is resolved when it is tried.

    Raises:
        LocalProtocolError: not ``HOST:PORT``.
    """
    host, port = split_hostport(text)
    return JoinTarget(text=text.strip(), host=host, port=port)


def resolve_all(host: str, port: int) -> list[tuple[str, int]]:
    """Every TCP address of ``host`` (once each, in the resolver's order), within
    :data:`~gossip.http.api.RESOLVE_WAIT` seconds.

    Raises:
        socket.gaierror: the name does not resolve (in time).
        UnicodeError: the name cannot be encoded.
    """
    seen: dict[tuple[str, int], None] = {}
    for info in getaddrinfo_within(host, port, RESOLVE_WAIT):
        seen.setdefault((str(info[4][0]), int(info[4][1])), None)
    return list(seen)


def retry_delay(round_number: int, rng: random.Random, *, first: float = RETRY_FIRST, cap: float = RETRY_CAP) -> float:
    """Seconds to wait after failed round ``round_number`` (1, 2, ...): the doubling step
    ``first * 2**(n-1)`` capped at ``cap``, of which a random half is taken off ("equal
    jitter": never less than half the step, never more than the step)."""
    step = min(cap, first * 2.0 ** min(round_number - 1, 32))
    return step / 2 + rng.uniform(0.0, step / 2)


async def _one_round(
    targets: list[JoinTarget], register: Register, resolve: Resolver, network: str, rounds: int
) -> JoinOutcome:
    loop = asyncio.get_running_loop()
    failures: list[JoinFailure] = []
    for target in targets:
        try:
            addresses = await loop.run_in_executor(None, resolve, target.host, target.port)
        except (OSError, UnicodeError) as exc:  # socket.gaierror is an OSError
            why = getattr(exc, "strerror", None) or str(exc)
            failures.append(JoinFailure(target=target, address=None, reason=f"cannot resolve {target.host!r}: {why}"))
            continue
        if not addresses:
            failures.append(JoinFailure(target=target, address=None, reason=f"{target.host!r} has no address"))
        for address in addresses:
            try:
                event = await register(*address)
            except GossipError as exc:  # e.g. the address is this node's own
                failures.append(JoinFailure(target=target, address=address, reason=str(exc)))
                continue
            if isinstance(event, Registered):
                return JoinOutcome(registered=event, target=target, address=address, failures=tuple(failures), rounds=rounds)
            assert isinstance(event, RegisterFailed)
            why = refusal(event, network, "the") if event.status in (401, 403) else event.reason
            failures.append(JoinFailure(target=target, address=address, reason=why))
    return JoinOutcome(registered=None, target=None, address=None, failures=tuple(failures), rounds=rounds)


async def join_network(
    targets: list[JoinTarget],
    register: Register,
    *,
    network: str,
    retry: bool,
    resolve: Resolver = resolve_all,
    rng: random.Random | None = None,
    first: float = RETRY_FIRST,
    cap: float = RETRY_CAP,
) -> JoinOutcome:
    """Register through the first target that answers (module docstring for the rules).

    Args:
        targets: the ``--join`` targets, in order (at least one).
        register: sends one REGISTER and returns its outcome event.
        network: the network joined (for the refusal's wording).
        retry: keep going, with backoff, until one answers (``--retry-join``).
        resolve: the name resolver (tests pass their own; never the network's).
        rng: the jitter's source (a fresh one when None).
        first: the first wait between rounds, in seconds.
        cap: the longest wait.

    Returns:
        The outcome: registered, or (without retry only) not, with the one round's failures.
        Cancel the task to stop retrying.
    """
    if not targets:
        raise ValueError("join_network needs at least one target")
    rng = rng or random.Random()
    rounds = 0
    while True:
        rounds += 1
        outcome = await _one_round(targets, register, resolve, network, rounds)
        if outcome.registered is not None:
            skipped = "".join(f"; before it, {failure}" for failure in outcome.failures)
            logger.info("joined network %s: %s (round %d)%s", network, outcome.describe(), rounds, skipped)
            return outcome
        if not retry:
            return outcome
        delay = retry_delay(rounds, rng, first=first, cap=cap)
        logger.warning(
            "could not join network %s yet (round %d): %s; next try in %.1f s",
            network, rounds, outcome.describe(), delay,
        )
        await asyncio.sleep(delay)
