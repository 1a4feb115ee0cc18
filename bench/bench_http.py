"""Benchmark real node processes over HTTP: convergence, peer-request throughput, a large store.

    python bench/bench_http.py converge|throughput|throughput-keepalive|store|all [--runs N] [--keep]

- converge: 20 ``python -m gossip.http`` processes on 127.0.0.1 (``--timer 0.2 --max-peers 3``),
  each joining a random earlier node; once every node knows 19 peers, 1,000 gossips are created
  at random nodes, and every node's ``GET /v1/gossip`` is polled until all hold all 1,000. The
  figure is the seconds from the last acknowledged create to full convergence.
- throughput: one node; 20 client threads POST signed DID_YOU_HEAR probes to ``/v1/peer``
  (a new connection each) for ~10 s; requests/s, p50/p99 latency, errors.
- throughput-keepalive: the same probes on one node, first a new connection each, then from
  20 threads each keeping ONE persistent HTTP/1.1 connection (TCP_NODELAY; reopened and
  counted when the server closes it); requests/s, p50/p99, errors, reconnects, side by side.
- store: a node started on 100,000 stored gossips: startup until ``/healthz`` answers,
  200 sequential creates, the size of ``gossip.jsonl`` and the node's peak RSS.

Prints figures (markdown tables); asserts nothing about timing. Every process it starts is
stopped (SIGTERM, then SIGKILL after 5 s) and reaped before it exits.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import http.client
import json
import os
import queue
import random
import re
import secrets
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gossip import messages  # noqa: E402
from gossip.auth import CLIENT_AUTH_HEADER, client_auth_header, derive_key  # noqa: E402
from gossip.configfile import save_config  # noqa: E402
from gossip.digest import KeySet  # noqa: E402
from gossip.http import data_dir_for  # noqa: E402
from gossip.model import Gossip, Network, NodeConfig  # noqa: E402
from gossip.storage.jsonfile import JsonFileStorage  # noqa: E402
from gossip.http import http_call  # noqa: E402

__all__ = ["main"]

NETWORK = "default"  # what a node started without --network is on
PASSWORD = "bench-password-not-secret"
HOST = "127.0.0.1"
BANNER = re.compile(r"Serving HTTP on (\S+) port (\d+)")
CORES = os.cpu_count() or 1

_KEY: bytes | None = None


def network_key() -> bytes:
    """The network key the bench signs with (PBKDF2: derived once)."""
    global _KEY
    if _KEY is None:
        _KEY = derive_key(NETWORK, PASSWORD)
    return _KEY


_GUIDS: dict[int, str] = {}


def node_guid(port: int) -> str:
    """The guid of the node on ``port`` (its open ``GET /healthz``; asked once): client
    requests are signed for the node that gets them."""
    if port not in _GUIDS:
        status, raw = http_call(f"http://{HOST}:{port}/healthz", timeout=10)
        if status != 200:
            raise RuntimeError(f"node on port {port}: /healthz answered {status}")
        _GUIDS[port] = str(json.loads(raw)["node_guid"])
    return _GUIDS[port]


# ------------------------------------------------------------------------------------ helpers
def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of values, by linear interpolation."""
    data = sorted(values)
    if not data:
        return float("nan")
    pos = (len(data) - 1) * q
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def fmt(value: float | None, spec: str = ".2f") -> str:
    return "—" if value is None else format(value, spec)


