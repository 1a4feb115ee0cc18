"""CPU per gossip delivered: what one node spends on each gossip a peer pushes to it.

    python bench/bench_delivery.py [--gossips 100] [--pushes 20] [--reps 7]

Node B holds three peers (A, C, D). A pushes it ``--pushes`` batches of ``--gossips`` new
gossips each, as PUSH requests signed and encoded beforehand. Timed, on B alone, per stage:

- ``decode``: :func:`gossip.messages.decode` of each request (MAC, JSON, every gossip checked);
- ``handle``: the rest of :meth:`GossipNode.handle_request` (verify sha2, store, events);
- ``persist``: the events written to a :class:`JsonFileStorage` in a temporary directory
  (what a runner's writer thread does), without fsync's wait counted apart;
- ``forward``: B's outbox (its pushes to C and D, encoded and signed) and the answers to them.

C and D answer B's pushes untimed. Prints the median over ``--reps`` fresh nodes of each
stage in microseconds per gossip delivered, and the total. Asserts nothing about timing.

``--instructions`` counts instead of timing, for comparisons that the noise of a shared
machine cannot blur: the script runs itself twice under ``valgrind --tool=cachegrind`` (with
``PYTHONHASHSEED=0``), once delivering and once only setting up (the same nodes, gossips and
signed requests), and prints the difference per delivery: B's pushes reach C and D, which
handle them too (their stores are not written), and B's rounds run, so each gossip is
delivered three times and every node's work is counted, as in a spread (fsync not waited for).
Issue 9's spreading target (1,000 gossips to 50 nodes in 1.0 s, one process) needs the
whole path, HTTP included, at about 20 us per gossip delivered.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench_core import _config as bench_config  # noqa: E402  (this directory: the script's own)
from gossip import messages as m  # noqa: E402
from gossip.auth import derive_key  # noqa: E402
from gossip.model import Gossip, NodeConfig, Peer, PeerView, Snapshot, iso_from_timestamp  # noqa: E402
from gossip.node import GossipNode  # noqa: E402
from gossip.storage import persist  # noqa: E402
from gossip.storage.jsonfile import JsonFileStorage  # noqa: E402

T0 = 1_790_000_000.0
KEY = derive_key("default", "bench-delivery-not-secret")
STAGES = ("decode", "handle", "persist", "forward")


def _node(i: int, configs: list[NodeConfig]) -> GossipNode:
    peers = [
        PeerView(peer=Peer(guid=c.node_guid, name=c.node_name, network_name="default", ip=c.ip, port=c.port), status="alive")
        for j, c in enumerate(configs) if j != i
    ]
    return GossipNode(configs[i], rng=random.Random(i), now=T0, snapshot=Snapshot(peers={"default": peers}))


def one_rep(rep: int, gossips: int, pushes: int, work: Path, deliver: str = "timed") -> dict[str, float]:
    """One fresh B. ``deliver``: "timed" (each stage timed apart), "count" (the path alone,
    for --instructions) or "none" (set-up only, the baseline of --instructions)."""
    configs = [bench_config(i, KEY, max_peers=3) for i in range(4)]  # A, B, C, D
    a, b, c, d = (_node(i, configs) for i in range(4))
    by_port = {n.config.port: n for n in (a, c, d)}
    rng = random.Random(rep)
    stamp = iso_from_timestamp(T0)
    requests = []
    for p in range(pushes):
        batch = tuple(
            Gossip.create(guid=str(uuid.UUID(int=rng.getrandbits(128), version=4)), date_time=stamp,
                          who_name="n0", msg=f"delivery {p}/{k} " + "x" * 40)
            for k in range(gossips)
        )
        requests.append(m.encode(
            m.Push(gossips=batch), network="default", sender=a.guid, key=KEY,
            nonce=f"{rep:04d}{p:012d}", ts=int(T0 * 1000), to=b.guid,
        ))
    storage = JsonFileStorage(work / f"rep{rep}")
    spent = dict.fromkeys(STAGES, 0.0)
    now = T0
    clock = time.process_time
    if deliver == "none":
        storage.close()
        return spent
    if deliver == "count":
        os.fsync = lambda fd: None  # type: ignore[assignment]  # this process only: counted, not waited for
    for data in requests:
        t = clock()
        if deliver == "timed":
            m.decode(data, lambda net: KEY)
        spent["decode"] += clock() - t  # the same decode runs again inside handle_request
        t = clock()
        b.handle_request(data, now)
        spent["handle"] += clock() - t
        t = clock()
        persist(storage, b.events())
        spent["persist"] += clock() - t
        now += 0.2  # past the push linger: B's pushes go out now
        t = clock()
        b.tick(now)
        outs = b.outbox()
        spent["forward"] += clock() - t
        for out in outs:
            target = by_port.get(out.address[1])
            if target is None:
                continue
            answer = target.handle_request(out.data, now)
            target.events()
            t = clock()
            b.receive_response(out.request_id, answer, now)
            spent["forward"] += clock() - t
    spent["handle"] -= spent["decode"]
    delivered = gossips * pushes
    if b.gossip_count() != delivered:
        raise SystemExit(f"B holds {b.gossip_count()} gossips, expected {delivered}")
    return {k: v / delivered * 1e6 for k, v in spent.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/bench_delivery.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--gossips", type=int, default=100, help="gossips per push")
    parser.add_argument("--pushes", type=int, default=20)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--instructions", action="store_true", help="count instructions under valgrind instead")
    parser.add_argument("--deliver", choices=("timed", "count", "none"), default="timed", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.instructions:
        return count_instructions(args)
    work = Path(tempfile.mkdtemp(prefix="gossip-delivery-"))
    try:
        runs = [one_rep(r, args.gossips, args.pushes, work, args.deliver) for r in range(args.reps)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.deliver != "timed":
        return 0
    print("| stage | us per gossip delivered (median of %d) |" % args.reps)
    print("|---|---:|")
    for stage in STAGES:
        print(f"| {stage} | {statistics.median(r[stage] for r in runs):.1f} |")
    print(f"| **total** | **{statistics.median(sum(r.values()) for r in runs):.1f}** |")
    return 0


def count_instructions(args: argparse.Namespace) -> int:
    """Run this script under cachegrind delivering and not; print the difference per gossip."""
    if shutil.which("valgrind") is None:
        print("--instructions needs valgrind (apt-get install valgrind)", file=sys.stderr)
        return 2
    counts = {}
    for deliver in ("count", "none"):
        command = [
            "valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null",
            sys.executable, __file__, "--gossips", str(args.gossips), "--pushes", str(args.pushes),
            "--reps", str(args.reps), "--deliver", deliver,
        ]
        done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": "0"}, timeout=3600)
        found = re.search(r"I\s+refs:\s+([\d,]+)", done.stderr)
        if done.returncode != 0 or found is None:
            print(done.stderr[-2000:], file=sys.stderr)
            return 1
        counts[deliver] = int(found.group(1).replace(",", ""))
    deliveries = 3 * args.reps * args.pushes * args.gossips  # to B, then from B to C and D
    print(f"| instructions per delivery ({deliveries:,}, {args.gossips} gossips a push) | {(counts['count'] - counts['none']) / deliveries:,.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
