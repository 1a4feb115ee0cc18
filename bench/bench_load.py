"""Load: many node processes on loopback, many gossips, nothing lost (issue 6, "Load").

    python bench/bench_load.py [--nodes 50] [--gossips 10000] [--timer 1] [--bound 900] [--keep]

- start: ``--nodes`` ``python -m gossip.http`` processes on 127.0.0.1 (free ports, ``--timer 1
  --max-peers 3 --log-level WARNING``), a few at a time; each but the first joins a random node
  that is already up. Waits for each banner and each "joined network" line.
- join: until every node knows ``nodes - 1`` peers (``GET /v1/peers``), bounded.
- create: ``--gossips`` ``POST /v1/gossip`` at random nodes from ``--threads`` client threads, each
  keeping one persistent HTTP/1.1 connection per node; every acknowledged (201) guid is recorded.
- converge: every node's ``GET /v1/node`` (its ``gossip_count``) is polled, a sweep over the
  nodes at most every ``--poll`` seconds; a node whose count reaches the acknowledged creates is
  done at that poll once its ``GET /v1/gossip`` holds every acknowledged guid as a complete row
  (read once), and is not polled again; until all hold all, or ``--bound`` seconds after the
  last create.

Reports start/join times, creates/s, seconds (and rounds) from the last create to full
convergence, lost gossips (acknowledged but missing on some node: must be 0), per-node CPU
seconds and peak RSS (median, max), node-to-node bytes (``gossip_bytes_total``), and the
machine's load (load average, other processes' CPU) while it ran. Every process is stopped
(SIGTERM, SIGKILL after 5 s) and reaped, and the temporary directory removed, whatever happens.
Exit status 0 when everything converged with nothing lost, 1 otherwise.

Reuses bench_http.py (node processes, signed requests, /proc accounting, cleanup).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import secrets
import shlex
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Sequence

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_http as bh  # noqa: E402

GET_MAX_ANSWER = 256 << 20  # GET /v1/gossip of 10,000 rows is ~3 MB; http_call's default cap is 4 MiB


# ------------------------------------------------------------------------------------ machine load
class LoadSampler:
    """Samples the 1-minute load average every few seconds, tagged with the current phase."""

    def __init__(self, interval: float = 5.0) -> None:
        self.phase = "start"
        self.samples: list[tuple[str, float]] = []
        self._stop = threading.Event()
        self._interval = interval
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            self.samples.append((self.phase, os.getloadavg()[0]))
            if self._stop.wait(self._interval):
                return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def summary(self, phase: str | None = None) -> str:
        values = [v for p, v in self.samples if phase is None or p == phase]
        if not values:
            return "—"
        return f"{min(values):.1f} / {statistics.median(values):.1f} / {max(values):.1f}"


def proc_cpu_snapshot() -> dict[int, tuple[str, float]]:
    """{pid: (command, CPU seconds)} of every process readable in /proc."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, tuple[str, float]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            raw = Path(f"/proc/{entry}/cmdline").read_bytes()
        except OSError:
            continue
        comm = stat[stat.find("(") + 1 : stat.rfind(")")]
        fields = stat.rpartition(")")[2].split()
        try:
            cpu = (int(fields[11]) + int(fields[12])) / tick
        except (ValueError, IndexError):
            continue
        words = [w.decode(errors="replace") for w in raw.split(b"\0") if w]
        text = " ".join(Path(words[0]).name.split() + words[1:4]) if words else f"[{comm}]"
        out[int(entry)] = (text[:70], cpu)
    return out


def other_top(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]], ours: set[int],
              top: int = 6) -> str:
    """Other processes' CPU between two snapshots, by command (processes that both started and
    ended in between are invisible here; the /proc/stat total counts them)."""
    by_cmd: dict[str, float] = {}
    for pid, (cmd, cpu) in after.items():
        if pid in ours:
            continue
        delta = cpu - before[pid][1] if pid in before and before[pid][0] == cmd else cpu
        if delta > 0.05:
            by_cmd[cmd] = by_cmd.get(cmd, 0.0) + delta
    ranked = sorted(by_cmd.items(), key=lambda kv: -kv[1])[:top]
    return "; ".join(f"{cpu:.0f} s `{cmd}`" for cmd, cpu in ranked) or "none visible"


