"""The difference estimator where sets differ both ways: two halves that diverged, healed.

    python bench/bench_estimator.py [--nodes 20] [--before 300] [--during 400] [--seeds 8]

For each seed, with the estimator on and then off (:data:`gossip.sets.ESTIMATE_ROUNDS` 1
and 0): a simulated network converges on ``--before`` gossips, is cut in two halves, ``--during``
gossips are created at random live nodes of both halves and each half settles (40 rounds),
then the link returns. Prints, from the heal until every node holds every gossip: rounds,
requests, bytes and IBLTs that did not peel (``iblt_retry.*``), per seed and summed. Equal
counts on both sides are where the count difference says least about the difference, which
is what the estimator is for. Asserts nothing (issue 11, "The difference estimator").
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gossip import sets  # noqa: E402
from gossip.sim import Simulator  # noqa: E402


def heal(nodes: int, before: int, during: int, seed: int, estimate_rounds: int) -> tuple[int, int, int, int]:
    """(rounds, requests, bytes, IBLT retries) from the heal to convergence."""
    saved = sets.ESTIMATE_ROUNDS
    sets.ESTIMATE_ROUNDS = estimate_rounds
    try:
        sim = Simulator(nodes=nodes, seed=seed)
        sim.create(before)
        sim.run()
        for _ in range(10):
            sim.step()
        half = nodes // 2
        sim.partition(range(0, half), range(half, nodes))
        sim.create(during)
        for _ in range(40):
            sim.step()
        stats = sim.network.stats
        requests, sent = stats.requests, stats.bytes

        def retries() -> int:
            return sum(n for m in sim.members for k, n in m.node.stats.items() if k.startswith("iblt_retry."))

        retried = retries()
        sim.heal()
        rounds = sim.run(max_rounds=200)
        return rounds, stats.requests - requests, stats.bytes - sent, retries() - retried
    finally:
        sets.ESTIMATE_ROUNDS = saved


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/bench_estimator.py", description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--before", type=int, default=300)
    parser.add_argument("--during", type=int, default=400)
    parser.add_argument("--seeds", type=int, default=8)
    args = parser.parse_args(argv)
    totals = {1: [0, 0, 0, 0], 0: [0, 0, 0, 0]}
    for seed in range(args.seeds):
        for rounds_on in (1, 0):
            row = heal(args.nodes, args.before, args.during, seed, rounds_on)
            totals[rounds_on] = [a + b for a, b in zip(totals[rounds_on], row)]
            label = "on " if rounds_on else "off"
            print(f"seed {seed} estimator {label}: {row[0]} rounds, {row[1]} requests, {row[2]:,} bytes, {row[3]} IBLT retries")
    for rounds_on in (1, 0):
        t = totals[rounds_on]
        label = "on " if rounds_on else "off"
        print(f"all seeds, estimator {label}: {t[0]} rounds, {t[1]} requests, {t[2]:,} bytes, {t[3]} IBLT retries")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
