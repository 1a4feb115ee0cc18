"""bench_load's work in one process: N NodeRunners on one loop, creates at random nodes, paced.

    python bench/bench_load_one_process.py [--nodes 50] [--gossips 3000] [--rate 170] [--timer 1]

A diagnostic beside bench_load.py (50 processes): the same protocol work without the price of
50 processes taking turns on the cores. The runners are set up as in bench_spread.py (each
with its own JSON store in a temporary directory, joined by REGISTER until each knows N-1
peers); after two rounds, ``--gossips`` creates are made at random nodes, one every
1/``--rate`` seconds (``create_async``, no HTTP client), and every node's gossip count is
checked every 10 ms until all hold all (bounded: 120 s after the last create).

Prints the creates' rate, this process's CPU while creating (of its one loop thread: 1.0 is
saturated) and per create, the seconds from the last create until all hold all, new TCP
connections, and the nodes' counters summed (requests sent by verb, duplicate bodies, rounds).
Asserts nothing about timing; stops every runner and removes its files.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_spread as bs  # noqa: E402  (puts the repository on sys.path)
from gossip.http import LoopThread, NodeRunner  # noqa: E402


def counters(runners: list[NodeRunner]) -> Counter[str]:
    total = Counter[str]()
    for r in runners:
        total.update({k: v for k, v in r.node.stats.items() if k.startswith(("sent.", "duplicate.", "rounds"))})
    return total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/bench_load_one_process.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--gossips", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=170.0, help="creates a second (default 170)")
    parser.add_argument("--timer", type=float, default=1.0)
    parser.add_argument("--max-peers", type=int, default=3)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    n, rng = args.nodes, random.Random(args.seed)
    work = Path(tempfile.mkdtemp(prefix="gossip-load1-"))
    thread = LoopThread("bench-loop")
    runners: list[NodeRunner] = []
    try:
        runners = bs.make_runners(n, args.timer, args.max_peers, work, thread.loop, False)

        async def join() -> None:
            await asyncio.gather(*(
                r.register_async(bs.HOST, runners[rng.randrange(i)].config.port) for i, r in enumerate(runners) if i
            ))
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and any(r.node.peer_count() < n - 1 for r in runners):
                await asyncio.sleep(0.05)

        thread.run(join())
        gc.freeze()

        async def load() -> None:
            await asyncio.sleep(2 * args.timer)
            before, opened = counters(runners), sum(r.transport.opened for r in runners)
            cpu0, t0 = time.process_time(), time.monotonic()
            tasks = []
            for i in range(args.gossips):
                delay = t0 + i / args.rate - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                target = runners[rng.randrange(n)]
                tasks.append(asyncio.ensure_future(target.create_async(f"load {i} " + "x" * 40)))
            await asyncio.gather(*tasks)
            made, cpu_made = time.monotonic() - t0, time.process_time() - cpu0
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and any(r.node.gossip_count() < args.gossips for r in runners):
                await asyncio.sleep(0.01)
            tail = time.monotonic() - t0 - made
            state = "" if all(r.node.gossip_count() == args.gossips for r in runners) else " (NOT converged)"
            after = counters(runners)
            after.subtract(before)
            print(f"{n} nodes in one process, {args.gossips} creates at random nodes, paced at {args.rate:g}/s, "
                  f"timer {args.timer:g}")
            print(f"creates: {args.gossips / made:.0f}/s; CPU while creating {cpu_made / made:.2f} of one core, "
                  f"{cpu_made / args.gossips * 1e3:.2f} ms per create")
            print(f"last create -> all hold all: {tail:.2f} s{state}; "
                  f"new connections {sum(r.transport.opened for r in runners) - opened}")
            print("counters: " + ", ".join(f"{k} {v}" for k, v in sorted(after.items()) if v))

        thread.run(load())
        return 0
    finally:
        bs.stop_all(runners, thread, work)
        gc.unfreeze()


if __name__ == "__main__":
    raise SystemExit(main())
