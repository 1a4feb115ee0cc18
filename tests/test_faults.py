"""Faults with real node processes: kill -9 mid-burst, a partition, skewed clocks, a full or read-only disk.

Everything runs on 127.0.0.1 with free ports; every wait is bounded; every node process is
killed by the :class:`Cluster` fixture and the partition proxy's threads are joined.
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import os
import random
import resource
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

import pytest

from gossip.errors import GossipError
from gossip.http import http_call

from .faultproxy import FaultProxy
from .nodeproc import Cluster, NodeProc, free_port, wait_for

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="uses SIGKILL, rlimits and Linux capabilities")


def restart(cluster: Cluster, node: NodeProc, *args: str, **kwargs: Any) -> NodeProc:
    """Start ``node`` again on its config and port; no password, so no key derivation (~0.5 s saved)."""
    again = cluster.start(node.name, *args, port=node.port, password="", **kwargs)
    again.password = node.password
    return again


def stderr_of(node: NodeProc) -> str:
    """Everything the (ended) process wrote to stderr."""
    assert node.proc.poll() is not None
    return node.proc.stderr.read() if node.proc.stderr else ""


# ---------------------------------------------------------------------- 1. kill -9 mid-burst
KILL_ROUNDS = 20
BURST = 1000
BURST_THREADS = 2


def test_kill_9_during_a_burst_of_creates_20_times_loses_nothing_acknowledged(cluster: Cluster) -> None:
    """Acknowledged (201) means on disk: SIGKILL at a random moment never loses one, and the store loads."""
    rng = random.Random(6_20)
    node = cluster.start("burst")
    node.call("GET", "/v1/node")  # derives the client key (PBKDF2) now, not inside the first burst
    acked: set[str] = set()
    attempted_unacked = 0  # creates sent but not answered when the node died: may or may not be stored
    torn_repairs = 0
    cut_short = [0]  # 201 status lines whose body never arrived
    for round_no in range(KILL_ROUNDS):
        lock = threading.Lock()
        new: list[str] = []
        odd: list[Any] = []
        lost_answers = [0]
        target = node

        def creator(tid: int) -> None:
            for i in range(BURST // BURST_THREADS):
                try:
                    status, body = target.call("POST", "/v1/gossip", {"msg": f"r{round_no} t{tid} #{i}"}, timeout=10)
                except (GossipError, OSError, ValueError):  # the node died under us
                    with lock:
                        lost_answers[0] += 1
                    return
                with lock:
                    if status == 201 and isinstance(body, dict):
                        new.append(str(body["guid"]))
                    elif status == 201:
                        # Killed between the status line and the body: http_call hands back a
                        # short body without an error (see the report). Not an acknowledgement.
                        cut_short[0] += 1
                        lost_answers[0] += 1
                        return
                    else:
                        odd.append((status, body))
                        return

        threads = [threading.Thread(target=creator, args=(t,), daemon=True) for t in range(BURST_THREADS)]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.05, 0.5))
        assert node.stop(signal.SIGKILL) == -signal.SIGKILL
        for t in threads:
            t.join(15)
        assert not any(t.is_alive() for t in threads), "a creator thread hung after the kill"
        err = stderr_of(node)
        assert "Traceback" not in err, err
        torn_repairs += err.count("removed a torn last line")
        assert odd == [], f"round {round_no}: creates answered other than 201: {odd[:3]}"
        assert len(new) < BURST, f"round {round_no}: the burst ended before the kill"
        acked.update(new)
        attempted_unacked += lost_answers[0]

        node = restart(cluster, node)  # the store must load: start() waits for the banner and /healthz
        held = node.guids(complete=True)
        missing = acked - held
        assert not missing, f"round {round_no}: {len(missing)} acknowledged gossips lost, e.g. {sorted(missing)[:3]}"
        # Anything extra was in flight at the kill (written, but its 201 never left).
        assert len(held - acked) <= attempted_unacked
    assert node.stop() == 0
    torn_repairs += stderr_of(node).count("removed a torn last line")
    assert len(acked) >= 10 * KILL_ROUNDS, f"only {len(acked)} creates acknowledged in {KILL_ROUNDS} bursts"
    print(f"\nkill -9: {KILL_ROUNDS} kills, {len(acked)} acknowledged creates, all kept; "
          f"{attempted_unacked} unanswered at the kills ({cut_short[0]} of them a 201 cut short); "
          f"torn tails repaired on load: {torn_repairs}")


# ---------------------------------------------------------------------- 2. partition
GROUPS = 3
PER_GROUP = 3
PARTITION_TIMER = 0.5
GOSSIPS_PER_GROUP = 5
HEAL_BOUND = 60.0  # seconds: 120 rounds at 0.5 s (the longest liveness backoff is 60 s)
CUT_HOLD = 15.0  # seconds the cut is held after each group converged: cross-group peers back off


def test_nine_nodes_cut_into_three_groups_work_inside_each_and_converge_after_the_heal(cluster: Cluster) -> None:
    rng = random.Random(9)
    n = GROUPS * PER_GROUP
    group_of = [i // PER_GROUP for i in range(n)]
    with FaultProxy(mode="drop") as proxy:
        private = [free_port() for _ in range(n)]
        public = [proxy.add_route(private[i], group_of[i]) for i in range(n)]

        def start(i: int, *args: str) -> NodeProc:
            return cluster.start(f"p{i}", "--listen", f"127.0.0.1:{private[i]}", *args,
                                 port=public[i], timer=PARTITION_TIMER)

        first = start(0)
        with ThreadPoolExecutor(max_workers=4) as pool:
            rest = list(pool.map(lambda i: start(i, "--join", first.address), range(1, n)))
        nodes = [first, *rest]
        for i, node in enumerate(nodes):
            proxy.set_group(node.node_guid, group_of[i])
        wait_for(lambda: all(len(x.peers()) == n - 1 for x in nodes), 60, "full membership (8 peers each)", 0.5)
        # The test's own client calls: through the proxy (nodes) or straight to the node (direct).
        direct = [dataclasses.replace(x, port=private[i]) for i, x in enumerate(nodes)]

        def group(g: int, via: list[NodeProc] = nodes) -> list[NodeProc]:
            return [x for i, x in enumerate(via) if group_of[i] == g]

        # -- cut
        proxy.cut()
        refused_before = proxy.refused()
        t_cut = time.monotonic()
        made: dict[int, set[str]] = {
            g: {rng.choice(group(g)).create(f"group {g} gossip {k}") for k in range(GOSSIPS_PER_GROUP)}
            for g in range(GROUPS)
        }
        everything = set().union(*made.values())

        def each_group_converged() -> bool:
            for g in range(GROUPS):
                for x in group(g, direct):
                    known = x.guids(complete=False)
                    assert known <= made[g], f"{x.name} (group {g}) heard of another group's gossip while cut"
                    if x.guids(complete=True) != made[g]:
                        return False
            return True

        wait_for(each_group_converged, 30, "each group to converge inside itself while cut", 0.25)
        inside = time.monotonic() - t_cut
        # Hold the cut a while longer (bounded): still nothing crosses.
        hold_until = time.monotonic() + CUT_HOLD
        while time.monotonic() < hold_until:
            assert each_group_converged()
            time.sleep(0.25)
        assert proxy.refused() > refused_before, "the proxy never refused a cross-group request: no real cut"
        assert proxy.is_cut
        cut_lasted = time.monotonic() - t_cut

        # -- heal
        proxy.heal()
        t_heal = time.monotonic()
        wait_for(lambda: all(x.guids() == everything for x in nodes), HEAL_BOUND,
                 "all nine nodes to converge after the heal", 0.25)
        healed = time.monotonic() - t_heal
        statuses = [p["status"] for x in nodes for p in x.peers()]
        print(f"\npartition: cut {cut_lasted:.1f}s, groups converged inside in {inside:.1f}s "
              f"({inside / PARTITION_TIMER:.0f} rounds); after the heal all nine converged in {healed:.1f}s "
              f"= {healed / PARTITION_TIMER:.0f} rounds of {PARTITION_TIMER}s; "
              f"{proxy.refused()} peer requests refused; peer statuses after: "
              f"{ {s: statuses.count(s) for s in set(statuses)} }")
        assert healed < HEAL_BOUND


# ---------------------------------------------------------------------- 3. clock skew
def test_clocks_skewed_by_10_minutes_converge_and_beyond_the_window_are_refused_clearly(cluster: Cluster) -> None:
    quiet = ("--log-level", "ERROR")  # the -600 and +600 nodes refuse each other: one warning per request
    zero = cluster.start("zero", *quiet)
    minus = cluster.start("minus", "--join", zero.address, "--clock-offset", "-600", *quiet)
    plus = cluster.start("plus", "--join", zero.address, "--clock-offset", "600", *quiet)
    nodes = [zero, minus, plus]
    by_node = {x.name: x.create(f"made at {x.name}") for x in nodes}
    made = set(by_node.values())
    wait_for(lambda: all(x.guids() == made for x in nodes), 30, "three skewed nodes to converge", 0.25)
    # Each gossip's date_time is its creator's clock: ten minutes apart, and kept as made.
    when = {r["guid"]: r["date_time"] for r in zero.call("GET", "/v1/gossip")[1]}
    assert when[by_node["minus"]] < when[by_node["zero"]] < when[by_node["plus"]]

    far = cluster.start("far", "--join", zero.address, "--clock-offset", "1200", expect_banner=False)
    assert far.proc.wait(30) == 1
    err = stderr_of(far).strip()
    assert f"could not join {zero.address}" in err and "clock" in err, err
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    print(f"\nclock skew: +1200 s join refused with: {err}")
    assert far.node_guid not in {p["guid"] for p in zero.peers()}
    # The others keep working.
    more = {x.create(f"after the refusal, at {x.name}") for x in nodes}
    wait_for(lambda: all(x.guids() == made | more for x in nodes), 30, "the three to converge again", 0.25)


# ---------------------------------------------------------------------- 4. read-only directory, full disk
_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH, _CAP_FOWNER = 1, 2, 3
_PR_CAPBSET_DROP = 24


def _without_root_file_powers() -> None:
    """preexec_fn: drop the capabilities that let root ignore file modes, for this child only.

    Root's exec gives it its bounding set; without CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH and
    CAP_FOWNER, a uid-0 process obeys the owner bits of its (root-owned) files like anyone.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH, _CAP_FOWNER):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP) failed")


