"""Partition healing (issue 13 target): rounds to full convergence after a long cut heals.

    python bench/bench_heal.py [--nodes 10] [--cut 600] [--seeds 10]

For each seed: a simulated network converges, is cut in two halves for ``--cut`` virtual
seconds (every node sees the other side dead; 4 gossips are created during the cut), then the
link returns. Prints the rounds each seed took to converge after the link returned, their
median and maximum, and the failed requests node 0 sent during the cut. Issue 13's target:
within 3 rounds. Asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gossip.sim import Simulator  # noqa: E402


def heal_rounds(nodes: int, cut: int, seed: int) -> tuple[int, int]:
    """(rounds to converge after the heal, failed requests of node 0 during the cut)."""
    sim = Simulator(nodes=nodes, seed=seed)
    sim.create(2)
    sim.run()
    for _ in range(10):  # every node hears from every other: all proven
        sim.step()
    half = nodes // 2
    sim.partition(range(0, half), range(half, nodes))
    sim.create(4)
    node0 = sim.members[0].node
    before = sum(n for k, n in node0.stats.items() if k.startswith("failed."))
    for _ in range(cut):
        sim.step()
    failed = sum(n for k, n in node0.stats.items() if k.startswith("failed.")) - before
    sim.heal()
    return sim.run(max_rounds=120), failed


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python bench/bench_heal.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--nodes", type=int, default=10)
    p.add_argument("--cut", type=int, default=600, help="virtual seconds (rounds at timer 1) the cut lasts")
    p.add_argument("--seeds", type=int, default=10)
    args = p.parse_args(argv)
    results = [heal_rounds(args.nodes, args.cut, seed) for seed in range(1, args.seeds + 1)]
    rounds = [r for r, _ in results]
    print(f"{args.nodes} nodes cut in two for {args.cut} s; rounds to converge after the heal, seeds 1-{args.seeds}: {rounds}")
    print(f"median {statistics.median(rounds)}, max {max(rounds)} (target: within 3)")
    print(f"failed requests of node 0 during the cut: {[f for _, f in results]}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
