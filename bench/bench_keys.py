"""Key rotation under load (issue 13, item 2): 0 lost creates, 0 refused member requests.

    python bench/bench_keys.py [--nodes 5] [--rate 50] [--timer 1] [--keep]

- start: ``--nodes`` ``python -m gossip.http`` processes on 127.0.0.1 (``--timer``, ``--log-level
  WARNING``), each but the first joining the first; waits until every node knows the others.
- load: one thread creates gossips (``POST /v1/gossip``) round-robin on the nodes, ``--rate`` a
  second, signed with whichever password the operator currently uses; every answer counts
  (201: acknowledged; anything else: a failed create).
- rotate, as an operator does, with the ``gossip`` CLI on the first node (``--config``):
  ``keys install`` the new password, wait until every node's ``GET /v1/keys`` shows it held by
  all; ``keys use`` it, wait until it is every node's primary (the load then signs with it);
  ``keys remove`` the old one, wait until every node holds the new key alone; then 3 s more load.
- converge: until every node holds every acknowledged gossip (bounded).

Reports each phase's time, creates acknowledged and failed, lost gossips (acknowledged but missing
on some node after convergence), and refused member requests: the growth, from before the
rotation to the end, of every node's ``gossip_rejected_total`` (requests refused, by reason) and
``gossip_requests_failed_total`` (requests sent that got no usable answer). Targets: all 0.
Exit status 0 when they are. Every process is stopped and reaped, the work directory removed.

Reuses bench_http.py (node processes, /metrics, cleanup).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_http as bh  # noqa: E402

from gossip.auth import CLIENT_AUTH_HEADER, client_auth_header, derive_key, key_id  # noqa: E402
from gossip.http import http_call  # noqa: E402

NEW_PASSWORD = "bench-new-password-not-secret"
BOUND = 120.0


def signed(port: int, key: bytes, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """One client-API request signed with ``key``."""
    data = b"" if body is None else json.dumps(body).encode("utf-8")
    header = client_auth_header(
        network=bh.NETWORK, node=bh.node_guid(port), key=key, method=method, path=path, query={}, body=data,
        ts=int(time.time() * 1000), nonce=secrets.token_hex(16),
    )
    status, raw = http_call(f"http://{bh.HOST}:{port}{path}", method=method, body=data if body is not None else None,
                            headers={CLIENT_AUTH_HEADER: header}, timeout=20, max_answer=64 << 20)
    return status, json.loads(raw) if raw else None


def refused(ports: list[int]) -> float:
    return sum(bh.metric_sum(p, "gossip_rejected_total") + bh.metric_sum(p, "gossip_requests_failed_total") for p in ports)


class Load(threading.Thread):
    """Creates at ``rate`` a second, round-robin, until halted."""

    def __init__(self, ports: list[int], rate: float, key: bytes) -> None:
        super().__init__(daemon=True)
        self.ports, self.rate, self.key = ports, rate, key
        self.acked: set[str] = set()
        self.failed: list[str] = []
        self.halt = threading.Event()
        self.seconds = 0.0

    def run(self) -> None:
        start, i = time.monotonic(), 0
        while not self.halt.is_set():
            port = self.ports[i % len(self.ports)]
            try:
                status, body = signed(port, self.key, "POST", "/v1/gossip", {"msg": f"rotation load {i}"})
                if status == 201:
                    self.acked.add(body["guid"])
                else:
                    self.failed.append(f"{port}: {status} {str(body)[:120]}")
            except Exception as exc:  # noqa: BLE001 - counted and reported
                self.failed.append(f"{port}: {exc}"[:160])
            i += 1
            self.halt.wait(max(0.0, start + i / self.rate - time.monotonic()))
        self.seconds = time.monotonic() - start


def cli(*args: str, password: str) -> None:
    env = dict(os.environ, PYTHONPATH=str(bh.ROOT), GOSSIP_KEY_PASSWORD=password)
    env.pop("GOSSIP_PASSWORD", None)
    done = subprocess.run([sys.executable, "-m", "gossip", *args], capture_output=True, text=True, env=env, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"gossip {' '.join(args)}: {done.stderr.strip()}")


def every(ports: list[int], key: bytes, check: Any, what: str) -> float:
    """Seconds until ``check(rows)`` holds for every node's ``GET /v1/keys``."""
    t0 = time.perf_counter()
    if not bh.wait_until(lambda: all(check(signed(p, key, "GET", "/v1/keys")[1]) for p in ports), BOUND, 0.1):
        raise RuntimeError(f"not within {BOUND:g} s: {what}")
    return time.perf_counter() - t0


