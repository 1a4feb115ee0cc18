"""server.json: round trip, owner-only mode, no plain-text password, one-line errors."""

from __future__ import annotations

import dataclasses
import json
import stat
from pathlib import Path
from typing import Any

import pytest

from gossip.auth import derive_key
from gossip.configfile import config_from_dict, config_to_dict, load_config, save_config
from gossip.errors import ConfigError
from gossip.model import Network, NodeConfig, Quota

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def config() -> NodeConfig:
    return NodeConfig(
        node_guid="1b4e28ba-2fa1-41d2-883f-0016d3cca427",
        node_name="alpha \u00e9",
        networks=(
            Network(name="default", key=derive_key("default", PASSWORD)),
            Network(name="lab.2", key=bytes(range(32))),
        ),
        ip="::1",
        port=9001,
        gossip_timer=0.5,
        gossip_max_peer_count=5,
        incarnation=3,
    )


def test_round_trip(tmp_path: Path, config: NodeConfig) -> None:
    path = tmp_path / "server.json"
    save_config(path, config)
    assert load_config(path) == config
    assert load_config(str(path)) == config


def test_dict_form(config: NodeConfig) -> None:
    data = config_to_dict(config)
    assert data["v"] == 1
    assert data["networks"][0] == {"name": "default", "key": derive_key("default", PASSWORD).hex()}
    assert json.loads(json.dumps(data)) == data
    assert config_from_dict(data) == config


def test_view_sizes_are_kept_only_when_set(tmp_path: Path, config: NodeConfig) -> None:
    """active_view and full_view_limit (issue 11): left out at their defaults, so existing
    files do not change; kept and read back when set."""
    assert not {"active_view", "full_view_limit"} & set(config_to_dict(config))
    tuned = dataclasses.replace(config, active_view=7, full_view_limit=50)
    assert {k: config_to_dict(tuned)[k] for k in ("active_view", "full_view_limit")} == {"active_view": 7, "full_view_limit": 50}
    path = tmp_path / "server.json"
    save_config(path, tuned)
    assert load_config(path) == tuned


def test_defaults_for_missing_optional_fields(config: NodeConfig) -> None:
    data = config_to_dict(config)
    for name in ("v", "ip", "port", "gossip_timer", "gossip_max_peer_count", "incarnation"):
        del data[name]
    loaded = config_from_dict(data)
    assert (loaded.ip, loaded.port, loaded.incarnation) == ("127.0.0.1", 8470, 0)


def test_file_is_owner_only_and_replaced_atomically(tmp_path: Path, config: NodeConfig) -> None:
    path = tmp_path / "sub" / "server.json"
    save_config(path, config)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    path.chmod(0o644)
    save_config(path, config.with_changes(port=9002))
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_config(path).port == 9002
    assert [p.name for p in path.parent.iterdir()] == ["server.json"]  # no temp file left


def test_no_plain_text_password(tmp_path: Path, config: NodeConfig) -> None:
    path = tmp_path / "server.json"
    save_config(path, config)
    text = path.read_text()
    assert PASSWORD not in text
    assert "password" not in text.lower()
    assert derive_key("default", PASSWORD).hex() in text


def write(tmp_path: Path, content: str | bytes) -> Path:
    path = tmp_path / "server.json"
    if isinstance(content, str):
        content = content.encode()
    path.write_bytes(content)
    return path


def edited(config: NodeConfig, **changes: Any) -> str:
    data = config_to_dict(config)
    for name, value in changes.items():
        if value is ...:
            del data[name]
        else:
            data[name] = value
    return json.dumps(data, indent=2)