# ------------------------------------------------------------------------------------ the run
def start_nodes(args: argparse.Namespace, work: Path, rng: random.Random, nodes: list[bh.Node],
                extra: Sequence[str] = ()) -> list[int]:
    """Start args.nodes processes, args.batch at a time, each with ``extra`` flags after the
    usual ones; returns their ports in order."""
    ports: list[int] = []
    k = 0
    while k < args.nodes:
        size = 1 if k == 0 else min(args.batch, args.nodes - k)
        up = list(ports)
        batch: list[tuple[bh.Node, int]] = []
        for _ in range(size):
            port = bh.free_port()
            join = rng.choice(up) if up else None
            node = bh.Node(
                [*bh.converge_cmd(work / f"n{k}.json", port, join, timer=args.timer, max_peers=args.max_peers),
                 *extra],
                workdir=work, tag=f"n{k}", env={"GOSSIP_PASSWORD": bh.PASSWORD},
            )
            nodes.append(node)
            batch.append((node, port))
            k += 1
        for node, port in batch:
            node.wait_banner(timeout=120)
            if node.port != port:
                raise RuntimeError(f"a node serves on {node.port}, not {port}")
            ports.append(port)
        for node, _ in batch if up else []:  # the first node joins nobody
            ok = bh.wait_until(lambda: any(ln.startswith("joined network") for ln in node.output)
                               or node.proc.poll() is not None, 120, 0.05)
            if not ok or node.proc.poll() is not None:
                raise RuntimeError(f"node on {node.port} did not join: {node.output[-2:]} {node.stderr_tail()}")
    return ports