def table(headers: list[str], rows: Iterable[Iterable[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines.extend("| " + " | ".join(str(c) for c in row) + " |" for row in rows)
    return "\n".join(lines)


def client_call(
    port: int, method: str, path: str, body: Any = None, *, timeout: float = 10.0, max_answer: int | None = None
) -> tuple[int, bytes]:
    """One signed client-API request (``X-Gossip-Auth``) with http_call (a new connection).

    ``max_answer``: most answer bytes read (None: http_call's default, 4 MiB)."""
    data = b"" if body is None else json.dumps(body).encode("utf-8")
    header = client_auth_header(
        network=NETWORK,
        node=node_guid(port),
        key=network_key(),
        method=method,
        path=path,
        query={},
        body=data,
        ts=int(time.time() * 1000),
        nonce=secrets.token_hex(16),
    )
    extra: dict[str, Any] = {} if max_answer is None else {"max_answer": max_answer}
    return http_call(
        f"http://{HOST}:{port}{path}",
        method=method,
        body=data if body is not None else None,
        headers={CLIENT_AUTH_HEADER: header},
        timeout=timeout,
        **extra,
    )


def client_json(port: int, method: str, path: str, body: Any = None, *, timeout: float = 10.0) -> Any:
    status, raw = client_call(port, method, path, body, timeout=timeout)
    if status >= 300:
        raise RuntimeError(f"{method} {path} on port {port}: {status} {raw[:200]!r}")
    return json.loads(raw)


def wait_for_peers(ports: list[int], want: int, bound: float, every: float, *, timeout: float = 20.0) -> None:
    """Until every node on ``ports`` knows ``want`` peers (``GET /v1/peers`` rows but the
    node's own), asking a node again only while it is short; RuntimeError after ``bound`` s."""
    counts = [0] * len(ports)

    def all_known() -> bool:
        for i, port in enumerate(ports):
            if counts[i] < want:
                rows = try_json(port, "GET", "/v1/peers", timeout=timeout)
                counts[i] = counts[i] if rows is None else sum(1 for r in rows if not r.get("self"))
        return min(counts) >= want

    if not wait_until(all_known, bound, every):
        raise RuntimeError(f"after {bound:g} s, peers known per node: {sorted(counts)}")


def try_json(port: int, method: str, path: str, *, timeout: float = 20.0) -> Any | None:
    """Like client_json, but None when the node is busy (503) or does not answer in time."""
    try:
        status, raw = client_call(port, method, path, timeout=timeout)
    except Exception:  # noqa: BLE001 - TransportError: no answer in time
        return None
    if status == 503:
        return None
    if status >= 300:
        raise RuntimeError(f"{method} {path} on port {port}: {status} {raw[:200]!r}")
    return json.loads(raw)


class Node:
    """One ``python -m gossip.http`` process, its stdout read by a thread."""

    def __init__(self, args: list[str], *, workdir: Path, tag: str, env: dict[str, str] | None = None) -> None:
        self.cmd = [sys.executable, "-m", "gossip.http", *args]
        full_env = dict(os.environ)
        full_env["PYTHONPATH"] = str(ROOT) + os.pathsep + full_env.get("PYTHONPATH", "")
        full_env.pop("GOSSIP_PASSWORD", None)
        full_env.update(env or {})
        self.stderr_path = workdir / f"{tag}.stderr"
        self._stderr = open(self.stderr_path, "wb")
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.output: list[str] = []
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(
            self.cmd,
            cwd=ROOT,
            env=full_env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            encoding="utf-8",
            errors="replace",
        )
        self.port: int | None = None
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.output.append(line.rstrip("\n"))
            self.lines.put(line)
        self.lines.put(None)

    def wait_banner(self, timeout: float) -> float:
        """Wait for the "Serving HTTP on" line; returns seconds since the process started."""
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"no banner within {timeout:g} s from {shlex.join(self.cmd)}; {self.stderr_tail()}")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise RuntimeError(f"exited ({self.proc.wait()}) before its banner; {self.stderr_tail()}")
            match = BANNER.search(line)
            if match:
                self.port = int(match.group(2))
                return time.perf_counter() - self.started

    def stderr_tail(self, n: int = 5) -> str:
        try:
            text = self.stderr_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "stderr: " + " / ".join(text.strip().splitlines()[-n:])

    def stderr_lines(self) -> list[str]:
        try:
            return self.stderr_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return []

    def status_field(self, name: str) -> int | None:
        """A kB figure from /proc/<pid>/status (VmHWM, VmRSS), or None."""
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith(name + ":"):
                    return int(line.split()[1])
        except (OSError, ValueError, IndexError):
            pass
        return None

    def cpu_seconds(self) -> float | None:
        """user + system CPU seconds of the process so far."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rpartition(")")[2].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            return None


def stop_all(nodes: list[Node]) -> None:
    """SIGTERM every node, SIGKILL what is left after 5 s, reap all; never raises."""
    for node in nodes:
        if node.proc.poll() is None:
            try:
                node.proc.send_signal(signal.SIGTERM)
            except OSError:
                pass
    end = time.monotonic() + 5.0
    for node in nodes:
        try:
            node.proc.wait(timeout=max(0.0, end - time.monotonic()))
        except subprocess.TimeoutExpired:
            pass
    for node in nodes:
        if node.proc.poll() is None:
            try:
                node.proc.kill()
            except OSError:
                pass
            try:
                node.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:  # pragma: no cover
                print(f"warning: pid {node.pid} did not die", file=sys.stderr)
        node._reader.join(timeout=2)
        node._stderr.close()


def run_main(name: str, run: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """A bench's start: SIGTERM runs the finally blocks (every node stopped and reaped), a
    banner with the machine's load, then ``run(args)``."""

    def on_term(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_term)
    load1, load5, load15 = os.getloadavg()
    print(f"# {name} — Python {sys.version.split()[0]}, {CORES} cores, {time.strftime('%Y-%m-%d %H:%M:%S')}, "
          f"load average {load1:.1f} {load5:.1f} {load15:.1f} at the start")
    print()
    return run(args)


def wait_until(check: Callable[[], bool], timeout: float, interval: float) -> bool:
    end = time.monotonic() + timeout
    while True:
        if check():
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(interval)


def metric_sum(port: int, name: str) -> float:
    """The sum of a /metrics family's samples (0 if missing)."""
    status, raw = http_call(f"http://{HOST}:{port}/metrics", timeout=10)
    if status != 200:
        return 0.0
    total = 0.0
    for line in raw.decode().splitlines():
        if line.startswith(name) and not line.startswith("#"):
            head = line.split(" ", 1)[0]
            if head == name or head.startswith(name + "{"):
                total += float(line.rsplit(" ", 1)[1])
    return total


def machine_busy() -> float:
    """Busy CPU seconds of the whole machine so far (all processes, from /proc/stat)."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError):
        return 0.0
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_cpu() -> float:
    t = os.times()
    return t.user + t.system


class OtherLoad:
    """CPU that processes other than ours used during a window, in cores (a noise gauge)."""

    def __init__(self, ours: Callable[[], float]) -> None:
        self._ours = ours
        self._t, self._busy, self._mine = time.perf_counter(), machine_busy(), ours() + own_cpu()

    def cores(self) -> float:
        elapsed = time.perf_counter() - self._t
        busy = machine_busy() - self._busy
        mine = self._ours() + own_cpu() - self._mine
        return max(0.0, busy - mine) / elapsed if elapsed > 0 else 0.0


_NOISE = re.compile(r"[0-9a-f]{8}-[0-9a-f-]{27}|node-[0-9a-f]{8}|[0-9]+(\.[0-9]+)?")


def warning_kinds(lines: list[str], top: int = 3) -> str:
    """The most common WARNING messages (numbers and ids blanked), with counts."""
    counts: dict[str, int] = {}
    for line in lines:
        text = line.split(" WARNING ", 1)[-1]
        text = _NOISE.sub("#", text)[:110]
        counts[text] = counts.get(text, 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
    return "; ".join(f"{n}× {t}" for t, n in ranked)


def metric_by_label(port: int, name: str) -> dict[str, float]:
    """A /metrics family's samples by their label text (e.g. 'verb="hello"')."""
    status, raw = http_call(f"http://{HOST}:{port}/metrics", timeout=10)
    out: dict[str, float] = {}
    if status != 200:
        return out
    for line in raw.decode().splitlines():
        if line.startswith(name + "{"):
            head, value = line.rsplit(" ", 1)
            label = head[len(name) + 1 : -1]
            out[label] = out.get(label, 0.0) + float(value)
    return out


def make_workdir(keep: bool, prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))


def cleanup(path: Path, keep: bool) -> None:
    if keep:
        print(f"(kept {path})")
    else:
        shutil.rmtree(path, ignore_errors=True)


# ------------------------------------------------------------------------------------ converge
N_NODES = 20
N_GOSSIPS = 1000
CONVERGE_BOUND = 120.0


def converge_cmd(conf: Path, port: int, join: int | None, *, timer: float = 0.2, max_peers: int = 3) -> list[str]:
    args = ["--config", str(conf), "--port", str(port), "--timer", f"{timer:g}", "--max-peers", str(max_peers),
            "--log-level", "WARNING"]
    if join is not None:
        args += ["--join", f"{HOST}:{join}"]
    return args


def converge_run(run: int, keep: bool, rng: random.Random) -> dict[str, Any]:
    work = make_workdir(keep, f"gossip-bench-converge{run}-")
    nodes: list[Node] = []
    result: dict[str, Any] = {"run": run, "converge": None, "note": ""}
    try:
        t0 = time.perf_counter()
        ports: list[int] = []
        for k in range(N_NODES):
            port = free_port()
            join = rng.choice(ports) if ports else None
            node = Node(converge_cmd(work / f"n{k}.json", port, join), workdir=work, tag=f"n{k}",
                        env={"GOSSIP_PASSWORD": PASSWORD})
            nodes.append(node)
            node.wait_banner(timeout=30)
            if node.port != port:
                raise RuntimeError(f"node {k} serves on {node.port}, not {port}")
            ports.append(port)
        result["startup"] = time.perf_counter() - t0

        t1 = time.perf_counter()
        wait_for_peers(ports, N_NODES - 1, 60, 0.2)
        result["peers"] = time.perf_counter() - t1

        def cluster_cpu() -> float:
            return sum(n.cpu_seconds() or 0.0 for n in nodes)

        # What the settled cluster costs: 20 nodes x 5 rounds/s x 3 peers x (HELLO + DID_YOU_HEAR).
        c0, w0 = cluster_cpu(), time.perf_counter()
        time.sleep(3.0)
        result["idle_cores"] = (cluster_cpu() - c0) / (time.perf_counter() - w0)

        # 1,000 creates at random nodes, 8 at a time.
        targets = [rng.randrange(N_NODES) for _ in range(N_GOSSIPS)]
        acked: list[float] = []
        failures: list[str] = []
        lock = threading.Lock()

        def create(i: int) -> None:
            try:
                status, raw = client_call(ports[targets[i]], "POST", "/v1/gossip", {"msg": f"bench gossip {i}"})
            except Exception as exc:  # noqa: BLE001 - counted and reported
                with lock:
                    failures.append(str(exc)[:120])
                return
            now = time.perf_counter()
            with lock:
                if status == 201:
                    acked.append(now)
                else:
                    failures.append(f"{status} {raw[:120]!r}")

        t2 = time.perf_counter()
        c2 = cluster_cpu()
        other = OtherLoad(cluster_cpu)
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(create, range(N_GOSSIPS)))
        result["create_cores"] = (cluster_cpu() - c2) / (time.perf_counter() - t2)
        if failures:
            raise RuntimeError(f"{len(failures)} creates failed, e.g. {failures[0]}")
        last_create = max(acked)
        result["create_s"] = last_create - t2

        # Poll every node until it holds all 1,000 (a node that got there stays there).
        held = [0] * N_NODES
        done_at: list[float | None] = [None] * N_NODES
        deadline = last_create + CONVERGE_BOUND
        sweeps: list[float] = []
        busy = 0
        while time.perf_counter() < deadline:
            s0 = time.perf_counter()
            for i, port in enumerate(ports):
                if done_at[i] is not None:
                    continue
                rows = try_json(port, "GET", "/v1/gossip", timeout=20)
                if rows is None:
                    busy += 1
                    continue
                held[i] = sum(1 for r in rows if r.get("complete"))
                if held[i] >= N_GOSSIPS:
                    done_at[i] = time.perf_counter()
            sweeps.append(time.perf_counter() - s0)
            if all(d is not None for d in done_at):
                break
            time.sleep(0.2)  # a sweep of 20 GET /v1/gossip costs CPU the nodes need
        result["sweep"] = statistics.mean(sweeps) if sweeps else None
        result["busy"] = busy
        result["other_cores"] = other.cores()
        if all(d is not None for d in done_at):
            result["converge"] = max(d for d in done_at if d is not None) - last_create
        else:
            result["note"] = f"not converged after {CONVERGE_BOUND:g} s: held {sorted(held)}"
        result["requests"] = sum(metric_sum(p, "gossip_requests_sent_total") for p in ports)
        verbs: dict[str, float] = {}
        for p in ports:
            for label, n in metric_by_label(p, "gossip_requests_sent_total").items():
                verbs[label] = verbs.get(label, 0.0) + n
        rejected: dict[str, float] = {}
        for p in ports:
            for label, n in metric_by_label(p, "gossip_rejected_total").items():
                rejected[label] = rejected.get(label, 0.0) + n
        rounds = sum(metric_sum(p, "gossip_rounds_total") for p in ports)

        def labels(d: dict[str, float]) -> str:
            return ", ".join(f"{k.split('=')[1].strip(chr(34))} {v:.0f}" for k, v in sorted(d.items())) or "none"

        result["verbs"] = f"rounds {rounds:.0f}; {labels(verbs)}; messages refused, by reason: {labels(rejected)}"
        result["failed"] = sum(metric_sum(p, "gossip_requests_failed_total") for p in ports)
        result["bytes"] = sum(metric_sum(p, "gossip_bytes_total") for p in ports) / 2  # sent+received
        result["alive"] = sum(1 for n in nodes if n.proc.poll() is None)
    except Exception as exc:  # noqa: BLE001 - a failed run is reported, not raised
        result["note"] = f"FAILED: {exc}"
    finally:
        stop_all(nodes)
        errors = [ln for n in nodes for ln in n.stderr_lines() if " ERROR " in ln or "Traceback" in ln]
        warnings = [ln for n in nodes for ln in n.stderr_lines() if " WARNING " in ln]
        result["errors"], result["warnings"] = len(errors), len(warnings)
        result["warning_kinds"] = warning_kinds(warnings)
        if errors:
            result["note"] += f" first error: {errors[0][:200]}"
        cleanup(work, keep)
    return result


