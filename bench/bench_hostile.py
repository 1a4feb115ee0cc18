"""Hostile clients against a real node (issue 9, "Targets: hostile"), black-box.

    python bench/bench_hostile.py idle|slowloris|slowbody|headers|all [--seconds 20] [--timer 1] [--keep]

For each attack, a fresh target node (``python -m gossip.http --timer 1`` on 127.0.0.1, default
log level) and two honest peers (``--join`` the target, same ``--timer``) are started; once each
knows the other two, an attacker in this process, without the network key, connects from ONE
client address, 127.0.0.2 (peers and the health prober use 127.0.0.1), and for ``--seconds``
holds:

- idle: 2,000 TCP connections that send nothing;
- slowloris: 500 connections sending a request head one byte a second, never finishing it;
- slowbody: 500 connections sending a complete ``POST /v1/peer`` head with ``Content-Length:
  1000000``, then the body one byte a second;
- headers: 72 connections each sending 90 headers of 60 KB as fast as the node reads them
  (the head is never finished, so each connection then holds what it sent).

Every connection the node closes (or that fails) is reopened at once (with a short backoff
after a failed connect). The attacker is one thread with a ``selectors`` loop: it really holds
the sockets, reads (and discards) whatever the node answers, and counts the connections it
holds. During each attack the bench measures, from outside the node:

1. ``GET /healthz`` from 127.0.0.1 every 0.2 s, 1 s budget each: share answered 200 within 1 s;
2. node-to-node requests (``/metrics``: ``gossip_requests_sent_total`` and
   ``gossip_requests_failed_total``, all verbs), as deltas over the attack: of the two peers'
   (which talk to the target and to each other), of the target's own, and an estimate of the
   peers' requests *to the target* (the target's ``gossip_requests_received_total`` against
   that plus the peers' failures: peer-to-peer requests are not attacked);
3. the target's RSS (``/proc/PID/status`` VmRSS) before, peak during (every 0.2 s, and VmHWM),
   and after;
4. seconds from the attack's end (every attacking socket closed) until ``/healthz`` answers
   200 within 1 s again;
5. lines the target wrote to stderr per second during the attack.

Prints markdown tables with the issue's targets beside them; asserts nothing; exit status 0.
Every process is stopped (SIGTERM, SIGKILL after 5 s) and reaped, every socket closed, and the
temporary directories removed, whatever happens. Reuses bench_http.py's helpers. The soft
RLIMIT_NOFILE of this process is raised to the hard limit while an attack runs (nodes keep the
limit they were started with: see the "Max open files" line in the output).
"""

from __future__ import annotations

import argparse
import errno
import heapq
import http.client
import os
import random
import re
import resource
import selectors
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_http as bh  # noqa: E402

HOST = bh.HOST  # 127.0.0.1: the nodes, the peers' and the prober's side
ATTACKER_IP = "127.0.0.2"  # the one hostile client address
IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)  # Linux

PROBE_EVERY = 0.2  # s between two /healthz probes
PROBE_BUDGET = 1.0  # s: a probe answered later than this is a miss
SAMPLE_EVERY = 0.2  # s between two RSS samples
CONNECT_TIMEOUT = 5.0  # s an attacking connect may stay pending before it is retried
OPEN_BURST = 200  # most (re)connects started in one pass of the attacker's loop
MAX_CONNECTS = 400_000  # most connects one attack starts in all (a bound on the loop)
RECOVERY_BOUND = 60.0  # s to wait for /healthz after an attack
READY_BOUND = 60.0  # s to wait for the three nodes to be up and know each other

TARGETS = ("healthz answered 200 within 1 s >= 99% of the time; peers' rounds >= 99% successful; "
           "the target's RSS grows by < 50 MiB; normal within 1 s after the attack")


# ------------------------------------------------------------------------------------ attacks
@dataclass(frozen=True)
class Plan:
    """What each attacking connection sends: ``head`` as fast as the node reads it, then
    ``drip`` one byte a second (never all of it in a bounded run)."""

    name: str
    conns: int
    what: str
    head: bytes = b""
    drip: bytes = b""


def make_plan(name: str, port: int, seconds: float) -> Plan:
    host = f"Host: {HOST}:{port}\r\n".encode()
    if name == "idle":
        return Plan(name, 2000, "2,000 idle TCP connections (connect, send nothing)")
    if name == "slowloris":
        stream = b"GET / HTTP/1.1\r\n" + host + b"User-Agent: bench-hostile\r\n"
        i = 0
        while len(stream) < seconds + 120:
            stream += b"X-Slow-%04d: %s\r\n" % (i, b"a" * 24)
            i += 1
        return Plan(name, 500, "500 connections, a request head one byte a second, never finished", drip=stream)
    if name == "slowbody":
        head = (b"POST /v1/peer HTTP/1.1\r\n" + host + b"Content-Type: application/json\r\n"
                b"Content-Length: 1000000\r\n\r\n")
        return Plan(name, 500, "500 connections: a complete POST /v1/peer head, Content-Length 1000000, "
                    "then the body one byte a second", head=head, drip=b"{" + b" " * int(seconds + 120))
    if name == "headers":
        head = b"GET / HTTP/1.1\r\n" + host
        for i in range(90):
            prefix = b"X-Big-%02d: " % i
            head += prefix + b"a" * (60 * 1024 - len(prefix) - 2) + b"\r\n"
        return Plan(name, 72, "72 connections, each 90 headers of 60 KB sent as fast as the node reads "
                    "(head never finished)", head=head)
    raise ValueError(name)