def assert_one_line_config_error(path: Path, *fragments: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_missing_file(tmp_path: Path) -> None:
    assert_one_line_config_error(tmp_path / "server.json", "not found", "gossip init")


def test_unreadable_path(tmp_path: Path) -> None:
    (tmp_path / "server.json").mkdir()
    assert_one_line_config_error(tmp_path / "server.json", "cannot read")


def test_invalid_json_gives_line_and_column(tmp_path: Path, config: NodeConfig) -> None:
    text = edited(config).replace('"port": 9001,', '"port": 9001,,')
    line = text[: text.index(",,")].count("\n") + 1
    assert_one_line_config_error(write(tmp_path, text), f"line {line}, column", "invalid JSON")


@pytest.mark.parametrize("field", ["port", "incarnation", "gossip_timer"])
def test_a_number_too_long_to_read_gives_line_and_column(tmp_path: Path, config: NodeConfig, field: str) -> None:
    """int() refuses more than 4,300 digits with a bare ValueError: a traceback at start before."""
    text = edited(config, **{field: "LONG"}).replace('"LONG"', "1" * 5000)
    start = text.index('"' + field + '": ') + len(field) + 4
    line = text[:start].count("\n") + 1
    column = start - text.rfind("\n", 0, start)
    assert_one_line_config_error(
        write(tmp_path, text), f"line {line}, column {column}: a number of more than 4300 digits", "gossip init"
    )


def test_not_utf8(tmp_path: Path) -> None:
    assert_one_line_config_error(write(tmp_path, b"\xff\xfe{}"), "UTF-8")


def test_too_deep(tmp_path: Path) -> None:
    assert_one_line_config_error(write(tmp_path, "[" * 100_000), "JSON")


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"port": 70000}, "port"),
        ({"port": "9001"}, "port"),
        ({"ip": "localhost"}, "ip"),
        ({"gossip_timer": 0}, "gossip_timer"),
        ({"gossip_max_peer_count": True}, "gossip_max_peer_count"),
        ({"incarnation": -1}, "incarnation"),
        ({"node_guid": "not-a-guid"}, "node_guid"),
        ({"node_name": ""}, "node_name"),
        ({"node_name": ...}, "missing field 'node_name'"),
        ({"networks": []}, "at least one network"),
        ({"networks": "default"}, "networks must be a list"),
        ({"networks": [{"name": "default"}]}, "missing 'key'"),
        ({"networks": [{"name": "default", "key": "zz"}]}, "not hex"),
        ({"networks": [{"name": "default", "key": "00"}]}, "16 bytes"),
        ({"networks": [{"name": "bad name", "key": "00" * 32}]}, "network name"),
        ({"networks": [{"name": "a", "key": "00" * 32}] * 2}, "unique"),
        ({"networks": ["default"]}, "networks[0]"),
        ({"password": PASSWORD}, "plain"),
        ({"networks": [{"name": "a", "key": "00" * 32, "password": "pw"}]}, "plain"),
        ({"v": 2}, "version"),
        ({"active_view": 0}, "active_view"),
        ({"full_view_limit": "many"}, "full_view_limit"),
    ],
)
def test_invalid_values(
    tmp_path: Path, config: NodeConfig, changes: dict[str, Any], fragment: str
) -> None:
    assert_one_line_config_error(write(tmp_path, edited(config, **changes)), fragment)


def test_not_an_object(tmp_path: Path) -> None:
    assert_one_line_config_error(write(tmp_path, "[1, 2]"), "expected a JSON object")


def test_unknown_fields_are_ignored_with_a_warning(
    tmp_path: Path, config: NodeConfig, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(tmp_path, edited(config, gosip_timer=5))
    assert load_config(path) == config
    assert any("gosip_timer" in r.getMessage() for r in caplog.records)


def test_save_error_names_the_file(tmp_path: Path, config: NodeConfig) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    path = blocker / "server.json"  # its "directory" is a file
    with pytest.raises(ConfigError) as info:
        save_config(path, config)
    assert str(path) in str(info.value)


def test_a_networks_quota_is_kept_in_the_config_and_checked(tmp_path: Path, config: NodeConfig) -> None:
    limited = Network(name="default", key=config.networks[0].key, quota=Quota(creates_per_minute=30, max_gossip_bytes=4096))
    changed = NodeConfig(**{**{f: getattr(config, f) for f in config.__dataclass_fields__}, "networks": (limited,)})
    path = tmp_path / "server.json"
    save_config(path, changed)
    assert load_config(path).networks[0].quota == Quota(creates_per_minute=30, max_gossip_bytes=4096)
    assert "quota" not in config_to_dict(config)["networks"][0]  # the defaults are not written
    data = config_to_dict(changed)
    for bad, says in (({"creates_per_minute": 0}, "positive integer"), ({"max_gossip_bytes": "1k"}, "positive integer"),
                      ({"per_hour": 5}, "unknown limits"), ([], "object of limits")):
        data["networks"][0]["quota"] = bad
        with pytest.raises(ConfigError, match=says):
            config_from_dict(data)