def _modes_bind(directory: Path) -> Callable[[], None] | None:
    """A preexec_fn under which a child cannot write into ``directory`` (mode 0500), or skip."""
    probe = directory / "probe"
    if os.access(directory, os.W_OK):  # root: file modes do not bind us; try without the capabilities
        preexec: Callable[[], None] | None = _without_root_file_powers
    else:
        preexec = None
    try:
        done = subprocess.run([sys.executable, "-c", f"open({str(probe)!r}, 'w')"], preexec_fn=preexec,
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot start a process that obeys file modes here: {exc}")
    if done.returncode == 0 or "PermissionError" not in done.stderr:
        probe.unlink(missing_ok=True)
        pytest.skip("file modes do not bind processes here (root without a way to drop CAP_DAC_OVERRIDE)")
    return preexec


def _one_line_error(node: NodeProc, code: int = 2) -> str:
    assert node.proc.wait(30) == code
    err = stderr_of(node).strip()
    assert err.startswith("error:") and len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_read_only_data_directory_gives_a_one_line_error_naming_the_path(cluster: Cluster, tmp_path: Path) -> None:
    # (i) A file where the data directory should be: refused by anyone, root included.
    (tmp_path / "blocked-data").write_text("not a directory")
    node = cluster.start("blocked", expect_banner=False)
    err = _one_line_error(node)
    assert str(tmp_path / "blocked-data") in err, err
    print(f"\nfile as data directory: {err}")

    # (ii) The parent is read-only before the first start: the data directory cannot be made.
    parent = tmp_path / "ro"
    parent.mkdir()
    parent.chmod(0o500)
    try:
        preexec = _modes_bind(parent)
        # The later --config wins over the one Cluster.start puts first.
        fresh = cluster.start("ro", "--config", str(parent / "ro.json"), expect_banner=False, preexec_fn=preexec)
        err = _one_line_error(fresh)
        assert str(parent / "ro-data") in err and "ermission denied" in err, err
        print(f"read-only parent: {err}")
    finally:
        parent.chmod(0o700)

    # (iii) An existing store made read-only: refused at start, nothing lost once writable again.
    node = cluster.start("kept")
    made = {node.create(f"kept {i}") for i in range(5)}
    assert node.stop() == 0
    data = tmp_path / "kept-data"
    files = [p for p in data.iterdir()]
    for p in files:
        p.chmod(0o400)
    data.chmod(0o500)
    try:
        preexec = _modes_bind(data)
        locked = restart(cluster, node, expect_banner=False, preexec_fn=preexec)
        err = _one_line_error(locked)
        assert str(data / "gossip.jsonl") in err and "ermission denied" in err, err
        print(f"read-only store: {err}")
    finally:
        data.chmod(0o700)
        for p in files:
            p.chmod(0o600)
    again = restart(cluster, node)
    assert again.guids() == made


FSIZE_LIMIT = 16 * 1024  # bytes any one file of the node may reach: the log fills after ~60 creates


def _small_disk() -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (FSIZE_LIMIT, FSIZE_LIMIT))


