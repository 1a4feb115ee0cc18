"""The ``gossip`` command line, run in-process against real nodes on 127.0.0.1."""

from __future__ import annotations

import functools
import json
import os
import stat
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from gossip.auth import derive_key
from gossip.cli import format_table, gossip_table, main
from gossip.configfile import load_config, save_config
from gossip.http import NodeRunner, data_dir_for
from gossip.model import Network, NodeConfig, compute_sha2
from gossip.storage.jsonfile import JsonFileStorage

from .nodeproc import free_port

ROOT = Path(__file__).resolve().parent.parent


@functools.lru_cache(maxsize=None)
def key(network: str, password: str) -> bytes:
    return derive_key(network, password)  # 0.3 s each: derive every key once


@dataclass
class Node:
    config: Path
    runner: NodeRunner | None

    @property
    def port(self) -> int:
        return load_config(self.config).port

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"


@pytest.fixture(autouse=True)
def _no_password_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOSSIP_PASSWORD", raising=False)


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[Callable[..., Node]]:
    """``nodes(name, password=, network=, start=)``: a node config, and its runner if started."""
    runners: list[NodeRunner] = []

    def make(name: str, *, password: str = "pw", network: str = "default", start: bool = True) -> Node:
        config = NodeConfig(
            node_guid=str(uuid.uuid4()),
            node_name=name,
            networks=(Network(name=network, key=key(network, password)),),
            ip="127.0.0.1",
            port=free_port(),
            gossip_timer=0.2,
        )
        path = tmp_path / f"{name}.json"
        save_config(path, config)
        runner = None
        if start:
            runner = NodeRunner(config, JsonFileStorage(data_dir_for(path)))
            runners.append(runner)
            runner.start()
        return Node(path, runner)

    try:
        yield make
    finally:
        for runner in runners:
            runner.stop()


def run(capsys: pytest.CaptureFixture[str], *argv: Any) -> tuple[int, str, str]:
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def one_error_line(err: str) -> str:
    assert err.endswith("\n") and err.count("\n") == 1, err
    assert err.startswith("gossip: error: "), err
    assert "Traceback" not in err
    return err


def gossip_rows(capsys: pytest.CaptureFixture[str], config: Path) -> list[dict[str, Any]]:
    status, out, err = run(capsys, "status", "--json", "--config", config)
    assert status == 0, err
    rows = json.loads(out)
    assert isinstance(rows, list)
    return rows


def wait_for(check: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout} s for {what}")
        time.sleep(0.1)


# ---------------------------------------------------------------------- init
def test_init_writes_an_owner_only_config_without_the_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "conf" / "server.json"
    status, out, err = run(
        capsys, "init", "--config", path, "--name", "alpha", "--network", "net1",
        "--password", "s3cret-pw", "--port", "9001", "--timer", "0.5", "--max-peers", "4",
    )
    assert (status, err) == (0, "")
    assert str(path) in out and f"python -m gossip.http --config {path}" in out
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    assert "s3cret-pw" not in text and "password" not in text
    config = load_config(path)
    uuid.UUID(config.node_guid, version=4)
    assert (config.node_name, config.port, config.gossip_timer, config.gossip_max_peer_count) == ("alpha", 9001, 0.5, 4)
    assert config.networks == (Network(name="net1", key=key("net1", "s3cret-pw")),)

    # It never replaces a node's identity by accident...
    status, out, err = run(capsys, "init", "--config", path, "--network", "net1", "--password", "x")
    assert status == 1 and out == ""
    assert "already exists" in one_error_line(err) and "--force" in err
    assert path.read_text() == text
    # ...only when told to.
    status, _, err = run(capsys, "init", "--config", path, "--network", "net1", "--password", "s3cret-pw", "--force")
    assert (status, err) == (0, "")
    assert load_config(path).node_guid != config.node_guid


