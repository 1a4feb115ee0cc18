"""Fixtures shared by the tests: real node processes, and a check every in-process node
runs before each round."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gossip.node import GossipNode

from .nodeproc import Cluster


@pytest.fixture(autouse=True)
def irregular_peers_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before every round of every in-process node: each peer that is not plain is in its
    network's ``irregular`` set, which holds known peers only (the rule above
    ``GossipNode._note``). Rounds trust that set instead of looking at every peer, so a code
    path that makes a peer not plain without noting it fails every test that reaches it."""
    round_ = GossipNode._round  # noqa: SLF001

    def checked(node: GossipNode, now: float) -> None:
        for net in node._nets.values():  # noqa: SLF001
            unnoted = [g for g, e in net.peers.items() if (e.fresh or not e.liveness.plain()) and g not in net.irregular]
            assert not unnoted, f"peers not plain missing from irregular: {unnoted}"
            assert net.irregular <= net.peers.keys(), "irregular names a peer not known"
        round_(node, now)

    monkeypatch.setattr(GossipNode, "_round", checked)


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    """Node processes in this test's directory; every one is killed at the end."""
    c = Cluster(tmp_path)
    try:
        yield c
    finally:
        c.close()
