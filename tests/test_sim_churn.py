"""The simulator under churn (issue 11): nodes crash and new ones join through the protocol
mid-run, every live node converges, the same seed gives the same output, and the report
counts bytes per live node per round."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gossip.sim import Simulator, main, simulate

ROOT = Path(__file__).resolve().parents[1]


def _holds_every_gossip(sim: Simulator) -> bool:
    wanted = set(sim.created) - sim.lost
    return all(wanted <= {g.guid for g in m.node.gossips()} for m in sim.members if m.up)


def test_a_joining_node_starts_knowing_nobody_and_registers_with_a_live_member() -> None:
    sim = Simulator(nodes=30, seed=5)
    sim.crash(0)
    sim.create(3)
    (index,) = sim.join(1)
    newcomer = sim.members[index]
    assert index == 30 and newcomer.up and newcomer.config.node_name == "node-30"
    assert newcomer.node.peer_count() == 0 and newcomer.node.gossip_count() == 0
    assert newcomer.config.node_guid not in {m.config.node_guid for m in sim.members[:30]}
    sim.network.run_until(sim.now + sim.timer / 2)  # the REGISTER and its answer
    (registrar,) = [m for m in sim.members[:30] if m.node.peer_count() == 30]  # it learnt the newcomer
    assert registrar.up and newcomer.node.peer_count() == 1
    sim.run(max_rounds=30)
    assert _holds_every_gossip(sim)
    assert all(m.node.peer_count() >= 29 for m in sim.members if m.up)  # the others learnt it too


def test_join_needs_a_live_node() -> None:
    sim = Simulator(nodes=2, seed=1)
    sim.crash(0)
    sim.crash(1)
    with pytest.raises(ValueError, match="some node is up"):
        sim.join(1)


@pytest.mark.parametrize(
    ("bootstrap", "max_peers"),
    [("full", None), ("sample", 16), ("register", None)],
)
def test_every_live_node_converges_when_nodes_crash_and_others_join(bootstrap: str, max_peers: int | None) -> None:
    result = simulate(
        nodes=80, messages=12, seed=3, bootstrap=bootstrap, max_peers=max_peers, crash=0.2, crash_at=1, join=0.25,
        join_at=1, max_rounds=60,
    )
    assert result.converged and result.crashed == 16 and result.joined == 20
    assert result.coverage[-1] == 1.0
    assert result.rounds <= 20


def test_joiners_late_in_the_run_get_every_gossip_and_cost_extra_rounds() -> None:
    sim = Simulator(nodes=60, seed=8)
    sim.create(6)
    sim.run(max_rounds=30)
    assert sim.converged()
    joined = sim.join(15)
    assert not sim.converged()  # the run now waits for the newcomers too
    taken = sim.run(max_rounds=30)
    assert 1 <= taken <= 10 and _holds_every_gossip(sim)
    assert all(sim.members[i].node.gossip_count() == 6 for i in joined)


def test_report_counts_live_nodes_per_round() -> None:
    nodes, at = 50, 2
    result = simulate(nodes=nodes, messages=5, seed=2, crash=0.2, crash_at=at, join=0.4, join_at=at)
    assert result.converged and result.rounds > at
    live_after = nodes - result.crashed + result.joined
    assert result.node_rounds == nodes * at + live_after * (result.rounds - at)
    data = result.to_dict()
    assert data["joined"] == 20 and data["crashed"] == 10 and data["node_rounds"] == result.node_rounds
    assert data["bytes_per_node_round"] == round(result.bytes / result.node_rounds, 1)
    quiet = simulate(nodes=nodes, messages=5, seed=2)
    assert quiet.node_rounds == nodes * quiet.rounds and quiet.joined == 0
    assert quiet.bytes_per_node_round == quiet.bytes / (nodes * quiet.rounds)


def test_cli_human_output_names_the_churn_and_the_bytes_per_node_per_round(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--nodes", "40", "--messages", "4", "--crash", "0.1", "--join", "0.5", "--join-at", "1"]) == 0
    out = capsys.readouterr().out
    # The crash strikes after round 2, a tenth of the 60 nodes live by then (joined ones too).
    assert "after 6 nodes crashed (" in out and " and 20 nodes joined; " in out
    assert " per node per round, " in out and "x the floor), " in out


@pytest.mark.parametrize(
    "argv", [["--join", "1.5"], ["--join", "-0.1"], ["--join-at", "0"]]
)
def test_cli_refuses_a_bad_join(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--nodes", "5", *argv])
    assert exc.value.code == 2
    assert "--join must be a fraction" in capsys.readouterr().err


def _run(args: list[str], hashseed: str) -> subprocess.CompletedProcess[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONHASHSEED": hashseed}
    return subprocess.run(
        [sys.executable, "-m", "gossip.sim", *args], capture_output=True, timeout=120, check=False, cwd=ROOT, env=env
    )


def test_same_seed_same_output_with_churn_and_loss_whatever_the_hash_seed() -> None:
    args = ["--nodes", "60", "--messages", "6", "--seed", "11", "--loss", "0.1", "--crash", "0.2", "--crash-at", "1",
            "--join", "0.3", "--join-at", "2"]
    first, second = _run([*args, "--json"], "1"), _run([*args, "--json"], "2")
    assert first.returncode == 0 and first.stdout == second.stdout and first.stderr == b""
    data = json.loads(first.stdout)
    assert data["joined"] == 18 and data["crashed"] == 12 and data["converged"] is True
    human = _run(args, "3")
    assert human.stdout == _run(args, "4").stdout
    other = _run([*args[:4], "12", *args[6:], "--json"], "1")
    assert other.stdout != first.stdout


def test_stats_go_to_stderr_with_peak_rss_and_leave_stdout_alone() -> None:
    args = ["--nodes", "30", "--messages", "3", "--join", "0.2"]
    plain, stats = _run(args, "0"), _run([*args, "--stats"], "0")
    assert plain.stdout == stats.stdout and plain.stderr == b""
    assert b"peak RSS " in stats.stderr and b" MiB" in stats.stderr
