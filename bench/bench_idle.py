"""Idle cost: converged node processes doing nothing but their rounds (issue 9, "Targets: idle").

    python bench/bench_idle.py [--nodes 50] [--seconds 60] [--timer 1] [--max-peers 3] [--gossips 5] [--keep]

- start: ``--nodes`` ``python -m gossip.http`` processes on 127.0.0.1 (free ports, ``--timer 1
  --max-peers 3 --log-level WARNING``), a few at a time; each but the first joins a random node
  already up (bench_load.py's start-up).
- converge: until every node knows ``nodes - 1`` peers (``GET /v1/peers``), then ``--gossips``
  gossips created at random nodes (``POST /v1/gossip``; 0 creates none) until every node holds
  them all (``GET /v1/gossip``), then ``--settle`` seconds more; all bounded.
- measure: the bench reads every node's ``/metrics``, then its CPU (utime + stime from
  ``/proc/PID/stat``), sleeps ``--seconds`` touching nothing, reads the CPU again, then the
  metrics again.

Prints the nodes' CPU together in cores (CPU seconds / wall seconds), per node (min, median,
max), node-to-node requests/s (``gossip_requests_sent_total``), failed, rounds/s, bytes/s, and
the machine's other load meanwhile. Issue 9's target: 50 nodes at ``--timer 1 --max-peers 3``
use at most 0.05 of a core together over 60 s. Asserts nothing about timing: exit status 0
when the figures were measured, 1 when the cluster did not form or converge. Every process is
stopped (SIGTERM, SIGKILL after 5 s) and reaped, and the temporary directory removed, whatever
happens. Reuses bench_http.py (nodes, signed requests, /proc accounting) and bench_load.py.
"""

from __future__ import annotations

import argparse
import os
import random
import shlex
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_http as bh  # noqa: E402
import bench_load as bl  # noqa: E402

TARGET_CORES = 0.05  # issue 9: 50 idle converged nodes together, over 60 s


def node_metrics(ports: list[int]) -> dict[str, float]:
    """Sums over every node of the families the report uses."""
    out: dict[str, float] = {}
    for p in ports:
        for name in ("gossip_requests_sent_total", "gossip_requests_failed_total", "gossip_rounds_total",
                     "gossip_bytes_total", "gossip_requests_received_total", "gossip_http_connections_opened_total"):
            try:
                out[name] = out.get(name, 0.0) + bh.metric_sum(p, name)
            except Exception:  # noqa: BLE001 - a node that does not answer: counted
                out["unanswered"] = out.get("unanswered", 0.0) + 1
                break
    return out


def peer_statuses(ports: list[int]) -> dict[str, float]:
    """gossip_peers by status, summed over every node (alive / suspect / dead)."""
    out: dict[str, float] = {}
    for p in ports:
        try:
            samples = bh.metric_by_label(p, "gossip_peers")
        except Exception:  # noqa: BLE001
            continue
        for label, v in samples.items():
            status = label.rsplit("status=", 1)[-1].strip('"')
            out[status] = out.get(status, 0.0) + v
    return out


