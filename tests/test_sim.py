"""The simulator: convergence at scale, loss, partitions, crashes, determinism, the CLI."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path
from types import SimpleNamespace

import pytest

import gossip.sim
from gossip.sim import SimResult, Simulator, _human_bytes, _Progress, main, push_pull_bound, simulate

SVG = "{http://www.w3.org/2000/svg}"


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


@pytest.mark.parametrize("seed", range(4))
def test_once_the_tree_settles_a_burst_spreads_by_push_within_the_round_it_was_created(seed: int) -> None:
    """After a few gossips have settled the tree, a burst reaches nearly every node by push
    before any round could fetch it; the few nodes the tree's prunes left out (about one in
    fifty, seeds 0-29) are the rounds' to reach."""
    sim = Simulator(nodes=100, seed=seed, fanout=2)
    for _ in range(3):  # cold floods, prunes and grafts
        sim.create(1)
        sim.run()
    before = sim.pushes
    sim.create(10)
    sim.step()
    assert sim.coverage() >= 0.95
    assert sim.pushes > before
    sim.run(max_rounds=10)
    assert sim.converged()


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


def test_cli_runs_with_no_arguments(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    assert capsys.readouterr().out.startswith("50 nodes, 10 gossips: converged in ")


def test_cli_words_singulars_and_byte_units(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--nodes", "1", "--messages", "1"]) == 0
    out = capsys.readouterr().out
    assert out == (
        "1 node, 1 gossip: converged in 0 rounds; 0 requests (0 pushes), 0 B (0 B per node per round),"
        " 0 network messages lost\n"
    )
    assert main(["--nodes", "30", "--messages", "4", "--loss", "0.2"]) == 0
    out = capsys.readouterr().out
    assert "30 nodes, 4 gossips: converged in " in out and " network messages lost\n" in out
    assert " kB (" in out and " bytes" not in out


@pytest.mark.parametrize(
    ("count", "shown"),
    [(0, "0 B"), (999, "999 B"), (1000, "1.0 kB"), (374_512, "375 kB"), (999_960, "1.0 MB"),
     (4_900_000, "4.9 MB"), (54_658_051, "54.7 MB"), (3 * 10**9, "3.0 GB")],
)
def test_byte_counts_are_shown_in_decimal_units(count: int, shown: str) -> None:
    assert _human_bytes(count) == shown


def test_coverage_is_one_fraction_per_round_rising_to_one() -> None:
    result = simulate(nodes=40, messages=6, seed=3, loss=0.2)
    assert result.converged and result.rounds > 1
    assert len(result.coverage) == result.rounds
    assert all(0 < c <= 1 for c in result.coverage)
    assert list(result.coverage) == sorted(result.coverage)  # nothing is lost without crashes
    assert result.coverage[-1] == 1.0 and result.coverage[-2] < 1.0


def test_cli_json_has_coverage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--nodes", "20", "--messages", "3", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert len(data["coverage"]) == data["rounds"] and data["coverage"][-1] == 1.0
    assert "dropped" in data


def test_progress_only_watches_the_run() -> None:
    seen: list[tuple[int, float]] = []
    watched = simulate(nodes=30, messages=4, seed=7, loss=0.1, progress=lambda r, c: seen.append((r, c)))
    assert watched == simulate(nodes=30, messages=4, seed=7, loss=0.1)
    assert seen == list(enumerate(watched.coverage, start=1))


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_line_on_a_terminal_after_one_second_rewritten_in_place() -> None:
    now = [100.0]
    stream = _Terminal()
    progress = _Progress(stream, lambda: now[0])
    progress(1, 0.5)
    assert stream.getvalue() == ""  # under a second: quiet
    now[0] = 101.5
    progress(12, 0.8391)
    progress(13, 1.0)
    progress(14, 0.999)  # floored, never a false 100%
    line12 = "round 12: 83% of (node, gossip) pairs held"
    assert stream.getvalue() == "\r" + line12 + "\rround 13: 100% of (node, gossip) pairs held" + "\rround 14: 99% of (node, gossip) pairs held "
    before = stream.getvalue()
    progress.clear()
    assert stream.getvalue() == before + "\r" + " " * len("round 14: 99% of (node, gossip) pairs held") + "\r"


def test_no_progress_when_stderr_is_not_a_terminal() -> None:
    now = [0.0]
    stream = io.StringIO()
    progress = _Progress(stream, lambda: now[0])
    now[0] = 60.0
    progress(1, 0.5)
    progress.clear()
    assert stream.getvalue() == ""


def test_cli_progress_on_a_slow_terminal_changes_no_output(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--nodes", "30", "--messages", "4", "--seed", "2", "--json"]
    assert main(argv) == 0
    quiet = capsys.readouterr()
    assert quiet.err == ""
    ticks = iter(range(0, 10**6, 2))  # every look at the clock: two seconds later
    monkeypatch.setattr(gossip.sim, "time", SimpleNamespace(monotonic=lambda: float(next(ticks))))
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(argv) == 0
    assert capsys.readouterr().out == quiet.out
    shown = terminal.getvalue()
    assert shown.startswith("\rround 1: ") and "% of (node, gossip) pairs held" in shown
    assert shown.endswith("\r") and "\n" not in shown  # erased before the result is printed


def test_cli_ctrl_c_exits_quietly_and_leaves_no_plot(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    def interrupted(**kwargs: object) -> SimResult:
        raise KeyboardInterrupt

    monkeypatch.setattr(gossip.sim, "simulate", interrupted)
    plot = tmp_path / "run.svg"
    assert main(["--plot", str(plot)]) == 130
    assert capsys.readouterr().err == "interrupted\n"
    assert not plot.exists()


@pytest.mark.parametrize(("nodes", "bound"), [(10, 3.93), (100, 6.72), (1000, 9.22)])
def test_push_pull_bound_matches_docs_performance(nodes: int, bound: float) -> None:
    value = push_pull_bound(nodes)
    assert value is not None and round(value, 2) == bound


def test_push_pull_bound_needs_two_nodes() -> None:
    assert push_pull_bound(1) is None


def _points(svg: ET.Element, element_id: str) -> list[tuple[float, float]]:
    line = svg.find(f".//{SVG}polyline[@id='{element_id}']")
    assert line is not None
    return [(float(x), float(y)) for x, y in (p.split(",") for p in line.get("points", "").split())]


def test_cli_plot_writes_coverage_against_the_bound_as_svg(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plot = tmp_path / "coverage.svg"
    assert main(["--nodes", "30", "--messages", "4", "--loss", "0.1", "--json", "--plot", str(plot)]) == 0
    data = json.loads(capsys.readouterr().out)  # stdout stays one JSON object
    svg = ET.parse(plot).getroot()
    assert svg.tag == f"{SVG}svg"
    title = svg.find(f"{SVG}title")
    assert title is not None and title.text is not None
    assert "N = 30 nodes" in title.text and "M = 4 gossips" in title.text
    texts = ["".join(t.itertext()) for t in svg.iter(f"{SVG}text")]
    assert "round" in texts and "(node, gossip) pairs held" in texts
    assert {"0%", "50%", "100%", "0", "1"} <= set(texts)
    assert "push-pull bound: 5.32 rounds" in texts  # log3 30 + ln ln 30 + 1
    labels = {t.text: float(t.get("y", "nan")) for t in svg.iter(f"{SVG}text")}
    at_0, at_100 = labels["0%"], labels["100%"]
    points = _points(svg, "coverage")
    assert len(points) == data["rounds"] + 1  # round 0, then one per round
    xs, ys = [x for x, _ in points], [y for _, y in points]
    assert [(at_0 - y) / (at_0 - at_100) for y in ys] == pytest.approx([1 / 30, *data["coverage"]], abs=1e-3)
    assert xs == sorted(xs)
    bound = svg.find(f".//{SVG}line[@id='bound']")
    assert bound is not None and bound.get("x1") == bound.get("x2")
    assert float(bound.get("x1", "nan")) == pytest.approx(xs[0] + 5.32 * (xs[1] - xs[0]), abs=1)


def test_cli_plot_path_in_the_text_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plot = tmp_path / "p.svg"
    assert main(["--nodes", "5", "--messages", "2", "--plot", str(plot)]) == 0
    assert capsys.readouterr().out.endswith(f"coverage per round: {plot}\n")
    ET.parse(plot)


def test_cli_plot_to_an_unwritable_path_is_an_error_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--nodes", "5000", "--messages", "1000", "--plot", str(tmp_path / "missing" / "p.svg")])
    assert exc.value.code == 2
    assert "error: --plot: cannot write" in capsys.readouterr().err


def test_floor_is_every_body_once_to_every_other_live_node() -> None:
    sim = Simulator(nodes=12, seed=3)
    sim.create(4)
    held = {g.guid: g for m in sim.members for g in m.node.gossips()}
    sizes = [held[guid].wire_size() for guid in sim.created]
    assert sim.floor() == sum(sizes) * 11 == sum(sim.body_sizes.values()) * 11
    result = simulate(nodes=12, messages=4, seed=3)
    assert result.floor == sim.floor() and result.over_floor == result.bytes / result.floor
    assert result.to_dict()["over_floor"] == round(result.over_floor, 3)
    assert simulate(nodes=1, messages=3).floor == 0


def test_active_view_options_reach_every_node(capsys: pytest.CaptureFixture[str]) -> None:
    result = simulate(nodes=60, messages=5, seed=1, active_view=4, full_view_limit=20)
    assert result.converged and (result.active_view, result.full_view_limit) == (4, 20)
    sim = Simulator(nodes=60, seed=1, active_view=4, full_view_limit=20)
    assert all(m.config.active_view == 4 and m.config.full_view_limit == 20 for m in sim.members)
    sim.run(max_rounds=3)
    assert all(m.node.uses_active_view() for m in sim.members)
    assert main(["--nodes", "40", "--messages", "2", "--active-view", "3", "--full-view-limit", "10", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["converged"] and (out["active_view"], out["full_view_limit"]) == (3, 10)


@pytest.mark.parametrize("argv", [["--active-view", "0"], ["--active-view", "65"], ["--full-view-limit", "0"]])
def test_cli_refuses_bad_view_sizes(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2 and "--active-view must be from 1 to 64" in capsys.readouterr().err


def test_a_lost_register_is_tried_again_so_lossy_joins_still_converge() -> None:
    # Every REGISTER lost once leaves its node (and those that registered with it) an island
    # unless it is tried again, as --retry-join does: membership then never converged.
    result = simulate(nodes=60, messages=4, seed=0, loss=0.3, bootstrap="register", max_rounds=150)
    assert result.converged and result.bootstrap_rounds < 150 and result.dropped > 0
    churn = simulate(nodes=60, messages=6, seed=11, loss=0.1, crash=0.2, crash_at=1, join=0.3, join_at=2, max_rounds=150)
    assert churn.converged and churn.joined == 18
