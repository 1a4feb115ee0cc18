"""Leaving with real node processes on 127.0.0.1: SIGTERM, ``gossip leave``, ``gossip
force-leave``, and ``--forget-after`` (issue 13 item 3, issue 12 item 3)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from gossip.configfile import load_config
from gossip.http import NodeRunner, http_call

from .nodeproc import ROOT, Cluster, NodeProc, wait_for
from .test_error_codes import api, runners, signed  # noqa: F401 -- runners is a fixture


def status_on(node: NodeProc, guid: str) -> str | None:
    return next((str(p["status"]) for p in node.peers() if p["guid"] == guid), None)


def trio(cluster: Cluster, *args: str) -> tuple[NodeProc, NodeProc, NodeProc]:
    a = cluster.start("a", "--name", "a", *args)
    b = cluster.start("b", "--name", "b", "--join", a.address, *args)
    c = cluster.start("c", "--name", "c", "--join", a.address, *args)
    for node in (a, b, c):
        others = {n.node_guid for n in (a, b, c)} - {node.node_guid}
        wait_for(lambda: {p["guid"] for p in node.peers() if p["status"] == "alive"} == others, 15,
                 f"{node.name} to see the others alive")
    return a, b, c


def gossip_cli(cluster: Cluster, *argv: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("GOSSIP_PASSWORD", None)  # the CLI authenticates with the key in the config
    return subprocess.run([sys.executable, "-m", "gossip", *argv], cwd=cluster.directory, env=env,
                          capture_output=True, text=True, timeout=30)


def never_suspect_or_dead(nodes: list[NodeProc], guid: str, seconds: float) -> set[str]:
    seen: set[str] = set()
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        for node in nodes:
            seen.add(str(status_on(node, guid)))
        time.sleep(0.1)
    return seen


def test_sigterm_announces_a_leave_and_peers_show_left(cluster: Cluster) -> None:
    a, b, c = trio(cluster)
    guid = c.node_guid
    started = time.monotonic()
    assert c.stop(signal.SIGTERM) == 0
    took = time.monotonic() - started
    out = c.proc.stdout.read() if c.proc.stdout else ""
    assert "left the network: told 2 peers, 2 took it" in out, out
    assert "stopped; everything acknowledged is on disk" in out
    assert took < 8, took  # bounded: at most LEAVE_WAIT for the peers, then it exits anyway
    for node in (a, b):
        wait_for(lambda: status_on(node, guid) == "left", 5, f"c left on {node.name}")
    assert never_suspect_or_dead([a, b], guid, 2.0) == {"left"}  # and not retried into dead
    # It comes back: a newer record of its own (incarnation + 2), alive again everywhere.
    assert json.loads(c.config.read_text())["incarnation"] == 2
    cluster.start("c", port=c.port)
    for node in (a, b):
        wait_for(lambda: status_on(node, guid) == "alive", 15, f"c alive again on {node.name}")


def test_sigint_leaves_too(cluster: Cluster) -> None:
    a = cluster.start("a")
    b = cluster.start("b", "--join", a.address)
    wait_for(lambda: status_on(a, b.node_guid) == "alive", 10, "b alive on a")
    assert b.stop(signal.SIGINT) == 0
    wait_for(lambda: status_on(a, b.node_guid) == "left", 15, "b left on a")  # a loaded CI machine took >5 s


def test_gossip_leave_stops_the_node_and_peers_show_left(cluster: Cluster) -> None:
    a, b, c = trio(cluster)
    done = gossip_cli(cluster, "leave", "--config", str(c.config))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("c left network default: told 2 peers, 2 took it; the node has stopped"), done.stdout
    assert c.proc.wait(15) == 0
    for node in (a, b):
        wait_for(lambda: status_on(node, c.node_guid) == "left", 5, f"c left on {node.name}")
    # the web page and `gossip network` show the word
    table = gossip_cli(cluster, "network", "--config", str(a.config))
    assert table.returncode == 0 and any(" left " in line and line.startswith("c ") for line in table.stdout.splitlines())


def test_gossip_force_leave_marks_a_dead_node_left_everywhere(cluster: Cluster) -> None:
    a, b, c = trio(cluster)
    # Refused: a node that is alive, or unknown; one-line errors, the codes in the API.
    alive = gossip_cli(cluster, "force-leave", "b", "--config", str(a.config))
    assert alive.returncode == 1 and alive.stdout == ""
    assert "is alive, not dead" in alive.stderr and alive.stderr.count("\n") == 1, alive.stderr
    unknown = gossip_cli(cluster, "force-leave", "nobody", "--config", str(a.config))
    assert unknown.returncode == 1 and "no peer 'nobody'" in unknown.stderr
    assert [a.call("POST", "/v1/force-leave", body)[1].get("code") for body in ({"peer": "nobody"}, {"peer": "b"}, {"peer": 7})] \
        == ["unknown_peer", "peer_not_dead", "bad_request"]
    # c crashes (kill -9: no announcement): dead on a, then forced out from a alone.
    c.stop(signal.SIGKILL)
    wait_for(lambda: status_on(a, c.node_guid) == "dead", 20, "c dead on a")
    forced = gossip_cli(cluster, "force-leave", "c", "--config", str(a.config))
    assert forced.returncode == 0, forced.stderr
    assert forced.stdout.startswith(f"c ({c.node_guid}) is now marked left on network default")
    assert status_on(a, c.node_guid) == "left"
    wait_for(lambda: status_on(b, c.node_guid) == "left", 10, "the mark to spread to b")
    again = gossip_cli(cluster, "force-leave", c.node_guid, "--config", str(a.config))
    assert again.returncode == 0 and "had already left" in again.stdout


def test_forget_after_drops_left_peers_from_memory_and_disk(cluster: Cluster) -> None:
    a = cluster.start("a", "--forget-after", "3s")
    b = cluster.start("b", "--join", a.address)
    wait_for(lambda: status_on(a, b.node_guid) == "alive", 10, "b alive on a")
    assert json.loads(a.config.read_text())["forget_after"] == 3.0
    assert b.stop(signal.SIGTERM) == 0
    wait_for(lambda: status_on(a, b.node_guid) == "left", 5, "b left on a")
    wait_for(lambda: status_on(a, b.node_guid) is None, 10, "a to forget b")
    # The tick that forgot b writes peers.json on the writer thread, a moment after memory.
    peers_file = a.config.with_name("a-data") / "peers.json"
    wait_for(lambda: b.node_guid not in peers_file.read_text(), 5, "peers.json to forget b")


def test_a_leave_that_cannot_save_its_comeback_incarnation_announces_nothing(
    runners: Callable[..., NodeRunner], tmp_path: Path,
) -> None:
    """Leaving saves ``incarnation + 2`` first; if that fails the node says so (507) and
    keeps running, unannounced: a leave it could not come back from is worse than a stop."""
    a = runners("a")
    config_path = tmp_path / "a-server.json"
    a._committer.config_path = tmp_path  # noqa: SLF001 -- a directory: replacing it fails, as a full disk would
    status, code, body = api(a, "POST", "/v1/leave", {})
    assert (status, code) == (507, "storage_failed") and "not leaving" in body["error"]
    assert not a.node.has_left and not a.done.is_set()
    a._committer.config_path = config_path  # noqa: SLF001
    url = f"http://127.0.0.1:{a.config.port}/v1/leave"
    status, answer = http_call(url, method="POST", body=b"{}", headers=signed("POST", "/v1/leave", b"{}", node=a.node.guid),
                               timeout=10)
    assert status == 200 and json.loads(answer)["incarnation"] == 2
    assert load_config(config_path).incarnation == 2 and a.node.has_left
    wait_for(a.done.is_set, 5, "the runner to ask for the stop")


def test_leave_is_taken_only_from_the_nodes_own_host(runners: Callable[..., NodeRunner]) -> None:
    """Every API client holds the network key: one from another host must not be able to stop
    the nodes it reaches. The same signed request from loopback is taken."""
    from gossip.errors import ErrorCode, GossipError
    from gossip.http.server import Request

    a = runners("a")
    body = b"{}"
    headers = {k.lower(): v for k, v in signed("POST", "/v1/leave", body, node=a.node.guid).items()}
    remote = Request(method="POST", path="/v1/leave", query={}, headers=headers, body=body, client=("192.0.2.7", 40000))
    with pytest.raises(GossipError) as refused:  # the server turns it into the 403 answer
        a.call(a.api.handle(remote))
    assert (refused.value.status_hint, refused.value.code) == (403, ErrorCode.LOCAL_ONLY)
    assert not a.node.has_left and not a.done.is_set()
    from gossip.http.api import _is_loopback
    assert [_is_loopback(ip) for ip in ("127.0.0.1", "127.9.9.9", "::1", "::ffff:127.0.0.1", "192.0.2.7", "bogus")] \
        == [True, True, True, True, False, False]
    url = f"http://127.0.0.1:{a.config.port}/v1/leave"  # over real loopback HTTP
    status, _ = http_call(url, method="POST", body=body, headers=signed("POST", "/v1/leave", body, node=a.node.guid),
                          timeout=10)
    assert status == 200 and a.node.has_left
