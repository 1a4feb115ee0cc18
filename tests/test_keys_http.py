"""Key rotation across real node processes: `gossip keys` on a 5-node network under load."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from gossip.auth import key_id
from gossip.http import http_call
from tests.nodeproc import PASSWORD, ROOT, Cluster, NodeProc, derive_key, wait_for

NEW_PASSWORD = "a brand new network password"


def cli(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    full_env.pop("GOSSIP_PASSWORD", None)
    return subprocess.run([sys.executable, "-m", "gossip", *args], capture_output=True, text=True, cwd=cwd,
                          env=full_env, timeout=60)


def metric(node: NodeProc, family: str) -> dict[str, float]:
    """One counter family of the node's /metrics, by label text."""
    status, body = http_call(f"{node.url}/metrics", timeout=10.0)
    assert status == 200
    return {m[1]: float(m[2]) for m in re.finditer(rf"^{family}(\{{[^}}]*\}})? (\S+)$", body.decode(), flags=re.M)}


def refusals(nodes: list[NodeProc]) -> int:
    """Member requests refused or failed, summed over the nodes (their /metrics)."""
    total = 0.0
    for node in nodes:
        total += sum(metric(node, "gossip_rejected_total").values())
        total += sum(metric(node, "gossip_requests_failed_total").values())
    return int(total)


def key_rows(node: NodeProc, password: str) -> list[dict[str, Any]]:
    status, rows = node.call("GET", "/v1/keys", password=password)
    assert status == 200, rows
    return list(rows)


class Creator(threading.Thread):
    """Creates gossips round-robin on the nodes, ``rate`` a second, until stopped."""

    def __init__(self, nodes: list[NodeProc], rate: float) -> None:
        super().__init__(daemon=True)
        self.nodes, self.rate = nodes, rate
        self.password = PASSWORD
        self.created: set[str] = set()
        self.failed: list[str] = []
        self.halt = threading.Event()

    def run(self) -> None:
        i = 0
        start = time.monotonic()
        while not self.halt.is_set() and len(self.created) + len(self.failed) < 5000:
            node = self.nodes[i % len(self.nodes)]
            status, body = node.call("POST", "/v1/gossip", {"msg": f"during rotation {i}"}, password=self.password)
            if status == 201:
                self.created.add(body["guid"])
            else:
                self.failed.append(f"{node.name}: {status} {body}")
            i += 1
            self.halt.wait(max(0.0, start + i / self.rate - time.monotonic()))


def test_rotating_the_password_of_five_nodes_under_load(cluster: Cluster, tmp_path: Path) -> None:
    first = cluster.start("k0")
    nodes = [first] + [cluster.start(f"k{i}", "--join", first.address) for i in range(1, 5)]
    wait_for(lambda: all(len(n.peers()) == 4 for n in nodes), 60, "full membership", 0.5)
    old, new = derive_key("default", PASSWORD), derive_key("default", NEW_PASSWORD)
    old_id, new_id = key_id(old), key_id(new)
    base = refusals(nodes)
    creator = Creator(nodes, rate=20)
    creator.start()
    try:
        # 1. install everywhere
        done = cli(tmp_path, "keys", "install", "--config", str(first.config), env={"GOSSIP_KEY_PASSWORD": NEW_PASSWORD})
        assert done.returncode == 0, done.stderr
        assert new_id in done.stdout and NEW_PASSWORD not in done.stdout
        wait_for(lambda: all(
            {r["id"]: r["nodes"] for r in key_rows(n, PASSWORD)}.get(new_id) == 5 for n in nodes
        ), 60, "every node to hold the new key and know that all do", 0.5)
        listed = cli(tmp_path, "keys", "list", "--json", "--config", str(first.config))
        assert listed.returncode == 0, listed.stderr
        rows = json.loads(listed.stdout)
        assert {(r["id"], r["primary"], r["nodes"], r["known"]) for r in rows} == {(old_id, True, 5, 5), (new_id, False, 5, 5)}
        assert old.hex() not in listed.stdout and new.hex() not in listed.stdout
        # 2. use everywhere (the CLI still signs with the old key; both are accepted)
        used = cli(tmp_path, "keys", "use", "--config", str(first.config), "--key-password", NEW_PASSWORD)
        assert used.returncode == 0, used.stderr
        wait_for(lambda: all(
            [r["id"] for r in key_rows(n, PASSWORD) if r["primary"]] == [new_id] for n in nodes
        ), 60, "every node to sign with the new key", 0.5)
        creator.password = NEW_PASSWORD
        # A refusal first: the old key is the primary nowhere now, but removing the new one is refused.
        refused = cli(tmp_path, "keys", "remove", "--config", str(first.config), "--key-password", NEW_PASSWORD)
        assert refused.returncode == 1 and "primary" in refused.stderr and "Traceback" not in refused.stderr
        # 3. remove the old key everywhere
        password_file = tmp_path / "old-password"
        password_file.write_text(PASSWORD + "\n")
        removed = cli(tmp_path, "keys", "remove", "--config", str(first.config), "--key-password-file", str(password_file))
        assert removed.returncode == 0, removed.stderr
        wait_for(lambda: all([r["id"] for r in key_rows(n, NEW_PASSWORD)] == [new_id] for n in nodes),
                 60, "every node to drop the old key", 0.5)
        time.sleep(1.0)  # a little more load on the new key alone
    finally:
        creator.halt.set()
        creator.join(30)
    assert creator.failed == [] and len(creator.created) > 20
    for node in nodes:  # nothing lost: every node ends up with every gossip
        node.password = NEW_PASSWORD
    wait_for(lambda: all(n.guids() >= creator.created for n in nodes), 60, "every node to hold every gossip", 0.5)
    assert refusals(nodes) == base == 0  # no member request refused or failed at any point
    for node in nodes:
        status, body = node.call("GET", "/v1/gossip", password=PASSWORD)
        assert status == 401 and body["code"] == "bad_mac", body  # the old password, refused everywhere
        config = json.loads(node.config.read_text())
        [net] = config["networks"]
        assert net["key"] == new.hex() and net.get("other_keys") == [] and net["key_version"] == 3
        assert stat.S_IMODE(node.config.stat().st_mode) == 0o600
        assert PASSWORD not in node.config.read_text() and NEW_PASSWORD not in node.config.read_text()
    # The CLI with the new password works; with the old one it says why, in one line.
    url = ["--node", first.url, "--network", "default"]
    ok = cli(tmp_path, "status", "--json", *url, "--password", NEW_PASSWORD)
    assert ok.returncode == 0 and creator.created <= {r["guid"] for r in json.loads(ok.stdout)}
    bad = cli(tmp_path, "status", "--json", *url, "--password", PASSWORD)
    assert bad.returncode == 1 and "password" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1
    # A restart keeps the rotation; an old password left in the environment is refused, not taken.
    last = nodes[-1]
    assert last.stop() == 0
    stale = cluster.start("k4", port=last.port, expect_banner=False)
    assert stale.proc.wait(30) == 2
    assert stale.proc.stderr is not None and "rotated" in stale.proc.stderr.read()
    again = cluster.start("k4", port=last.port, password=NEW_PASSWORD)
    wait_for(lambda: len(again.peers()) == 4, 30, "the restarted node to know its peers", 0.5)
    fresh = again.create("after the restart")
    wait_for(lambda: fresh in first.guids(), 30, "a gossip from the restarted node to spread", 0.5)