def test_init_takes_the_password_from_the_environment_or_a_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    status, _, err = run(capsys, "init", "--config", tmp_path / "a.json")
    assert status == 2 and "password" in one_error_line(err)
    assert not (tmp_path / "a.json").exists()

    monkeypatch.setenv("GOSSIP_PASSWORD", "pw")
    assert run(capsys, "init", "--config", tmp_path / "a.json")[0] == 0
    assert load_config(tmp_path / "a.json").networks[0].key == key("default", "pw")
    monkeypatch.delenv("GOSSIP_PASSWORD")

    (tmp_path / "pw.txt").write_text("pw\n")
    assert run(capsys, "init", "--config", tmp_path / "b.json", "--password-file", tmp_path / "pw.txt")[0] == 0
    assert load_config(tmp_path / "b.json").networks[0].key == key("default", "pw")


def test_init_refuses_bad_options_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for bad in (["--network", "no spaces"], ["--port", "0"], ["--ip", "nowhere"], ["--timer", "-1"]):
        status, _, err = run(capsys, "init", "--config", tmp_path / "a.json", "--password", "pw", *bad)
        assert status == 2, bad
        one_error_line(err)
    assert not (tmp_path / "a.json").exists()


# ---------------------------------------------------------------------- create and status
def test_create_prints_the_guid_and_status_shows_the_complete_gossip(
    nodes: Callable[..., Node], capsys: pytest.CaptureFixture[str]
) -> None:
    a = nodes("a")
    status, out, err = run(capsys, "create", "hello\nworld — ünïcode", "--config", a.config)
    assert (status, err) == (0, "")
    guid = out.strip()
    assert out == guid + "\n"
    uuid.UUID(guid, version=4)

    [row] = gossip_rows(capsys, a.config)
    assert {"guid", "date_time", "who_name", "msg", "sha2", "complete"} <= set(row)
    assert (row["guid"], row["who_name"], row["msg"], row["complete"]) == (guid, "a", "hello\nworld — ünïcode", True)
    assert row["sha2"] == compute_sha2(guid=guid, date_time=row["date_time"], who_name="a", msg=row["msg"])

    status, out, err = run(capsys, "status", "--config", a.config)
    assert (status, err) == (0, "")
    header, line = out.splitlines()
    assert header.split() == ["WHEN", "(UTC)", "WHO", "MSG", "SHA2", "GUID"]
    assert "hello⏎world — ünïcode" in line and row["sha2"][:12] in line and line.endswith(guid)
    assert line.startswith(row["date_time"][:10] + " " + row["date_time"][11:19])
    assert header.index("GUID") == line.index(guid)  # aligned


def test_empty_message_is_refused(nodes: Callable[..., Node], capsys: pytest.CaptureFixture[str]) -> None:
    a = nodes("a")
    for msg in ("", "  \n "):
        status, out, err = run(capsys, "create", msg, "--config", a.config)
        assert status == 2 and out == ""
        assert "empty" in one_error_line(err)
    assert gossip_rows(capsys, a.config) == []


