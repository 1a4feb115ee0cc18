"""The join command in the banner suggests a port that neither this node advertises nor binds."""

from __future__ import annotations

import pytest

from gossip.http.command import _second_port


@pytest.mark.parametrize(("advertised", "bound", "suggested"), [
    (8470, 8470, 8471),
    (8470, 8471, 8472),  # --listen HOST:8471: the next port up is taken by this very node
    (65535, 65535, 65534),  # no port above the last one
    (65534, 65535, 65533),
])
def test_the_suggested_port_is_free_of_this_nodes_ports(advertised: int, bound: int, suggested: int) -> None:
    assert _second_port(advertised, bound) == suggested