def run(args: argparse.Namespace) -> int:
    rng = random.Random(args.seed)
    bh.network_key()  # PBKDF2 once, before any timing
    work = bh.make_workdir(args.keep, "gossip-bench-load-")
    nodes: list[bh.Node] = []
    r: dict[str, Any] = {"note": []}
    sampler = LoadSampler()
    me = os.getpid()
    snap0 = proc_cpu_snapshot()
    t_run = time.perf_counter()

    def cluster_cpu() -> float:
        return sum(n.cpu_seconds() or 0.0 for n in nodes)

    other_all = bh.OtherLoad(cluster_cpu)
    done_at: list[float | None] = []
    acked: dict[str, int] = {}
    try:
        # ---------------------------------------------------------------- start
        sampler.phase = "start"
        other = bh.OtherLoad(cluster_cpu)
        t0 = time.perf_counter()
        ports = start_nodes(args, work, rng, nodes)
        r["start_s"] = time.perf_counter() - t0
        n = len(ports)

        # ---------------------------------------------------------------- join
        sampler.phase = "join"
        t1 = time.perf_counter()
        bh.wait_for_peers(ports, n - 1, args.peers_bound, 1.0, timeout=30)
        r["join_s"] = time.perf_counter() - t1
        r["start_cores"] = (cluster_cpu()) / (time.perf_counter() - t0)
        r["other_start"] = other.cores()

        # The settled cluster, idle: nodes x rounds/s x max-peers exchanges.
        sampler.phase = "idle"
        other = bh.OtherLoad(cluster_cpu)
        c0, w0 = cluster_cpu(), time.perf_counter()
        time.sleep(args.idle)
        r["idle_cores"] = (cluster_cpu() - c0) / (time.perf_counter() - w0)
        r["other_idle"] = other.cores()

        # ---------------------------------------------------------------- create
        sampler.phase = "create"
        targets = [rng.randrange(n) for _ in range(args.gossips)]
        latencies: list[float] = []
        ack_times: list[float] = []
        failures: list[str] = []
        lock = threading.Lock()

        local = threading.local()  # each client thread keeps one HTTP/1.1 connection per node

        def post_create(port: int, i: int) -> tuple[int, bytes]:
            conns: dict[int, http.client.HTTPConnection] = local.__dict__.setdefault("conns", {})
            data = json.dumps({"msg": f"load gossip {i}"}).encode("utf-8")
            header = bh.client_auth_header(
                network=bh.NETWORK, node=bh.node_guid(port), key=bh.network_key(), method="POST", path="/v1/gossip", query={},
                body=data, ts=int(time.time() * 1000), nonce=secrets.token_hex(16),
            )
            for attempt in range(2):
                conn = conns.get(port)
                if conn is None:
                    conn = conns[port] = http.client.HTTPConnection(bh.HOST, port, timeout=60)
                try:
                    conn.request("POST", "/v1/gossip", body=data,
                                 headers={bh.CLIENT_AUTH_HEADER: header, "Content-Type": "application/json"})
                    response = conn.getresponse()
                    return response.status, response.read()
                except (ConnectionError, http.client.BadStatusLine):
                    conn.close()  # the node closed an idle connection: once more on a new one
                    del conns[port]
                    if attempt:
                        raise
            raise AssertionError("unreachable")

        def create(i: int) -> None:
            s = time.perf_counter()
            try:
                status, raw = post_create(ports[targets[i]], i)
            except Exception as exc:  # noqa: BLE001 - counted and reported
                with lock:
                    failures.append(f"{type(exc).__name__}: {str(exc)[:100]}")
                return
            now = time.perf_counter()
            with lock:
                if status == 201:
                    acked[json.loads(raw)["guid"]] = targets[i]
                    ack_times.append(now)
                    latencies.append(now - s)
                else:
                    failures.append(f"{status} {raw[:100]!r}")

        other = bh.OtherLoad(cluster_cpu)
        c2, t2 = cluster_cpu(), time.perf_counter()
        pool = ThreadPoolExecutor(max_workers=args.threads)
        try:
            list(pool.map(create, range(args.gossips)))
        finally:  # on SIGTERM/^C, drop the creates not started rather than wait for them
            pool.shutdown(wait=True, cancel_futures=True)
        if not ack_times:
            raise RuntimeError(f"no create acknowledged; e.g. {failures[:1]}")
        last_create = max(ack_times)
        r["create_s"] = last_create - t2
        r["creates_per_s"] = len(acked) / r["create_s"] if r["create_s"] > 0 else float("nan")
        r["create_p50"], r["create_p99"] = bh.pct(latencies, 0.5) * 1000, bh.pct(latencies, 0.99) * 1000
        r["create_cores"] = (cluster_cpu() - c2) / (time.perf_counter() - t2)
        r["other_create"] = other.cores()
        r["acked"], r["failed_creates"] = len(acked), len(failures)
        if failures:
            kinds: dict[str, int] = {}
            for f in failures:
                kinds[f[:60]] = kinds.get(f[:60], 0) + 1
            r["note"].append(f"{len(failures)} creates not acknowledged: {kinds}")

        # ---------------------------------------------------------------- converge
        sampler.phase = "converge"
        want = set(acked)
        done_at = [None] * n
        last_short = [last_create] * n  # the last poll that found a node short (a lower bound)
        missing: list[set[str] | None] = [None] * n  # acknowledged guids not complete, at the last poll
        held = [0] * n
        errors: dict[str, int] = {}
        get_times: list[float] = []
        get_bytes: list[int] = []
        sweeps: list[float] = []
        other = bh.OtherLoad(cluster_cpu)
        c3 = cluster_cpu()
        deadline = last_create + args.bound
        counts: list[float] = []  # seconds per GET /v1/node

        def check_list(i: int, port: int) -> bool:
            """GET /v1/gossip: whether node i holds every acknowledged guid complete."""
            g0 = time.perf_counter()
            try:
                status, raw = bh.client_call(port, "GET", "/v1/gossip", timeout=60, max_answer=GET_MAX_ANSWER)
            except Exception as exc:  # noqa: BLE001 - no answer in time: counted
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                return False
            if status != 200:
                errors[str(status)] = errors.get(str(status), 0) + 1
                return False
            get_times.append(time.perf_counter() - g0)
            get_bytes.append(len(raw))
            complete = {row["guid"] for row in json.loads(raw) if row.get("complete")}
            held[i] = len(complete)
            missing[i] = want - complete
            return not missing[i]

        # A node is polled with GET /v1/node (its gossip_count, a few hundred bytes) until the
        # count reaches the acknowledged creates: that poll's time is when it was done. Then
        # each node's full list (2.7 MB at 10,000 gossips) is read once, after every count is
        # in, to check it holds every acknowledged guid (a create whose answer was lost may
        # have counted instead); a node that does not is polled by its list until it does.
        # Polling full lists took 4-5 s a sweep, so a node's figure was known only to that.
        counted: list[float | None] = [None] * n
        while time.perf_counter() < deadline and any(c is None for c in counted):
            s0 = time.perf_counter()
            for i, port in enumerate(ports):
                if counted[i] is not None:
                    continue
                g0 = time.perf_counter()
                try:
                    status, raw = bh.client_call(port, "GET", "/v1/node", timeout=30)
                except Exception as exc:  # noqa: BLE001 - no answer in time: counted
                    errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                    continue
                if status != 200:
                    errors[str(status)] = errors.get(str(status), 0) + 1
                    continue
                counts.append(time.perf_counter() - g0)
                held[i] = int(json.loads(raw)["gossip_count"])
                if held[i] >= len(want):
                    counted[i] = g0
                else:
                    last_short[i] = g0
            sweeps.append(time.perf_counter() - s0)
            if all(c is not None for c in counted):
                break
            time.sleep(max(0.0, args.poll - sweeps[-1]))
        for i, port in enumerate(ports):
            if check_list(i, port):
                done_at[i] = counted[i] if counted[i] is not None else time.perf_counter()
        while time.perf_counter() < deadline and any(d is None for d in done_at):
            time.sleep(args.poll)
            for i, port in enumerate(ports):
                if done_at[i] is None and check_list(i, port):
                    done_at[i] = time.perf_counter()
        r["count_p50"] = bh.pct(counts, 0.5) if counts else None
        r["converge_cores"] = (cluster_cpu() - c3) / (time.perf_counter() - last_create)
        r["other_converge"] = other.cores()
        r["sweeps"], r["sweep_mean"] = len(sweeps), (statistics.mean(sweeps) if sweeps else None)
        r["sweep_max"] = max(sweeps) if sweeps else None
        r["get_p50"] = bh.pct(get_times, 0.5) if get_times else None
        r["get_max"] = max(get_times) if get_times else None
        r["get_mb"] = max(get_bytes) / 1e6 if get_bytes else None
        r["poll_errors"] = errors
        r["held_min"] = min(held)
        if all(d is not None for d in done_at):
            r["converge_s"] = max(d for d in done_at if d is not None) - last_create
            r["converge_lo"] = max(last_short) - last_create
            r["first_done_s"] = min(d for d in done_at if d is not None) - last_create
            r["median_done_s"] = statistics.median(d - last_create for d in done_at if d is not None)
        else:
            late = sorted(held[i] for i in range(n) if done_at[i] is None)
            r["note"].append(f"NOT converged {args.bound:g} s after the last create: "
                             f"{len(late)} nodes short, complete rows held {late[:10]}")
        never_seen = [i for i in range(n) if missing[i] is None]
        seen = [m for m in missing if m is not None]
        if never_seen:  # a node never answered: everything may be missing there
            r["lost_somewhere"], r["lost_everywhere"] = len(want), None
        else:
            r["lost_somewhere"] = len(set().union(*seen))
            r["lost_everywhere"] = len(set.intersection(*seen))
        if never_seen:
            r["note"].append(f"{len(never_seen)} nodes never answered GET /v1/gossip")

        # ---------------------------------------------------------------- per node, before stopping
        r["cpu"] = [node.cpu_seconds() for node in nodes]
        r["hwm"] = [node.status_field("VmHWM") for node in nodes]
        r["rss"] = [node.status_field("VmRSS") for node in nodes]
        r["alive"] = sum(1 for node in nodes if node.proc.poll() is None)
        r["bytes"] = sum(bh.metric_sum(p, "gossip_bytes_total") for p in ports) / 2  # sent + received
        r["requests"] = sum(bh.metric_sum(p, "gossip_requests_sent_total") for p in ports)
        r["req_failed"] = sum(bh.metric_sum(p, "gossip_requests_failed_total") for p in ports)
        r["rounds"] = sum(bh.metric_sum(p, "gossip_rounds_total") for p in ports)
        verbs: dict[str, float] = {}
        rejected: dict[str, float] = {}
        failed: dict[str, float] = {}
        duplicates: dict[str, float] = {}
        for p in ports:
            for fam, acc in (("gossip_requests_sent_total", verbs), ("gossip_rejected_total", rejected),
                             ("gossip_requests_failed_total", failed), ("gossip_duplicates_total", duplicates)):
                for label, v in bh.metric_by_label(p, fam).items():
                    key = label.split("=", 1)[1].strip('"')
                    acc[key] = acc.get(key, 0.0) + v
        r["verbs"], r["rejected"], r["failed_by_verb"] = verbs, rejected, failed
        r["duplicates"] = duplicates
    except Exception as exc:  # noqa: BLE001 - reported below, with whatever was measured
        r["note"].append(f"FAILED: {type(exc).__name__}: {exc}")
        if "cpu" not in r:
            r["cpu"] = [node.cpu_seconds() for node in nodes]
            r["hwm"] = [node.status_field("VmHWM") for node in nodes]
    finally:
        r["other_all"] = other_all.cores()
        r["wall"] = time.perf_counter() - t_run
        r["client_cpu"] = bh.own_cpu()
        snap1 = proc_cpu_snapshot()
        ours = {me} | {node.pid for node in nodes}
        sampler.stop()
        # Warnings up to here: stopping 50 nodes one by one makes the others' requests to
        # them fail, and every node then logs each stopped peer "suspect" (about 1,200 lines).
        warns = [ln for node in nodes for ln in node.stderr_lines() if " WARNING " in ln]
        bh.stop_all(nodes)
        r["exit_codes"] = sorted({node.proc.returncode for node in nodes})
        errs = [ln for node in nodes for ln in node.stderr_lines() if " ERROR " in ln or "Traceback" in ln]
        r["errors"], r["warnings"] = len(errs), len(warns)
        r["warning_kinds"] = bh.warning_kinds(warns, top=4)
        r["error_kinds"] = bh.warning_kinds([e.replace(" ERROR ", " WARNING ") for e in errs], top=3)
        bh.cleanup(work, args.keep)
        r["work_removed"] = not work.exists()
    r["other_top"] = other_top(snap0, snap1, ours)
    report(args, r, sampler)
    ok = r.get("converge_s") is not None and r.get("lost_somewhere") == 0 and not r.get("failed_creates")
    return 0 if ok else 1