def test_create_reads_the_message_from_stdin(
    nodes: Callable[..., Node], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import io

    a = nodes("a")
    monkeypatch.setattr(sys, "stdin", io.StringIO("from stdin\n"))
    status, out, _ = run(capsys, "create", "-", "--config", a.config)
    assert status == 0
    [row] = gossip_rows(capsys, a.config)
    assert (row["guid"], row["msg"]) == (out.strip(), "from stdin")


# ---------------------------------------------------------------------- the seed's bootstrap
def test_two_nodes_join_and_gossip_through_the_cli_alone(
    nodes: Callable[..., Node], capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = nodes("a"), nodes("b")
    status, out, err = run(capsys, "register", a.address, "--config", b.config)
    assert (status, err) == (0, "")
    assert out.count("\n") == 1 and "registered with a" in out and a.address in out

    status, out, _ = run(capsys, "create", "news from a", "--config", a.config)
    assert status == 0
    guid = out.strip()

    def b_has_it() -> bool:
        return any(r["guid"] == guid and r["complete"] for r in gossip_rows(capsys, b.config))

    wait_for(b_has_it, "b to hear a's gossip")
    [row] = gossip_rows(capsys, b.config)
    assert (row["msg"], row["who_name"]) == ("news from a", "a")

    status, out, _ = run(capsys, "network", "--json", "--config", b.config)
    assert status == 0
    me, peer = json.loads(out)  # the node itself first (CONTRACT: self, in_sync)
    assert (me["self"], me["name"], me["guid"], me["in_sync"]) == (True, "b", load_config(b.config).node_guid, True)
    assert {"guid", "name", "ip", "port", "network_name", "status", "in_sync", "self"} <= set(peer)
    assert peer["self"] is False and peer["in_sync"] in (True, False, None)
    assert (me["active"], peer["active"]) == (False, False)  # two nodes: far below full_view_limit
    from gossip import Client

    with Client.from_config(b.config) as client:
        status, info, _ = client.request("GET", "/v1/node")
    assert status == 200
    assert (info["network_size"], info["uses_active_view"]) == (2, False)  # the nodes it knows
    assert (peer["in_sync_at"] is None) == (peer["in_sync"] is None)
    assert (peer["name"], peer["ip"], peer["port"], peer["network_name"], peer["status"]) == (
        "a", "127.0.0.1", a.port, "default", "alive",
    )
    assert peer["guid"] == load_config(a.config).node_guid

    status, out, _ = run(capsys, "network", "--config", a.config)
    assert status == 0
    header, own, line = out.splitlines()
    assert header.split() == ["NAME", "STATUS", "IN", "SYNC", "ADDRESS", "LAST", "SEEN", "GUID"]
    assert own.split()[:2] == ["a", "self"]
    assert line.split()[:2] == ["b", "alive"] and line.split()[3] == b.address
    assert all(not text.endswith(" ") for text in out.splitlines())


def test_flags_instead_of_a_config(
    nodes: Callable[..., Node], capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = nodes("a")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # no server.json here
    status, out, err = run(capsys, "create", "by flags", "--node", a.url, "--network", "default", "--password", "pw")
    assert (status, err) == (0, "")
    monkeypatch.setenv("GOSSIP_PASSWORD", "pw")
    status, out2, err = run(capsys, "status", "--json", "--node", a.address, "--network", "default")
    assert (status, err) == (0, "")
    assert [r["guid"] for r in json.loads(out2)] == [out.strip()]


# ---------------------------------------------------------------------- failures: one line, non-zero
def test_wrong_password_is_refused_and_creates_nothing(
    nodes: Callable[..., Node], capsys: pytest.CaptureFixture[str]
) -> None:
    a = nodes("a")
    status, out, err = run(capsys, "create", "x", "--node", a.url, "--network", "default", "--password", "wrong")
    assert status == 1 and out == ""
    assert "password" in one_error_line(err) and "network default" in err
    status, _, err = run(capsys, "status", "--node", a.url, "--network", "other", "--password", "pw")
    assert status == 1 and "password" in one_error_line(err)
    assert gossip_rows(capsys, a.config) == []


def test_unreachable_node(nodes: Callable[..., Node], capsys: pytest.CaptureFixture[str]) -> None:
    down = nodes("down", start=False)
    status, out, err = run(capsys, "status", "--config", down.config)
    assert status == 1 and out == ""
    assert f"cannot reach the node at {down.url}: connection refused" in one_error_line(err)
    assert f"python -m gossip.http --config {down.config}" in err
    status, _, err = run(capsys, "network", "--config", down.config, "--node", down.url)
    assert status == 1 and "cannot reach" in one_error_line(err)


def test_register_with_nothing_listening(nodes: Callable[..., Node], capsys: pytest.CaptureFixture[str]) -> None:
    a = nodes("a")
    nowhere = f"127.0.0.1:{free_port()}"
    status, out, err = run(capsys, "register", nowhere, "--config", a.config)
    assert status == 1 and out == ""
    # The node's 502 (code peer_unreachable) names the other node and why; no address twice.
    assert one_error_line(err) == (
        f"gossip: error: cannot register: {nowhere} did not answer (connection refused);"
        " is a gossip node running there?\n"
    )


def test_register_with_a_node_of_another_password(
    nodes: Callable[..., Node], capsys: pytest.CaptureFixture[str]
) -> None:
    a, other = nodes("a"), nodes("other", password="not-pw")
    status, out, err = run(capsys, "register", other.address, "--config", a.config)
    assert status == 1 and out == ""
    assert f"cannot register: {other.address} refused the registration" in one_error_line(err)
    assert err.rstrip().endswith("both nodes need the same network and password")
    status, out, _ = run(capsys, "network", "--json", "--config", a.config)
    assert [row["self"] for row in json.loads(out)] == [True]  # the node itself, no peer


def test_missing_config(tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    status, out, err = run(capsys, "status")
    assert status == 1 and out == ""
    assert "no config at ./server.json" in one_error_line(err) and "gossip init" in err
    status, _, err = run(capsys, "create", "x", "--config", tmp_path / "missing.json")
    assert status == 1 and f"no config at {tmp_path / 'missing.json'}" in one_error_line(err)
    # --node alone is not enough without a config: the credentials are missing.
    status, _, err = run(capsys, "status", "--node", "http://127.0.0.1:1")
    assert status == 1 and "--password" in one_error_line(err)


def test_corrupt_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "server.json"
    path.write_text('{"node_guid": "x",\n')
    status, out, err = run(capsys, "network", "--config", path)
    assert status == 1 and out == ""
    assert str(path) in one_error_line(err) and "invalid JSON" in err
    path.write_text('{"v": 1, "node_guid": "x"}')
    status, _, err = run(capsys, "status", "--config", path)
    assert status == 1 and str(path) in one_error_line(err)


@pytest.mark.parametrize("address", ["nonsense", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:99999", ":8470", "a b:1"])
def test_bad_host_port(address: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    status, out, err = run(capsys, "register", address, "--config", tmp_path / "unused.json")
    assert status == 2 and out == ""
    assert "HOST:PORT" in one_error_line(err)


@pytest.mark.parametrize("url", ["ftp://127.0.0.1:1", "http://127.0.0.1:1/api", "http://127.0.0.1:port", "http://"])
def test_bad_node_url(url: str, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "status", "--node", url, "--network", "default", "--password", "pw")
    assert status == 2
    assert "--node" in one_error_line(err)


def test_usage_errors_exit_2_with_argparse_message(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in ([], ["create"], ["bogus"], ["status", "--json", "--extra"]):
        status, _, err = run(capsys, *argv)
        assert status == 2, argv
        assert "error:" in err and "Traceback" not in err
    status, out, _ = run(capsys, "--help")
    assert status == 0 and "init" in out and "register" in out



def _usage_error(err: str) -> str:
    """argparse's usage error: usage lines, then one ``gossip...: error:`` line (returned)."""
    assert "Traceback" not in err and err.startswith("usage: "), err
    [line] = [line for line in err.splitlines() if ": error: " in line]
    return line


def test_an_unquoted_message_gets_a_hint_to_quote_it(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "create", "hello", "world")
    assert status == 2 and out == ""
    line = _usage_error(err)
    assert "unrecognized arguments: world" in line and 'gossip create "hello world"' in line
    # Wherever the options stand, the hint quotes the words of the message in order.
    status, _, err = run(capsys, "create", "--node", "http://127.0.0.1:9", "a", "b", "c")
    assert status == 2 and 'gossip create "a b c"' in _usage_error(err)
    # A message with a shell metacharacter is quoted so that the shell keeps it as is.
    status, _, err = run(capsys, "create", "costs", "$5")
    assert status == 2 and "gossip create 'costs $5'" in _usage_error(err)
    # An unknown option is no message: no quoting hint.
    status, _, err = run(capsys, "create", "hello", "--bogus")
    line = _usage_error(err)
    assert status == 2 and "unrecognized arguments: --bogus" in line and "quote" not in line


def test_a_mistyped_command_gets_did_you_mean(capsys: pytest.CaptureFixture[str]) -> None:
    for typo, meant in (("stauts", "status"), ("creat", "create"), ("netwrok", "network"), ("regsiter", "register")):
        status, out, err = run(capsys, typo)
        assert status == 2 and out == ""
        line = _usage_error(err)
        assert f"invalid choice: {typo!r}" in line and line.endswith(f"did you mean: {meant}?"), line
    status, _, err = run(capsys, "xyzzy")  # nothing close: argparse's message alone
    assert status == 2 and "did you mean" not in _usage_error(err)
    status, out, _ = run(capsys, "--version")  # what is not a command still works
    assert status == 0 and out.startswith("gossip ")


# ---------------------------------------------------------------------- the tables
def test_tables_align_by_the_widest_cell_and_show_hostile_text_harmlessly() -> None:
    table = format_table(["A", "BB"], [["xxx", "y"], ["日本", "z"]])
    assert table.splitlines() == ["A     BB", "xxx   y", "日本  z"]
    sha = "ab" * 32
    rows = [
        {"guid": "g2", "date_time": "2026-11-24T06:35:13.123456+00:00", "who_name": "b",
         "msg": "\x1b[31mred\x1b[0m " + "long " * 20, "sha2": sha, "complete": True},
        {"guid": "g1", "date_time": None, "who_name": None, "msg": None, "sha2": None, "complete": False},
    ]
    header, first, pending = gossip_table(rows).splitlines()
    assert first.startswith("2026-11-24 06:35:13  b")
    assert "\x1b" not in first and "\ufffd[31mred" in first and "…" in first
    assert sha[:12] in first and sha[:13] not in first
    assert "pending" in pending and pending.endswith("g1")


# ---------------------------------------------------------------------- as a program
def test_python_m_gossip(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("GOSSIP_PASSWORD", None)

    def gossip(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "gossip", *argv], cwd=tmp_path, env=env,
            capture_output=True, text=True, timeout=30,
        )

    helped = gossip("--help")
    assert helped.returncode == 0 and helped.stdout.startswith("usage: gossip")
    missing = gossip("status", "--config", "missing.json")
    assert missing.returncode == 1 and missing.stdout == ""
    assert missing.stderr.startswith("gossip: error: no config at missing.json")
    assert missing.stderr.count("\n") == 1 and "Traceback" not in missing.stderr


def test_a_date_that_overflows_utc_is_shown_as_given_not_a_crash() -> None:
    """Issue 10, item 8: a node older than the date rules may still send year 1 at +01:00."""
    row = {"guid": "1b4e28ba-2fa1-41d2-883f-0016d3cca427", "date_time": "0001-01-01T00:00:00+01:00",
           "who_name": "old", "msg": "m", "sha2": "0" * 64, "complete": True}
    assert "0001-01-01T00:00:00+01:00" in gossip_table([row])


def test_delete_removes_the_gossip_and_errors_are_one_line(
    nodes: Callable[..., Node], capsys: pytest.CaptureFixture[str]
) -> None:
    a = nodes("a")
    status, out, err = run(capsys, "create", "regrettable", "--config", a.config)
    guid = out.strip()
    status, out, err = run(capsys, "delete", guid.upper(), "--config", a.config)
    assert (status, err) == (0, "") and out.startswith(f"deleted {guid};")
    assert run(capsys, "delete", guid, "--config", a.config)[0] == 0  # twice is harmless
    assert gossip_rows(capsys, a.config) == []
    status, out, err = run(capsys, "delete", "00000000-0000-4000-8000-000000000001", "--config", a.config)
    assert status == 1 and "holds no gossip 00000000-0000-4000-8000-000000000001" in one_error_line(err)
    status, out, err = run(capsys, "delete", "not-a-guid", "--config", a.config)
    assert status == 2 and "is not a gossip guid" in one_error_line(err)
