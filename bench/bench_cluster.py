"""A real cluster: N node processes on loopback, per-node memory and requests per round (issue 11).

    python bench/bench_cluster.py [--nodes 25 50 100] [--gossips 1000] [--max-peers 7] [--timer 1]
                                  [--rate 0] [--idle 30] [--node-arg=--FLAG=VALUE ...] [--keep]

For each N in ``--nodes``, one cluster after the other:

- start: N ``python -m gossip.http`` processes on 127.0.0.1 (free ports, one temporary
  directory, one network password in ``GOSSIP_PASSWORD``, ``--timer 1 --max-peers 7 --log-level
  WARNING`` and every ``--node-arg``), a few at a time; each but the first joins a random node
  already up (bench_load.py's start-up). Today ``--max-peers`` is the push fanout; the active view
  of issue 11 is another flag, passed with ``--node-arg`` when the node has it.
- membership: until every node's count of known peers (``gossip_peers`` in ``/metrics``) has
  not changed for ``--settle`` seconds, or every node knows N - 1.
- spread: ``--gossips`` ``POST /v1/gossip`` at random nodes from ``--threads`` client threads,
  as fast as they go or ``--rate`` a second (the same arrivals whatever N, so that how many
  gossips a push carries does not depend on how fast N processes take creates on 2 cores);
  then every node's ``gossip_gossips`` (complete gossips held) is polled until it holds all; then
  every node's ``GET /v1/gossip`` is checked to hold every acknowledged guid (``lost`` must be 0).
- idle: ``--settle`` seconds after convergence, each node's RSS (``VmRSS``, ``VmHWM`` from
  ``/proc/PID/status``); then ``--idle`` seconds in which the bench touches no node.

Per node, from its own counters (``gossip_requests_sent_total``,
``gossip_bytes_total{direction="sent"}``): node-to-node requests and bytes it sent per round
elapsed (the seconds between two reads of its counters / ``--timer``), over the spreading
window (just before the first create to the sweep that found the last node holding all) and
over the idle window; beside them the rounds each node ran (``gossip_rounds_total``), which
fall behind the clock when the CPU is short. The report is one markdown table (median and max
over the nodes for each N) and a one-line verdict: per-node memory and requests per round are
called flat when the median (for the spreading window the mean over the nodes, since the
eager-push tree's hubs send most pushes) at the largest N is at most ``FLAT`` (1.25 x) that at
the smallest.

Bounded everywhere (``--bound`` for each wait). Every process is stopped (SIGTERM, SIGKILL after
5 s) and reaped, and the temporary directory removed, whatever happens (also on Ctrl-C and
SIGTERM). Exit status 0 when every cluster converged with nothing lost, 1 otherwise. Reuses
bench_http.py (node processes, signed requests, /proc) and bench_load.py (start-up).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_http as bh  # noqa: E402
import bench_load as bl  # noqa: E402
from gossip.http import http_call  # noqa: E402

__all__ = ["Cluster", "Counters", "main", "measure", "parse_args", "parse_metrics", "per_round", "scrape", "verdict"]

#: Per-node memory and requests per round are "flat" when the figure at the largest N is at
#: most this many times the figure at the smallest (the machine's noise is ~10%).
FLAT = 1.25
#: Largest answer read from GET /v1/gossip (1,000 rows are ~0.3 MB).
LIST_MAX = 64 << 20


# ------------------------------------------------------------------------------------ a node's counters
@dataclass(frozen=True, slots=True)
class Counters:
    """What one ``/metrics`` answer says of a node (the families this bench uses)."""

    rounds: float
    sent: float  #: node-to-node requests sent, all verbs
    bytes_sent: float
    gossips: float  #: complete gossips held, all networks
    peers: float  #: peers known, any status
    connections: float  #: connections the node's server holds open
    at: float  #: when the answer came (time.perf_counter())
    verbs: dict[str, float] = field(default_factory=dict)  #: requests sent, by verb


def parse_metrics(text: str, at: float) -> Counters:
    """Counters from Prometheus text read at ``at`` (samples of one family summed over their labels)."""
    sums: dict[str, float] = {}
    verbs: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        name = head.split("{", 1)[0]
        if name == "gossip_bytes_total" and 'direction="sent"' not in head:
            continue
        try:
            number = float(value)
        except ValueError:
            continue
        sums[name] = sums.get(name, 0.0) + number
        if name == "gossip_requests_sent_total" and 'verb="' in head:
            verb = head.split('verb="', 1)[1].split('"', 1)[0]
            verbs[verb] = verbs.get(verb, 0.0) + number
    return Counters(
        rounds=sums.get("gossip_rounds_total", 0.0),
        sent=sums.get("gossip_requests_sent_total", 0.0),
        bytes_sent=sums.get("gossip_bytes_total", 0.0),
        gossips=sums.get("gossip_gossips", 0.0),
        peers=sums.get("gossip_peers", 0.0),
        connections=sums.get("gossip_http_connections", 0.0),
        at=at,
        verbs=verbs,
    )


def scrape(port: int) -> Counters | None:
    """The node's counters, or None when it does not answer ``/metrics`` within 10 s."""
    try:
        status, raw = http_call(f"http://{bh.HOST}:{port}/metrics", timeout=10)
    except Exception:  # noqa: BLE001 - a busy or gone node: the caller counts it
        return None
    return parse_metrics(raw.decode("utf-8", "replace"), time.perf_counter()) if status == 200 else None


