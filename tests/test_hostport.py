"""``HOST:PORT`` has one rule, :func:`gossip.http.api.split_hostport`, for ``--join``, the
client API's register and ``gossip register``; a bad value is a one-line usage error."""

from __future__ import annotations

import pytest

from gossip.cli import main as cli_main
from gossip.errors import LocalProtocolError
from gossip.http.api import split_hostport
from gossip.http.join import parse_join_target

GOOD = {
    "127.0.0.1:8470": ("127.0.0.1", 8470),
    " node-1.example:1 ": ("node-1.example", 1),
    "[::1]:65535": ("::1", 65535),
}
BAD = ["a:²", "a:٣", "a:" + "9" * 5000, "a:0", "a:65536", "a", ":80", "a b:80", "me@a:80", "a/x:80", "a?:80", "a:8o"]


@pytest.mark.parametrize("text", GOOD)
def test_good_forms(text: str) -> None:
    assert split_hostport(text) == GOOD[text]
    target = parse_join_target(text)
    assert (target.host, target.port) == GOOD[text]


@pytest.mark.parametrize("text", BAD)
def test_bad_forms_are_refused(text: str) -> None:
    with pytest.raises(LocalProtocolError, match="is not HOST:PORT"):
        split_hostport(text)


@pytest.mark.parametrize("text", BAD)
def test_gossip_register_refuses_them_before_asking_the_node(text: str, capsys: pytest.CaptureFixture[str]) -> None:
    # The node named by --node does not exist: the refusal comes from the form alone.
    status = cli_main(["register", text, "--node", "127.0.0.1:9", "--network", "default", "--password", "pw"])
    out, err = capsys.readouterr()
    assert status == 2 and out == ""
    assert err.startswith("gossip: error: ") and "is not HOST:PORT of a node" in err
    assert err.count("\n") == 1 and "Traceback" not in err
