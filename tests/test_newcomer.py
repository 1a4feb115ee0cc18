"""What a new user meets first: joining without a password, a lost password, the log at its
default level, and docs that match the code (the README's snippet runs as written)."""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from gossip import cli
from gossip.configfile import save_config
from gossip.errors import ConfigError
from gossip.http import data_dir_for
from gossip.http import command
from gossip.model import Network, NodeConfig

from .helpers import KEYS
from .nodeproc import ROOT, free_port


def _node_args(*argv: str) -> argparse.Namespace:
    return command._parser().parse_args(list(argv))


# ---------------------------------------------------------------------- 1. --join needs the password
def test_join_without_a_password_refuses_at_once_and_says_how_to_pass_it(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("GOSSIP_PASSWORD", None)
    done = subprocess.run(
        [sys.executable, "-m", "gossip.http", "--config", "n.json", "--port", str(free_port()),
         "--join", f"127.0.0.1:{free_port()}"],
        capture_output=True, text=True, timeout=30, cwd=tmp_path, env=env,
    )
    assert done.returncode == 2
    assert done.stdout == ""  # no banner, so no made-up password either
    [line] = done.stderr.splitlines()
    assert line.startswith("error: to --join 127.0.0.1:") and "network 'default'" in line
    assert "GOSSIP_PASSWORD" in line and "--password-file" in line and "--password PW" in line
    assert not (tmp_path / "n.json").exists() and not data_dir_for(tmp_path / "n.json").exists()


def test_join_needs_a_password_only_when_the_config_has_no_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GOSSIP_PASSWORD", raising=False)
    path = tmp_path / "server.json"
    with pytest.raises(ConfigError, match="needs the password of network 'demo'"):
        command.build_config(_node_args("--join", "127.0.0.1:8470", "--network", "demo"), path)
    # Without --join a first run makes a password up, as before.
    config, generated, _ = command.build_config(_node_args(), path)
    assert generated is not None and config.network_names == ("default",)
    save_config(path, config)
    # A restart that joins uses the stored key: nothing to ask for.
    again, generated, _ = command.build_config(_node_args("--join", "127.0.0.1:8470"), path)
    assert generated is None and again.networks == config.networks
    # With the password given, a fresh config joins with the key derived from it.
    monkeypatch.setenv("GOSSIP_PASSWORD", "password-of-default")
    fresh, generated, _ = command.build_config(_node_args("--join", "127.0.0.1:8470"), tmp_path / "other.json")
    assert generated is None and fresh.networks[0].key == KEYS["default"]


# ---------------------------------------------------------------------- 2. a lost password
def test_the_banner_says_how_to_recover_a_lost_password_without_showing_one(tmp_path: Path) -> None:
    config = NodeConfig(node_guid=str(uuid.uuid4()), node_name="a", networks=(Network(name="default", key=KEYS["default"]),))
    restarted = command._banner(config, ("127.0.0.1", 8470), tmp_path / "server.json", None).splitlines()
    [line] = [line for line in restarted if "Lost the password?" in line]
    assert "--password" in line and "every node" in line and "docs/operating.md" in line
    assert KEYS["default"].hex() not in "\n".join(restarted)
    assert restarted[-1].lstrip().startswith("GOSSIP_PASSWORD='<the password of default>'")  # still last
    # The first run shows the made-up password once, and has nothing to recover yet.
    first = command._banner(config, ("127.0.0.1", 8470), tmp_path / "server.json", "s3cret-made-up")
    assert "Lost the password?" not in first and "GOSSIP_PASSWORD='s3cret-made-up'" in first


def test_operating_md_says_how_to_recover_a_lost_password() -> None:
    text = (ROOT / "docs" / "operating.md").read_text(encoding="utf-8")
    section = text.split("### Lost password", 1)[1].split("\n## ", 1)[0]
    assert "--password" in section and "rewrites the network's key" in section and "Every node" in section


def test_a_new_password_on_restart_replaces_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The recovery the banner and the docs describe: restart with a new password."""
    monkeypatch.delenv("GOSSIP_PASSWORD", raising=False)
    path = tmp_path / "server.json"
    config, generated, _ = command.build_config(_node_args(), path)
    save_config(path, config)
    assert generated is not None and config.networks[0].key != KEYS["default"]
    renewed, generated, changed = command.build_config(_node_args("--password", "password-of-default"), path)
    assert generated is None and changed and renewed.networks[0].key == KEYS["default"]
    assert renewed.node_guid == config.node_guid  # the same node, with the new key


# ---------------------------------------------------------------------- 3. one log line per batch
# ---------------------------------------------------------------------- 5. docs made true
def _options(parser: argparse.ArgumentParser) -> list[str]:
    """The long options a parser documents (not --help, not the suppressed ones)."""
    return [
        opt for action in parser._actions if action.help != argparse.SUPPRESS
        for opt in action.option_strings if opt.startswith("--") and opt != "--help"
    ]


def test_operating_md_flags_table_matches_the_node_parser() -> None:
    text = (ROOT / "docs" / "operating.md").read_text(encoding="utf-8")
    table = text.split("## Starting", 1)[1].split("\n\n")[2]
    rows = [line for line in table.splitlines() if line.startswith("| `")]
    documented = [flag for row in rows for flag in re.findall(r"`(--[a-z-]+)`", row.split(" | ")[0])]
    parser = command._parser()
    assert documented == _options(parser)  # every flag, in the parser's order, nothing else
    for action in parser._actions:  # each row's default is the parser's, where it has one
        if action.default not in (None, argparse.SUPPRESS, False) and action.help != argparse.SUPPRESS:
            [row] = [r for r in rows if r.startswith(f"| `{action.option_strings[0]}`")]
            assert str(action.default) in row, row
    assert "**`--ip` and `--listen`.**" in text and "advertises" in text and "binds another" in text


def test_cli_md_documents_every_flag_of_the_commands() -> None:
    text = (ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    create = next(
        a for a in cli._parser()._actions if isinstance(a, argparse._SubParsersAction)
    ).choices["create"]
    for flag in _options(create):
        assert f"`{flag}" in text, flag
    assert "`--tls-ca PATH`" in text and "HTTPS" in text


def test_gitignore_names_the_data_directory_the_node_creates() -> None:
    ignored = (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
    config = Path(command._parser().get_default("config"))
    assert f"/{config}" in ignored and f"/{data_dir_for(config)}/" in ignored
    assert "/gossip-data/" not in ignored
    # and the join command of the banner makes node-<port>.json beside it
    assert "/node-*.json" in ignored and f"/{data_dir_for(Path('node-*.json'))}/" in ignored


# ---------------------------------------------------------------------- 6. the README's snippet
def test_readme_embed_snippet_runs_as_written() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Embed the core", 1)[1]
    [snippet] = re.findall(r"```python\n(.*?)```", section.split("\n## ", 1)[0], re.S)
    namespace: dict[str, object] = {"__name__": "readme_snippet"}
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(snippet, "README.md#embed-the-core", "exec"), namespace)  # noqa: S102
    assert out.getvalue().splitlines() == ["a holds 'hello'", "b holds 'hello'"]
    # What it says persists did: b's store holds the gossip it acknowledged.
    stores = namespace["stores"]
    assert isinstance(stores, dict)
    assert [g.msg for g in stores["b"].load().gossips["default"]] == ["hello"]


def test_view_flags_set_the_config_and_are_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GOSSIP_PASSWORD", "password-of-default")
    path = tmp_path / "server.json"
    config, _, _ = command.build_config(_node_args("--active-view", "7", "--full-view-limit", "10"), path)
    assert (config.active_view, config.full_view_limit) == (7, 10)
    save_config(path, config)
    again, _, changed = command.build_config(_node_args(), path)  # a restart without the flags keeps them
    assert (again.active_view, again.full_view_limit, changed) == (7, 10, False)
    reset, _, changed = command.build_config(_node_args("--full-view-limit", "1000"), path)
    assert reset.full_view_limit == 1000 and changed and reset.node_guid == config.node_guid
    for bad in (("--active-view", "0"), ("--active-view", "65"), ("--full-view-limit", "0")):
        with pytest.raises(ConfigError, match=r"bad option: --(active-view|full-view-limit) must be an integer from 1"):
            command.build_config(_node_args(*bad), path)
