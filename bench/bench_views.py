"""Large N in the simulator with bounded views (issue 11): rounds, traffic, CPU, wall, peak RSS.

Runs ``python -m gossip.sim --bootstrap sample --max-peers K --stats --json`` once per case
(each node starts with a uniform random view of 7/8 K peers and never reconciles peer sets
past it) and prints a markdown table against the push-pull bound log3 N + ln ln N + 1. Up to
10,000 nodes each N also runs with churn after round 2: a tenth of the nodes crash, a tenth
more join through the protocol, and both; "extra" is the rounds beyond the run without churn.

Run: ``python bench/bench_views.py [N:M ...]`` (default ``1000:100 10000:100``; about fifteen
minutes on 2 cores; ``100000:10`` adds about half an hour and several GiB).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gossip.sim import push_pull_bound  # noqa: E402

MAX_PEERS = 32
STATS = re.compile(r"cpu ([\d.]+) s, wall ([\d.]+) s, peak RSS (\d+) MiB")


CHURN = (["--crash", "0.1"], ["--join", "0.1"], ["--crash", "0.1", "--join", "0.1"])


def run(nodes: int, messages: int, extra: list[str], calm: int | None = None) -> int:
    """One run as a table row; returns its rounds. ``calm``: the rounds without churn."""
    cmd = [
        sys.executable, "-m", "gossip.sim", "--nodes", str(nodes), "--messages", str(messages),
        "--bootstrap", "sample", "--max-peers", str(MAX_PEERS), "--stats", "--json", *extra,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=7200, cwd=ROOT)
    if out.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} failed: {out.stderr.strip()}")
    r = json.loads(out.stdout)
    found = STATS.search(out.stderr)
    assert found is not None, out.stderr
    cpu, wall, rss = found.groups()
    bound = push_pull_bound(nodes) or 0.0
    more = "-" if calm is None else f"{r['rounds'] - calm:+d}"
    print(
        f"| {nodes:,} | {messages} | {' '.join(extra) or '-'} | {r['rounds']}{'' if r['converged'] else ' (not converged)'}"
        f" | {more} | {1.5 * bound:.1f} | {r['requests']:,} | {r['bytes'] / 1e6:,.1f} MB | {r['bytes_per_node_round']:,.0f} B"
        f" | {cpu} s | {wall} s | {rss} MiB |",
        flush=True,
    )
    return int(r["rounds"])


def main(cases: list[str]) -> None:
    print(f"`--bootstrap sample --max-peers {MAX_PEERS}`, seed 0:\n")
    print("| N | M | options | rounds | extra | 1.5 x bound | requests | bytes | per node per round | CPU | wall | peak RSS |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for case in cases or ["1000:100", "10000:100"]:
        nodes, messages = (int(x) for x in case.split(":"))
        calm = run(nodes, messages, [])
        if nodes <= 10_000:
            for churn in CHURN:
                run(nodes, messages, churn, calm)


if __name__ == "__main__":
    main(sys.argv[1:])
