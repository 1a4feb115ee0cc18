"""Spreading: N NodeRunners in one process on 127.0.0.1, 1,000 gossips created at one node.

    python bench/bench_spread.py [--nodes 50 100] [--timers 1 0.2] [--gossips 1000] [--runs 1]
                                 [--gc freeze|default] [--writes loop|thread] [--profile FILE]

For each (N, timer): N runners share one event loop (one thread), each with its own JSON
store in a temporary directory; each registers with a random earlier one (REGISTER), and the
script waits until every node knows N-1 peers (bounded). Then ``--gossips`` creates are made at
node 0, all at once (group commit writes them together), and every node's gossip count is
checked every 5 ms on the loop until all hold all of them.

Prints, per run: seconds from the first create until every node holds all, node-to-node body
bytes over the floor (every node but the creator receives every gossip body once: (N-1) x the
bodies' size as JSON objects, the floor the target was set against; since wire version 5 a
body travels as a JSON array, 43 bytes shorter), requests sent by verb, the process's CPU seconds while spreading and the
seconds of it spent in the cyclic garbage collector.
Issue 9's targets: at most 1.0 s for N=50 and 2.0 s for N=100, at --timer 1 and 0.2, bytes at
most 1.5x the floor. Asserts nothing about timing; stops every runner and removes its files.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import json
import random
import shutil
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gossip.auth import derive_key  # noqa: E402
from gossip.http import LoopThread, NodeRunner  # noqa: E402
from gossip.model import Network, NodeConfig, Quota  # noqa: E402
from gossip.storage.jsonfile import JsonFileStorage  # noqa: E402

HOST = "127.0.0.1"
KEY = derive_key("default", "bench-spread-not-secret")


def free_ports(count: int) -> list[int]:
    """Ports that were free a moment ago (all bound at once, so they differ)."""
    socks = [socket.socket() for _ in range(count)]
    try:
        for s in socks:
            s.bind((HOST, 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def make_runners(
    n: int, timer: float, max_peers: int, work: Path, loop: asyncio.AbstractEventLoop, writer_thread: bool
) -> list[NodeRunner]:
    runners = []
    for i, port in enumerate(free_ports(n)):
        config = NodeConfig(
            node_guid=str(uuid.uuid4()), node_name=f"n{i}", networks=(Network(name="default", key=KEY, quota=Quota(creates_per_minute=2**52)),),
            ip=HOST, port=port, gossip_timer=timer, gossip_max_peer_count=max_peers,
        )
        runner = NodeRunner(config, JsonFileStorage(work / f"n{i}"), loop=loop, writer_thread=writer_thread)
        runner.start()
        runners.append(runner)
    return runners


class _GcClock:
    """Seconds spent in the cyclic garbage collector while ``on`` (gc.callbacks)."""

    def __init__(self) -> None:
        self.on = False
        self.seconds = 0.0
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        elif self.on:
            self.seconds += time.perf_counter() - self._start


def spread_run(
    n: int, timer: float, gossips: int, max_peers: int, rng: random.Random, profile: str | None = None,
    freeze: bool = True, writer_thread: bool = False,
) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="gossip-spread-"))
    thread = LoopThread("bench-loop")
    runners: list[NodeRunner] = []
    gc_clock = _GcClock()
    gc.callbacks.append(gc_clock)
    try:
        started = time.monotonic()
        runners = make_runners(n, timer, max_peers, work, thread.loop, writer_thread)

        async def join() -> None:
            await asyncio.gather(*(
                r.register_async(HOST, runners[rng.randrange(i)].config.port) for i, r in enumerate(runners) if i
            ))
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and any(r.node.peer_count() < n - 1 for r in runners):
                await asyncio.sleep(0.05)

        thread.run(join())
        joined = time.monotonic() - started
        if freeze:
            gc.freeze()
        known = min(r.node.peer_count() for r in runners)

        async def spread() -> dict[str, Any]:
            await asyncio.sleep(2 * timer)  # a couple of settled rounds first
            before = {k: sum(r.bytes[k] for r in runners) for k in ("sent", "received")}
            sent_before = Counter[str]()
            for r in runners:
                sent_before.update({k: v for k, v in r.node.stats.items() if k.startswith("sent.")})
            profiler = cProfile.Profile() if profile else None
            if profiler is not None:
                profiler.enable()  # this thread: the loop every runner's core and HTTP run on
            gc_clock.on = True
            cpu0 = time.process_time()
            t0 = time.monotonic()
            made = await asyncio.gather(*(runners[0].create_async(f"spread {i} " + "x" * 40) for i in range(gossips)))
            acked = time.monotonic() - t0
            deadline = t0 + 120
            while time.monotonic() < deadline and any(r.node.gossip_count() < gossips for r in runners):
                await asyncio.sleep(0.005)
            took = time.monotonic() - t0
            cpu = time.process_time() - cpu0
            gc_clock.on = False
            if profiler is not None and profile:
                profiler.disable()
                profiler.dump_stats(profile)
            floor = (n - 1) * sum(len(json.dumps(g.to_dict(), ensure_ascii=False).encode()) for g in made)
            sent = sum(r.bytes["sent"] for r in runners) - before["sent"]
            verbs = Counter[str]()
            for r in runners:
                verbs.update({k: v for k, v in r.node.stats.items() if k.startswith("sent.")})
            verbs.subtract(sent_before)
            return {
                "converged": all(r.node.gossip_count() == gossips for r in runners),
                "seconds": took, "acked": acked, "cpu": cpu, "gc": gc_clock.seconds, "bytes": sent, "floor": floor,
                "verbs": {k.split(".", 1)[1]: v for k, v in sorted(verbs.items()) if v},
            }

        result = thread.run(spread())
        result.update(nodes=n, timer=timer, joined=joined, known=known)
        return result
    finally:
        stop_all(runners, thread, work)
        gc.callbacks.remove(gc_clock)
        gc.unfreeze()


def stop_all(runners: list[NodeRunner], thread: LoopThread, work: Path) -> None:
    """Stop every runner (each, whatever the others do), then the loop; remove their files."""
    for r in runners:
        try:
            r.stop()
        except Exception as exc:  # keep stopping the others
            print(f"stopping {r.config.node_name}: {exc}", file=sys.stderr)
    thread.stop()
    shutil.rmtree(work, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/bench_spread.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[50, 100])
    parser.add_argument("--timers", type=float, nargs="+", default=[1.0, 0.2])
    parser.add_argument("--gossips", type=int, default=1000)
    parser.add_argument("--max-peers", type=int, default=3)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--gc", choices=("freeze", "default"), default="freeze",
                        help="freeze the heap after the join (default), or leave the collector as CPython sets it")
    parser.add_argument("--writes", choices=("loop", "thread"), default="loop",
                        help="write on the shared loop (default), or on a writer thread per node")
    parser.add_argument("--profile", metavar="FILE", help="cProfile the loop thread while spreading (last run) into FILE")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    print(
        f"Heap after the join: {'frozen (gc.freeze)' if args.gc == 'freeze' else 'left as is (--gc default)'};"
        f" writes: {'on the loop' if args.writes == 'loop' else 'a writer thread per node'}."
    )
    print("| nodes | timer | run | join s | creates acked s | **first create -> all hold all** | bytes / floor | CPU s (in GC) | requests sent |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for n in args.nodes:
        for timer in args.timers:
            seconds = []
            for run in range(1, args.runs + 1):
                r = spread_run(
                    n, timer, args.gossips, args.max_peers, rng, args.profile, args.gc == "freeze", args.writes == "thread"
                )
                seconds.append(r["seconds"])
                state = "" if r["converged"] else " (NOT converged)"
                verbs = ", ".join(f"{k} {v}" for k, v in r["verbs"].items())
                print(
                    f"| {n} | {timer:g} | {run} | {r['joined']:.1f} (min known {r['known']}) | {r['acked']:.2f} |"
                    f" **{r['seconds']:.2f} s**{state} | {r['bytes'] / r['floor']:.2f} ({r['bytes'] / 1e6:.1f} MB) |"
                    f" {r['cpu']:.2f} ({r['gc']:.2f}) | {verbs} |",
                    flush=True,
                )
            if args.runs > 1:
                print(f"median for N={n}, timer {timer:g}: {statistics.median(seconds):.2f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
