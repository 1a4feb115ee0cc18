"""Reading and writing ``server.json``, the node's properties (the seed's SERVER_FILES)."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from .errors import ConfigError, LocalProtocolError
from .model import Network, NodeConfig, Quota, Retention
from .storage.jsonfile import long_number_error, write_file_atomically

__all__ = ["load_config", "save_config", "config_to_dict", "config_from_dict", "read_secret_file", "CONFIG_VERSION"]

logger = logging.getLogger(__name__)

#: The ``"v"`` field written into every config file.
CONFIG_VERSION = 1

_REQUIRED = ("node_guid", "node_name", "networks")
_OPTIONAL = ("ip", "port", "gossip_timer", "gossip_max_peer_count", "incarnation", "forget_after")
#: The active view's sizes (issue 11), written only when not the defaults.
_VIEWS = ("active_view", "full_view_limit")
_KNOWN = frozenset(("v", *_REQUIRED, *_OPTIONAL, *_VIEWS))
#: Keys that would mean a secret is kept in plain text; refused wherever they appear.
_SECRET_KEYS = frozenset(("password", "passwd", "secret", "network_password"))
#: Refuse to parse anything larger: a config is a few hundred bytes.
_MAX_BYTES = 1 << 20


def config_to_dict(config: NodeConfig) -> dict[str, Any]:
    """The JSON form of a node's configuration.

    Each network is stored as its name and the hex of the key derived from its password
    (:func:`gossip.auth.derive_key`); the password itself is never part of it. While a
    password is rotated, ``key`` is the primary and ``other_keys`` the others accepted, with
    the ring's ``key_version``.

    Args:
        config: the configuration to convert.

    Returns:
        A dict of JSON types, with ``"v": 1``.
    """
    defaults = NodeConfig(node_guid=config.node_guid, node_name=config.node_name, networks=config.networks)
    views = {name: getattr(config, name) for name in _VIEWS if getattr(config, name) != getattr(defaults, name)}
    return {
        "v": CONFIG_VERSION,
        "node_guid": config.node_guid,
        "node_name": config.node_name,
        "ip": config.ip,
        "port": config.port,
        "gossip_timer": config.gossip_timer,
        "gossip_max_peer_count": config.gossip_max_peer_count,
        "incarnation": config.incarnation,
        "forget_after": config.forget_after,
        "networks": [_network_to_dict(net) for net in config.networks],
        **views,
    }


def _network_to_dict(net: Network) -> dict[str, Any]:
    out: dict[str, Any] = {"name": net.name, "key": net.key.hex()}
    if net.extra_keys or net.key_version:  # a key rotation: the primary above, the others here
        out["other_keys"] = [key.hex() for key in net.extra_keys]
        out["key_version"] = net.key_version
    if net.quota != Quota():  # written only when not the defaults
        out["quota"] = {
            "max_gossip_bytes": net.quota.max_gossip_bytes,
            "creates_per_minute": net.quota.creates_per_minute,
            "max_network_bytes": net.quota.max_network_bytes,
        }
    if net.retention != Retention():  # written only once set (by --retention or a peer)
        out["retention"] = net.retention.to_dict()
    return out


def _quota_from_dict(value: Any, where: str) -> Quota:
    if value is None:
        return Quota()
    if not isinstance(value, dict):
        raise ConfigError(f"{where}.quota must be an object of limits")
    unknown = set(value) - {"max_gossip_bytes", "creates_per_minute", "max_network_bytes"}
    if unknown:
        raise ConfigError(f"{where}.quota has unknown limits {sorted(unknown)}")
    try:
        return Quota(**value)
    except LocalProtocolError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _network_from_dict(item: Any, index: int) -> Network:
    where = f"networks[{index}]"
    if not isinstance(item, dict):
        raise ConfigError(f'{where} must be an object {{"name": ..., "key": ...}}')
    secrets = _SECRET_KEYS.intersection(item)
    if secrets:
        raise ConfigError(
            f"{where} holds {sorted(secrets)[0]!r}: a password must never be stored in plain"
            " text; remove it and store only the derived key (`gossip init` does this)"
        )
    for name in ("name", "key"):
        if name not in item:
            raise ConfigError(f"{where} is missing {name!r}")
    key_hex = item["key"]
    if not isinstance(key_hex, str):
        raise ConfigError(f"{where}.key must be a string of hex digits")
    try:
        key = bytes.fromhex(key_hex)
    except ValueError:
        raise ConfigError(f"{where}.key is not hex digits") from None
    quota = _quota_from_dict(item.get("quota"), where)
    others = item.get("other_keys", [])
    if not isinstance(others, list) or not all(isinstance(k, str) for k in others):
        raise ConfigError(f"{where}.other_keys must be a list of strings of hex digits")
    try:
        extra = tuple(bytes.fromhex(k) for k in others)
    except ValueError:
        raise ConfigError(f"{where}.other_keys holds a key that is not hex digits") from None
    version = item.get("key_version", 0)
    try:
        retention = Retention() if item.get("retention") is None else Retention.from_dict(item["retention"])
    except LocalProtocolError as exc:
        raise ConfigError(f"{where}.retention: {exc}") from None
    try:
        return Network(name=item["name"], key=key, quota=quota, extra_keys=extra, key_version=version, retention=retention)
    except LocalProtocolError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def config_from_dict(data: Any) -> NodeConfig:
    """Build a node configuration from its JSON form, validating every field.

    Missing optional fields take :class:`~gossip.model.NodeConfig`'s defaults; unknown
    fields are ignored with a warning (so a typo does not pass unnoticed).

    Args:
        data: what ``json.loads`` returned for the file.

    Returns:
        The configuration.

    Raises:
        ConfigError: a field is missing, of the wrong type or invalid, the version is not
            1, or a plain-text password is present. The message names the field.
    """
    if not isinstance(data, dict):
        raise ConfigError(f"expected a JSON object, found {type(data).__name__}")
    version = data.get("v", CONFIG_VERSION)
    if version != CONFIG_VERSION or isinstance(version, bool):
        raise ConfigError(
            f"format version {version!r} is not {CONFIG_VERSION}; it was written by another"
            " version of gossip"
        )
    secrets = _SECRET_KEYS.intersection(data)
    if secrets:
        raise ConfigError(
            f"holds {sorted(secrets)[0]!r}: a password must never be stored in plain text;"
            " remove it and store only the derived key (`gossip init` does this)"
        )
    missing = [name for name in _REQUIRED if name not in data]
    if missing:
        raise ConfigError(f"missing field {missing[0]!r}")
    unknown = sorted(set(data) - _KNOWN)
    if unknown:
        logger.warning("ignoring unknown config fields %s", ", ".join(map(repr, unknown)))
    networks = data["networks"]
    if not isinstance(networks, list):
        raise ConfigError('networks must be a list of {"name": ..., "key": ...} objects')
    incarnation = data.get("incarnation", 0)
    if (
        isinstance(incarnation, bool)
        or not isinstance(incarnation, int)
        or not 0 <= incarnation < 2**53
    ):
        raise ConfigError(f"incarnation {incarnation!r} must be a non-negative integer")
    optional = {name: data[name] for name in (*_OPTIONAL, *_VIEWS) if name in data}
    try:
        return NodeConfig(
            node_guid=data["node_guid"],
            node_name=data["node_name"],
            networks=tuple(_network_from_dict(item, i) for i, item in enumerate(networks)),
            **optional,
        )
    except LocalProtocolError as exc:
        raise ConfigError(str(exc)) from None


def load_config(path: str | os.PathLike[str]) -> NodeConfig:
    """Read a node's configuration from ``path`` (``server.json``).

    Args:
        path: the config file.

    Returns:
        The validated configuration.

    Raises:
        ConfigError: the file is missing, unreadable, not JSON or holding a number too long
            to read (the message gives line and column), or has a missing or invalid field.
            The message is one line that names the file and says what to do.
    """
    where = os.fspath(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(_MAX_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(
            f"config file {where} not found; create it with `gossip init --config {where}`"
            " or start `python -m gossip.http` once"
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"cannot read config file {where}: {exc.strerror or exc};"
            " check the path and permissions"
        ) from None
    if len(raw) > _MAX_BYTES:
        raise ConfigError(
            f"config file {where} is larger than {_MAX_BYTES} bytes; is it the right file?"
        )
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"config file {where} is not UTF-8 text ({exc.reason} at byte {exc.start + 1});"
            " is it the right file?"
        ) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            f"config file {where}, line {exc.lineno}, column {exc.colno}: invalid JSON"
            f" ({exc.msg}); fix it or recreate it with `gossip init`"
        ) from None
    except RecursionError:
        raise ConfigError(f"config file {where}: JSON nested too deeply; fix it") from None
    except ValueError:  # int() refuses more than 4,300 digits
        message = long_number_error(where, text)
        raise ConfigError(f"config file {message}; fix it or recreate it with `gossip init`") from None
    try:
        return config_from_dict(data)
    except ConfigError as exc:
        raise ConfigError(
            f"config file {where}: {exc}; fix it or recreate it with `gossip init`"
        ) from None


def save_config(path: str | os.PathLike[str], config: NodeConfig) -> None:
    """Write a node's configuration to ``path``, atomically and readable by its owner only.

    The file is replaced in one step (temp file, fsync, ``os.replace``), so a crash leaves
    the old or the new version, never a mix; it gets mode 0600. A missing parent
    directory is created with mode 0700.

    Args:
        path: the config file to create or replace.
        config: what to write. Networks are stored as derived keys, never passwords.

    Raises:
        ConfigError: the file could not be written; it is then unchanged.
    """
    where = os.fspath(path)
    text = json.dumps(config_to_dict(config), indent=2, ensure_ascii=False, allow_nan=False)
    try:
        Path(path).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_file_atomically(path, (text + "\n").encode("utf-8"))
    except OSError as exc:
        raise ConfigError(
            f"cannot write config file {where}: {exc.strerror or exc}; check the directory exists"
            " and is writable"
        ) from None


def read_secret_file(path: str | os.PathLike[str], flag: str) -> str:
    """A password kept in a file (``--password-file``, ``--key-password-file``): its UTF-8 text
    without the surrounding white space (an editor's final newline is no part of it).

    Args:
        path: the file.
        flag: the flag that named it, for the error message.

    Raises:
        ConfigError: the file cannot be read, is not UTF-8 text, or holds only white space.
    """
    try:
        text = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read {flag} {os.fspath(path)}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"cannot read {flag} {os.fspath(path)}: not UTF-8 text") from None
    if not text:
        raise ConfigError(f"{flag} {os.fspath(path)} is empty; put the password in it")
    return text
