"""Real node processes on 127.0.0.1: the runner, persistence across kill -9, liveness, joins."""

from __future__ import annotations

import json
import os
import random
import signal
import stat
import subprocess
import sys
from pathlib import Path


from .nodeproc import PASSWORD, ROOT, Cluster, free_port, wait_for


def test_first_run_prints_where_it_listens_and_the_join_command(cluster: Cluster, tmp_path: Path) -> None:
    node = cluster.start("a", password="")  # no password anywhere: one is made up
    text = "\n".join(node.banner)
    assert f"Serving HTTP on 127.0.0.1 port {node.port}" in text
    [join] = [line for line in node.banner if "--join" in line]
    assert f"--join 127.0.0.1:{node.port}" in join and "GOSSIP_PASSWORD='" in join
    password = join.split("GOSSIP_PASSWORD='")[1].split("'")[0]
    assert len(password) >= 16
    saved = node.config.read_text()
    assert password not in saved and "password" not in saved
    assert stat.S_IMODE(node.config.stat().st_mode) == 0o600
    guid = json.loads(saved)["node_guid"]
    assert node.stop() == 0
    # Second run: same identity, and the password is never shown again.
    again = cluster.start("a", port=node.port, password="")
    assert json.loads(again.config.read_text())["node_guid"] == guid
    assert password not in "\n".join(again.banner)
    # ...but it says, in one line, how to replace a lost one (the first run had nothing to lose).
    assert len([line for line in again.banner if "Lost the password?" in line]) == 1
    assert not any("Lost the password?" in line for line in node.banner)
    node.password = password
    again.password = password
    assert again.call("GET", "/v1/node")[1]["node_guid"] == guid


def test_two_nodes_join_and_converge(cluster: Cluster) -> None:
    a = cluster.start("a")
    made = {a.create(f"before join {i}") for i in range(5)}
    b = cluster.start("b", "--join", a.address)
    assert b.proc.stdout is not None and "joined network default" in b.proc.stdout.readline()
    made.add(b.create("from b"))
    wait_for(lambda: a.guids() == made and b.guids() == made, 15, "both nodes to hold all gossip")
    [peer] = b.peers()
    assert peer["name"] == "a" or peer["port"] == a.port
    assert peer["status"] == "alive"


def test_ten_nodes_through_different_introducers_converge_on_100_gossips(cluster: Cluster) -> None:
    rng = random.Random(10)
    nodes = [cluster.start("n0")]
    for i in range(1, 10):
        nodes.append(cluster.start(f"n{i}", "--join", rng.choice(nodes).address))
    made = {rng.choice(nodes).create(f"gossip {i}") for i in range(100)}
    wait_for(lambda: all(n.guids() == made for n in nodes), 60, "10 nodes to hold 100 gossips", 0.5)
    wait_for(lambda: all(len(n.peers()) == 9 for n in nodes), 30, "full membership", 0.5)


def test_kill_9_after_acknowledged_creates_loses_nothing(cluster: Cluster) -> None:
    a = cluster.start("a")
    made = {a.create(f"acknowledged {i}") for i in range(50)}
    a.stop(signal.SIGKILL)
    again = cluster.start("a", port=a.port)
    assert again.guids() == made


def test_stopped_node_turns_suspect_then_dead_then_alive_again(cluster: Cluster) -> None:
    a = cluster.start("a")
    b = cluster.start("b", "--join", a.address)

    def status_of_b() -> str:
        peers = a.peers()  # empty until b's --join has landed
        return str(peers[0]["status"]) if peers else "unknown"

    wait_for(lambda: status_of_b() == "alive", 10, "b alive on a")
    b.stop(signal.SIGKILL)  # a crash: a clean stop announces a leave (tests/test_leave_http.py)
    seen = set()

    def dead() -> bool:
        seen.add(status_of_b())
        return "dead" in seen

    wait_for(dead, 20, "b to turn dead on a", 0.05)
    assert "suspect" in seen
    cluster.start("b", port=b.port)
    wait_for(lambda: status_of_b() == "alive", 20, "b alive again on a")


def test_join_with_wrong_password_is_refused_with_a_clear_message(cluster: Cluster) -> None:
    a = cluster.start("a")
    intruder = cluster.start("x", "--join", a.address, password="not the password", expect_banner=False)
    code = intruder.proc.wait(30)
    err = intruder.proc.stderr.read() if intruder.proc.stderr else ""
    assert code == 1
    assert f"could not join {a.address}" in err and "password differs" in err
    assert "Traceback" not in err
    assert a.peers() == []