def scrape_all(ports: Sequence[int]) -> list[Counters | None]:
    return [scrape(p) for p in ports]


def per_round(before: Sequence[Counters | None], after: Sequence[Counters | None], what: str,
              timer: float) -> list[float]:
    """Per node: the increase of ``what`` divided by the rounds elapsed meanwhile (seconds
    between its two answers / ``timer``), so a node whose rounds slip under load is not
    flattered. Nodes that did not answer both times are left out."""
    out: list[float] = []
    for a, b in zip(before, after):
        if a is None or b is None or b.at <= a.at:
            continue
        out.append((getattr(b, what) - getattr(a, what)) * timer / (b.at - a.at))
    return out


def _deltas(before: Sequence[float | None], after: Sequence[float | None]) -> list[float]:
    return [b - a for a, b in zip(before, after) if a is not None and b is not None]


# ------------------------------------------------------------------------------------ one cluster
@dataclass
class Cluster:
    """What one cluster of N nodes measured (None: not reached)."""

    nodes: int
    start_s: float | None = None
    membership_s: float | None = None
    peers: list[float] = field(default_factory=list)  #: peers known per node once membership settled
    acked: int = 0
    failed_creates: int = 0
    create_s: float | None = None
    converge_s: float | None = None  #: first create -> the poll that found every node holding all
    lost: int | None = None  #: acknowledged guids missing on some node (GET /v1/gossip)
    spread_rounds: list[float] = field(default_factory=list)  #: rounds each node ran while spreading
    spread_req: list[float] = field(default_factory=list)  #: requests sent per round, per node
    spread_bytes: list[float] = field(default_factory=list)
    spread_req_per_gossip: list[float] = field(default_factory=list)  #: requests sent / gossips, per node
    spread_bytes_per_gossip: list[float] = field(default_factory=list)
    spread_cpu: list[float] = field(default_factory=list)  #: CPU seconds per node while spreading
    spread_verbs: dict[str, float] = field(default_factory=dict)  #: requests sent by all nodes, by verb
    idle_rounds: list[float] = field(default_factory=list)
    idle_req: list[float] = field(default_factory=list)
    idle_bytes: list[float] = field(default_factory=list)
    idle_cpu_ms: list[float] = field(default_factory=list)  #: CPU ms per round elapsed, per node
    rss_kb: list[int] = field(default_factory=list)  #: VmRSS per node, after convergence
    hwm_kb: list[int] = field(default_factory=list)  #: VmHWM per node, after convergence
    connections: list[float] = field(default_factory=list)  #: open connections per node, idle
    load: list[float] = field(default_factory=list)  #: 1-minute load average, sampled
    other_cores: float | None = None  #: other processes' CPU meanwhile
    wall_s: float | None = None
    exit_codes: list[int | None] = field(default_factory=list)
    work_removed: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Converged, nothing lost, every create acknowledged, every process reaped."""
        return (self.converge_s is not None and self.lost == 0 and self.failed_creates == 0
                and bool(self.exit_codes) and None not in self.exit_codes)


def _wait_membership(ports: list[int], settle: float, bound: float, c: Cluster) -> None:
    """Until every node's peer count is unchanged for ``settle`` s (or all know N - 1)."""
    n = len(ports)
    last: list[float] | None = None
    since = time.monotonic()
    end = since + bound
    while True:
        now = time.monotonic()
        counts = [x.peers if x is not None else -1.0 for x in scrape_all(ports)]
        if counts != last:
            last, since = counts, now
        if min(counts) >= n - 1 or (min(counts) >= 1 and now - since >= settle):
            c.peers = counts
            return
        if now >= end:
            raise RuntimeError(f"membership not settled after {bound:g} s: peers known per node {sorted(counts)}")
        time.sleep(0.5)