def bench_converge(runs: int, keep: bool) -> None:
    print(f"## converge: {N_NODES} node processes, {N_GOSSIPS} gossips, --timer 0.2 --max-peers 3")
    print()
    print("Command: " + shlex.join([sys.executable, "bench/bench_http.py", "converge", "--runs", str(runs)]))
    print("Each node: GOSSIP_PASSWORD=... " + shlex.join(
        ["python", "-m", "gossip.http", *converge_cmd(Path("<tmpdir>/nK.json"), 0, 0)]
    ).replace("--port 0", "--port <free port>").replace(f"{HOST}:0", f"{HOST}:<port of a random earlier node>"))
    print(f"({CORES} cores shared by the {N_NODES} nodes and this client.)")
    print()
    rng = random.Random(2026)
    results = []
    for run in range(1, runs + 1):
        r = converge_run(run, keep, rng)
        results.append(r)
        print(f"run {run}: converge {fmt(r['converge'])} s {r['note']}", flush=True)
    print()
    rows = [
        [
            r["run"],
            fmt(r.get("startup"), ".1f"),
            fmt(r.get("peers"), ".1f"),
            fmt(r.get("idle_cores"), ".2f"),
            fmt(r.get("create_s"), ".1f"),
            fmt(r.get("create_cores"), ".2f"),
            fmt(r["converge"]),
            fmt(r.get("other_cores"), ".2f"),
            fmt(r.get("requests"), ".0f"),
            fmt(r.get("failed"), ".0f"),
            fmt(r["bytes"] / 1e6 if r.get("bytes") is not None else None, ".1f"),
            f"{r['warnings']}/{r['errors']}",
            r["note"] or "",
        ]
        for r in results
    ]
    for r in results:
        if r.get("verbs"):
            print(f"run {r['run']} requests sent, by verb (all nodes): {r['verbs']}; "
                  f"one poll sweep (20 × GET /v1/gossip) took {fmt(r.get('sweep'))} s on average, "
                  f"{r.get('busy', 0)} polls answered 503 busy or timed out")
        if r.get("warning_kinds"):
            print(f"run {r['run']} node warnings: {r['warning_kinds']}")
    print()
    good = [r["converge"] for r in results if r["converge"] is not None]
    print(table(
        ["run", "start 20 nodes (s)", "all know 19 peers (s)", "nodes' CPU when settled (cores)",
         "1,000 creates (s)", "nodes' CPU during creates (cores)",
         "last create → all hold 1,000 (s)", "other processes' CPU meanwhile (cores)", "node requests", "failed", "MB node-to-node",
         "WARNING/ERROR lines", "note"],
        rows,
    ))
    print()
    if good:
        print(f"**median convergence: {statistics.median(good):.2f} s** ({len(good)}/{len(results)} runs converged)")
    else:
        print("**no run converged**")
    print()


