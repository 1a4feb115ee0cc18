"""Everything HTTP: the node runner, its server, its client and its client API.

- :mod:`.runner`: :class:`NodeRunner`, the core + transport + storage + clock; the one commit path.
- :mod:`.server`: connections in, complete requests out (deadlines, limits, keep-alive).
- :mod:`.client`: requests out over pooled persistent connections; :class:`HttpTransport`.
- :mod:`.api`: the client API's routes, authentication and JSON shapes; the web page.
- :mod:`.command`: ``python -m gossip.http``.
"""

from .api import RESOLVE_WAIT, parse_hostport
from .client import HttpTransport, LoopThread, http_call
from .command import DEFAULT_PORT, data_dir_for, main
from .runner import REGISTER_WAIT, NodeRunner
from .server import PEER_PATH, HttpServer, Limits, Request, Response

__all__ = [
    "NodeRunner",
    "HttpTransport",
    "HttpServer",
    "Limits",
    "LoopThread",
    "Request",
    "Response",
    "PEER_PATH",
    "http_call",
    "parse_hostport",
    "data_dir_for",
    "main",
    "DEFAULT_PORT",
    "RESOLVE_WAIT",
    "REGISTER_WAIT",
]