def run(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    bh.network_key()
    work = bh.make_workdir(args.keep, "gossip-bench-idle-")
    nodes: list[bh.Node] = []
    r: dict[str, Any] = {"notes": []}
    ok = False
    try:
        t0 = time.perf_counter()
        ports = bl.start_nodes(args, work, rng, nodes)  # uses args.nodes, batch, timer, max_peers
        r["start_s"] = time.perf_counter() - t0
        n = len(ports)

        t1 = time.perf_counter()
        bh.wait_for_peers(ports, n - 1, args.peers_bound, 1.0, timeout=30)
        r["join_s"] = time.perf_counter() - t1

        t2 = time.perf_counter()
        created = 0
        for i in range(args.gossips):
            status, raw = bh.client_call(ports[rng.randrange(n)], "POST", "/v1/gossip", {"msg": f"idle bench {i}"},
                                         timeout=30)
            if status != 201:
                raise RuntimeError(f"create {i}: {status} {raw[:200]!r}")
            created += 1
        held = [0] * n

        def all_hold() -> bool:
            for i, port in enumerate(ports):
                if held[i] < created:
                    rows = bh.try_json(port, "GET", "/v1/gossip", timeout=30)
                    held[i] = held[i] if rows is None else sum(1 for row in rows if row.get("complete"))
            return min(held) >= created

        if created and not bh.wait_until(all_hold, args.converge_bound, 0.5):
            raise RuntimeError(f"after {args.converge_bound:g} s, gossips held per node: {sorted(held)}")
        r["converge_s"] = time.perf_counter() - t2
        time.sleep(args.settle)

        # ---------------------------------------------------------------- the measured window
        m0, tm0 = node_metrics(ports), time.perf_counter()
        cpu0 = [node.cpu_seconds() for node in nodes]
        own0 = bh.own_cpu()
        other = bh.OtherLoad(lambda: sum(node.cpu_seconds() or 0.0 for node in nodes))
        load0 = os.getloadavg()[0]
        w0 = time.perf_counter()
        end = w0 + args.seconds
        while time.perf_counter() < end:  # touch nothing; only watch that the nodes live
            time.sleep(min(1.0, max(0.0, end - time.perf_counter())))
            if any(node.proc.poll() is not None for node in nodes):
                r["notes"].append("a node exited during the measured window")
                break
        w1 = time.perf_counter()
        cpu1 = [node.cpu_seconds() for node in nodes]
        r["own_cpu"] = bh.own_cpu() - own0
        r["other_cores"] = other.cores()
        r["load"] = (load0, os.getloadavg()[0])
        m1, tm1 = node_metrics(ports), time.perf_counter()
        r["wall"] = w1 - w0
        per = [b - a for a, b in zip(cpu0, cpu1) if a is not None and b is not None]
        r["per_node"] = per
        r["total_cpu"] = sum(per)
        r["cores"] = r["total_cpu"] / r["wall"]
        mwall = tm1 - tm0
        r["mwall"] = mwall
        for key, name in (("req", "gossip_requests_sent_total"), ("failed", "gossip_requests_failed_total"),
                          ("rounds", "gossip_rounds_total"), ("bytes", "gossip_bytes_total"),
                          ("received", "gossip_requests_received_total"),
                          ("opened", "gossip_http_connections_opened_total")):
            r[key] = (m1.get(name, 0.0) - m0.get(name, 0.0)) / mwall
        r["bytes"] /= 2  # sent + received of the same bodies
        if m0.get("unanswered") or m1.get("unanswered"):
            r["notes"].append(f"/metrics unanswered: {m0.get('unanswered', 0):.0f} before, "
                              f"{m1.get('unanswered', 0):.0f} after")
        r["peers"] = peer_statuses(ports)
        r["rss"] = [node.status_field("VmRSS") for node in nodes]
        r["threads"] = [threads_of(node.pid) for node in nodes]
        r["alive"] = sum(1 for node in nodes if node.proc.poll() is None)
        ok = True
    except Exception as exc:  # noqa: BLE001 - reported with whatever was measured
        r["notes"].append(f"FAILED: {type(exc).__name__}: {exc}")
    finally:
        bh.stop_all(nodes)
        warns = [ln for node in nodes for ln in node.stderr_lines() if " WARNING " in ln]
        errs = [ln for node in nodes for ln in node.stderr_lines() if " ERROR " in ln or "Traceback" in ln]
        r["warnings"], r["errors"] = len(warns), len(errs)
        r["warning_kinds"] = bh.warning_kinds(warns)
        if errs:
            r["notes"].append(f"first node error: {errs[0][:200]}")
        bh.cleanup(work, args.keep)
        r["work_removed"] = not work.exists()
    report(args, r)
    return 0 if ok else 1


def threads_of(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def verdict(cores: float | None, n: int) -> str:
    """✓/✗ against the 50-node target (scaled linearly when n is not 50)."""
    if cores is None:
        return ""
    scaled = cores * 50 / n
    text = " ✓" if scaled <= TARGET_CORES else f" ✗ ({scaled / TARGET_CORES:.1f}×)"
    return text if n == 50 else text + " (scaled to 50 nodes)"


def report(args: argparse.Namespace, r: dict[str, Any]) -> None:
    n = args.nodes
    print(f"## idle: {n} converged node processes, --timer {args.timer:g} --max-peers {args.max_peers}, "
          f"{args.seconds:g} s measured")
    print()
    print("Command: " + shlex.join(["python", "bench/bench_idle.py", *sys.argv[1:]]))
    print("Each node: GOSSIP_PASSWORD=... " + shlex.join(
        ["python", "-m", "gossip.http",
         *bh.converge_cmd(Path("<tmpdir>/nK.json"), 0, 0, timer=args.timer, max_peers=args.max_peers)]
    ).replace("--port 0", "--port <free port>").replace(f"{bh.HOST}:0", f"{bh.HOST}:<port of a random running node>"))
    print(f"Before the window: every node knows {n - 1} peers and holds the {args.gossips} gossip(s) created, "
          f"then {args.settle:g} s more. During it this bench touches no node. Machine: {bh.CORES} cores, shared.")
    print()
    for note in r["notes"]:
        print(f"**{note}**")
    if r["notes"]:
        print()
    per = r.get("per_node") or []
    wall = r.get("wall")
    per_cores = [c / wall for c in per] if wall else []
    rss = [x / 1024 for x in r.get("rss", []) if x]
    threads = [x for x in r.get("threads", []) if x]
    cores = r.get("cores")
    rows = [
        ["start nodes; then until all know %d peers (s)" % (n - 1), f"{bh.fmt(r.get('start_s'), '.1f')}; {bh.fmt(r.get('join_s'), '.1f')}"],
        [f"{args.gossips} gossips created → held by every node (s)", bh.fmt(r.get("converge_s"), ".1f")],
        ["measured window (s, wall)", bh.fmt(wall, ".1f")],
        ["**nodes' CPU together (cores = CPU s / wall s)**",
         f"**{bh.fmt(cores, '.3f')}** ({bh.fmt(r.get('total_cpu'), '.1f')} CPU s) — target ≤ {TARGET_CORES:g} for 50 nodes"
         + verdict(cores, n)],
        [f"… per node ({TARGET_CORES:g} / 50 = {TARGET_CORES / 50:g} core each); scaled to 50 nodes",
         f"{bh.fmt(cores / n if cores is not None else None, '.4f')}; {bh.fmt(cores * 50 / n if cores is not None else None, '.3f')}"],
        ["per node, cores: min / median / max",
         " / ".join(format(x, ".4f") for x in (min(per_cores), statistics.median(per_cores), max(per_cores)))
         if per_cores else "—"],
        ["node-to-node requests sent /s (all nodes); failed /s", f"{bh.fmt(r.get('req'), '.1f')}; {bh.fmt(r.get('failed'), '.2f')}"],
        ["connections opened /s (all nodes, both sides; from gossip_http_connections_opened_total)", bh.fmt(r.get('opened'), '.1f')],
        ["rounds /s (all nodes); requests received /s", f"{bh.fmt(r.get('rounds'), '.1f')}; {bh.fmt(r.get('received'), '.1f')}"],
        ["node-to-node KB/s (sent+received / 2)", bh.fmt(r["bytes"] / 1e3 if r.get("bytes") is not None else None, ".1f")],
        ["CPU per request sent (ms, both ends)",
         bh.fmt(r["total_cpu"] / (r["req"] * r["mwall"]) * 1000 if r.get("req") else None, ".2f")],
        ["peers seen by all nodes at the end (alive / suspect / dead)",
         " / ".join(f"{r.get('peers', {}).get(s, 0):.0f}" for s in ("alive", "suspect", "dead"))],
        ["RSS per node, median (MB); threads per node, median",
         f"{bh.fmt(statistics.median(rss) if rss else None, '.1f')}; {bh.fmt(statistics.median(threads) if threads else None, '.0f')}"],
        ["nodes alive at the end", f"{r.get('alive', '—')}/{n}"],
        ["this bench's CPU during the window (s)", bh.fmt(r.get("own_cpu"), ".2f")],
        ["other processes' CPU during the window (cores); load average at start → end",
         f"{bh.fmt(r.get('other_cores'), '.2f')}; " + (f"{r['load'][0]:.1f} → {r['load'][1]:.1f}" if r.get("load") else "—")],
        ["node WARNING / ERROR lines (whole run)", f"{r['warnings']} / {r['errors']}"],
    ]
    print(bh.table(["figure", "value"], rows))
    print()
    if r.get("warning_kinds"):
        print(f"Node warnings: {r['warning_kinds']}")
    print(f"Temporary directory removed: {r['work_removed']}")
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/bench_idle.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60.0, help="seconds measured (default 60)")
    parser.add_argument("--timer", type=float, default=1.0, help="seconds between rounds (default 1)")
    parser.add_argument("--max-peers", type=int, default=3)
    parser.add_argument("--gossips", type=int, default=5, help="gossips created before measuring (default 5; 0: none)")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds waited after convergence (default 5)")
    parser.add_argument("--batch", type=int, default=5, help="nodes started at a time (default 5)")
    parser.add_argument("--peers-bound", type=float, default=300.0, help="seconds to wait for full membership")
    parser.add_argument("--converge-bound", type=float, default=120.0, help="seconds to wait for the gossips")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    if args.nodes < 2 or not 1 <= args.seconds <= 3600 or args.gossips < 0:
        parser.error("--nodes must be at least 2, --seconds within 1..3600, --gossips at least 0")
    return bh.run_main("bench_idle", run, args)


if __name__ == "__main__":
    raise SystemExit(main())
