"""The simulator: convergence at scale, loss, partitions, crashes, determinism, the CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from gossip.sim import Simulator, main, simulate


def test_thousand_nodes_converge() -> None:
    result = simulate(nodes=1000, messages=10, seed=1)
    assert result.converged
    assert result.rounds <= 14  # 1.5 * (log3(1000) + ln ln 1000 + 1) = 13.8
    assert result.requests > 0 and result.bytes > 0


def test_push_spreads_in_fewer_rounds_than_anti_entropy_alone() -> None:
    pushed = simulate(nodes=200, messages=20, seed=2, fanout=2)
    rounds_only = simulate(nodes=200, messages=20, seed=2, fanout=2, push=False)
    assert pushed.converged and rounds_only.converged
    assert pushed.pushes > 0 and rounds_only.pushes == 0
    assert pushed.rounds < rounds_only.rounds


def test_once_the_tree_settles_a_gossip_spreads_within_the_round_it_was_created() -> None:
    sim = Simulator(nodes=100, seed=6, fanout=2)
    for _ in range(3):  # cold floods, prunes and grafts
        sim.create(1)
        sim.run()
    before = sim.pushes
    sim.create(10)
    sim.step()
    assert sim.converged()  # by push, before any node's round could fetch it
    assert sim.pushes > before


def test_converges_under_twenty_percent_loss() -> None:
    result = simulate(nodes=100, messages=20, seed=3, loss=0.2)
    assert result.converged and result.dropped > 0


def test_same_seed_same_result_and_different_seed_differs() -> None:
    a = simulate(nodes=60, messages=5, seed=7, loss=0.1)
    b = simulate(nodes=60, messages=5, seed=7, loss=0.1)
    c = simulate(nodes=60, messages=5, seed=8, loss=0.1)
    assert a == b
    assert (a.requests, a.bytes) != (c.requests, c.bytes)


def test_register_bootstrap_builds_full_membership() -> None:
    sim = Simulator(nodes=40, seed=2, bootstrap_mode="register")
    assert not sim.membership_converged()
    rounds = sim.bootstrap()
    assert sim.membership_converged() and 0 < rounds < 20
    sim.create(5)
    assert sim.run() < 20 and sim.converged()


def test_partition_heals() -> None:
    sim = Simulator(nodes=30, seed=4)
    left, right = range(0, 15), range(15, 30)
    sim.partition(left, right)
    made = sim.create(6)
    expected = {i: {g for g in made if (sim.created[g] in left) == (i in left)} for i in range(30)}

    def held(i: int) -> set[str]:
        return {g.guid for g in sim.members[i].node.gossips()}

    for _ in range(30):  # each side converges on its own gossip, and only on it
        sim.step()
        if all(held(i) == expected[i] for i in range(30)):
            break
    assert all(held(i) == expected[i] for i in range(30))
    assert not sim.converged()
    sim.heal()
    assert sim.run(max_rounds=30) <= 30 and sim.converged()


def test_crashed_node_restarts_from_its_storage() -> None:
    sim = Simulator(nodes=20, seed=5)
    sim.create(5)
    sim.run()
    sim.crash(3)
    before = {g.guid for g in sim.members[3].storage.load().gossips["sim"]}
    assert len(before) == 5
    more = sim.create(5)
    for _ in range(5):
        sim.step()
    assert sim.converged()  # the live nodes do not wait for the dead one
    sim.restart(3)
    assert {g.guid for g in sim.members[3].node.gossips()} == before
    sim.run(max_rounds=30)
    assert set(more) <= {g.guid for g in sim.members[3].node.gossips()}


def test_cli_json_output_is_byte_for_byte_reproducible() -> None:
    cmd = [sys.executable, "-m", "gossip.sim", "--nodes", "50", "--messages", "5", "--seed", "9", "--json"]
    runs = [subprocess.run(cmd, capture_output=True, timeout=120, check=True) for _ in range(2)]
    assert runs[0].stdout == runs[1].stdout
    data = json.loads(runs[0].stdout)
    assert {"nodes", "messages", "rounds", "converged", "requests", "bytes", "push", "pushes"} <= set(data)
    assert data["nodes"] == 50 and data["messages"] == 5 and data["converged"] is True
    assert data["push"] is True and data["pushes"] > 0
    assert runs[0].stderr == b""


def test_cli_human_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--nodes", "5", "--messages", "2"]) == 0
    out = capsys.readouterr().out
    assert "5 nodes, 2 gossips: converged in" in out and " pushes)" in out


def test_cli_no_push_measures_anti_entropy_alone(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--nodes", "20", "--messages", "3", "--no-push", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["push"] is False and data["pushes"] == 0 and data["converged"] is True


@pytest.mark.parametrize("args", [["--nodes", "0", "--messages", "1"], ["--nodes", "3", "--messages", "1", "--loss", "1.5"]])
def test_cli_rejects_bad_arguments(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(args)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err