def test_join_to_nothing_fails_clearly(cluster: Cluster) -> None:
    port = free_port()
    node = cluster.start("a", "--join", f"127.0.0.1:{port}", expect_banner=False)
    assert node.proc.wait(30) == 1
    err = node.proc.stderr.read() if node.proc.stderr else ""
    assert f"could not join 127.0.0.1:{port}" in err and "Traceback" not in err


def test_wrong_client_password_gets_401_and_changes_nothing(cluster: Cluster) -> None:
    a = cluster.start("a")
    status, body = a.call("POST", "/v1/gossip", {"msg": "sneaky"}, password="guess")
    assert status == 401 and "wrong password" in body["error"]
    assert a.guids() == set()


def test_sigterm_stops_cleanly(cluster: Cluster) -> None:
    a = cluster.start("a")
    a.create("x")
    assert a.stop(signal.SIGTERM) == 0
    out = a.proc.stdout.read() if a.proc.stdout else ""
    assert "stopped; everything acknowledged is on disk" in out


def test_bad_flags_give_one_line_errors(cluster: Cluster, tmp_path: Path) -> None:
    bad = cluster.start("bad", "--timer", "-1", expect_banner=False)
    assert bad.proc.wait(30) == 2
    err = (bad.proc.stderr.read() if bad.proc.stderr else "").strip()
    assert err.startswith("error:") and "--timer must be a number of seconds" in err and len(err.splitlines()) == 1
    (tmp_path / "broken.json").write_text("{not json")
    broken = cluster.start("broken", expect_banner=False)
    assert broken.proc.wait(30) == 2
    err = (broken.proc.stderr.read() if broken.proc.stderr else "").strip()
    assert "broken.json" in err and "Traceback" not in err and len(err.splitlines()) == 1
    assert PASSWORD  # the fixture's password never shows in errors


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("GOSSIP_PASSWORD", None)
    return subprocess.run([sys.executable, "-m", "gossip", *args], capture_output=True, text=True,
                          timeout=60, cwd=cwd, env=env)


def test_seed_bootstrap_through_the_cli_alone(cluster: Cluster, tmp_path: Path) -> None:
    """init two nodes, start them, register B with A, create on A, read it on B: all by command."""
    ports = {"a": free_port(), "b": free_port()}
    for name, port in ports.items():
        done = _cli("init", "--config", f"{name}.json", "--name", name, "--network", "default",
                    "--password", PASSWORD, "--port", str(port), "--timer", "0.2", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    a = cluster.start("a", port=ports["a"])
    cluster.start("b", port=ports["b"])
    done = _cli("register", a.address, "--config", "b.json", cwd=tmp_path)
    assert done.returncode == 0 and "a" in done.stdout, done.stderr
    done = _cli("create", "the seed's first gossip", "--config", "a.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    guid = done.stdout.strip()

    def on_b() -> list[dict[str, object]]:
        done = _cli("status", "--json", "--config", "b.json", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        return list(json.loads(done.stdout))

    wait_for(lambda: any(r["guid"] == guid and r["complete"] for r in on_b()), 20, "B to hear it", 0.3)
    [row] = on_b()
    assert row["msg"] == "the seed's first gossip" and row["who_name"] == "a" and len(str(row["sha2"])) == 64
    peers = json.loads(_cli("network", "--json", "--config", "a.json", cwd=tmp_path).stdout)
    assert [(p["name"], p["status"], p["self"]) for p in peers] == [("a", "alive", True), ("b", "alive", False)]


def test_a_second_process_on_the_same_config_is_refused_at_once(cluster: Cluster) -> None:
    a = cluster.start("a")
    a.create("kept")
    # Same config, another port: it must not start a second node on the same store.
    second = cluster.start("a", port=free_port(), expect_banner=False)
    assert second.proc.wait(30) == 2
    err = (second.proc.stderr.read() if second.proc.stderr else "").strip()
    assert len(err.splitlines()) == 1 and err.startswith("error:"), err
    assert f"in use by process {a.proc.pid}" in err and "--config other.json" in err
    assert a.call("GET", "/v1/gossip")[0] == 200 and len(a.guids()) == 1  # the first one is untouched
    assert a.stop() == 0
    again = cluster.start("a", port=a.port)  # once it stopped, the store is free again
    assert len(again.guids()) == 1
