"""--join repeated, hosts with several addresses, --retry-join, and --ip/--listen (issue 13 item 4).

Only loopback is ever resolved or contacted: a host name with several addresses is a resolver
passed in-process, never the system's.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import socket
import time
from pathlib import Path

import pytest

from gossip.errors import ConfigError, LocalProtocolError
from gossip.events import Event, RegisterFailed
from gossip.http import NodeRunner
from gossip.http.command import listen_address
from gossip.http.join import (
    JoinTarget,
    join_network,
    parse_join_target,
    resolve_all,
    retry_delay,
)

from .nodeproc import Cluster, free_port, wait_for
from .test_runner import make_runner, runners  # noqa: F401 -- runners is a fixture


# ---------------------------------------------------------------------- pure parts
def test_retry_delay_doubles_to_the_cap_with_jitter_of_at_most_half() -> None:
    rng = random.Random(7)
    for n, step in [(1, 1.0), (2, 2.0), (3, 4.0), (5, 16.0), (6, 30.0), (50, 30.0), (10_000, 30.0)]:
        delays = [retry_delay(n, rng) for _ in range(200)]
        assert all(step / 2 <= d <= step for d in delays), (n, min(delays), max(delays))
        assert max(delays) - min(delays) > step / 4  # really jittered
    assert retry_delay(3, random.Random(1), first=0.1, cap=0.25) <= 0.25


def test_join_targets_are_checked_for_form_but_not_resolved() -> None:
    assert parse_join_target(" gossip.default.svc:8470 ") == JoinTarget(text="gossip.default.svc:8470", host="gossip.default.svc", port=8470)
    assert parse_join_target("[::1]:9").host == "::1"
    for bad in ("nowhere", "h:0", "h:99999", ":80", "h:²"):
        with pytest.raises(LocalProtocolError, match="HOST:PORT"):
            parse_join_target(bad)


def test_resolve_all_gives_each_address_once() -> None:
    assert resolve_all("127.0.0.1", 9) == [("127.0.0.1", 9)]
    with pytest.raises(OSError):
        resolve_all("no-such-host.invalid", 9)


def test_listen_takes_an_ip_or_a_host_and_port() -> None:
    assert listen_address("127.0.0.1", 8470) == ("127.0.0.1", 8470)
    assert listen_address("[::1]", 1) == ("::1", 1)
    assert listen_address("::1", 1) == ("::1", 1)
    assert listen_address("127.0.0.2:9000", 8470) == ("127.0.0.2", 9000)
    with pytest.raises(ConfigError, match="--listen 'nowhere': give an IP address or HOST:PORT"):
        listen_address("nowhere", 8470)


# ---------------------------------------------------------------------- in-process, real HTTP on loopback
def started_pair(tmp_path: Path, runners: list[NodeRunner]) -> tuple[NodeRunner, NodeRunner]:
    """Two running nodes, a and b, that know nothing of each other yet (stopped by the fixture)."""
    a, b = make_runner(tmp_path, "a"), make_runner(tmp_path, "b")
    runners += [a, b]
    a.start()
    b.start()
    return a, b


def test_a_host_with_several_addresses_is_tried_address_by_address(
    tmp_path: Path, runners: list[NodeRunner], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = started_pair(tmp_path, runners)
    port = a.config.port
    asked: list[tuple[str, int]] = []

    def resolve(host: str, p: int) -> list[tuple[str, int]]:
        asked.append((host, p))
        if host == "seeds.test":  # nothing listens on 127.0.0.2: connection refused, then a
            return [("127.0.0.2", p), ("127.0.0.1", p)]
        raise socket.gaierror(f"{host} is not a test name")

    targets = [parse_join_target(f"gone.test:{port}"), parse_join_target(f"seeds.test:{port}")]
    with caplog.at_level(logging.INFO, logger="gossip.http.join"):
        outcome = b.call(join_network(targets, lambda ip, p: b.register_async(ip, p), network="default", retry=False, resolve=resolve))
    assert asked == [("gone.test", port), ("seeds.test", port)]
    assert [f.address for f in outcome.failures] == [None, ("127.0.0.2", port)]
    assert str(outcome.failures[0]) == f"gone.test:{port}: cannot resolve 'gone.test': gone.test is not a test name"
    assert str(outcome.failures[1]).startswith(f"seeds.test:{port} (127.0.0.2:{port}): ")
    [line] = [r.getMessage() for r in caplog.records if r.name == "gossip.http.join"]  # the one that worked, and what failed before
    assert line.startswith(f"joined network default: registered with a at seeds.test:{port} (127.0.0.1:{port}) (round 1); before it, gone.test:")
    assert outcome.registered is not None and outcome.registered.peer.peer.name == "a"
    assert outcome.address == ("127.0.0.1", port) and outcome.rounds == 1
    assert outcome.describe() == f"registered with a at seeds.test:{port} (127.0.0.1:{port})"
    wait_for(lambda: [v.peer.name for v in a.node.network_status("default")] == ["b"], 10, "a to know b")


def test_without_retry_one_round_reports_every_failure(tmp_path: Path, runners: list[NodeRunner]) -> None:
    b = make_runner(tmp_path, "b")
    runners.append(b)
    b.start()
    dead = free_port()
    targets = [parse_join_target(f"127.0.0.1:{dead}"), parse_join_target(f"127.0.0.1:{b.config.port}")]
    outcome = b.call(join_network(targets, lambda ip, p: b.register_async(ip, p), network="default", retry=False))
    assert outcome.registered is None and outcome.rounds == 1
    assert [f.address for f in outcome.failures] == [("127.0.0.1", dead), ("127.0.0.1", b.config.port)]
    text = outcome.describe()
    assert text.startswith(f"127.0.0.1:{dead}: ") and f"; 127.0.0.1:{b.config.port}: a node cannot register with itself" in text


def test_retry_logs_each_failed_round_then_joins(
    tmp_path: Path, runners: list[NodeRunner], caplog: pytest.LogCaptureFixture
) -> None:
    a, b = started_pair(tmp_path, runners)
    calls: list[float] = []

    async def register(ip: str, port: int) -> Event:
        calls.append(time.monotonic())
        if len(calls) <= 3:  # the first three rounds: a refuses (as a wrong password would)
            return RegisterFailed(request_id=0, network="default", address=(ip, port), reason="refused", status=403)
        return await b.register_async(ip, port)

    target = parse_join_target(f"127.0.0.1:{a.config.port}")
    with caplog.at_level(logging.WARNING, logger="gossip.http.join"):
        outcome = b.call(
            join_network([target], register, network="default", retry=True, rng=random.Random(3), first=0.05, cap=0.1),
            timeout=30,
        )
    assert outcome.registered is not None and outcome.rounds == 4
    lines = [r.getMessage() for r in caplog.records if r.name == "gossip.http.join"]
    assert len(lines) == 3  # one line a failed round, none for the round that worked
    for n, line in enumerate(lines, 1):
        assert line.startswith(f"could not join network default yet (round {n}): 127.0.0.1:{a.config.port}: ")
        assert "password differs" in line and re.search(r"; next try in 0\.\d s$", line), line
    waits = [later - earlier for earlier, later in zip(calls, calls[1:])]
    assert 0.025 <= waits[0] and 0.05 <= waits[2] < 5  # doubling from first, capped


def test_a_stop_while_retrying_is_prompt(tmp_path: Path, runners: list[NodeRunner]) -> None:
    b = make_runner(tmp_path, "b")
    runners.append(b)
    b.start()
    dead = free_port()
    target = parse_join_target(f"127.0.0.1:{dead}")

    future = asyncio.run_coroutine_threadsafe(
        join_network([target], lambda ip, p: b.register_async(ip, p), network="default", retry=True, first=60, cap=60), b.loop
    )
    wait_for(lambda: b.node.stats.get("failed.register", 0) >= 1, 10, "the first round to fail")
    assert not future.done()  # waiting for the next round, a minute away
    started = time.monotonic()
    future.cancel()
    b.stop()
    assert time.monotonic() - started < 3


# ---------------------------------------------------------------------- node processes
def _stderr(node_proc: object) -> str:
    proc = getattr(node_proc, "proc")
    return proc.stderr.read() if proc.stderr else ""


def test_repeated_join_skips_a_target_that_is_down(cluster: Cluster) -> None:
    a = cluster.start("a", "--name", "a")
    dead = free_port()
    b = cluster.start("b", "--name", "b", "--join", f"127.0.0.1:{dead}", "--join", a.address)
    assert b.proc.stdout is not None
    assert b.proc.stdout.readline().strip() == f"joined network default: registered with a at {a.address}"
    wait_for(lambda: [p["name"] for p in a.peers()] == ["b"], 10, "a to list b")
    guid = a.create("through the second target")
    wait_for(lambda: guid in b.guids(), 20, "b to hear it")


def test_without_retry_a_join_that_finds_nobody_exits_1_naming_every_target(cluster: Cluster) -> None:
    one, two = free_port(), free_port()
    node = cluster.start("a", "--name", "a", "--join", f"127.0.0.1:{one}", "--join", f"127.0.0.1:{two}", expect_banner=False)
    assert node.proc.wait(30) == 1
    err = _stderr(node)
    [line] = [line for line in err.splitlines() if line.startswith("error:")]
    assert line.startswith(f"error: could not join 127.0.0.1:{one}: ") and f"; 127.0.0.1:{two}: " in line
    assert "Traceback" not in err


def test_retry_join_needs_a_join(cluster: Cluster) -> None:
    node = cluster.start("a", "--name", "a", "--retry-join", expect_banner=False)
    assert node.proc.wait(30) == 2
    assert _stderr(node).strip() == "error: --retry-join needs at least one --join HOST:PORT"


def test_retry_join_lets_nodes_start_in_any_order(cluster: Cluster) -> None:
    """B starts first and retries A's address; A starts later; they converge."""
    a_port = free_port()
    b = cluster.start("b", "--name", "b", "--join", f"127.0.0.1:{a_port}", "--retry-join")  # the banner and /healthz: it serves
    made_on_b = b.create("made while alone")
    time.sleep(1.5)  # at least one failed round
    a = cluster.start("a", "--name", "a", port=a_port)
    made_on_a = a.create("made on a")
    wait_for(lambda: [p["name"] for p in a.peers()] == ["b"], 40, "b's retry to reach a")
    wait_for(lambda: {made_on_a, made_on_b} <= a.guids() and {made_on_a, made_on_b} <= b.guids(), 20, "both sets to converge")
    assert b.proc.stdout is not None
    assert b.proc.stdout.readline().strip() == f"joined network default: registered with a at 127.0.0.1:{a_port}"
    assert b.stop() == 0
    err = _stderr(b)
    assert f"could not join network default yet (round 1): 127.0.0.1:{a_port}: " in err
    assert "next try in" in err and "Traceback" not in err


