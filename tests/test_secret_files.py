"""A password read from a file (``--password-file``, ``--key-password-file``): one reader for
the node and the client, and every way the file can be wrong is a one-line error."""

from __future__ import annotations

from pathlib import Path

import pytest

from gossip.cli import main as cli_main
from gossip.configfile import read_secret_file
from gossip.errors import ConfigError
from gossip.http.command import main as node_main


@pytest.fixture(autouse=True)
def _no_password_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOSSIP_PASSWORD", raising=False)
    monkeypatch.delenv("GOSSIP_KEY_PASSWORD", raising=False)


def _files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Bad password files, each with what its error must say."""
    binary = tmp_path / "binary"
    binary.write_bytes(b"\xff\xfe\x00secret")
    blank = tmp_path / "blank"
    blank.write_text(" \n\t\n", encoding="utf-8")
    return {
        "binary": (binary, "not UTF-8 text"),
        "blank": (blank, "is empty; put the password in it"),
        "missing": (tmp_path / "missing", "No such file or directory"),
    }


def test_the_text_without_surrounding_white_space(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_text("  s3cret pass \n", encoding="utf-8")
    assert read_secret_file(path, "--password-file") == "s3cret pass"


@pytest.mark.parametrize("kind", ["binary", "blank", "missing"])
def test_a_bad_file_is_a_config_error_naming_the_flag(tmp_path: Path, kind: str) -> None:
    path, why = _files(tmp_path)[kind]
    with pytest.raises(ConfigError) as caught:
        read_secret_file(path, "--key-password-file")
    assert str(caught.value).count("\n") == 0
    assert "--key-password-file" in str(caught.value) and why in str(caught.value)


@pytest.mark.parametrize("kind", ["binary", "blank", "missing"])
def test_the_node_refuses_a_bad_password_file_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str
) -> None:
    path, why = _files(tmp_path)[kind]
    config = tmp_path / "server.json"
    status = node_main(["--config", str(config), "--password-file", str(path), "--port", "0"])
    out, err = capsys.readouterr()
    assert status == 2 and "Traceback" not in err
    assert err == f"error: {err[7:]}" and err.count("\n") == 1 and why in err, err
    assert not config.exists()  # refused before anything was written


@pytest.mark.parametrize("kind", ["binary", "blank", "missing"])
@pytest.mark.parametrize("command", [["create", "hi"], ["keys", "install", "--password", "pw"]])
def test_the_client_refuses_a_bad_password_file_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str, command: list[str]
) -> None:
    path, why = _files(tmp_path)[kind]
    flag = "--key-password-file" if command[0] == "keys" else "--password-file"
    argv = [*command, "--node", "127.0.0.1:9", "--network", "default", flag, str(path)]
    status = cli_main(argv)
    out, err = capsys.readouterr()
    assert status == 1 and out == ""
    assert err.startswith(f"gossip: error: cannot read {flag}" if kind != "blank" else f"gossip: error: {flag}")
    assert err.count("\n") == 1 and why in err and "Traceback" not in err


def test_the_node_refuses_an_empty_password_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "server.json"
    status = node_main(["--config", str(config), "--password", "", "--port", "0"])
    out, err = capsys.readouterr()
    assert status == 2 and "Traceback" not in err
    assert err.startswith("error: --password is empty; ") and err.count("\n") == 1, err
    assert not config.exists()