ATTACK_NAMES = ("idle", "slowloris", "slowbody", "headers")


class Conn:
    __slots__ = ("slot", "sock", "state", "t0", "t_open", "sent", "dripped", "gen", "got", "first")

    def __init__(self, slot: int, sock: socket.socket, gen: int) -> None:
        self.slot = slot
        self.sock = sock
        self.state = "connecting"
        self.t0 = time.monotonic()
        self.t_open = 0.0  # when the connect completed
        self.sent = 0  # bytes of plan.head sent
        self.dripped = 0  # bytes of plan.drip sent
        self.gen = gen
        self.got = 0  # bytes the node sent back
        self.first = b""  # the first bytes it sent back (its status line)


@dataclass
class AttackStats:
    connects: int = 0  # connects started
    established: int = 0
    closed_by_node: int = 0  # EOF or reset on an established connection
    connect_failed: int = 0  # refused, reset or timed out while connecting
    local_errors: dict[str, int] = field(default_factory=dict)  # EMFILE, EADDRNOTAVAIL, ...
    answers: dict[str, int] = field(default_factory=dict)  # status lines the node sent back
    bytes_sent: int = 0
    bytes_received: int = 0
    held: int = 0  # established and not (yet) seen closed: what the node is holding for us
    held_1s: int = 0  # of those, open for at least 1 s (updated every 0.2 s)
    connecting: int = 0
    capped: bool = False  # MAX_CONNECTS reached


