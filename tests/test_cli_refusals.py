"""Every error code the client API answers has its own one-line message in the CLI (the code
decides, not the status): none falls through to the generic "answered HTTP <status>" line."""

from __future__ import annotations

import pytest

from gossip.cli import NodeClient
from gossip.errors import ErrorCode

#: The codes whose node's reason is the whole message: it says what to do.
REFUSALS = [
    ErrorCode.UNKNOWN_KEY, ErrorCode.PRIMARY_KEY, ErrorCode.LAST_KEY, ErrorCode.KEY_IN_USE,
    ErrorCode.UNKNOWN_PEER, ErrorCode.AMBIGUOUS_PEER, ErrorCode.PEER_NOT_DEAD,
]


@pytest.mark.parametrize("code", REFUSALS)
def test_a_refusal_shows_the_nodes_reason(code: ErrorCode) -> None:
    client = NodeClient("http://127.0.0.1:9", "default", b"k" * 32)
    error = client.fail(400, {"error": "peer 'gamma' is alive, not dead", "code": code.value}, "/v1/x")
    assert str(error) == "the node refused: peer 'gamma' is alive, not dead"


#: Only POST /v1/register answers these, and `gossip register` words them itself.
REGISTER_ONLY = {ErrorCode.PEER_REFUSED, ErrorCode.PEER_UNREACHABLE}


@pytest.mark.parametrize("code", [c for c in ErrorCode if c not in REGISTER_ONLY])
def test_no_code_falls_through_to_the_generic_line(code: ErrorCode) -> None:
    client = NodeClient("http://127.0.0.1:9", "default", b"k" * 32)
    error = client.fail(400, {"error": "why", "code": code.value}, "/v1/x")
    assert "answered HTTP" not in str(error), code