def _create(ports: list[int], gossips: int, threads: int, rate: float, rng: random.Random,
            c: Cluster) -> tuple[set[str], float]:
    """POST the gossips at random nodes, ``rate`` a second (0: as fast as the threads go);
    returns the acknowledged guids and when the first was sent."""
    targets = [rng.randrange(len(ports)) for _ in range(gossips)]
    acked: set[str] = set()
    failures: list[str] = []
    lock = threading.Lock()

    def create(i: int) -> None:
        if rate > 0:  # paced: the i-th create is sent i / rate seconds after the first
            time.sleep(max(0.0, first + i / rate - time.perf_counter()))
        try:
            status, raw = bh.client_call(ports[targets[i]], "POST", "/v1/gossip", {"msg": f"cluster gossip {i}"},
                                         timeout=60)
        except Exception as exc:  # noqa: BLE001 - counted and reported
            status, raw = 0, f"{type(exc).__name__}: {exc}".encode()
        with lock:
            if status == 201:
                acked.add(str(json.loads(raw)["guid"]))
            else:
                failures.append(f"{status} {raw[:80]!r}")

    first = time.perf_counter()
    pool = ThreadPoolExecutor(max_workers=threads)
    try:
        list(pool.map(create, range(gossips)))
    finally:  # on SIGTERM/^C, drop the creates not started rather than wait for them
        pool.shutdown(wait=True, cancel_futures=True)
    c.create_s = time.perf_counter() - first
    c.acked, c.failed_creates = len(acked), len(failures)
    if failures:
        c.notes.append(f"{len(failures)} creates not acknowledged, e.g. {failures[0]}")
    return acked, first


def _wait_spread(ports: list[int], want: int, first: float, poll: float, bound: float,
                 c: Cluster) -> list[Counters | None]:
    """Poll every node still short until all hold ``want``; returns the counters of the sweep
    that found the last node done (each node's as it answered then)."""
    n = len(ports)
    latest: list[Counters | None] = [None] * n
    done = [False] * n
    end = time.perf_counter() + bound
    while True:
        s0 = time.perf_counter()
        for i, port in enumerate(ports):
            if not done[i]:
                now = latest[i] = scrape(port)
                done[i] = now is not None and now.gossips >= want
        if all(done):
            c.converge_s = time.perf_counter() - first
            # The nodes done early were read early: read them again for the window's end.
            return scrape_all(ports)
        if time.perf_counter() >= end:
            held = sorted(int(x.gossips) if x is not None else -1 for x in latest)
            raise RuntimeError(f"not converged {bound:g} s after the creates: complete gossips per node {held[:10]}...")
        time.sleep(max(0.0, poll - (time.perf_counter() - s0)))