class Attacker:
    """One thread, one selectors loop: ``plan.conns`` connections from ATTACKER_IP, reopened
    whenever they close, until ``stop`` is set (or a hard time bound passes)."""

    def __init__(self, plan: Plan, port: int, hard_seconds: float) -> None:
        self.plan = plan
        self.port = port
        self.hard_seconds = hard_seconds
        self.stats = AttackStats()
        self.stop = threading.Event()
        self.stopped_at: float | None = None  # perf_counter when every socket was closed
        self.error: str | None = None
        self._rng = random.Random(9)
        self._thread = threading.Thread(target=self._main, name="attacker", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def finish(self) -> float:
        """Stop, close every socket; returns the perf_counter time when all were closed."""
        self.stop.set()
        self._thread.join(timeout=30)
        if self._thread.is_alive():  # pragma: no cover - the loop checks stop every 50 ms
            self.error = (self.error or "") + " attacker thread did not stop within 30 s"
        return self.stopped_at if self.stopped_at is not None else time.perf_counter()

    def _count(self, table: dict[str, int], key: str) -> None:
        table[key] = table.get(key, 0) + 1

    def _main(self) -> None:
        sel = selectors.DefaultSelector()
        conns: dict[int, Conn] = {}  # slot -> its current connection
        gen = [0]
        opens: deque[int] = deque(range(self.plan.conns))  # slots to open now
        retry: list[tuple[float, int]] = []  # (monotonic time, slot): reopen after a backoff
        failures = [0] * self.plan.conns  # consecutive failed connects, per slot
        drips: list[tuple[float, int, int]] = []  # (monotonic time, slot, gen)
        head = memoryview(self.plan.head)
        drip = self.plan.drip
        st = self.stats
        end = time.monotonic() + self.hard_seconds

        def close(c: Conn, *, by_node: bool, failed: bool = False, abort: bool = False) -> None:
            try:
                sel.unregister(c.sock)
            except (KeyError, ValueError):
                pass
            if abort:  # RST: no TIME_WAIT left behind on 127.0.0.2
                try:
                    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                except OSError:
                    pass
            c.sock.close()
            if c.state == "open":
                st.held -= 1
            else:
                st.connecting -= 1
            if c.got:
                m = re.match(rb"HTTP/\d\.\d (\d{3})", c.first)
                self._count(st.answers, m.group(1).decode() if m else "other bytes")
            conns.pop(c.slot, None)
            if by_node:
                st.closed_by_node += 1
                failures[c.slot] = 0
                opens.append(c.slot)
            elif failed:
                st.connect_failed += 1
                failures[c.slot] += 1
                backoff = min(1.0, 0.02 * 2 ** min(failures[c.slot], 6))
                heapq.heappush(retry, (time.monotonic() + backoff, c.slot))

        def open_slot(slot: int) -> None:
            if st.connects >= MAX_CONNECTS:
                st.capped = True
                return
            try:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            except OSError as exc:  # EMFILE / ENFILE: the fd limit caps the attack
                self._count(st.local_errors, errno.errorcode.get(exc.errno or 0, str(exc)))
                failures[slot] += 1
                heapq.heappush(retry, (time.monotonic() + 0.5, slot))
                return
            try:
                s.setblocking(False)
                s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
                s.bind((ATTACKER_IP, 0))
                rc = s.connect_ex((HOST, self.port))
            except OSError as exc:
                s.close()
                self._count(st.local_errors, errno.errorcode.get(exc.errno or 0, str(exc)))
                failures[slot] += 1
                heapq.heappush(retry, (time.monotonic() + 0.2, slot))
                return
            st.connects += 1
            gen[0] += 1
            c = Conn(slot, s, gen[0])
            conns[slot] = c
            st.connecting += 1
            if rc not in (0, errno.EINPROGRESS):
                self._count(st.local_errors, errno.errorcode.get(rc, str(rc)))
                close(c, by_node=False, failed=True)
                return
            sel.register(s, selectors.EVENT_WRITE, c)

        def established(c: Conn, now: float) -> None:
            c.state = "open"
            c.t_open = now
            st.connecting -= 1
            st.held += 1
            st.established += 1
            mask = selectors.EVENT_READ | (selectors.EVENT_WRITE if len(head) else 0)
            sel.modify(c.sock, mask, c)
            if drip and not len(head):  # spread the drips over the second
                heapq.heappush(drips, (now + self._rng.random(), c.slot, c.gen))

        def readable(c: Conn) -> None:
            try:
                data = c.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                close(c, by_node=True)
                return
            if not data:
                close(c, by_node=True)
                return
            if not c.got:
                c.first = data[:32]
            c.got += len(data)
            st.bytes_received += len(data)

        def writable(c: Conn, now: float) -> None:
            if c.state == "connecting":
                err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    self._count(st.local_errors, errno.errorcode.get(err, str(err)))
                    close(c, by_node=False, failed=True)
                else:
                    established(c, now)
                return
            try:
                n = c.sock.send(head[c.sent:c.sent + 262144])
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                close(c, by_node=True)
                return
            c.sent += n
            st.bytes_sent += n
            if c.sent >= len(head):
                sel.modify(c.sock, selectors.EVENT_READ, c)
                if drip:
                    heapq.heappush(drips, (now + 1.0, c.slot, c.gen))

        try:
            last_scan = time.monotonic()
            while not self.stop.is_set() and time.monotonic() < end:
                now = time.monotonic()
                while retry and retry[0][0] <= now:
                    opens.append(heapq.heappop(retry)[1])
                for _ in range(min(OPEN_BURST, len(opens))):
                    slot = opens.popleft()
                    if slot not in conns:
                        open_slot(slot)
                while drips and drips[0][0] <= now:
                    _, slot, g = heapq.heappop(drips)
                    c = conns.get(slot)
                    if c is None or c.gen != g or c.state != "open" or c.dripped >= len(drip):
                        continue
                    try:
                        n = c.sock.send(drip[c.dripped:c.dripped + 1])
                    except (BlockingIOError, InterruptedError):
                        n = 0
                    except OSError:
                        close(c, by_node=True)
                        continue
                    c.dripped += n
                    st.bytes_sent += n
                    heapq.heappush(drips, (now + 1.0, slot, g))
                if now - last_scan >= SAMPLE_EVERY:  # connects pending too long: retry them
                    last_scan = now
                    st.held_1s = sum(1 for c in conns.values() if c.state == "open" and now - c.t_open >= 1.0)
                    for c in [c for c in conns.values() if c.state == "connecting" and now - c.t0 > CONNECT_TIMEOUT]:
                        self._count(st.local_errors, "connect timeout")
                        close(c, by_node=False, failed=True)
                wait = 0.05
                if drips:
                    wait = min(wait, max(0.0, drips[0][0] - now))
                if opens:
                    wait = 0.0
                for key, mask in sel.select(timeout=wait):
                    c = key.data
                    if c.slot not in conns or conns[c.slot] is not c:
                        continue
                    if mask & selectors.EVENT_READ and c.state == "open":
                        readable(c)
                        if conns.get(c.slot) is not c:
                            continue
                    if mask & selectors.EVENT_WRITE:
                        writable(c, time.monotonic())
        except Exception as exc:  # noqa: BLE001 - reported in the output
            self.error = f"attacker loop: {type(exc).__name__}: {exc}"
        finally:
            for c in list(conns.values()):
                close(c, by_node=False, abort=True)
            sel.close()
            self.stopped_at = time.perf_counter()


# ------------------------------------------------------------------------------------ probes
def healthz_once(port: int, budget: float = PROBE_BUDGET) -> tuple[bool, float, str]:
    """One ``GET /healthz`` from 127.0.0.1 with ``budget`` seconds in all: (ok, seconds, what)."""
    t0 = time.perf_counter()
    deadline = t0 + budget
    conn = http.client.HTTPConnection(HOST, port, timeout=budget, source_address=(HOST, 0))
    try:
        conn.connect()
        assert conn.sock is not None
        conn.sock.settimeout(max(0.001, deadline - time.perf_counter()))
        conn.request("GET", "/healthz")
        resp = conn.getresponse()
        resp.read()
        elapsed = time.perf_counter() - t0
        if resp.status != 200:
            return False, elapsed, str(resp.status)
        if elapsed > budget:
            return False, elapsed, "late"
        return True, elapsed, "200"
    except (OSError, http.client.HTTPException) as exc:
        name = "timeout" if isinstance(exc, (socket.timeout, TimeoutError)) else type(exc).__name__
        return False, time.perf_counter() - t0, name
    finally:
        conn.close()


class Prober:
    """``GET /healthz`` every PROBE_EVERY seconds (skipping ahead when a probe ran late)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.results: list[tuple[bool, float, str]] = []
        self.stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prober", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def finish(self) -> None:
        self.stop.set()
        self._thread.join(timeout=PROBE_BUDGET + 5)

    def _run(self) -> None:
        next_t = time.monotonic()
        while not self.stop.is_set():
            self.results.append(healthz_once(self.port))
            next_t += PROBE_EVERY
            now = time.monotonic()
            if next_t < now:
                next_t = now
            self.stop.wait(next_t - now)


def proc_status(pid: int) -> dict[str, int]:
    """kB and count fields of /proc/PID/status (VmRSS, VmHWM, Threads), {} if gone."""
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM", "Threads"):
                out[key] = int(rest.split()[0])
    except (OSError, ValueError, IndexError):
        pass
    return out


def fd_count(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def max_open_files(pid: int) -> str:
    try:
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                soft, hard = line.split()[3:5]
                return f"{soft}/{hard}"
    except (OSError, ValueError):
        pass
    return "?"


def node_side(port: int) -> tuple[int | None, int | None]:
    """The node's kernel view (``ss``): TCP connections on ``port`` from ATTACKER_IP that are
    established (accepted, or waiting in the accept queue), and half-open ones (SYN-RECV: the
    attacker thinks they are established, the node has not completed them). None without ss."""
    counts: list[int | None] = []
    for state, extra in (("established", ["dst", ATTACKER_IP]), ("syn-recv", [])):
        try:
            out = subprocess.run(["ss", "-Htn", "state", state, "src", f"{HOST}:{port}", *extra],
                                 capture_output=True, text=True, timeout=5)
        except (OSError, subprocess.SubprocessError):
            return None, None
        if out.returncode != 0:
            return None, None
        counts.append(sum(1 for line in out.stdout.splitlines() if line.strip()))
    return counts[0], counts[1]


class Sampler:
    """Every SAMPLE_EVERY s: the target's VmRSS, threads, open fds; the attacker's held count;
    every second, the node's kernel view of the attacker's connections (``ss``)."""

    def __init__(self, pid: int, port: int, attacker: Attacker) -> None:
        self.pid = pid
        self.port = port
        self.attacker = attacker
        self.samples: list[dict[str, Any]] = []
        self.stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sampler", daemon=True)
        self._t0 = time.perf_counter()

    def start(self) -> None:
        self._t0 = time.perf_counter()
        self._thread.start()

    def finish(self) -> None:
        self.stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        k = 0
        while not self.stop.is_set():
            s: dict[str, Any] = dict(proc_status(self.pid))
            if k % round(1.0 / SAMPLE_EVERY) == 0:
                s["node_est"], s["node_synrecv"] = node_side(self.port)
            k += 1
            s["fds"] = fd_count(self.pid)
            s["held"] = self.attacker.stats.held
            s["held_1s"] = self.attacker.stats.held_1s
            s["connecting"] = self.attacker.stats.connecting
            s["t"] = time.perf_counter() - self._t0
            self.samples.append(s)
            self.stop.wait(SAMPLE_EVERY)


# ------------------------------------------------------------------------------------ metrics
def metrics(port: int, timeout: float = 5.0) -> dict[str, float] | None:
    """Every sample of the node's /metrics as {'name{labels}': value}, None if no answer."""
    conn = http.client.HTTPConnection(HOST, port, timeout=timeout, source_address=(HOST, 0))
    try:
        conn.request("GET", "/metrics")
        resp = conn.getresponse()
        raw = resp.read()
        if resp.status != 200:
            return None
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()
    out: dict[str, float] = {}
    for line in raw.decode("utf-8", "replace").splitlines():
        if line and not line.startswith("#"):
            head, _, value = line.rpartition(" ")
            try:
                out[head] = float(value)
            except ValueError:
                pass
    return out


def family(sample: dict[str, float] | None, name: str) -> float | None:
    if sample is None:
        return None
    return sum(v for k, v in sample.items() if k == name or k.startswith(name + "{"))


def delta(before: dict[str, float] | None, after: dict[str, float] | None, name: str) -> float | None:
    a, b = family(after, name), family(before, name)
    return None if a is None or b is None else a - b


def ok_pct(sent: float | None, failed: float | None) -> float | None:
    if sent is None or failed is None or sent <= 0:
        return None
    return 100.0 * (sent - failed) / sent


# ------------------------------------------------------------------------------------ nodes
def wait_healthy(node: bh.Node, port: int, bound: float) -> None:
    """Until /healthz answers 200 (black-box: no banner needed), or raise."""
    end = time.monotonic() + bound
    while time.monotonic() < end:
        if node.proc.poll() is not None:
            raise RuntimeError(f"node exited ({node.proc.returncode}); {node.stderr_tail()}")
        if healthz_once(port, 2.0)[0]:
            return
        time.sleep(0.05)
    raise RuntimeError(f"/healthz on {port} did not answer within {bound:g} s; {node.stderr_tail()}")


def start_trio(work: Path, timer: float, nodes: list[bh.Node]) -> tuple[int, list[int]]:
    """The target and two peers that join it; returns (target port, peer ports) once every
    node knows the other two."""
    port = bh.free_port()
    target = bh.Node(["--config", str(work / "target.json"), "--port", str(port), "--timer", f"{timer:g}"],
                     workdir=work, tag="target", env={"GOSSIP_PASSWORD": bh.PASSWORD})
    nodes.append(target)
    wait_healthy(target, port, READY_BOUND)
    peer_ports = []
    for k in (1, 2):
        p = bh.free_port()
        peer = bh.Node(["--config", str(work / f"peer{k}.json"), "--port", str(p), "--timer", f"{timer:g}",
                        "--log-level", "WARNING", "--join", f"{HOST}:{port}"],
                       workdir=work, tag=f"peer{k}", env={"GOSSIP_PASSWORD": bh.PASSWORD})
        nodes.append(peer)
        wait_healthy(peer, p, READY_BOUND)
        peer_ports.append(p)
    bh.wait_for_peers([port, *peer_ports], 2, READY_BOUND, 0.2, timeout=5)
    return port, peer_ports


def count_lines(path: Path) -> int:
    try:
        with open(path, "rb") as f:
            return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))
    except OSError:
        return 0


