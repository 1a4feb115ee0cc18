"""Benchmark the change feed: paging a node holding 100,000 gossips, and how soon a stream on
one node yields a gossip created on another (two NodeRunners on 127.0.0.1, one process).

    python bench/bench_feed.py [--gossips 100000] [--creates 50] [--timer 1.0]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import gossip  # noqa: E402
from gossip.http import NodeRunner  # noqa: E402
from gossip.model import Gossip, Snapshot  # noqa: E402

__all__ = ["main"]

KEY = gossip.derive_key("default", "bench password")


def _config(name: str, port: int, timer: float) -> gossip.NodeConfig:
    quota = gossip.Quota(max_network_bytes=1 << 30)
    return gossip.NodeConfig(node_guid=str(uuid.uuid4()), node_name=name, ip="127.0.0.1", port=port, gossip_timer=timer,
                             networks=(gossip.Network(name="default", key=KEY, quota=quota),))


def paging(count: int) -> None:
    """Time GossipNode.gossip_page (what GET /v1/gossip and each stream batch call) at ``count`` gossips."""
    rng = random.Random(1)
    gossips = [Gossip.create(guid=str(uuid.UUID(int=rng.getrandbits(128), version=4)), date_time="2026-11-30T10:00:00+00:00",
                             who_name=f"node-{i % 17}", msg=f"gossip number {i}") for i in range(count)]
    node = gossip.GossipNode(_config("n", 8470, 1.0), rng=rng, now=time.time(),
                             snapshot=Snapshot(gossips={"default": gossips}, verified=True))
    cases = [("newest 50", {"newest": True, "limit": 50}),
             ("1,000 after a cursor near the end", {"after": count - 1000, "limit": 1000}),
             ("10,000 oldest (the default page)", {"limit": 10_000}),
             ("text filter over all, 11 hits", {"text": "number 9999", "limit": 1000})]
    for label, kw in cases:
        runs = 10
        start = time.perf_counter()
        for _ in range(runs):
            rows, _ = node.gossip_page(**kw)  # type: ignore[arg-type]
        print(f"  gossip_page, {label}: {(time.perf_counter() - start) / runs * 1000:.1f} ms ({len(rows)} rows)")


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def latency(creates: int, timer: float) -> None:
    """Create on A (answered), then time until Client.watch on B yields it."""
    with tempfile.TemporaryDirectory() as da, tempfile.TemporaryDirectory() as db:
        a = NodeRunner(_config("a", _free_port(), timer), gossip.JsonFileStorage(da))
        b = NodeRunner(_config("b", _free_port(), timer), gossip.JsonFileStorage(db))
        a.start()
        b.start()
        try:
            b.register("127.0.0.1", a.config.port)
            got: dict[str, float] = {}
            done = threading.Event()
            with gossip.Client(f"http://127.0.0.1:{a.config.port}", key=KEY) as ca, \
                    gossip.Client(f"http://127.0.0.1:{b.config.port}", key=KEY) as cb:

                def follow() -> None:
                    for row in cb.watch(since=0):
                        got[row["guid"]] = time.perf_counter()
                        if len(got) == creates + 1:
                            done.set()
                            return

                threading.Thread(target=follow, daemon=True).start()
                ca.create("warm-up")
                time.sleep(1.0)
                delays = []
                for i in range(creates):
                    made = ca.create(f"m{i}")
                    start = time.perf_counter()
                    while made["guid"] not in got and time.perf_counter() - start < 10:
                        time.sleep(0.0005)
                    delays.append(got[made["guid"]] - start)
                done.wait(10)
            delays.sort()
            print(f"  create on A answered -> Client.watch on B yields it (timer {timer:g} s, {creates} gossips):"
                  f" p50 {statistics.median(delays) * 1000:.1f} ms, p90 {delays[int(len(delays) * 0.9)] * 1000:.1f} ms,"
                  f" max {delays[-1] * 1000:.1f} ms")
        finally:
            a.stop()
            b.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gossips", type=int, default=100_000)
    parser.add_argument("--creates", type=int, default=50)
    parser.add_argument("--timer", type=float, action="append")
    args = parser.parse_args(argv)
    print(f"Paging, {args.gossips:,} gossips held:")
    paging(args.gossips)
    print("Stream latency:")
    for timer in args.timer or [1.0, 0.2]:
        latency(args.creates, timer)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