def _check_lost(ports: list[int], acked: set[str], c: Cluster) -> None:
    """Acknowledged guids that some node's GET /v1/gossip does not list as complete."""
    missing: set[str] = set()
    for port in ports:
        status, raw = bh.client_call(port, "GET", "/v1/gossip", timeout=60, max_answer=LIST_MAX)
        if status != 200:
            raise RuntimeError(f"GET /v1/gossip on port {port}: {status} {raw[:100]!r}")
        missing |= acked - {row["guid"] for row in json.loads(raw) if row.get("complete")}
    c.lost = len(missing)


def measure(n: int, args: argparse.Namespace, rng: random.Random) -> Cluster:
    """Start a cluster of ``n`` nodes, spread ``args.gossips``, measure it idle, stop it."""
    c = Cluster(nodes=n)
    bh._GUIDS.clear()  # ports of an earlier cluster may serve other nodes now
    work = bh.make_workdir(args.keep, f"gossip-bench-cluster-{n}-")
    nodes: list[bh.Node] = []
    t_run = time.perf_counter()
    other = bh.OtherLoad(lambda: sum(node.cpu_seconds() or 0.0 for node in nodes))
    c.load.append(os.getloadavg()[0])
    try:
        spec = argparse.Namespace(nodes=n, batch=args.batch, timer=args.timer, max_peers=args.max_peers)
        t0 = time.perf_counter()
        ports = bl.start_nodes(spec, work, rng, nodes, extra=args.node_arg)
        c.start_s = time.perf_counter() - t0

        t1 = time.perf_counter()
        _wait_membership(ports, args.settle, args.bound, c)
        c.membership_s = time.perf_counter() - t1
        c.load.append(os.getloadavg()[0])

        m0 = scrape_all(ports)
        cpu0 = [node.cpu_seconds() for node in nodes]
        acked, first = _create(ports, args.gossips, args.threads, args.rate, rng, c)
        if not acked:
            raise RuntimeError("no create acknowledged")
        m1 = _wait_spread(ports, len(acked), first, args.poll, args.bound, c)
        c.load.append(os.getloadavg()[0])
        c.spread_rounds = [b.rounds - a.rounds for a, b in zip(m0, m1) if a is not None and b is not None]
        c.spread_req = per_round(m0, m1, "sent", args.timer)
        c.spread_bytes = per_round(m0, m1, "bytes_sent", args.timer)
        c.spread_cpu = _deltas(cpu0, [node.cpu_seconds() for node in nodes])
        c.spread_req_per_gossip = [(b.sent - a.sent) / len(acked) for a, b in zip(m0, m1) if a is not None and b is not None]
        for a, b in zip(m0, m1):
            if a is not None and b is not None:
                for verb, count in b.verbs.items():
                    c.spread_verbs[verb] = c.spread_verbs.get(verb, 0.0) + count - a.verbs.get(verb, 0.0)
        c.spread_bytes_per_gossip = [(b.bytes_sent - a.bytes_sent) / len(acked)
                                     for a, b in zip(m0, m1) if a is not None and b is not None]
        _check_lost(ports, acked, c)

        time.sleep(args.settle)
        c.rss_kb = [x for x in (node.status_field("VmRSS") for node in nodes) if x is not None]
        c.hwm_kb = [x for x in (node.status_field("VmHWM") for node in nodes) if x is not None]
        m2 = scrape_all(ports)
        cpu2, w2 = [node.cpu_seconds() for node in nodes], time.perf_counter()
        end = time.perf_counter() + args.idle
        while time.perf_counter() < end:  # touch no node; only watch that they live
            time.sleep(min(1.0, max(0.0, end - time.perf_counter())))
            if any(node.proc.poll() is not None for node in nodes):
                c.notes.append("a node exited during the idle window")
                break
        cpu3, w3 = [node.cpu_seconds() for node in nodes], time.perf_counter()
        c.idle_cpu_ms = [x * 1000 * args.timer / (w3 - w2) for x in _deltas(cpu2, cpu3)]
        m3 = scrape_all(ports)
        c.load.append(os.getloadavg()[0])
        c.idle_rounds = [b.rounds - a.rounds for a, b in zip(m2, m3) if a is not None and b is not None]
        c.idle_req = per_round(m2, m3, "sent", args.timer)
        c.idle_bytes = per_round(m2, m3, "bytes_sent", args.timer)
        c.connections = [x.connections for x in m3 if x is not None]
        unanswered = sum(1 for x in m3 if x is None)
        if unanswered:
            c.notes.append(f"{unanswered} nodes did not answer /metrics after the idle window")
    except Exception as exc:  # noqa: BLE001 - reported with whatever was measured
        c.notes.append(f"FAILED: {type(exc).__name__}: {exc}")
    finally:
        c.other_cores = other.cores()
        bh.stop_all(nodes)
        c.exit_codes = [node.proc.returncode for node in nodes]
        errs: list[str] = []
        for node in nodes:
            lines = node.stderr_lines()
            errs += [" / ".join(lines[i:i + 2]) for i, ln in enumerate(lines) if " ERROR " in ln or "Traceback" in ln]
        if errs:
            c.notes.append(f"{len(errs)} node ERROR lines, e.g. {errs[0][:400]}")
        bh.cleanup(work, args.keep)
        c.work_removed = not work.exists()
        c.wall_s = time.perf_counter() - t_run
    return c


