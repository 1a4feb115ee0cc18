"""``/v1/keys`` on an in-process runner: the ring is written to server.json before the answer,
a failed write changes nothing, and each refusal carries its code."""

from __future__ import annotations

import json
import secrets
import stat
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gossip.auth import derive_key, key_id, seal_key
from gossip.configfile import load_config, save_config
from gossip.http import HttpTransport, NodeRunner, data_dir_for, http_call
from gossip.model import Network, NodeConfig
from gossip.storage.jsonfile import JsonFileStorage

from .helpers import KEYS
from .nodeproc import free_port
from .test_error_codes import WAIT, signed

OLD = KEYS["default"]
NEW = derive_key("default", "a new password for the api")


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[NodeRunner]:
    config = NodeConfig(
        node_guid=str(uuid.uuid4()), node_name="a", networks=(Network(name="default", key=OLD),),
        ip="127.0.0.1", port=free_port(), gossip_timer=0.2,
    )
    path = tmp_path / "a.json"
    save_config(path, config)
    transport = HttpTransport()
    r = NodeRunner(config, JsonFileStorage(data_dir_for(path)), transport=transport, config_path=path)
    transport.app = r.api.handle
    r.start()
    try:
        yield r
    finally:
        r.stop()


def call(r: NodeRunner, method: str, body: Any = None, *, key: bytes = OLD, path: str = "/v1/keys") -> tuple[int, Any]:
    data = b"" if body is None else json.dumps(body).encode()
    status, answer = http_call(
        f"http://127.0.0.1:{r.config.port}{path}", method=method, body=data if body is not None else None,
        headers=signed(method, path, data, node=r.node.guid, key=key), timeout=WAIT,
    )
    return status, json.loads(answer)


def install(key: bytes, wrap: bytes = OLD) -> dict[str, Any]:
    return {"op": "install", "id": key_id(key), "sealed": seal_key(wrap, key, nonce=secrets.token_bytes(16), context="default")}


def test_install_use_remove_are_on_disk_before_the_answer(runner: NodeRunner, tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    status, rows = call(runner, "GET")
    assert status == 200 and rows == [
        {"network": "default", "id": key_id(OLD), "primary": True, "nodes": 1, "known": 1, "unheard": 0}
    ]
    status, answer = call(runner, "POST", install(NEW))
    assert status == 200 and answer["changed"] is True and [r["id"] for r in answer["keys"]] == [key_id(OLD), key_id(NEW)]
    assert load_config(path).network("default").keys == (OLD, NEW)  # written before the answer
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert call(runner, "POST", install(NEW))[1]["changed"] is False
    assert call(runner, "GET", key=NEW)[0] == 200  # the new password is accepted at once
    status, answer = call(runner, "POST", {"op": "use", "id": key_id(NEW)}, key=NEW)
    assert status == 200 and load_config(path).network("default").key == NEW
    status, answer = call(runner, "POST", {"op": "remove", "id": key_id(OLD)}, key=NEW)
    assert status == 200 and [r["id"] for r in answer["keys"]] == [key_id(NEW)]
    saved = load_config(path).network("default")
    assert saved.keys == (NEW,) and saved.key_version == 3
    assert call(runner, "GET", key=OLD)[0] == 401


def test_refusals_carry_their_codes_and_change_nothing(runner: NodeRunner, tmp_path: Path) -> None:
    def refused(body: Any, key: bytes = OLD) -> tuple[int, str]:
        status, answer = call(runner, "POST", body, key=key)
        assert answer["type"] == "error" and answer["error"], answer
        return status, answer["code"]

    assert refused({"op": "remove", "id": key_id(OLD)}) == (409, "last_key")
    assert refused({"op": "use", "id": "0" * 16}) == (404, "unknown_key")
    assert refused({"op": "rotate", "id": key_id(NEW)}) == (400, "bad_request")
    assert refused({"op": "install", "id": key_id(NEW)}) == (400, "bad_request")  # no sealed key
    assert refused(install(NEW, wrap=KEYS["other"])) == (404, "unknown_key")  # sealed under a key it lacks
    assert refused({**install(NEW), "id": key_id(KEYS["other"])}) == (404, "unknown_key")  # not the key of that id
    assert refused({**install(NEW), "sealed": "00" * 64}) == (404, "unknown_key")
    assert runner.node.keys() == (OLD,)
    assert call(runner, "POST", install(NEW))[0] == 200
    assert refused({"op": "remove", "id": key_id(OLD)}) == (409, "primary_key")
    assert load_config(tmp_path / "a.json").network("default").keys == (OLD, NEW)


def test_a_ring_that_cannot_be_written_is_not_kept(runner: NodeRunner, tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    before = path.read_bytes()
    runner._committer.config_path = tmp_path  # a directory: replacing it fails
    status, answer = call(runner, "POST", install(NEW))
    assert (status, answer["code"]) == (507, "storage_failed")
    assert runner.node.keys() == (OLD,) and runner.config.network("default").keys == (OLD,)
    assert path.read_bytes() == before
    assert call(runner, "GET", key=NEW)[0] == 401
    runner._committer.config_path = path
    assert call(runner, "POST", install(NEW))[0] == 200 and runner.node.keys() == (OLD, NEW)


def test_the_cli_lists_installs_and_explains_its_refusals(
    runner: NodeRunner, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from gossip.cli import main

    monkeypatch.delenv("GOSSIP_KEY_PASSWORD", raising=False)
    node = ["--node", f"http://127.0.0.1:{runner.config.port}", "--network", "default", "--password", "password-of-default"]
    assert main(["keys", "install", *node]) == 2
    assert "GOSSIP_KEY_PASSWORD" in capsys.readouterr().err
    assert main(["keys", "install", *node, "--key-password", "a new password for the api"]) == 0
    out = capsys.readouterr().out
    assert f"installed key {key_id(NEW)}" in out and "a new password" not in out
    assert main(["keys", "list", *node]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["KEY", "ID", "PRIMARY", "NODES"]
    assert table[1].split() == [key_id(OLD), "yes", "1/1"] and table[2].split() == [key_id(NEW), "1/1"]
    assert main(["keys", "list", "--json", *node]) == 0
    assert [r["id"] for r in json.loads(capsys.readouterr().out)] == [key_id(OLD), key_id(NEW)]
    monkeypatch.setenv("GOSSIP_KEY_PASSWORD", "password-of-default")
    assert main(["keys", "remove", *node]) == 1
    err = capsys.readouterr().err
    assert "primary key" in err and "`use` another key first" in err and len(err.strip().splitlines()) == 1
    assert main(["keys", "use", *node, "--key-password", "never installed"]) == 1
    assert "no key" in capsys.readouterr().err