def lines_between(path: Path, start: int, stop: int) -> list[str]:
    try:
        with open(path, "rb") as f:
            lines = f.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return []
    return lines[start:stop]


# ------------------------------------------------------------------------------------ one attack
def raise_nofile(needed: int) -> tuple[tuple[int, int], str]:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; returns (the old limits, a note)."""
    old = resource.getrlimit(resource.RLIMIT_NOFILE)
    soft, hard = old
    want = hard if hard != resource.RLIM_INFINITY else max(soft, needed + 1024)
    if soft == resource.RLIM_INFINITY or (want != resource.RLIM_INFINITY and want <= soft):
        want = soft
    else:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        except (ValueError, OSError):
            want = soft
    note = f"attacker RLIMIT_NOFILE soft {soft} → {want} (hard {hard})"
    if want != resource.RLIM_INFINITY and want < needed + 64:
        note += f": CAPS the attack below {needed} connections"
    return old, note


def run_attack(name: str, args: argparse.Namespace) -> dict[str, Any]:
    work = bh.make_workdir(args.keep, f"gossip-bench-hostile-{name}-")
    nodes: list[bh.Node] = []
    r: dict[str, Any] = {"attack": name, "notes": []}
    attacker: Attacker | None = None
    prober: Prober | None = None
    sampler: Sampler | None = None
    old_limit: tuple[int, int] | None = None
    try:
        port, peer_ports = start_trio(work, args.timer, nodes)
        target = nodes[0]
        r["node_nofile"] = max_open_files(target.pid)
        time.sleep(2.0 * args.timer)  # a couple of rounds with everyone up
        plan = make_plan(name, port, args.seconds)
        r["plan"] = plan

        old_limit, r["nofile_note"] = raise_nofile(plan.conns)
        status0 = proc_status(target.pid)
        r["rss_before"] = status0.get("VmRSS")
        r["threads_before"] = status0.get("Threads")
        r["fds_before"] = fd_count(target.pid)
        lines0 = count_lines(target.stderr_path)
        m_target0 = metrics(port)
        m_peers0 = [metrics(p) for p in peer_ports]
        other = bh.OtherLoad(lambda: sum(n.cpu_seconds() or 0.0 for n in nodes))
        cpu0 = target.cpu_seconds()

        attacker = Attacker(plan, port, hard_seconds=args.seconds + 30)
        sampler = Sampler(target.pid, port, attacker)
        prober = Prober(port)
        t_start = time.perf_counter()
        attacker.start()
        sampler.start()
        prober.start()
        stop_at = t_start + args.seconds
        while time.perf_counter() < stop_at and attacker._thread.is_alive():
            time.sleep(min(0.25, max(0.0, stop_at - time.perf_counter())))
        # The attack's last moment: the peers (not attacked) are read before it ends.
        m_peers1 = [metrics(p) for p in peer_ports]
        status1 = proc_status(target.pid)
        lines1 = count_lines(target.stderr_path)
        t_lines = time.perf_counter()
        prober.finish()
        t_stop = attacker.finish()
        sampler.finish()
        if old_limit is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, old_limit)
            old_limit = None
        r["attack_s"] = t_stop - t_start
        r["cpu_target"] = (target.cpu_seconds() or 0.0) - (cpu0 or 0.0)
        r["other_cores"] = other.cores()

        # Time to normal: /healthz answered within 1 s again.
        recovered = None
        tries = 0
        while time.perf_counter() - t_stop < RECOVERY_BOUND:
            tries += 1
            ok, _, _ = healthz_once(port)
            if ok:
                recovered = time.perf_counter() - t_stop
                break
            time.sleep(0.02)
        r["recovery"] = recovered
        r["recovery_tries"] = tries
        time.sleep(1.0)
        status2 = proc_status(target.pid)
        r["rss_after"] = status2.get("VmRSS")
        m_target1 = metrics(port, timeout=10)
        r["alive"] = all(n.proc.poll() is None for n in nodes)

        # Figures.
        probes = prober.results
        r["probes"] = len(probes)
        r["probes_ok"] = sum(1 for ok, _, _ in probes if ok)
        kinds: dict[str, int] = {}
        for ok, _, what in probes:
            if not ok:
                kinds[what] = kinds.get(what, 0) + 1
        r["probe_fail_kinds"] = kinds
        answered = [s for ok, s, _ in probes if ok]
        r["probe_p50"] = bh.pct(answered, 0.5) * 1000 if answered else None
        r["probe_max"] = max((s for _, s, _ in probes), default=None)

        samples = sampler.samples
        steady = [s for s in samples if s["t"] >= 1.0] or samples
        helds = [s["held"] for s in steady]
        r["held_median"] = statistics.median(helds) if helds else None
        r["held_min"] = min(helds) if helds else None
        r["held_max"] = max(helds) if helds else None
        r["held_1s_median"] = statistics.median(s["held_1s"] for s in steady) if steady else None
        est = [s["node_est"] for s in steady if s.get("node_est") is not None]
        syn = [s["node_synrecv"] for s in steady if s.get("node_synrecv") is not None]
        r["node_est"] = statistics.median(est) if est else None
        r["node_synrecv"] = statistics.median(syn) if syn else None
        r["connecting_median"] = statistics.median(s["connecting"] for s in steady) if steady else None
        rss = [s["VmRSS"] for s in samples if "VmRSS" in s]
        r["rss_peak"] = max([*rss, status1.get("VmHWM", 0), status1.get("VmRSS", 0)]) or None
        r["threads_peak"] = max((s.get("Threads", 0) for s in samples), default=None)
        r["fds_peak"] = max((s["fds"] for s in samples if s.get("fds") is not None), default=None)

        r["stats"] = attacker.stats
        if attacker.error:
            r["notes"].append(attacker.error)
        if attacker.stats.capped:
            r["notes"].append(f"the attacker reached its bound of {MAX_CONNECTS:,} connects")

        sent = [delta(a, b, "gossip_requests_sent_total") for a, b in zip(m_peers0, m_peers1)]
        failed = [delta(a, b, "gossip_requests_failed_total") for a, b in zip(m_peers0, m_peers1)]
        if None in sent or None in failed:
            r["notes"].append("a peer's /metrics did not answer")
            r["peers_sent"] = r["peers_failed"] = None
        else:
            r["peers_sent"] = sum(x for x in sent if x is not None)
            r["peers_failed"] = sum(x for x in failed if x is not None)
        r["peers_ok"] = ok_pct(r["peers_sent"], r["peers_failed"])
        r["target_sent"] = delta(m_target0, m_target1, "gossip_requests_sent_total")
        r["target_failed"] = delta(m_target0, m_target1, "gossip_requests_failed_total")
        r["target_ok"] = ok_pct(r["target_sent"], r["target_failed"])
        received = delta(m_target0, m_target1, "gossip_requests_received_total")
        r["target_received"] = received
        if received is not None and r["peers_failed"] is not None and received + r["peers_failed"] > 0:
            r["to_target_ok"] = 100.0 * received / (received + r["peers_failed"])
        else:
            r["to_target_ok"] = None
        if m_target1 is None:
            r["notes"].append("the target's /metrics did not answer after the attack")

        window = max(1e-9, t_lines - t_start)
        r["log_lines"] = lines1 - lines0
        r["log_rate"] = (lines1 - lines0) / window
        r["log_kinds"] = bh.warning_kinds(lines_between(target.stderr_path, lines0, lines1), top=2)
    except Exception as exc:  # noqa: BLE001 - reported with whatever was measured
        r["notes"].append(f"FAILED: {type(exc).__name__}: {exc}")
    finally:
        for part in (prober, attacker, sampler):
            if part is not None:
                try:
                    part.finish()
                except Exception:  # noqa: BLE001 - best effort: it must not stop the cleanup
                    pass
        if old_limit is not None:
            try:
                resource.setrlimit(resource.RLIMIT_NOFILE, old_limit)
            except (ValueError, OSError):
                pass
        bh.stop_all(nodes)
        errs = [ln for n in nodes for ln in n.stderr_lines() if " ERROR " in ln or "Traceback" in ln]
        if errs:
            r["notes"].append(f"node ERROR/Traceback lines: {len(errs)}, first: {errs[0][:160]}")
        bh.cleanup(work, args.keep)
    return r


# ------------------------------------------------------------------------------------ report
def mib(kb: int | None) -> str:
    return bh.fmt(kb / 1024 if kb else None, ".0f")


def pct_text(value: float | None, num: float | None = None, den: float | None = None) -> str:
    if value is None:
        return "—"
    text = f"{value:.1f}%"
    if num is not None and den is not None:
        text += f" ({num:.0f}/{den:.0f})"
    return text


def verdict(r: dict[str, Any]) -> str:
    if "probes" not in r:
        return "—"
    marks = []
    hz = 100.0 * r["probes_ok"] / r["probes"] if r["probes"] else 0.0
    marks.append(("healthz", hz >= 99.0))
    if r.get("peers_ok") is not None:
        marks.append(("peers", r["peers_ok"] >= 99.0))
    if r.get("rss_before") and r.get("rss_peak"):
        marks.append(("RSS", (r["rss_peak"] - r["rss_before"]) / 1024 < 50.0))
    marks.append(("recovery", r.get("recovery") is not None and r["recovery"] <= 1.0))
    return ", ".join(f"{k} {'✓' if ok else '✗'}" for k, ok in marks)


def report(args: argparse.Namespace, results: list[dict[str, Any]]) -> None:
    print()
    print(f"## hostile: one client address ({ATTACKER_IP}), no key; {args.seconds:g} s per attack")
    print()
    print("Command: " + shlex.join(["python", "bench/bench_hostile.py", *sys.argv[1:]]))
    print("Target: GOSSIP_PASSWORD=... python -m gossip.http --config <tmpdir>/target.json --port <free port> "
          f"--timer {args.timer:g}   (default log level)")
    print("Peers (2): GOSSIP_PASSWORD=... python -m gossip.http --config <tmpdir>/peerK.json --port <free port> "
          f"--timer {args.timer:g} --log-level WARNING --join 127.0.0.1:<target port>")
    print(f"Prober: GET /healthz from {HOST} every {PROBE_EVERY:g} s, {PROBE_BUDGET:g} s budget. "
          f"Machine: {bh.CORES} cores, shared with the attacker (this process) and anything else running.")
    print()
    rows = []
    for r in results:
        plan = r.get("plan")
        want = plan.conns if plan else "?"
        held = (f"{r['held_median']:.0f} of {want} (min {r['held_min']}, max {r['held_max']}); "
                f"open ≥ 1 s: {r['held_1s_median']:.0f}"
                if r.get("held_median") is not None else "—")
        node_view = (f"{bh.fmt(r.get('node_est'), '.0f')} / {bh.fmt(r.get('node_synrecv'), '.0f')} / "
                     f"{r.get('fds_peak', '—')}")
        hz = (100.0 * r["probes_ok"] / r["probes"]) if r.get("probes") else None
        rows.append([
            r["attack"], held, node_view,
            pct_text(hz, r.get("probes_ok"), r.get("probes")),
            pct_text(r.get("peers_ok"), (r["peers_sent"] - r["peers_failed"]) if r.get("peers_sent") is not None else None,
                     r.get("peers_sent")),
            pct_text(r.get("to_target_ok")),
            pct_text(r.get("target_ok"), (r["target_sent"] - r["target_failed"]) if r.get("target_sent") is not None and r.get("target_failed") is not None else None,
                     r.get("target_sent")),
            f"{mib(r.get('rss_before'))} / {mib(r.get('rss_peak'))} / {mib(r.get('rss_after'))}",
            bh.fmt(r.get("recovery"), ".2f"),
            bh.fmt(r.get("log_rate"), ".0f"),
            verdict(r),
        ])
    print(bh.table(
        ["attack", "connections held, attacker's view (median during the attack)",
         "node's view: established from 127.0.0.2 / half-open (SYN-RECV, all) / node's open fds peak",
         "healthz ok ≤ 1 s",
         "peers' requests ok (all)", "peers → target ok (est.)", "target's own requests ok",
         "target RSS before / peak / after (MiB)", "recovery (s)", "target log lines/s", "targets"],
        rows,
    ))
    print()
    print(f"Targets (issue 9): {TARGETS}.")
    print()
    rows = []
    for r in results:
        st: AttackStats | None = r.get("stats")
        if st is None:
            rows.append([r["attack"]] + ["—"] * 9)
            continue
        answers = ", ".join(f"{k} ×{v}" for k, v in sorted(st.answers.items(), key=lambda kv: -kv[1])) or "none"
        local = ", ".join(f"{k} ×{v}" for k, v in sorted(st.local_errors.items(), key=lambda kv: -kv[1])) or "none"
        fails = ", ".join(f"{k} ×{v}" for k, v in sorted(r.get("probe_fail_kinds", {}).items(), key=lambda kv: -kv[1])) or "none"
        rows.append([
            r["attack"],
            f"{st.connects:,} / {st.established:,} / {st.closed_by_node:,} / {st.connect_failed:,} "
            f"({st.connects / r['attack_s']:,.0f} connects/s)" if r.get("attack_s") else "—",
            f"{bh.fmt(r.get('connecting_median'), '.0f')}",
            answers, local,
            f"{st.bytes_sent / 1e6:.1f} / {st.bytes_received / 1e6:.2f}",
            f"{fails}; p50 {bh.fmt(r.get('probe_p50'), '.1f')} ms, slowest {bh.fmt(r.get('probe_max'), '.2f')} s",
            f"{bh.fmt(r.get('peers_sent'), '.0f')}/{bh.fmt(r.get('peers_failed'), '.0f')}; "
            f"{bh.fmt(r.get('target_sent'), '.0f')}/{bh.fmt(r.get('target_failed'), '.0f')}; "
            f"{bh.fmt(r.get('target_received'), '.0f')}",
            f"{r.get('threads_before', '—')} → {r.get('threads_peak', '—')}; {r.get('fds_before', '—')} → {r.get('fds_peak', '—')}",
            f"{bh.fmt(r.get('cpu_target'), '.1f')} s; {bh.fmt(r.get('other_cores'), '.2f')}",
        ])
    print(bh.table(
        ["attack", "attacker connects started / established / closed by the node / failed",
         "connects pending (median)", "node's answers to the attacker (status ×count)",
         "attacker's local errors", "MB sent / received by the attacker", "healthz misses by kind; answer times",
         "peers sent/failed; target sent/failed; target received (node-to-node, during)",
         "target threads; open fds (before → peak)", "target CPU during; other processes' CPU (cores)"],
        rows,
    ))
    print()
    for r in results:
        extra = [f"log lines during the attack: {r.get('log_lines', '—')}"]
        if r.get("log_kinds"):
            extra.append(f"most common: {r['log_kinds']}")
        extra.append(f"target's Max open files (soft/hard): {r.get('node_nofile', '?')}")
        if r.get("nofile_note"):
            extra.append(r["nofile_note"])
        if r.get("recovery_tries", 1) > 1:
            extra.append(f"{r['recovery_tries']} probes until recovered")
        if r.get("alive") is False:
            extra.append("A NODE DIED during the run")
        extra.extend(r["notes"])
        print(f"- {r['attack']}: " + "; ".join(extra))
    print()
    print("Notes: 'peers' requests ok (all)' counts every node-to-node request the two peers sent during the "
          "attack, including those between themselves (roughly half; not attacked); 'peers → target (est.)' is "
          "the target's gossip_requests_received_total delta over that plus the peers' failures. The target's own "
          "figures run from just before the attack until ~1 s after recovery. 'closed by the node' includes "
          "resets; each was reopened at once. 'Connections held' counts the attacker's established sockets not yet "
          "seen closed; 'open ≥ 1 s' counts those that have lasted a second or more. It over-counts: it includes "
          "connections the node closed that the attacker's loop has not read yet, and (idle attack) connections "
          "the node's kernel dropped when its accept queue overflowed (SYN cookies: they look established to a "
          "client that sends nothing, and hold nothing at the node). The node's view comes from `ss` once a second: "
          "connections from 127.0.0.2 established in the node's kernel (accepted, or queued for accept), "
          "half-open ones the attacker believes established while the node's accept queue is full, and the "
          "node's open file descriptors (what it has accepted).")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/bench_hostile.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("attack", choices=[*ATTACK_NAMES, "all"])
    parser.add_argument("--seconds", type=float, default=20.0, help="seconds each attack lasts (default 20, at most 600)")
    parser.add_argument("--timer", type=float, default=1.0, help="the nodes' --timer (default 1)")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directories")
    args = parser.parse_args(argv)
    if not 1 <= args.seconds <= 600:
        parser.error("--seconds must be within 1..600")

    def on_term(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)  # runs the finally blocks: nodes stopped, sockets closed

    signal.signal(signal.SIGTERM, on_term)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    print(f"# bench_hostile — Python {sys.version.split()[0]}, {bh.CORES} cores, {time.strftime('%Y-%m-%d %H:%M:%S')}, "
          f"load average {os.getloadavg()[0]:.1f}; RLIMIT_NOFILE {soft}/{hard}")
    bh.network_key()  # PBKDF2 once, before any timing
    names = ATTACK_NAMES if args.attack == "all" else (args.attack,)
    results = []
    try:
        for name in names:
            r = run_attack(name, args)
            results.append(r)
            hz = f"{100.0 * r['probes_ok'] / r['probes']:.1f}%" if r.get("probes") else "—"
            print(f"{name}: held ~{bh.fmt(r.get('held_median'), '.0f')}, healthz ok {hz}, "
                  f"peers ok {bh.fmt(r.get('peers_ok'), '.1f')}%, recovery {bh.fmt(r.get('recovery'), '.2f')} s "
                  + " ".join(r["notes"]), flush=True)
    finally:
        if results:
            report(args, results)
    return 0


if __name__ == "__main__":
    try:
        main()
    except SystemExit as exc:
        if exc.code not in (0, None):
            print(f"(stopped: {exc.code})", file=sys.stderr)
    except KeyboardInterrupt:
        print("(interrupted)", file=sys.stderr)
    raise SystemExit(0)