# ------------------------------------------------------------------------------------ the report
def _med_max(values: Sequence[float], scale: float = 1.0, spec: str = ".1f") -> str:
    if not values:
        return "—"
    return f"{format(statistics.median(values) * scale, spec)} / {format(max(values) * scale, spec)}"


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _mean(values: Sequence[float]) -> float | None:
    return statistics.fmean(values) if values else None


def verdict(clusters: Sequence[Cluster]) -> str:
    """One line: from the smallest N to the largest, does any per-node figure grow more than
    FLAT times? RSS and idle requests per round by their median; requests per round and per
    gossip while spreading by their mean over the nodes (all requests / N: the eager-push
    tree's hubs send most of them, so the median says how the tree is shaped, not how much
    work each node does on average). Beside it, what does grow with N: peers known, open
    connections, and RSS per extra peer known."""
    done = sorted((c for c in clusters if c.ok), key=lambda c: c.nodes)
    if len(done) < 2:
        return "Verdict: needs at least two sizes that converged with nothing lost."
    lo, hi = done[0], done[-1]
    parts: list[str] = []
    flat = True
    for label, a, b in (
        ("RSS (median)", _median(lo.rss_kb), _median(hi.rss_kb)),
        ("requests per round spreading (mean)", _mean(lo.spread_req), _mean(hi.spread_req)),
        ("requests per gossip spreading (mean)", _mean(lo.spread_req_per_gossip), _mean(hi.spread_req_per_gossip)),
        ("requests per round idle (median)", _median(lo.idle_req), _median(hi.idle_req)),
    ):
        if a is None or b is None or a <= 0:
            parts.append(f"{label} not measured")
            flat = False
            continue
        flat = flat and b / a <= FLAT
        parts.append(f"{label} x{b / a:.2f}")
    word = "FLAT" if flat else "NOT FLAT"
    line = (f"Verdict: per node, N={lo.nodes} -> N={hi.nodes}: {', '.join(parts)} -> {word} "
            f"(flat: none grows more than x{FLAT:g}).")
    peers, rss = [_median(c.peers) for c in (lo, hi)], [_median(c.rss_kb) for c in (lo, hi)]
    conns = [_median(c.connections) for c in (lo, hi)]
    if peers[0] is not None and peers[1] is not None:
        line += f" Grows with N: peers known {peers[0]:.0f} -> {peers[1]:.0f}"
        if conns[0] is not None and conns[1] is not None:
            line += f", open connections {conns[0]:.0f} -> {conns[1]:.0f}"
        if rss[0] is not None and rss[1] is not None and peers[1] > peers[0]:
            line += f", RSS {(rss[1] - rss[0]) / (peers[1] - peers[0]):+.1f} KiB per extra peer known"
        line += "."
    return line