def test_sigterm_while_retrying_stops_at_once_even_mid_attempt(cluster: Cluster) -> None:
    """The target accepts connections and never answers: the attempt hangs, the stop does not."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        port = silent.getsockname()[1]
        b = cluster.start("b", "--name", "b", "--join", f"127.0.0.1:{port}", "--retry-join")
        time.sleep(0.5)  # the REGISTER is out, waiting for an answer that never comes
        started = time.monotonic()
        assert b.stop() == 0
        took = time.monotonic() - started
    assert took < 5, took
    out = b.proc.stdout.read() if b.proc.stdout else ""
    assert "stopped; everything acknowledged is on disk" in out and "joined" not in out


def test_ip_is_advertised_and_listen_is_bound(cluster: Cluster) -> None:
    """--ip 127.0.0.2 --listen 127.0.0.1: bound on .1 only, told to peers as .2."""
    a = cluster.start("a", "--name", "a", "--ip", "127.0.0.2", "--listen", "127.0.0.1")
    banner = "\n".join(a.banner)
    assert f"Serving HTTP on 127.0.0.1 port {a.port} " in banner
    assert f"peers are told 127.0.0.2:{a.port} (--ip, --port)" in banner
    assert f"--join 127.0.0.2:{a.port}" in banner
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.2", a.port), timeout=5).close()
    status, rows = a.call("GET", "/v1/peers")
    assert status == 200 and (rows[0]["ip"], rows[0]["port"]) == ("127.0.0.2", a.port)
    b = cluster.start("b", "--name", "b", "--join", a.address)  # through the bound address...
    wait_for(lambda: [p["name"] for p in a.peers()] == ["b"], 10, "a to list b")
    # b takes a's answer to its REGISTER on its own loop: a may list b a moment before b lists a.
    wait_for(lambda: len(b.peers()) == 1, 10, "b to list a")
    [row] = b.peers()
    assert (row["name"], row["ip"], row["port"]) == ("a", "127.0.0.2", a.port)  # ...b keeps the advertised one


def test_listen_ip_with_port_0_advertises_the_port_it_got(cluster: Cluster) -> None:
    node = cluster.start("a", "--name", "a", "--ip", "127.0.0.2", "--listen", "127.0.0.1", "--port", "0", expect_banner=False)
    assert node.proc.stdout is not None
    banner: list[str] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and not any("--join" in line for line in banner):
        line = node.proc.stdout.readline()
        assert line, f"the node exited: {_stderr(node)}"
        banner.append(line)
    [serving] = [line for line in banner if line.startswith("Serving HTTP on 127.0.0.1 port ")]
    port = int(serving.split(" port ")[1].split()[0])
    assert port != node.port and f"peers are told 127.0.0.2:{port} (--ip, --port)" in "".join(banner)
    node.port = port  # for /v1/peers: the bound address
    wait_for(lambda: Cluster._healthy(node), 10, "the node to answer")
    status, rows = node.call("GET", "/v1/peers")
    assert status == 200 and (rows[0]["ip"], rows[0]["port"]) == ("127.0.0.2", port)
    assert node.stop() == 0


def test_port_0_with_a_listen_port_is_refused(cluster: Cluster) -> None:
    """Which port would peers be told? Neither is right: one line, exit 2."""
    node = cluster.start("a", "--listen", f"127.0.0.1:{free_port()}", "--port", "0", expect_banner=False)
    assert node.proc.wait(30) == 2
    assert _stderr(node).strip() == (
        "error: --port 0 picks a free port to listen on and advertise: give --listen an IP, without a port"
    )
