"""``gossip watch`` and ``gossip status --limit/--since/--grep`` against real node processes."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from typing import Any

from .nodeproc import PASSWORD, ROOT, Cluster, NodeProc, wait_for


def gossip_cli(node: NodeProc, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, GOSSIP_PASSWORD=PASSWORD, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "gossip", *args, "--node", node.url, "--network", "default"],
                          capture_output=True, text=True, env=env, timeout=timeout)


def ready(node: NodeProc) -> NodeProc:
    """Wait until ``node`` takes signed requests: one stamped within its first instant can read
    as from before it started (the client estimates the node's clock to half a round trip)."""
    wait_for(lambda: node.call("GET", "/v1/node")[0] == 200, 10, f"{node.name} to take signed requests")
    return node


class Watch:
    """``gossip watch --json`` in a process of its own; its lines arrive on a queue."""

    def __init__(self, node: NodeProc, *args: str) -> None:
        env = dict(os.environ, GOSSIP_PASSWORD=PASSWORD, PYTHONPATH=str(ROOT))
        # SIGINT as a terminal gives it: a shell's background job (set -m off) starts with it
        # ignored, and the watch would not hear the Ctrl-C that stop() sends.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gossip", "watch", "--json", "--node", node.url, "--network", "default", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))

    def take(self, count: int, timeout: float) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        got: list[dict[str, Any]] = []
        while len(got) < count:
            try:
                got.append(self.lines.get(timeout=max(0.01, deadline - time.monotonic())))
            except queue.Empty:
                raise AssertionError(f"{len(got)} of {count} rows within {timeout} s: {[r.get('msg') for r in got]}") from None
        return got

    def stop(self) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            code = self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait(5)
        assert self.proc.stderr is not None
        return code, self.proc.stderr.read()


def test_watch_on_b_sees_a_gossip_of_a_within_a_second_and_misses_none_across_a_restart_of_b(cluster: Cluster) -> None:
    a = ready(cluster.start("a"))
    b = ready(cluster.start("b", "--join", a.address))
    wait_for(lambda: len(a.peers()) == 1 and len(b.peers()) == 1, 20, "a and b to know each other")
    watch = Watch(b, "--since", "0")  # b holds nothing yet: from its start, so no race with the stream opening
    try:
        made, delays = [a.create("warm-up")], []
        assert [r["guid"] for r in watch.take(1, 10)] == made  # the watch has started and connected
        for i in range(3):
            made.append(a.create(f"before {i}"))
            start = time.monotonic()
            [row] = watch.take(1, 5)
            delays.append(time.monotonic() - start)
            assert row["guid"] == made[-1]
        assert max(delays) < 1.0, delays
        # B stops; A goes on; B comes back on the same store, catches up, and the watch resumes.
        assert b.stop() == 0
        made += [a.create(f"while b is down {i}") for i in range(3)]
        b = cluster.start("b", port=b.port, password="")
        made += [a.create(f"after {i}") for i in range(3)]
        rest = watch.take(6, 30)
        seen = [r["guid"] for r in rest]
        assert sorted(seen) == sorted(made[4:]), "each gossip once: none lost, none twice"
        time.sleep(1.0)
        assert watch.lines.empty()
        row = rest[0]
        assert set(row) >= {"guid", "date_time", "who_name", "msg", "sha2", "complete", "cursor"}
        cursors = [r["cursor"] for r in rest]
        assert cursors == sorted(cursors) and len(set(cursors)) == 6
    finally:
        code, err = watch.stop()
        print(f"watch: exit {code}, stderr {err!r}")  # shown when the test fails
        for node in (a, b):
            if node.proc.poll() is None:
                print(node.name, "holds", node.call("GET", "/v1/node", password=PASSWORD)[1].get("gossip_count"))
    assert code == 0 and err == "", err  # Ctrl-C ends it quietly


def test_watch_since_a_cursor_resumes_without_loss(cluster: Cluster) -> None:
    a = ready(cluster.start("a"))
    made = [a.create(f"m{i}") for i in range(5)]
    listed = json.loads(gossip_cli(a, "status", "--json").stdout)
    assert [r["guid"] for r in listed] == made
    watch = Watch(a, "--since", str(listed[1]["cursor"]))
    try:
        assert [r["guid"] for r in watch.take(3, 10)] == made[2:]
        later = a.create("later")
        assert [r["guid"] for r in watch.take(1, 5)] == [later]
    finally:
        code, err = watch.stop()
    assert code == 0 and err == ""


def test_status_limit_since_and_grep(cluster: Cluster) -> None:
    a = ready(cluster.start("a"))
    made = [a.create(f"{'Cat' if i % 3 == 0 else 'dog'} {i}") for i in range(12)]
    rows = json.loads(gossip_cli(a, "status", "--json").stdout)
    cursors = [r["cursor"] for r in rows]
    assert [r["guid"] for r in rows] == made and cursors == sorted(cursors)
    newest = json.loads(gossip_cli(a, "status", "--json", "--limit", "4").stdout)
    assert [r["guid"] for r in newest] == made[-4:]
    after = json.loads(gossip_cli(a, "status", "--json", "--since", str(cursors[7])).stdout)
    assert [r["guid"] for r in after] == made[8:]
    first_two = json.loads(gossip_cli(a, "status", "--json", "--since", str(cursors[7]), "--limit", "2").stdout)
    assert [r["guid"] for r in first_two] == made[8:10]
    cats = json.loads(gossip_cli(a, "status", "--json", "--grep", "CAT").stdout)
    assert [r["guid"] for r in cats] == made[0::3]
    table = gossip_cli(a, "status", "--grep", "cat")
    assert table.returncode == 0 and table.stdout.count("Cat ") == 4 and "dog" not in table.stdout
    none = gossip_cli(a, "status", "--grep", "zebra")
    assert none.returncode == 0 and "matches" in none.stdout
    for bad in (["--since", "-1"], ["--since", "x"], ["--limit", "0"]):
        result = gossip_cli(a, "status", *bad)
        last = result.stderr.strip().splitlines()[-1]
        assert result.returncode == 2 and "Traceback" not in result.stderr and "error: argument" in last, result.stderr
    result = gossip_cli(a, "watch", "--since", "soon")
    assert result.returncode == 2 and "cursor" in result.stderr


def test_watch_of_an_unreachable_node_fails_in_one_line(cluster: Cluster) -> None:
    a = cluster.start("a")
    a.stop()
    result = gossip_cli(a, "watch")
    assert result.returncode == 1 and result.stderr.startswith("gossip: error: cannot reach the node")
    assert result.stderr.count("\n") == 1


def test_cli_md_documents_the_flags_of_status_and_watch() -> None:
    import argparse

    from gossip import cli

    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    sub = next(a for a in cli._parser()._actions if isinstance(a, argparse._SubParsersAction))
    for command in ("status", "watch"):
        for action in sub.choices[command]._actions:
            for flag in action.option_strings:
                if flag.startswith("--") and flag != "--help":
                    assert f"`{flag}" in text or f"[{flag}" in text, (command, flag)
    assert "### `gossip watch [--json] [--since CURSOR]`" in text