def report(args: argparse.Namespace, clusters: Sequence[Cluster]) -> None:
    print("Command: " + shlex.join(["python", "bench/bench_cluster.py", *(args.argv or [])]))
    print("Each node: GOSSIP_PASSWORD=... " + shlex.join(
        ["python", "-m", "gossip.http",
         *bh.converge_cmd(Path("<tmpdir>/nK.json"), 0, 0, timer=args.timer, max_peers=args.max_peers),
         *args.node_arg]
    ).replace("--port 0", "--port <free port>").replace(f"{bh.HOST}:0", f"{bh.HOST}:<port of a random running node>"))
    pace = f" at {args.rate:g} a second" if args.rate else ""
    print(f"{args.gossips:,} gossips created at random nodes{pace} by {args.threads} client threads; idle window "
          f"{args.idle:g} s, {args.settle:g} s after convergence. Per node: median / max over the nodes. "
          f"Machine: {bh.CORES} cores, shared.")
    print()
    figures: list[tuple[str, Callable[[Cluster], str]]] = [
        ("peers known per node, once membership settled", lambda c: _med_max(c.peers, spec=".0f")),
        ("start; then membership settled (s)", lambda c: f"{bh.fmt(c.start_s, '.0f')}; {bh.fmt(c.membership_s, '.0f')}"),
        ("gossips acknowledged (refused); creates took (s)",
         lambda c: f"{c.acked:,} ({c.failed_creates}); {bh.fmt(c.create_s, '.1f')}"),
        ("**first create → every node holds all (s)**", lambda c: "**" + bh.fmt(c.converge_s, ".1f") + "**"),
        ("… of which after the last create was acknowledged (s)",
         lambda c: bh.fmt(c.converge_s - c.create_s if c.converge_s is not None and c.create_s is not None else None, ".1f")),
        ("**lost** (acknowledged, missing on some node)", lambda c: "—" if c.lost is None else f"**{c.lost}**"),
        ("**RSS after convergence, MiB**", lambda c: "**" + _med_max(c.rss_kb, 1 / 1024) + "**"),
        ("peak RSS (VmHWM), MiB", lambda c: _med_max(c.hwm_kb, 1 / 1024)),
        ("spreading: rounds each node ran", lambda c: _med_max(c.spread_rounds, spec=".0f")),
        ("**spreading: requests sent per round**", lambda c: "**" + _med_max(c.spread_req, spec=".2f") + "**"),
        ("spreading: KiB sent per round", lambda c: _med_max(c.spread_bytes, 1 / 1024, ".1f")),
        ("**spreading: requests sent per gossip**", lambda c: "**" + _med_max(c.spread_req_per_gossip, spec=".2f") + "**"),
        ("**spreading, mean over the nodes: requests sent per round; per gossip**",
         lambda c: f"**{bh.fmt(_mean(c.spread_req), '.2f')}; {bh.fmt(_mean(c.spread_req_per_gossip), '.2f')}**"),
        ("spreading, all nodes: requests per gossip by verb",
         lambda c: ", ".join(f"{v} {n / max(1, c.acked):.1f}" for v, n in sorted(c.spread_verbs.items()) if n) or "—"),
        ("spreading: bytes sent per gossip", lambda c: _med_max(c.spread_bytes_per_gossip, spec=".0f")),
        ("spreading: CPU seconds", lambda c: _med_max(c.spread_cpu, spec=".2f")),
        ("idle: rounds each node ran", lambda c: _med_max(c.idle_rounds, spec=".0f")),
        ("**idle: requests sent per round**", lambda c: "**" + _med_max(c.idle_req, spec=".2f") + "**"),
        ("idle: KiB sent per round", lambda c: _med_max(c.idle_bytes, 1 / 1024, ".2f")),
        ("idle: CPU ms per round", lambda c: _med_max(c.idle_cpu_ms, spec=".1f")),
        ("connections the node's server holds open, idle", lambda c: _med_max(c.connections, spec=".0f")),
        ("load average at start / joined / converged / idle end", lambda c: " / ".join(f"{x:.1f}" for x in c.load)),
        ("other processes' CPU meanwhile (cores)", lambda c: bh.fmt(c.other_cores, ".2f")),
        ("wall time (s)", lambda c: bh.fmt(c.wall_s, ".0f")),
    ]
    print(bh.table(["per node: median / max", *(f"N={c.nodes}" for c in clusters)],
                   ([label, *(get(c) for c in clusters)] for label, get in figures)))
    print()
    for c in clusters:
        for note in c.notes:
            print(f"- N={c.nodes}: **{note}**")
        if not c.work_removed and not args.keep:
            print(f"- N={c.nodes}: temporary directory NOT removed")
        if None in c.exit_codes:
            print(f"- N={c.nodes}: a node process was NOT reaped")
    print(verdict(clusters))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The bench's options (``argv`` None: the command line); exits on bad ones."""
    parser = argparse.ArgumentParser(prog="python bench/bench_cluster.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[25, 50, 100], help="cluster sizes (default 25 50 100)")
    parser.add_argument("--gossips", type=int, default=1000, help="gossips created (default 1000)")
    parser.add_argument("--max-peers", type=int, default=7, help="each node's --max-peers (default 7)")
    parser.add_argument("--timer", type=float, default=1.0, help="each node's --timer, seconds between rounds (default 1)")
    parser.add_argument("--node-arg", action="append", default=[], metavar="ARG",
                        help="one more flag for every node, e.g. --node-arg=--active-view=7 (repeatable)")
    parser.add_argument("--idle", type=float, default=30.0, help="seconds of the idle window (default 30)")
    parser.add_argument("--settle", type=float, default=5.0,
                        help="seconds membership must stay unchanged; also waited after convergence (default 5)")
    parser.add_argument("--poll", type=float, default=0.5, help="least seconds between two polls of a node (default 0.5)")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="creates a second, paced (default 0: as fast as the client threads go)")
    parser.add_argument("--threads", type=int, default=8, help="client threads creating (default 8)")
    parser.add_argument("--batch", type=int, default=5, help="nodes started at a time (default 5)")
    parser.add_argument("--bound", type=float, default=600.0, help="seconds each wait may take (default 600)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directories")
    args = parser.parse_args(argv)
    args.argv = sys.argv[1:] if argv is None else argv
    if min(args.nodes) < 2 or args.gossips < 1 or args.idle < 1 or args.timer <= 0 or args.rate < 0:
        parser.error("--nodes must be at least 2, --gossips at least 1, --idle at least 1 s, --timer positive, "
                     "--rate at least 0")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the bench; 0 when every cluster converged with nothing lost."""
    args = parse_args(argv)

    def run(args: argparse.Namespace) -> int:
        rng = random.Random(args.seed)
        bh.network_key()  # PBKDF2 once, before any timing
        clusters: list[Cluster] = []
        try:
            for n in args.nodes:
                clusters.append(measure(n, args, rng))
                print(f"(N={n} done in {clusters[-1].wall_s:.0f} s)", flush=True)
        finally:
            report(args, clusters)
        return 0 if clusters and all(c.ok for c in clusters) else 1

    return bh.run_main("bench_cluster", run, args)


if __name__ == "__main__":
    raise SystemExit(main())
