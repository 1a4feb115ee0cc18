"""A leave and a key ring change at the same time: whatever order they reach ``server.json``
in, it keeps both the new ring and the incarnation the node must come back with."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Callable

from gossip.configfile import load_config
from gossip.http import NodeRunner

from .test_error_codes import runners  # noqa: F401 -- a fixture


def test_a_key_change_after_a_leave_keeps_the_comeback_incarnation(
    runners: Callable[..., NodeRunner], tmp_path: Path,  # noqa: F811
) -> None:
    a = runners("a")
    path = tmp_path / "a-server.json"
    a._committer.config_path = path  # noqa: SLF001 -- the runner of python -m gossip.http has one
    departure = a.leave(wait=0.1)
    assert load_config(path).incarnation == departure.incarnation
    new_key = os.urandom(32)
    assert a.call(a.install_key_async(new_key, "default"), timeout=10) is True  # `gossip keys install` mid-leave
    saved = load_config(path)
    assert new_key in saved.networks[0].keys  # the ring was written...
    assert saved.incarnation == departure.incarnation  # ...without taking the node back below its left record


def test_a_leave_while_a_key_change_is_queued_keeps_both(
    runners: Callable[..., NodeRunner], tmp_path: Path,  # noqa: F811
) -> None:
    a = runners("a")
    path = tmp_path / "a-server.json"
    a._committer.config_path = path  # noqa: SLF001
    new_key = os.urandom(32)

    async def both() -> int:
        install = a.loop.create_task(a.install_key_async(new_key, "default"))
        departure = await a.leave_async(wait=0.1)
        await install
        return departure.incarnation

    incarnation = a.call(both(), timeout=10)
    saved = load_config(path)
    assert new_key in saved.networks[0].keys and saved.incarnation == incarnation


def test_two_leaves_at_once_are_one_leave(
    runners: Callable[..., NodeRunner], tmp_path: Path,  # noqa: F811
) -> None:
    """SIGTERM while ``gossip leave`` runs: one announcement, one comeback incarnation, and
    both callers get the same answer."""
    a = runners("a")
    path = tmp_path / "a-server.json"
    a._committer.config_path = path  # noqa: SLF001
    start = a.config.incarnation

    async def both() -> list[object]:
        return list(await asyncio.gather(a.leave_async(wait=0.1), a.leave_async(wait=0.1)))

    first, second = a.call(both(), timeout=10)
    assert first == second
    assert first.incarnation == start + 2 == load_config(path).incarnation  # type: ignore[attr-defined]
