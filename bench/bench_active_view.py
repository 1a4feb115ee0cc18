"""The active view against plain bounded views in the simulator (issue 11, items 1 and 2).

Each case starts N nodes from uniform random views of 28 peers (``max_peers`` 32), lets the
membership settle for 20 rounds, creates M gossips (and crashes a fraction of the nodes at
that instant), and runs until every live node holds every gossip. ``views``: the nodes
gossip with every peer they hold (the simulator's ``--bootstrap sample``); ``active``: the
same nodes with ``full_view_limit`` 8 and ``active_view`` 6, so rounds and eager push run
over the active view. Requests and bytes count from the creates on.

Run: ``python bench/bench_active_view.py [N:M[:CRASH[:LOSS]] ...]`` (default
``1000:100 1000:100:0.5 1000:100:0:0.2``; a few minutes on 2 cores).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gossip.sim import Simulator, push_pull_bound  # noqa: E402

MAX_PEERS = 32
SETTLE_ROUNDS = 20


def build(nodes: int, seed: int, active: bool, loss: float) -> Simulator:
    views = {"active_view": 6, "full_view_limit": 8} if active else {}
    return Simulator(nodes=nodes, seed=seed, bootstrap_mode="sample", max_peers=MAX_PEERS, loss=loss, **views)  # type: ignore[arg-type]


def run(nodes: int, messages: int, crash: float, loss: float, active: bool, seed: int = 0) -> str:
    started = time.process_time()
    sim = build(nodes, seed, active, loss)
    for _ in range(SETTLE_ROUNDS):
        sim.step()
    requests, sent = sim.network.stats.requests, sim.network.stats.bytes
    sim.create(messages)
    if crash:
        sim.crash_fraction(crash)
    rounds = sim.run(max_rounds=200)
    requests, sent = sim.network.stats.requests - requests, sim.network.stats.bytes - sent
    bound = 1.5 * (push_pull_bound(nodes) or 0.0)
    degree = [len(m.node.active_peers()) for m in sim.members if m.up] if active else []
    links = f"{min(degree)}-{max(degree)}" if degree else "-"
    return (
        f"| {nodes:,} | {messages} | {crash:g} | {loss:g} | {'active' if active else 'views'} | {rounds}"
        f"{'' if sim.converged() else ' (not converged)'} | {bound:.1f} | {requests:,} | {sent / 1e6:.1f} MB"
        f" | {links} | {time.process_time() - started:.1f} s |"
    )


def main(argv: list[str]) -> None:
    cases = argv or ["1000:100", "1000:100:0.5", "1000:100:0:0.2"]
    print("| N | M | crash | loss | mode | rounds | 1.5 x bound | requests | bytes | active links | CPU |")
    print("|---:|---:|---:|---:|---|---:|---:|---:|---:|---|---:|")
    for case in cases:
        parts = case.split(":")
        nodes, messages = int(parts[0]), int(parts[1])
        crash = float(parts[2]) if len(parts) > 2 else 0.0
        loss = float(parts[3]) if len(parts) > 3 else 0.0
        for active in (False, True):
            print(run(nodes, messages, crash, loss, active), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
