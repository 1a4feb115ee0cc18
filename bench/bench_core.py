"""Benchmarks of the sans-I/O core and the simulator (issue: core targets).

Prints three markdown tables:

1. wall time, peak memory and traffic of ``python -m gossip.sim --nodes 1000 --messages 100``,
   with eager push and with ``--no-push``;
2. rounds until every node holds one new gossip: anti-entropy alone (push-pull with one peer
   a round) against log3(N) + ln(ln N) + 1 (Karp et al., "Randomized Rumor Spreading", FOCS
   2000), and with eager push;
3. bytes on the wire for one round between two nodes that hold the same 1,000 peers and
   1,000 / 10,000 / 100,000 gossips, settled and with d = 10 differences (push off, so that
   the fetches happen within the round).

Run: ``python bench/bench_core.py [sim|rounds|wire|all]`` (all: about ten minutes on 2 cores).
"""

from __future__ import annotations

import json
import math
import random
import resource
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gossip.auth import derive_key  # noqa: E402
from gossip.errors import GossipError  # noqa: E402
from gossip.model import Gossip, Network, NodeConfig, Peer, PeerView, Quota, Snapshot, iso_from_timestamp  # noqa: E402
from gossip.node import GossipNode  # noqa: E402
from gossip.sim import Simulator  # noqa: E402

T0 = 1_790_000_000.0


def _rounds(n: int, seed: int, push: bool) -> int:
    sim = Simulator(nodes=n, seed=seed, fanout=1, push=push)
    sim.create(1)
    rounds = sim.run(max_rounds=200)
    assert sim.converged()
    return rounds


