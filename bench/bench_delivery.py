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
Issue 9's spreading target (1,000 gossips to 50 nodes in 1.0 s, one process) needs the
whole path, HTTP included, at about 20 us per gossip delivered.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
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


def one_rep(rep: int, gossips: int, pushes: int, work: Path) -> dict[str, float]:
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
    for data in requests:
        t = clock()
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
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="gossip-delivery-"))
    try:
        runs = [one_rep(r, args.gossips, args.pushes, work) for r in range(args.reps)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print("| stage | us per gossip delivered (median of %d) |" % args.reps)
    print("|---|---:|")
    for stage in STAGES:
        print(f"| {stage} | {statistics.median(r[stage] for r in runs):.1f} |")
    print(f"| **total** | **{statistics.median(sum(r.values()) for r in runs):.1f}** |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
