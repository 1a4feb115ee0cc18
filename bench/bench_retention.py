"""Retention under a steady stream (issue 13 target): N in-memory nodes of one network with a
1-hour retention receive R creates a second, on the simulator's virtual clock.

Every SAMPLE virtual seconds it prints, per node, the gossips held, their bytes (JSON), the
tombstones, the stored gossips (MemoryStorage, written through gossip.storage.persist like a
runner's), and the oldest gossip's age; and it checks that no node holds or stores anything
older than the retention (plus one gossip timer, the expiry's granularity): a resurrection.

    python bench/bench_retention.py --hours 6 --rate 20 --nodes 5
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from gossip.sim import NETWORK, Simulator


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python bench/bench_retention.py")
    p.add_argument("--nodes", type=int, default=5)
    p.add_argument("--rate", type=int, default=20, help="creates per virtual second")
    p.add_argument("--hours", type=float, default=24.0, help="virtual hours to run")
    p.add_argument("--retention", type=float, default=3600.0, help="seconds")
    p.add_argument("--sample", type=float, default=600.0, help="virtual seconds between samples")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", action="store_true", help="one JSON object per sample")
    args = p.parse_args(argv)
    sim = Simulator(nodes=args.nodes, seed=args.seed, fanout=3, timer=1.0, retention=args.retention)
    start = time.perf_counter()
    steps = int(args.hours * 3600)
    resurrections = 0
    created = 0
    samples = []
    for second in range(1, steps + 1):
        for _ in range(args.rate):
            member = sim.members[sim.rng.randrange(len(sim.members))]
            member.node.create_gossip(f"gossip {created} from {member.config.node_name}", sim.now)
            created += 1
            sim._flush(member)  # noqa: SLF001  (persist, then send, as Simulator.create does)
        sim.step()
        if second % int(args.sample) == 0 or second == steps:
            cutoff = sim.now - args.retention - sim.timer
            row = {"virtual_s": second, "created": created, "wall_s": round(time.perf_counter() - start, 1), "nodes": []}
            for m in sim.members:
                node = m.node
                held = node.gossips()
                stored = m.storage.load().gossips.get(NETWORK, [])
                old = [g for g in held + stored if g.timestamp() < cutoff]
                resurrections += len(old)
                net = node._nets[NETWORK]  # noqa: SLF001
                row["nodes"].append({
                    "gossips": len(held),
                    "bytes": net.held_bytes,
                    "stored": len(stored),
                    "tombstones": node.tombstone_count(),
                    "oldest_s": round(sim.now - min(g.timestamp() for g in held), 1) if held else None,
                    "expiry_heap": len(net.expiry),
                    "refused": node.stats["rejected.expired"],
                })
            row["resurrections"] = resurrections
            samples.append(row)
            if args.json:
                print(json.dumps(row), flush=True)
            else:
                counts = " ".join(f"{n['gossips']}/{n['bytes'] // 1024}K" for n in row["nodes"])
                print(f"t={second / 3600:5.2f}h created={created} per node gossips/bytes: {counts}"
                      f" heap={row['nodes'][0]['expiry_heap']} resurrections={resurrections} wall={row['wall_s']}s", flush=True)
    print(f"done: {created} creates over {args.hours:g} virtual hours in {time.perf_counter() - start:.0f} s;"
          f" resurrections {resurrections}", file=sys.stderr)
    return 1 if resurrections else 0


if __name__ == "__main__":
    raise SystemExit(main())