# ------------------------------------------------------------------------------------ the report
def mb(kb: float | None) -> str:
    return bh.fmt(kb / 1024 if kb else None, ".1f")


def med_max(values: list[Any], conv: Callable[[float], float] = lambda x: x, spec: str = ".1f"
            ) -> tuple[str, str, str]:
    vals = [conv(v) for v in values if v is not None]
    if not vals:
        return "—", "—", "—"
    return format(min(vals), spec), format(statistics.median(vals), spec), format(max(vals), spec)


def report(args: argparse.Namespace, r: dict[str, Any], sampler: LoadSampler) -> None:
    n = args.nodes
    print(f"## load: {n} node processes, {args.gossips:,} gossips, --timer {args.timer:g} --max-peers {args.max_peers}")
    print()
    print("Command: " + shlex.join(["python", "bench/bench_load.py", *sys.argv[1:]]))
    print("Each node: GOSSIP_PASSWORD=... " + shlex.join(
        ["python", "-m", "gossip.http",
         *bh.converge_cmd(Path("<tmpdir>/nK.json"), 0, 0, timer=args.timer, max_peers=args.max_peers)]
    ).replace("--port 0", "--port <free port>").replace(f"{bh.HOST}:0", f"{bh.HOST}:<port of a random running node>"))
    print(f"Creates: {args.threads} client threads (each a persistent HTTP/1.1 connection per node), POST /v1/gossip at random nodes. Polls: GET /v1/node "
          f"(gossip_count) over the nodes every {args.poll:g} s or slower; a node whose count reaches the "
          "acknowledged creates is done at that poll once its GET /v1/gossip holds every acknowledged guid complete.")
    print(f"Machine: {bh.CORES} cores, shared: the {n} nodes, this client and whatever else runs "
          "(other test runs) compete for them; figures under load are pessimistic.")
    print()
    for note in r["note"]:
        print(f"**{note}**")
    if r["note"]:
        print()
    timer = args.timer
    conv = r.get("converge_s")
    rows = [
        ["start nodes (banner + joined, batches of %d)" % args.batch, bh.fmt(r.get("start_s"), ".1f") + " s"],
        [f"… then until every node knows {n - 1} peers", bh.fmt(r.get("join_s"), ".1f") + " s"],
        ["nodes' CPU, settled and idle (cores, all nodes)", bh.fmt(r.get("idle_cores"), ".2f")],
        [f"{args.gossips:,} creates: acknowledged / not", f"{r.get('acked', '—')} / {r.get('failed_creates', '—')}"],
        ["creates: wall time, rate", f"{bh.fmt(r.get('create_s'), '.1f')} s, {bh.fmt(r.get('creates_per_s'), '.0f')} creates/s"],
        ["create latency p50 / p99", f"{bh.fmt(r.get('create_p50'), '.0f')} / {bh.fmt(r.get('create_p99'), '.0f')} ms"],
        ["nodes' CPU during creates (cores)", bh.fmt(r.get("create_cores"), ".2f")],
        ["**last create → every node holds all (s)**", "**" + bh.fmt(conv, ".1f") + "**"],
        ["… in rounds", bh.fmt(conv / timer if conv is not None else None, ".0f") + f" (of {timer:g} s)"],
        ["… bracket: a node was still short at / all held all by (s)",
         f"{bh.fmt(r.get('converge_lo'), '.1f')} / {bh.fmt(conv, '.1f')}"],
        ["… first node / median node done (s after last create)",
         f"{bh.fmt(r.get('first_done_s'), '.1f')} / {bh.fmt(r.get('median_done_s'), '.1f')}"],
        ["nodes' CPU while converging (cores)", bh.fmt(r.get("converge_cores"), ".2f")],
        ["**lost: acknowledged, missing on some node / on every node**",
         f"**{r.get('lost_somewhere', '—')} / {bh.fmt(r.get('lost_everywhere'), 'd') if r.get('lost_everywhere') is not None else '—'}**"],
        ["poll resolution: sweeps, mean / max sweep (s); one GET /v1/node p50 (ms)",
         f"{r.get('sweeps', '—')}, {bh.fmt(r.get('sweep_mean'), '.2f')} / {bh.fmt(r.get('sweep_max'), '.2f')}; "
         f"{bh.fmt(r['count_p50'] * 1000 if r.get('count_p50') is not None else None, '.1f')}"],
        ["one GET /v1/gossip: p50 / max (s), largest answer (MB)",
         f"{bh.fmt(r.get('get_p50'), '.2f')} / {bh.fmt(r.get('get_max'), '.2f')}, {bh.fmt(r.get('get_mb'), '.1f')}"],
        ["polls unanswered (by kind)", str(r.get("poll_errors") or "none")],
        ["node-to-node MB (gossip_bytes_total, sent+received / 2)", bh.fmt(r["bytes"] / 1e6 if r.get("bytes") is not None else None, ".1f")],
        ["node requests sent / failed; rounds", f"{bh.fmt(r.get('requests'), '.0f')} / {bh.fmt(r.get('req_failed'), '.0f')}; {bh.fmt(r.get('rounds'), '.0f')}"],
        ["nodes alive at the end; exit codes after SIGTERM", f"{r.get('alive', '—')}/{n}; {r.get('exit_codes')}"],
        ["node WARNING lines before the stop / ERROR lines", f"{r['warnings']} / {r['errors']}"],
        ["wall time of the whole run (s)", f"{r['wall']:.0f}"],
        ["this client's CPU (s: signing, HTTP, parsing the polls)", f"{r['client_cpu']:.0f}"],
    ]
    print(bh.table(["figure", "value"], rows))
    print()
    cpu_min, cpu_med, cpu_max = med_max(r.get("cpu", []))
    hwm_min, hwm_med, hwm_max = med_max(r.get("hwm", []), lambda kb: kb / 1024)
    rss_min, rss_med, rss_max = med_max(r.get("rss", []), lambda kb: kb / 1024)
    total_cpu = sum(c for c in r.get("cpu", []) if c is not None)
    print(bh.table(
        ["per node (whole run)", "min", "median", "max", "all nodes"],
        [
            ["CPU seconds (utime+stime, /proc/<pid>/stat)", cpu_min, cpu_med, cpu_max, f"{total_cpu:.0f}"],
            ["peak RSS, VmHWM (MB)", hwm_min, hwm_med, hwm_max, "—"],
            ["RSS at the end, VmRSS (MB)", rss_min, rss_med, rss_max, "—"],
        ],
    ))
    print()
    print(bh.table(
        ["phase", "1-min load average min / median / max", "other processes' CPU (cores)"],
        [
            ["start + join", f"{sampler.summary('start')} → {sampler.summary('join')}", bh.fmt(r.get("other_start"), ".2f")],
            [f"idle ({args.idle:g} s)", sampler.summary("idle"), bh.fmt(r.get("other_idle"), ".2f")],
            ["create", sampler.summary("create"), bh.fmt(r.get("other_create"), ".2f")],
            ["converge", sampler.summary("converge"), bh.fmt(r.get("other_converge"), ".2f")],
            ["whole run", sampler.summary(), bh.fmt(r.get("other_all"), ".2f")],
        ],
    ))
    print()
    print(f"Other processes' CPU is /proc/stat busy time minus this bench's and its nodes' ({bh.CORES} cores "
          f"in all). Top other commands by CPU during the run (those alive at the end): {r['other_top']}")
    if r.get("verbs"):
        def labels(d: dict[str, float]) -> str:
            return ", ".join(f"{k} {v:.0f}" for k, v in sorted(d.items())) or "none"
        print(f"Requests sent, by verb (all nodes): {labels(r['verbs'])}; failed, by verb: "
              f"{labels(r['failed_by_verb'])}; messages refused, by reason: {labels(r['rejected'])}; "
              f"duplicate bodies received, by how: {labels(r['duplicates'])} "
              f"(every node receiving every gossip once is {r.get('acked', 0) * (n - 1):,})")
    if r.get("warning_kinds"):
        print(f"Node warnings: {r['warning_kinds']}")
    if r.get("errors"):
        print(f"Node errors: {r['error_kinds']}")
    print(f"Temporary directory removed: {r['work_removed']}")
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/bench_load.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=50)
    parser.add_argument("--gossips", type=int, default=10_000)
    parser.add_argument("--timer", type=float, default=1.0, help="seconds between rounds (default 1)")
    parser.add_argument("--max-peers", type=int, default=3)
    parser.add_argument("--batch", type=int, default=5, help="nodes started at a time (default 5)")
    parser.add_argument("--threads", type=int, default=32, help="client threads creating, each with a persistent connection per node (default 32)")
    parser.add_argument("--poll", type=float, default=0.5, help="least seconds between two sweeps of GET /v1/node over the nodes (default 0.5: "
                        "a sweep of 50 is ~0.1 s, and back-to-back sweeps would add ~500 signed requests a second to the nodes' work)")
    parser.add_argument("--bound", type=float, default=900.0, help="seconds after the last create to give up (default 900)")
    parser.add_argument("--peers-bound", type=float, default=300.0, help="seconds to wait for full membership (default 300)")
    parser.add_argument("--idle", type=float, default=5.0, help="seconds the idle cluster's CPU is measured (default 5)")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    if args.nodes < 2 or args.gossips < 1:
        parser.error("--nodes must be at least 2 and --gossips at least 1")
    return bh.run_main("bench_load", run, args)


if __name__ == "__main__":
    raise SystemExit(main())