# ------------------------------------------------------------------------------------ throughput
TP_THREADS = 20
TP_SECONDS = 10.0


def start_lone_node(work: Path, nodes: list[Node]) -> Node:
    """One ``python -m gossip.http`` in ``work`` (appended to ``nodes`` for clean-up), once its
    ``/healthz`` answers."""
    node = Node(["--config", str(work / "server.json"), "--port", str(free_port()), "--log-level", "WARNING"],
                workdir=work, tag="node", env={"GOSSIP_PASSWORD": PASSWORD})
    nodes.append(node)
    node.wait_banner(timeout=30)
    if node.port is None or not wait_until(lambda: _healthy(node.port), 30, 0.05):  # type: ignore[arg-type]
        raise RuntimeError("/healthz never answered")
    return node


def probe_body(sender: str, port: int) -> bytes:
    """A signed DID_YOU_HEAR probe of an empty set, for the node on ``port``: the node (holding
    none) answers in-sync."""
    empty = KeySet()
    return messages.encode(
        messages.DidYouHear(probe=messages.Probe(count=len(empty), fingerprint=empty.fingerprint)),
        network=NETWORK,
        sender=sender,
        key=network_key(),
        nonce=secrets.token_hex(12),
        ts=int(time.time() * 1000),
        to=node_guid(port),
    )


def run_clients(worker: Callable[[int], None], start_gate: threading.Barrier, stop_at: list[float],
                latencies: list[list[float]], errors: list[list[str]]) -> dict[str, Any]:
    """Run TP_THREADS ``worker(i)`` threads for TP_SECONDS from one start; their figures merged."""
    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(TP_THREADS)]
    for t in threads:
        t.start()
    cpu0 = os.times()
    stop_at[0] = time.perf_counter() + TP_SECONDS
    t0 = time.perf_counter()
    start_gate.wait()
    for t in threads:
        t.join(timeout=TP_SECONDS + 30)
    elapsed = time.perf_counter() - t0
    cpu1 = os.times()
    lat = [x for part in latencies for x in part]
    errs = [x for part in errors for x in part]
    kinds: dict[str, int] = {}
    for e in errs:
        kinds[e] = kinds.get(e, 0) + 1
    return {
        "ok": len(lat),
        "rps": len(lat) / elapsed,
        "p50": pct(lat, 0.5) * 1000,
        "p99": pct(lat, 0.99) * 1000,
        "errors": len(errs),
        "kinds": kinds,
        "elapsed": elapsed,
        "client_cpu": (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system),
    }