def test_full_disk_answers_a_clear_error_and_keeps_every_acknowledged_gossip(cluster: Cluster, tmp_path: Path) -> None:
    node = cluster.start("full", preexec_fn=_small_disk)
    acked: list[str] = []
    refusals: list[tuple[int, Any]] = []
    for i in range(10 * FSIZE_LIMIT // 200):  # well past the limit: each line is over 200 bytes
        started = time.monotonic()
        status, body = node.call("POST", "/v1/gossip", {"msg": f"filling the disk, gossip number {i:05d}"}, timeout=10)
        assert time.monotonic() - started < 10
        if status == 201:
            assert not refusals, "a create succeeded after one failed for lack of space"
            acked.append(str(body["guid"]))
            continue
        refusals.append((status, body))
        if len(refusals) == 3:
            break
    assert acked, "the limit left no room for a single gossip"
    assert refusals, f"{len(acked)} creates and the disk never filled"
    for status, body in refusals:
        assert status == 507, (status, body)
        assert isinstance(body, dict) and body.get("type") == "error"
        assert "gossip.jsonl" in body["error"] and "not stored" in body["error"], body
    log = tmp_path / "full-data" / "gossip.jsonl"
    assert log.stat().st_size <= FSIZE_LIMIT
    assert log.read_bytes().endswith(b"\n"), "a failed append left a partial line"
    # The node still serves.
    assert node.call("GET", "/healthz")[0] == 200
    assert node.stop() == 0
    err = stderr_of(node)
    assert "Traceback" not in err, err
    print(f"\nfull disk: {len(acked)} creates fit in {FSIZE_LIMIT} bytes, then {refusals[0][0]}: {refusals[0][1]['error']}")

    again = restart(cluster, node)  # no limit now
    held = again.guids()
    assert set(acked) <= held
    assert len(held - set(acked)) == 0, "a gossip refused with 507 came back after the restart"
    assert again.create("room again") in again.guids()


def _rounds(node: NodeProc) -> int:
    status, text = http_call(f"{node.url}/metrics", timeout=5)
    assert status == 200
    [line] = [x for x in text.decode().splitlines() if x.startswith("gossip_rounds_total ")]
    return int(float(line.split()[1]))


def test_full_disk_on_a_receiving_node_is_logged_and_it_catches_up_after_a_restart(cluster: Cluster) -> None:
    """Gossips that arrive from a peer when the disk is full: a clear log line, the node keeps going."""
    a = cluster.start("a")
    b = cluster.start("b", "--join", a.address, preexec_fn=_small_disk)
    wait_for(lambda: len(a.peers()) == 1 and len(b.peers()) == 1, 20, "a and b to know each other")
    made = {a.create(f"from a, more than fits on b's disk: {i:04d}") for i in range(2 * FSIZE_LIMIT // 200)}
    log = b.config.with_name("b-data") / "gossip.jsonl"
    # b fetches what it lacks, its disk fills up, it says so, and the rounds go on.
    assert b.proc.stderr is not None
    fd = b.proc.stderr.fileno()
    os.set_blocking(fd, False)
    said: list[bytes] = []

    def complained() -> bool:
        try:
            said.append(os.read(fd, 1 << 16) or b"")
        except BlockingIOError:
            pass
        return b"cannot append to" in b"".join(said)

    wait_for(complained, 30, "b to log that its disk is full", 0.25)
    rounds = _rounds(b)
    wait_for(lambda: _rounds(b) > rounds + 3, 10, "b to keep gossiping with a full disk", 0.25)
    assert b.call("GET", "/healthz")[0] == 200
    assert log.read_bytes().endswith(b"\n")
    on_disk = {json.loads(line)["gossip"]["guid"] for line in log.read_bytes().splitlines()}
    assert on_disk < made
    assert b.stop() == 0
    os.set_blocking(fd, True)
    err = b"".join(said).decode() + stderr_of(b)
    assert "Traceback" not in err, err
    assert f"cannot append to {log}" in err and "not stored" in err, err
    # Without the limit, b loads what it stored and fetches the rest from a again.
    again = restart(cluster, b)
    wait_for(lambda: again.guids() == made, 30, "b to catch up after the restart", 0.25)