def rounds_table(sizes: list[int], seeds: int) -> None:
    print(
        "| N | bound log3 N + ln ln N + 1 | 1.5 x bound | anti-entropy: mean rounds | max |"
        " with push: mean rounds | max | seeds |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n in sizes:
        bound = math.log(n, 3) + math.log(math.log(n)) + 1
        alone = [_rounds(n, seed, push=False) for seed in range(seeds)]
        pushed = [_rounds(n, seed, push=True) for seed in range(seeds)]
        print(
            f"| {n:,} | {bound:.2f} | {1.5 * bound:.2f} | {statistics.mean(alone):.1f} | {max(alone)} |"
            f" {statistics.mean(pushed):.1f} | {max(pushed)} | {seeds} |"
        )


def sim_run(runs: int = 3) -> None:
    base = [sys.executable, "-m", "gossip.sim", "--nodes", "1000", "--messages", "100", "--json"]
    print("| command | runs | median wall time | min | max | rounds | requests | pushes | bytes |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for extra in ([], ["--no-push"]):
        cmd = base + extra
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            out = subprocess.run(cmd, capture_output=True, check=True, timeout=600, text=True)
            times.append(time.perf_counter() - start)
        r = json.loads(out.stdout)
        print(
            f"| `{' '.join(['python'] + cmd[1:-1])}` | {runs} | {statistics.median(times):.1f} s |"
            f" {min(times):.1f} s | {max(times):.1f} s | {r['rounds']} | {r['requests']:,} |"
            f" {r['pushes']:,} | {r['bytes']:,} |"
        )
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(f"\npeak RSS of a run: {peak_kib / 1024:.0f} MiB")


def _config(i: int, key: bytes, max_peers: int = 1) -> NodeConfig:
    """Node ``i`` of a benchmark: the same guid for the same ``i``, no create rate limit."""
    return NodeConfig(
        node_guid=str(uuid.UUID(int=random.Random(i).getrandbits(128), version=4)),
        node_name=f"bench-{i}",
        networks=(Network(name="default", key=key, quota=Quota(creates_per_minute=2**52)),),
        ip="127.0.0.1",
        port=20000 + i,
        gossip_max_peer_count=max_peers,
    )


def _round_bytes(a: GossipNode, b: GossipNode, now: float) -> tuple[int, int]:
    """A contacts B in one round; returns (bytes, requests) until everything settles."""
    total = requests = 0
    nodes = {a.config.port: a, b.config.port: b}
    a.tick(now)
    for _ in range(100):
        batch = [(n, o) for n in (a, b) for o in n.outbox()]
        if not batch:
            return total, requests
        for sender, out in batch:
            target = nodes.get(out.address[1])
            if target is None:
                sender.delivery_failed(out.request_id, now, "not in this benchmark")
                continue
            try:
                answer = target.handle_request(out.data, now)
            except GossipError as exc:
                raise SystemExit(f"unexpected refusal: {exc}")
            total += len(out.data) + len(answer)
            requests += 1
            sender.receive_response(out.request_id, answer, now)
    raise SystemExit("round did not settle")


def wire_table(sizes: list[int], ds: list[int]) -> None:
    key = derive_key("default", "bench")
    rng = random.Random(42)
    others = [
        PeerView(peer=Peer(guid=str(uuid.UUID(int=rng.getrandbits(128), version=4)), name=f"p{i}",
                           ip="127.0.0.1", port=30000 + i, network_name="default"))
        for i in range(998)
    ]
    pool = [
        Gossip.create(
            guid=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            date_time=iso_from_timestamp(T0 - 3600),  # an hour before the nodes' clock: not refused as future
            who_name="bench",
            msg=f"message {i} " + "x" * 40,
        )
        for i in range(max(sizes) + max(ds))
    ]
    body_bytes = len(json.dumps(pool[0].to_dict()))
    head = " | ".join(f"d = {d}: bytes | requests" for d in ds)
    print(f"| gossips held | peers known | settled: bytes | requests | {head} |")
    print("|---:|---:|---:|---:|" + "---:|---:|" * len(ds))
    for size in sizes:
        ca, cb = _config(1, key), _config(2, key)
        pa, pb = PeerView(peer=ca.self_peer("default")), PeerView(peer=cb.self_peer("default"))
        common = pool[:size]
        cells = []
        for extra in [0] + ds:
            # With d differences, each side holds d/2 gossips the other lacks.
            a_extra = pool[size : size + extra // 2]
            b_extra = pool[size + extra // 2 : size + extra]
            a = GossipNode(ca, rng=random.Random(1), now=T0, push=False,
                           snapshot=Snapshot(gossips={"default": common + a_extra}, peers={"default": others + [pb]}))
            b = GossipNode(cb, rng=random.Random(2), now=T0, push=False,
                           snapshot=Snapshot(gossips={"default": common + b_extra}, peers={"default": others + [pa]}))
            # Make B the peer A contacts next round (as after a REGISTER).
            net = a._nets["default"]  # noqa: SLF001
            net.peers[b.guid].fresh = True
            a._note(net, net.peers[b.guid])  # noqa: SLF001  (a fresh peer is irregular)
            total, requests = _round_bytes(a, b, T0 + 1)
            assert a.gossip_count() == b.gossip_count() == size + extra
            cells.append(f"{total:,} B | {requests}")
        print(f"| {size:,} | 1,000 | " + " | ".join(cells) + " |")
    print(f"\n(each gossip body in these runs is about {body_bytes} bytes of JSON)")


def main(parts: list[str]) -> None:
    parts = parts or ["all"]
    # The subprocess runs first: ru_maxrss of children would otherwise include the pages
    # this process had grown to when it forked.
    if {"sim", "all"} & set(parts):
        print("## Simulator, 1,000 nodes x 100 gossips\n")
        sim_run()
    if {"rounds", "all"} & set(parts):
        print("\n## Rounds to spread one gossip (fanout 1)\n")
        rounds_table([10, 100, 1000], seeds=10)
    if {"wire", "all"} & set(parts):
        print("\n## Bytes on the wire for one round between two nodes\n")
        wire_table([1000, 10_000, 100_000], ds=[10, 100])


if __name__ == "__main__":
    main(sys.argv[1:])