def throughput_run(port: int, sender: str) -> dict[str, Any]:
    latencies: list[list[float]] = [[] for _ in range(TP_THREADS)]
    errors: list[list[str]] = [[] for _ in range(TP_THREADS)]
    start_gate = threading.Barrier(TP_THREADS + 1)
    stop_at = [0.0]

    def worker(i: int) -> None:
        lat, err = latencies[i], errors[i]
        start_gate.wait()
        while time.perf_counter() < stop_at[0]:
            body = probe_body(sender, port)
            t0 = time.perf_counter()
            conn = http.client.HTTPConnection(HOST, port, timeout=10)
            try:
                conn.request("POST", "/v1/peer", body=body, headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                answer = resp.read()
                status = resp.status
            except (OSError, http.client.HTTPException) as exc:
                err.append(type(exc).__name__)
                continue
            finally:
                conn.close()
            if status == 200 and b'"sync":true' in answer:
                lat.append(time.perf_counter() - t0)
            else:
                err.append(f"{status}")

    return run_clients(worker, start_gate, stop_at, latencies, errors)


def bench_throughput(runs: int, keep: bool) -> None:
    print(f"## throughput: POST /v1/peer DID_YOU_HEAR probes, {TP_THREADS} client threads, ~{TP_SECONDS:g} s per run")
    print()
    print("Command: " + shlex.join([sys.executable, "bench/bench_http.py", "throughput", "--runs", str(runs)]))
    print("Node: GOSSIP_PASSWORD=... python -m gossip.http --config <tmpdir>/server.json --port <free port> --log-level WARNING")
    print(
        f"Caveat: this machine has {CORES} cores and the load generator (one Python process, "
        f"{TP_THREADS} threads, signing each request, a new TCP connection per request) shares them "
        "with the server: the figures are a floor for the server, not its capacity."
    )
    print("Each probe (count 0, the empty set's fingerprint) gets an in-sync answer: the cheapest "
          "complete path (HTTP parse, MAC check, replay guard, answer signing).")
    print()
    sender = str(uuid.uuid4())  # an unknown sender that holds the key
    network_key()
    results = []
    for run in range(1, runs + 1):
        work = make_workdir(keep, f"gossip-bench-throughput{run}-")
        nodes: list[Node] = []
        try:
            node = start_lone_node(work, nodes)
            assert node.port is not None
            cpu0 = node.cpu_seconds()
            other = OtherLoad(lambda: node.cpu_seconds() or 0.0)
            r = throughput_run(node.port, sender)
            r["other_cores"] = other.cores()
            cpu1 = node.cpu_seconds()
            r["server_cpu"] = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
            r["rss"] = node.status_field("VmHWM")
            r["run"] = run
            results.append(r)
            print(f"run {run}: {r['rps']:.0f} req/s, p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms, "
                  f"errors {r['errors']} {r['kinds'] or ''}", flush=True)
        except Exception as exc:  # noqa: BLE001
            print(f"run {run}: FAILED: {exc}", flush=True)
        finally:
            stop_all(nodes)
            errs = [ln for n in nodes for ln in n.stderr_lines() if " ERROR " in ln or "Traceback" in ln]
            if errs:
                print(f"  node stderr errors: {len(errs)}, first: {errs[0][:200]}")
            cleanup(work, keep)
    print()
    print(table(
        ["run", "ok requests", "req/s", "p50 (ms)", "p99 (ms)", "errors", "server CPU (s)",
         "client CPU (s)", "other processes' CPU (cores)", "node peak RSS (MB)"],
        [
            [r["run"], r["ok"], f"{r['rps']:.0f}", f"{r['p50']:.1f}", f"{r['p99']:.1f}",
             f"{r['errors']}" + (f" {r['kinds']}" if r["kinds"] else ""),
             fmt(r["server_cpu"], ".1f"), f"{r['client_cpu']:.1f}", f"{r['other_cores']:.2f}",
             fmt(r["rss"] / 1024 if r["rss"] else None, ".1f")]
            for r in results
        ],
    ))
    print()
    if results:
        print(
            f"**median of {len(results)} runs: {statistics.median(r['rps'] for r in results):.0f} req/s, "
            f"p50 {statistics.median(r['p50'] for r in results):.1f} ms, "
            f"p99 {statistics.median(r['p99'] for r in results):.1f} ms, "
            f"errors {statistics.median(r['errors'] for r in results):.0f}**"
        )
    print()


def _healthy(port: int) -> bool:
    try:
        status, _ = http_call(f"http://{HOST}:{port}/healthz", timeout=2)
    except Exception:  # noqa: BLE001 - not up yet
        return False
    return status == 200


# ------------------------------------------------------------------------------------ throughput-keepalive
KA_TARGET_RPS = 5000  # issue 9: at least 5,000 signed DID_YOU_HEAR a second on persistent connections ...
KA_TARGET_P99_MS = 10.0  # ... with p99 under 10 ms


def keepalive_run(port: int, sender: str) -> dict[str, Any]:
    """TP_THREADS threads, each with ONE persistent HTTP/1.1 connection (TCP_NODELAY), POSTing
    signed in-sync DID_YOU_HEAR probes for TP_SECONDS. A connection the server closes (an
    HTTP/1.0 answer, ``Connection: close``, or a reused connection found closed) is reopened
    and counted; a request that failed on a reused connection (the server closed it first)
    is counted as ``stale``, not as an error, and the next one goes on a new connection."""
    latencies: list[list[float]] = [[] for _ in range(TP_THREADS)]
    errors: list[list[str]] = [[] for _ in range(TP_THREADS)]
    opened = [0] * TP_THREADS  # connections opened, per thread
    closed_by_server = [0] * TP_THREADS  # answers after which the server closed the connection
    stale = [0] * TP_THREADS  # requests that failed on a reused connection
    versions: list[dict[int, int]] = [{} for _ in range(TP_THREADS)]  # answers by HTTP version (10, 11)
    start_gate = threading.Barrier(TP_THREADS + 1)
    stop_at = [0.0]

    def worker(i: int) -> None:
        lat, err, ver = latencies[i], errors[i], versions[i]
        conn: http.client.HTTPConnection | None = None
        used = 0  # requests answered on the current connection
        start_gate.wait()
        try:
            while time.perf_counter() < stop_at[0]:
                body = probe_body(sender, port)
                t0 = time.perf_counter()  # a reconnect, when one is needed, counts in the latency
                if conn is None or conn.sock is None:
                    if conn is not None:
                        conn.close()
                    conn = http.client.HTTPConnection(HOST, port, timeout=10)
                    try:
                        conn.connect()
                        assert conn.sock is not None
                        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                    except OSError as exc:
                        err.append(f"connect {type(exc).__name__}")
                        conn.close()
                        conn = None
                        time.sleep(0.01)  # a refused connect returns at once: do not spin
                        continue
                    opened[i] += 1
                    used = 0
                try:
                    conn.request("POST", "/v1/peer", body=body, headers={"Content-Type": "application/json"})
                    resp = conn.getresponse()
                    answer = resp.read()
                    status = resp.status
                    ver[resp.version] = ver.get(resp.version, 0) + 1
                except (OSError, http.client.HTTPException) as exc:
                    conn.close()
                    conn = None
                    if used > 0:
                        stale[i] += 1
                    else:
                        err.append(type(exc).__name__)
                    continue
                used += 1
                if conn.sock is None:  # http.client closed it: the answer said the server closes
                    closed_by_server[i] += 1
                if status == 200 and b'"sync":true' in answer:
                    lat.append(time.perf_counter() - t0)
                else:
                    err.append(f"{status}")
        finally:
            if conn is not None:
                conn.close()

    r = run_clients(worker, start_gate, stop_at, latencies, errors)
    by_version: dict[str, int] = {}
    for part in versions:
        for v, n in part.items():
            key = f"HTTP/{v // 10}.{v % 10}"
            by_version[key] = by_version.get(key, 0) + n
    total_opened = sum(opened)
    return {
        **r,
        "opened": total_opened,
        "reconnects": max(0, total_opened - TP_THREADS),
        "closed_by_server": sum(closed_by_server),
        "stale": sum(stale),
        "per_conn": (r["ok"] + r["errors"]) / total_opened if total_opened else None,
        "versions": by_version,
    }


_LEAN_SENDER = str(uuid.uuid4())


def _lean_bodies(count: int, port: int) -> list[bytes]:
    return [probe_body(_LEAN_SENDER, port) for _ in range(count)]


def lean_keepalive_run(port: int, sender: str) -> dict[str, Any]:
    """The same probes from bench/h1load.py: 2 processes x 10 persistent connections, bodies
    signed before the clock starts, raw sockets: the client costs ~40 µs a request, so the
    figure is the server's."""
    import h1load

    r = h1load.run_load((HOST, port), functools.partial(_lean_bodies, port=port), processes=2, connections=TP_THREADS // 2, seconds=TP_SECONDS)
    lat = r.latencies
    return {
        "ok": r.requests - r.errors, "rps": r.requests / r.seconds if r.seconds else 0.0,
        "p50": pct(lat, 0.5) * 1e3 if lat else 0.0, "p99": pct(lat, 0.99) * 1e3 if lat else 0.0,
        "errors": r.errors, "kinds": "", "reconnects": r.reconnects, "closed_by_server": r.reconnects,
        "stale": 0, "versions": {}, "client_cpu": r.client_cpu,
        "per_conn": r.requests / max(1, TP_THREADS + r.reconnects),
    }


def bench_throughput_keepalive(runs: int, keep: bool) -> None:
    print(f"## throughput-keepalive: POST /v1/peer DID_YOU_HEAR probes, {TP_THREADS} client threads, "
          f"~{TP_SECONDS:g} s per mode: one persistent connection per thread, beside a new connection per request")
    print()
    print("Command: " + shlex.join([sys.executable, "bench/bench_http.py", "throughput-keepalive", "--runs", str(runs)]))
    print("Node: GOSSIP_PASSWORD=... python -m gossip.http --config <tmpdir>/server.json --port <free port> --log-level WARNING")
    print(
        f"Each run starts one node and measures, on it, first the new-connection mode (as the throughput part), "
        f"then the keep-alive mode: each of the {TP_THREADS} threads keeps ONE http.client.HTTPConnection "
        "(HTTP/1.1, TCP_NODELAY), reopened only when the server closes it (counted as reconnects). "
        f"Caveat: this machine has {CORES} cores and the load generator (one Python process, signing each "
        "request, ~250 µs of client CPU per request in http.client and thread switching) shares them with the "
        "server: the rates are a floor for the server, not its capacity (at 5,000/s this client alone would "
        "need more than a core); server CPU per request is the figure least sensitive to that."
    )
    print()
    sender = str(uuid.uuid4())  # an unknown sender that holds the key
    network_key()
    rows: list[list[Any]] = []
    results: dict[str, list[dict[str, Any]]] = {"new connection": [], "keep-alive": [], "keep-alive, lean client": []}
    for run in range(1, runs + 1):
        work = make_workdir(keep, f"gossip-bench-keepalive{run}-")
        nodes: list[Node] = []
        try:
            node = start_lone_node(work, nodes)
            assert node.port is not None
            for mode, fn in (("new connection", throughput_run), ("keep-alive", keepalive_run),
                             ("keep-alive, lean client", lean_keepalive_run)):
                cpu0 = node.cpu_seconds()
                other = OtherLoad(lambda: node.cpu_seconds() or 0.0)
                r = fn(node.port, sender)
                r["other_cores"] = other.cores()
                cpu1 = node.cpu_seconds()
                r["server_cpu"] = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
                r["run"], r["mode"] = run, mode
                results[mode].append(r)
                extra = ""
                if mode.startswith("keep-alive"):
                    extra = (f", reconnects {r['reconnects']} (server closed after an answer {r['closed_by_server']}, "
                             f"stale {r['stale']}), answers {r['versions']}")
                print(f"run {run} {mode}: {r['rps']:.0f} req/s, p50 {r['p50']:.1f} ms, p99 {r['p99']:.1f} ms, "
                      f"errors {r['errors']} {r['kinds'] or ''}{extra}", flush=True)
                rows.append([
                    run, mode, r["ok"], f"{r['rps']:.0f}", f"{r['p50']:.1f}", f"{r['p99']:.1f}",
                    f"{r['errors']}" + (f" {r['kinds']}" if r["kinds"] else ""),
                    (f"{r['reconnects']:,} ({r['closed_by_server']:,} closed by the server, {r['stale']} stale)"
                     if mode.startswith("keep-alive") else "— (one per request)"),
                    _per_conn(r) if mode.startswith("keep-alive") else "1",
                    ", ".join(f"{k} ×{v:,}" for k, v in sorted(r.get("versions", {}).items())) or "—",
                    fmt(r["server_cpu"], ".1f"), f"{r['client_cpu']:.1f}",
                    fmt(r["server_cpu"] / r["ok"] * 1e6 if r["server_cpu"] is not None and r["ok"] else None, ".0f"),
                    fmt(r["client_cpu"] / r["ok"] * 1e6 if r["ok"] else None, ".0f"),
                    f"{r['other_cores']:.2f}",
                ])
        except Exception as exc:  # noqa: BLE001
            print(f"run {run}: FAILED: {exc}", flush=True)
        finally:
            stop_all(nodes)
            errs = [ln for n in nodes for ln in n.stderr_lines() if " ERROR " in ln or "Traceback" in ln]
            if errs:
                print(f"  node stderr errors: {len(errs)}, first: {errs[0][:200]}")
            cleanup(work, keep)
    print()
    print(table(
        ["run", "mode", "ok requests", "req/s", "p50 (ms)", "p99 (ms)", "errors", "reconnects",
         "requests per connection", "answers by HTTP version", "server CPU (s)", "client CPU (s)",
         "server CPU per ok request (µs)", "client CPU per ok request (µs)", "other processes' CPU (cores)"],
        rows,
    ))
    print()
    for mode, rs in results.items():
        if rs:
            rps = statistics.median(r["rps"] for r in rs)
            p99 = statistics.median(r["p99"] for r in rs)
            line = (f"**{mode}, median of {len(rs)} runs: {rps:.0f} req/s, "
                    f"p50 {statistics.median(r['p50'] for r in rs):.1f} ms, p99 {p99:.1f} ms, "
                    f"errors {statistics.median(r['errors'] for r in rs):.0f}**")
            if mode == "keep-alive":
                met = rps >= KA_TARGET_RPS and p99 < KA_TARGET_P99_MS
                line += (f" — target (issue 9): at least {KA_TARGET_RPS:,}/s with p99 under {KA_TARGET_P99_MS:g} ms: "
                         + ("met" if met else "not met"))
                if any(r["closed_by_server"] for r in rs):
                    line += ("; the server closed connections after answering (HTTP/1.0 or Connection: close), "
                             "so this mode fell back to about one connection per request")
            print(line)
    print()


def _per_conn(r: dict[str, Any]) -> str:
    return fmt(r.get("per_conn"), ".1f")


# ------------------------------------------------------------------------------------ store
STORE_GOSSIPS = 100_000
STORE_BATCH = 1000
STORE_CREATES = 200


def build_store(work: Path, count: int, port: int) -> tuple[Path, float]:
    """server.json plus ``count`` gossips written directly; returns (config path, seconds)."""
    network_key()  # PBKDF2 once, outside the timing
    t0 = time.perf_counter()
    conf = work / "server.json"
    config = NodeConfig(
        node_guid=str(uuid.uuid4()),
        node_name="bench-store",
        networks=(Network(name=NETWORK, key=network_key()),),
        port=port,
    )
    save_config(conf, config)
    storage = JsonFileStorage(data_dir_for(conf))
    storage.load()
    rng = random.Random(1)
    base = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    for start in range(0, count, STORE_BATCH):
        batch = [
            Gossip.create(
                guid=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                date_time=(base + dt.timedelta(seconds=i)).isoformat(timespec="microseconds"),
                who_name="bench",
                msg=f"stored gossip {i}: " + "lorem ipsum dolor sit amet " * 3,
            )
            for i in range(start, min(start + STORE_BATCH, count))
        ]
        storage.save_gossips(NETWORK, batch)
    storage.close()
    return conf, time.perf_counter() - t0


def store_measure(count: int, keep: bool) -> dict[str, Any]:
    work = make_workdir(keep, f"gossip-bench-store{count}-")
    nodes: list[Node] = []
    r: dict[str, Any] = {"stored": count}
    try:
        port = free_port()
        conf, r["build"] = build_store(work, count, port)
        log = data_dir_for(conf) / "gossip.jsonl"
        r["size_before"] = log.stat().st_size if log.exists() else 0
        # No password: server.json already holds the key, so the node derives nothing.
        node = Node(["--config", str(conf), "--log-level", "WARNING"], workdir=work, tag="node")
        nodes.append(node)
        other = OtherLoad(lambda: node.cpu_seconds() or 0.0)
        r["banner"] = node.wait_banner(timeout=120)
        if not wait_until(lambda: _healthy(port), 120, 0.02):
            raise RuntimeError(f"/healthz did not answer within 120 s; {node.stderr_tail()}")
        r["startup"] = time.perf_counter() - node.started
        r["rss_start"] = node.status_field("VmRSS")

        lat = []
        for i in range(STORE_CREATES):
            data = json.dumps({"msg": f"bench create {i}"}).encode()
            header = client_auth_header(network=NETWORK, node=node_guid(port), key=network_key(), method="POST", path="/v1/gossip",
                                        query={}, body=data, ts=int(time.time() * 1000), nonce=secrets.token_hex(16))
            t0 = time.perf_counter()
            status, raw = http_call(f"http://{HOST}:{port}/v1/gossip", method="POST", body=data,
                                    headers={CLIENT_AUTH_HEADER: header}, timeout=30)
            lat.append(time.perf_counter() - t0)
            if status != 201:
                raise RuntimeError(f"create {i}: {status} {raw[:200]!r}")
        r["hwm_creates"] = node.status_field("VmHWM")
        r["other_cores"] = other.cores()
        r["create_p50"] = statistics.median(lat) * 1000
        r["create_p90"] = pct(lat, 0.9) * 1000

        # One GOSSIP_STATUS of the whole store, without http_call's 4 MiB answer cap.
        header = client_auth_header(network=NETWORK, node=node_guid(port), key=network_key(), method="GET", path="/v1/gossip",
                                    query={}, body=b"", ts=int(time.time() * 1000), nonce=secrets.token_hex(16))
        t0 = time.perf_counter()
        conn = http.client.HTTPConnection(HOST, port, timeout=120)
        try:
            conn.request("GET", "/v1/gossip", headers={CLIENT_AUTH_HEADER: header})
            resp = conn.getresponse()
            body = resp.read()
            r["status_get"] = (resp.status, time.perf_counter() - t0, len(body))
        finally:
            conn.close()
        # ... and with http_call as `gossip status` does.
        try:
            status, raw = client_call(port, "GET", "/v1/gossip", timeout=120)
            r["status_cli"] = f"{status}, {len(raw)} bytes"
        except Exception as exc:  # noqa: BLE001 - reported
            r["status_cli"] = f"error: {exc}"

        r["size_after"] = log.stat().st_size
        r["rss_end"] = node.status_field("VmRSS")
        r["hwm"] = node.status_field("VmHWM")
    finally:
        stop_all(nodes)
        errs = [ln for n in nodes for ln in n.stderr_lines() if " ERROR " in ln or "Traceback" in ln]
        r["errors"] = len(errs)
        if errs:
            r["first_error"] = errs[0][:200]
        cleanup(work, keep)
    return r


def bench_store(keep: bool, stored: int) -> None:
    print(f"## store: a node started on {stored:,} stored gossips")
    print()
    print("Command: " + shlex.join([sys.executable, "bench/bench_http.py", "store", "--stored", str(stored)]))
    print("Node: python -m gossip.http --config <tmpdir>/server.json --log-level WARNING "
          "(server.json from save_config, the store written with JsonFileStorage.save_gossips, 1,000 per batch)")
    print(f"({CORES} cores; the baseline row is the same procedure with an empty store.)")
    print()
    results = []
    for count in (0, stored):
        r = store_measure(count, keep)
        results.append(r)
        print(f"{count:,} stored: startup {r['startup']:.2f} s, create p50 {r['create_p50']:.1f} ms", flush=True)
    print()
    print(table(
        ["stored", "build store (s)", "banner (s)", "startup until /healthz 200 (s)",
         f"create p50 (ms, {STORE_CREATES} sequential)", "create p90 (ms)", "gossip.jsonl (MB) before → after",
         "RSS after start (MB)", "VmHWM after creates (MB)", "peak RSS VmHWM at the end (MB)", "GET /v1/gossip: status, s, MB", "same via http_call", "other processes' CPU (cores)"],
        [
            [f"{r['stored']:,}", f"{r['build']:.1f}", f"{r['banner']:.2f}", f"{r['startup']:.2f}",
             f"{r['create_p50']:.1f}", f"{r['create_p90']:.1f}",
             f"{r['size_before'] / 1e6:.2f} → {r['size_after'] / 1e6:.2f}",
             fmt(r["rss_start"] / 1024 if r.get("rss_start") else None, ".0f"),
             fmt(r["hwm_creates"] / 1024 if r.get("hwm_creates") else None, ".0f"),
             fmt(r["hwm"] / 1024 if r.get("hwm") else None, ".0f"),
             f"{r['status_get'][0]}, {r['status_get'][1]:.2f}, {r['status_get'][2] / 1e6:.1f}",
             r["status_cli"], f"{r['other_cores']:.2f}"]
            for r in results
        ],
    ))
    for r in results:
        if r.get("errors"):
            print(f"node stderr errors with {r['stored']:,} stored: {r['errors']}, first: {r['first_error']}")
    print()


# ------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/bench_http.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("part", choices=["converge", "throughput", "throughput-keepalive", "store", "all"])
    parser.add_argument("--runs", type=int, default=3, help="runs of converge and throughput (default 3)")
    parser.add_argument("--stored", type=int, default=STORE_GOSSIPS, help="gossips in the store part (default 100,000)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directories")
    args = parser.parse_args(argv)
    print(f"# bench_http — Python {sys.version.split()[0]}, {CORES} cores, {time.strftime('%Y-%m-%d %H:%M:%S')}, "
          f"load average {os.getloadavg()[0]:.1f}")
    print()
    print("'other processes' CPU' columns: CPU used meanwhile by processes this bench did not start "
          "(from /proc/stat); when it is high the machine was shared and the figures are pessimistic.")
    print()
    if args.part in ("converge", "all"):
        bench_converge(args.runs, args.keep)
    if args.part in ("throughput", "all"):
        bench_throughput(args.runs, args.keep)
    if args.part in ("throughput-keepalive", "all"):
        bench_throughput_keepalive(args.runs, args.keep)
    if args.part in ("store", "all"):
        bench_store(args.keep, args.stored)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
