"""Benchmark JsonFileStorage: append cost with 100,000 gossips stored, load time, file size,
and the pause of a full garbage collection once a node holds them (with and without
``gc.freeze()``, which ``python -m gossip.http`` calls once the store is loaded)."""

from __future__ import annotations

import argparse
import gc
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gossip.auth import derive_key  # noqa: E402
from gossip.model import Gossip, Network, NodeConfig, Snapshot  # noqa: E402
from gossip.node import GossipNode  # noqa: E402
from gossip.storage.jsonfile import JsonFileStorage  # noqa: E402

__all__ = ["main"]


def make_gossips(count: int, rng: random.Random) -> list[Gossip]:
    """``count`` gossips with seeded guids and ~100-character messages."""
    return [
        Gossip.create(
            guid=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            date_time=f"2026-11-24T06:{(i // 60) % 60:02d}:{i % 60:02d}.123456+00:00",
            who_name=f"node-{i % 17}",
            msg=f"gossip number {i}: " + "lorem ipsum dolor sit amet " * 3,
        )
        for i in range(count)
    ]


def main(argv: list[str] | None = None) -> int:
    """Fill a store, then time single appends and a full load; print the figures."""
    parser = argparse.ArgumentParser(prog="python bench/bench_storage.py")
    parser.add_argument("--stored", type=int, default=100_000)
    parser.add_argument("--probes", type=int, default=200)
    parser.add_argument(
        "--batch-fill", action="store_true",
        help="fill with save_gossips (one fsync per 1,000) instead of one save_gossip each",
    )
    args = parser.parse_args(argv)
    rng = random.Random(1)
    gossips = make_gossips(args.stored + args.probes, rng)
    stored, probes = gossips[: args.stored], gossips[args.stored :]

    with tempfile.TemporaryDirectory() as directory:
        store = JsonFileStorage(directory)
        store.load()
        start = time.perf_counter()
        if args.batch_fill:
            for i in range(0, len(stored), 1000):
                store.save_gossips("bench", stored[i : i + 1000])
        else:
            for gossip in stored:
                store.save_gossip("bench", gossip)
        fill = time.perf_counter() - start

        timings = []
        for gossip in probes:
            t0 = time.perf_counter()
            store.save_gossip("bench", gossip)
            timings.append(time.perf_counter() - t0)
        store.close()

        log = Path(directory) / "gossip.jsonl"
        size = log.stat().st_size
        reopened = JsonFileStorage(directory)
        t0 = time.perf_counter()
        snapshot = reopened.load()
        load_time = time.perf_counter() - t0
        reopened.close()
        total = len(gossips)
        assert len(snapshot.gossips["bench"]) == total
        del gossips, stored, probes  # the process holds the node's copies alone
        pauses = collection_pauses(snapshot, total)

    how = "save_gossips, batches of 1,000" if args.batch_fill else "save_gossip, one fsync each"
    each = fill / args.stored * 1e6
    median = statistics.median(timings) * 1e6
    p90 = statistics.quantiles(timings, n=10)[-1] * 1e6
    print(f"fill {args.stored:,} gossips ({how}): {fill:.2f} s ({each:.0f} us each)")
    print(
        f"save_gossip with {args.stored:,} stored: median {median:.0f} us,"
        f" p90 {p90:.0f} us over {args.probes} calls"
    )
    print(f"load() of {total:,} gossips: {load_time:.2f} s")
    print(f"gossip.jsonl size: {size:,} bytes ({size / total:.0f} bytes per gossip)")
    print(
        f"gc.collect() in a process whose node holds the {total:,}: median {pauses[0] * 1e3:.1f} ms;"
        f" after gc.freeze(): {pauses[1] * 1e3:.1f} ms (3 each)"
    )
    return 0


def collection_pauses(snapshot: Snapshot, count: int) -> tuple[float, float]:
    """Median seconds of a full collection with a node built from ``snapshot``, before and
    after ``gc.freeze()`` (undone before returning)."""
    config = NodeConfig(
        node_guid=str(uuid.UUID(int=1, version=4)), node_name="bench", ip="127.0.0.1", port=9,
        networks=(Network(name="bench", key=derive_key("bench", "bench-storage-not-secret")),),
        gossip_timer=1.0, gossip_max_peer_count=3,
    )
    node = GossipNode(config, rng=random.Random(1), now=time.time(), snapshot=snapshot)
    assert node.gossip_count() == count
    medians = []
    try:
        for freeze in (False, True):
            if freeze:
                gc.freeze()
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                gc.collect()
                times.append(time.perf_counter() - t0)
            medians.append(statistics.median(times))
    finally:
        gc.unfreeze()
    return medians[0], medians[1]


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