def run(args: argparse.Namespace) -> int:
    work = bh.make_workdir(args.keep, "gossip-bench-keys-")
    nodes: list[bh.Node] = []
    old, new = derive_key(bh.NETWORK, bh.PASSWORD), derive_key(bh.NETWORK, NEW_PASSWORD)
    old_id, new_id = key_id(old), key_id(new)
    load: Load | None = None
    try:
        ports: list[int] = []
        for k in range(args.nodes):
            port = bh.free_port()
            cmd = bh.converge_cmd(work / f"n{k}.json", port, ports[0] if ports else None, timer=args.timer)
            node = bh.Node(cmd, workdir=work, tag=f"n{k}", env={"GOSSIP_PASSWORD": bh.PASSWORD})
            nodes.append(node)
            node.wait_banner(timeout=30)
            ports.append(port)
        bh.wait_for_peers(ports, args.nodes - 1, 60, 0.2)
        before = refused(ports)
        load = Load(ports, args.rate, old)
        load.start()
        time.sleep(2.0)
        config = str(work / "n0.json")
        phases: list[tuple[str, float]] = []
        t0 = time.perf_counter()
        cli("keys", "install", "--config", config, password=NEW_PASSWORD)
        phases.append(("install, until every node lists it held by all", every(
            ports, old, lambda rows: {r["id"]: r["nodes"] for r in rows}.get(new_id) == args.nodes, "install spread"
        ) + 0.0))
        cli("keys", "use", "--config", config, password=NEW_PASSWORD)
        phases.append(("use, until it is every node's primary", every(
            ports, old, lambda rows: [r["id"] for r in rows if r["primary"]] == [new_id], "use spread"
        )))
        load.key = new
        cli("keys", "remove", "--config", config, password=bh.PASSWORD)
        phases.append(("remove, until every node holds the new key alone", every(
            ports, new, lambda rows: [r["id"] for r in rows] == [new_id], "remove spread"
        )))
        rotation = time.perf_counter() - t0
        time.sleep(3.0)
        load.halt.set()
        load.join(30)
        t1 = time.perf_counter()

        def converged() -> bool:
            return all(load is not None and load.acked <= {r["guid"] for r in signed(p, new, "GET", "/v1/gossip")[1]}
                       for p in ports)

        ok = bh.wait_until(converged, BOUND, 0.5)
        settle = time.perf_counter() - t1
        lost = 0
        for p in ports:
            held = {r["guid"] for r in signed(p, new, "GET", "/v1/gossip")[1]}
            lost = max(lost, len(load.acked - held))
        refusals = refused(ports) - before
        old_refused = sum(signed(p, old, "GET", "/v1/node")[0] == 401 for p in ports)
        print(bh.table(["phase", "seconds"], [(name, f"{secs:.2f}") for name, secs in phases]))
        print()
        print(bh.table(
            ["nodes", "rate/s asked (done)", "timer s", "rotation s", "creates acked", "creates failed", "lost", "refused member requests",
             "old password refused by", "converged after load s"],
            [(args.nodes, f"{args.rate:g} ({len(load.acked) / max(load.seconds, 1e-9):.0f})", f"{args.timer:g}", f"{rotation:.2f}", len(load.acked), len(load.failed), lost,
              int(refusals), f"{old_refused}/{args.nodes}", f"{settle:.2f}" if ok else "no")],
        ))
        for line in load.failed[:5]:
            print("failed create:", line)
        return 0 if ok and lost == 0 and not load.failed and refusals == 0 and old_refused == args.nodes else 1
    finally:
        if load is not None:
            load.halt.set()
        bh.stop_all(nodes)
        bh.cleanup(work, args.keep)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/bench_keys.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--rate", type=float, default=50.0, help="creates a second during the rotation")
    parser.add_argument("--timer", type=float, default=1.0, help="the nodes' --timer")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    return bh.run_main("bench_keys", run, args)


if __name__ == "__main__":
    raise SystemExit(main())
