"""Nine node processes on three hosts (network namespaces): a cut cable heals, a slow one converges.

The hosts, their switch and their cables are built by :class:`tests.netns.Lab` (see there and
docs/testing.md). Each host runs three nodes on one address (ports 8470-8472), all on one
network, joined through the first node of host 0. Every wait is bounded, and every namespace,
link and process is removed by the ``lab`` fixture whatever happens. Skipped, with the reason,
where namespaces cannot be made (not root, no iproute2, a kernel or sandbox that refuses).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

import pytest

from .netns import Host, Lab, Node, unavailable

#: Seconds between gossip rounds. Short, so that rounds repair within a second or two, but
#: not shorter: at 0.1 s the anti-entropy probes alone fill the 1 mbit cable of test (b),
#: requests time out and convergence takes 30-90 s instead of 10 (docs/testing.md).
TIMER = 0.2
#: What dead means (gossip/liveness.py): three requests in a row without an answer, each
#: failing when the node's 5 s request timeout or the kernel's ARP gives up; a failed peer is
#: retried after a backoff from one timer, doubling, up to 60 s. So it is counted in failures,
#: not timers, and a test waits for it rather than for a fixed time.
MAX_BACKOFF = max(60.0, 10 * TIMER)
PORTS = (8470, 8471, 8472)
#: Bounds on the waits, generous because other test runs may share the two cores. Measured
#: (docs/testing.md): nine nodes see each other in ~5 s; every node sees every node across a
#: cut dead after 22-34 s; after it, gossip converges in under 1 s and everyone is alive again
#: in 1-14 s; the 1 mbit workload converges in 6-15 s.
START_TIMEOUT = 60.0
DEAD_TIMEOUT = 90.0
CONVERGE_TIMEOUT = 60.0
#: After the last retry backoff has run out, this long for the rounds to pick the peer. An
#: idle node probes one random peer every 8 rounds, so two nodes that each see the other dead
#: meet after ~6 s on average (8 peers x 1.6 s, either way round); 60 s misses ~1 in 10,000
#: per pair.
HEAL_MARGIN = 60.0


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    """Three hosts on a switch, no nodes yet; all of it removed at the end."""
    reason = unavailable()
    if reason is not None:
        pytest.skip(reason)
    lab = Lab(tmp_path)
    try:
        lab.build(hosts=3)
        yield lab
    finally:
        lab.close()


def until(check: Callable[[], str | None], timeout: float, what: str, lab: Lab, interval: float = 0.25) -> float:
    """Call ``check`` (None: done; else what is still missing) until done, for at most ``timeout`` s.

    Returns:
        The seconds it took.
    """
    start = time.monotonic()
    missing: str | None = "not checked"
    for _ in range(int(timeout / interval) + 1):
        missing = check()
        if missing is None:
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            break
        time.sleep(interval)
    raise AssertionError(f"after {time.monotonic() - start:.1f}s, still waiting for {what}: {missing}\n{lab.logs()}")


def start_nine(lab: Lab) -> list[Node]:
    """Three nodes per host, joined through h0n0; returns once each sees the other eight alive."""
    seed = lab.start_node(lab.hosts[0], PORTS[0], timer=TIMER)
    lab.wait_healthy([seed], START_TIMEOUT)
    others = [lab.start_node(host, port, timer=TIMER, join=seed)
              for host in lab.hosts for port in PORTS if (host, port) != (lab.hosts[0], PORTS[0])]
    lab.wait_healthy(others, START_TIMEOUT)
    nodes = [seed, *others]
    until(lambda: not_alive(nodes), START_TIMEOUT, "every node to see the other eight alive", lab)
    return nodes


def not_alive(nodes: list[Node]) -> str | None:
    """None when every node sees every other node alive; else who sees whom how."""
    wrong = []
    for node in nodes:
        seen = node.peers()
        for other in nodes:
            status = seen[other.name]["status"] if other.name in seen else "unknown"
            if other is not node and status != "alive":
                wrong.append(f"{node.name} sees {other.name} {status}")
    return "; ".join(wrong) or None


def missing_gossip(nodes: list[Node], expected: set[str]) -> str | None:
    """None when every node holds all of ``expected``; else how many each lacks."""
    lacking = {n.name: len(expected - n.guids()) for n in nodes}
    lacking = {name: count for name, count in lacking.items() if count}
    return f"gossips lacking, by node: {lacking}" if lacking else None


def on(nodes: list[Node], host: Host) -> list[Node]:
    return [n for n in nodes if n.host is host]


def off(nodes: list[Node], host: Host) -> list[Node]:
    return [n for n in nodes if n.host is not host]


def retry_wait(failures: int) -> float:
    """The longest a node waits before it tries a peer again after ``failures`` failures in a
    row (docs/operating.md, gossip/liveness.py: one timer, doubling, at most MAX_BACKOFF)."""
    return min(MAX_BACKOFF, TIMER * 2.0 ** min(failures - 1, 30))


def test_a_cable_cut_past_the_dead_timeout_heals_both_ways(lab: Lab) -> None:
    """Host 2's cable is unplugged until every node sees every node across the cut dead, while
    both sides keep creating gossip; then plugged in again and left idle. Each side converges
    on its own during the cut and nothing crosses it; afterwards every gossip reaches all nine
    nodes, and every node sees every other node alive within the longest retry backoff it may
    have scheduled plus a margin."""
    nodes = start_nine(lab)
    island = lab.hosts[2]
    near, far = off(nodes, island), on(nodes, island)
    made: dict[str, set[str]] = {"before": set(), "near": set(), "far": set()}
    made["before"].add(nodes[0].create("before the cut"))
    until(lambda: missing_gossip(nodes, made["before"]), CONVERGE_TIMEOUT, "the first gossip everywhere", lab)

    def across(node: Node) -> list[Node]:
        return far if node in near else near

    def cross_not_dead() -> str | None:
        """Each call first creates a gossip on each side (a different node each time)."""
        step = len(made["near"])
        made["near"].add(near[step % len(near)].create(f"#{step} during the cut, near side"))
        made["far"].add(far[step % len(far)].create(f"#{step} during the cut, far side"))
        wrong = []
        for node in nodes:
            seen = node.peers()
            for other in across(node):
                status = seen[other.name]["status"] if other.name in seen else "unknown"
                if status != "dead":
                    wrong.append(f"{node.name} sees {other.name} {status}")
        return "; ".join(wrong) or None

    lab.cut(island)
    took_dead = until(cross_not_dead, DEAD_TIMEOUT, "every node to see every node across the cut dead", lab, interval=1.0)
    until(lambda: missing_gossip(near, made["before"] | made["near"]), CONVERGE_TIMEOUT, "the near side to converge", lab)
    until(lambda: missing_gossip(far, made["before"] | made["far"]), CONVERGE_TIMEOUT, "the cut-off host to converge", lab)
    for node in near:
        assert not node.guids() & made["far"], f"{node.name} got gossip across a cut cable"
    for node in far:
        assert not node.guids() & made["near"], f"{node.name} got gossip across a cut cable"

    # The longest backoff any node scheduled grows with the failures in a row. A request still
    # out at the restore may yet fail: count one failure more.
    failures = max(int(row["failures"]) for node in nodes for name, row in node.peers().items()
                   if name in {other.name for other in across(node)})
    heal_timeout = retry_wait(failures + 1) + HEAL_MARGIN
    lab.restore(island)
    restored = time.monotonic()
    everything = made["before"] | made["near"] | made["far"]
    took_gossip = until(lambda: missing_gossip(nodes, everything), CONVERGE_TIMEOUT, "all gossip everywhere", lab)
    until(lambda: not_alive(nodes), heal_timeout, "every node to see every node alive again", lab, interval=0.5)
    took_alive = time.monotonic() - restored
    print(f"\n(a) all across the cut dead after {took_dead:.1f}s (up to {failures} failures in a row);"
          f" after the restore, {len(everything)} gossips everywhere in {took_gossip:.1f}s,"
          f" all alive in {took_alive:.1f}s (bound {heal_timeout:.1f}s)")


def test_b_a_1_mbit_cable_still_converges(lab: Lab) -> None:
    """Host 2's cable is a token bucket of 1 mbit/s each way (5 kB burst, 200 ms queue) from the
    start: the nine nodes join through it, then 90 gossips of 2 kB made on all nine nodes reach
    every node and every node sees every other alive. The bucket's counters show the bodies
    crossed it both ways and that it held packets back."""
    reason = unavailable(need_tc=True)
    if reason is not None:
        pytest.skip(reason)
    slow = lab.hosts[2]
    lab.limit(slow, rate="1mbit", burst="5kb", latency="200ms")
    nodes = start_nine(lab)
    body = 2000
    made = {node.create(f"{node.name} #{i} " + "x" * body) for i in range(10) for node in nodes}
    took_gossip = until(lambda: missing_gossip(nodes, made), CONVERGE_TIMEOUT, "all gossip everywhere", lab)
    took_alive = until(lambda: not_alive(nodes), CONVERGE_TIMEOUT, "every node to see every node alive", lab)
    into, out_of = lab.qdisc_stats(slow)  # the switch's end sends into host 2, host 2's end out of it
    assert into["bytes"] >= 6 * 10 * body, (into, out_of)  # the other hosts' 60 bodies, at least once
    assert out_of["bytes"] >= 3 * 10 * body, (into, out_of)  # host 2's 30
    assert into["overlimits"] + into["drops"] > 0 and out_of["overlimits"] + out_of["drops"] > 0, (into, out_of)
    print(f"\n(b) at 1 mbit, {len(made)} gossips everywhere after {took_gossip:.1f}s, all alive {took_alive:.1f}s later;"
          f" into host 2 {into['bytes']} bytes ({into['drops']} drops, {into['overlimits']} overlimits),"
          f" out {out_of['bytes']} ({out_of['drops']} drops, {out_of['overlimits']} overlimits)")
