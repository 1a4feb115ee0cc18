"""gossip: eventually consistent message sets by gossip, with a sans-I/O core.

Everything in ``__all__`` is the public API. The simulator (``python -m gossip.sim``) is
not imported here, so that running it with ``-m`` does not load it twice;
``python -m gossip.http`` runs ``gossip/http/__main__.py``, which nothing imports.
"""

__version__ = "0.1.0"  # first: gossip.http reads it while this package is still importing

from .auth import derive_key
from .errors import (
    AuthenticationError,
    ConfigError,
    GossipError,
    LocalProtocolError,
    MessageTooLarge,
    RemoteProtocolError,
    StorageError,
    TransportError,
)
from .events import (
    Event,
    GossipReceived,
    PeerForgotten,
    PeerJoined,
    PeerStatusChanged,
    PeerUpdated,
    RegisterFailed,
    Registered,
)
from .model import Gossip, Network, NodeConfig, Peer, PeerStatus, PeerView, Quota, Snapshot, compute_sha2
from .events import GossipConflict, GossipRemoved, RetentionChanged, TombstoneAdded, TombstoneRemoved
from .model import Retention, Tombstone
from .node import GossipNode, GossipStatus, Outgoing
from .node import KeyInfo
from .events import KeyringChanged
from .storage import JsonFileStorage, MemoryStorage, Storage, persist
from .transport import MemoryNetwork, MemoryTransport, Transport
from .http.client import HttpTransport
from .client import AsyncClient, Client, NodeError

__all__ = [
    "__version__",
    "derive_key",
    "GossipError",
    "LocalProtocolError",
    "RemoteProtocolError",
    "AuthenticationError",
    "MessageTooLarge",
    "TransportError",
    "StorageError",
    "ConfigError",
    "Event",
    "GossipReceived",
    "PeerJoined",
    "PeerUpdated",
    "PeerStatusChanged",
    "PeerForgotten",
    "Registered",
    "RegisterFailed",
    "KeyringChanged",
    "Gossip",
    "Network",
    "NodeConfig",
    "Peer",
    "PeerStatus",
    "PeerView",
    "Quota",
    "Snapshot",
    "compute_sha2",
    "GossipNode",
    "GossipStatus",
    "KeyInfo",
    "Outgoing",
    "Storage",
    "MemoryStorage",
    "JsonFileStorage",
    "persist",
    "Transport",
    "MemoryNetwork",
    "MemoryTransport",
    "HttpTransport",
    "Client",
    "AsyncClient",
    "NodeError",
]
# Retention, delete and conflicts (issue 13 item 1, issue 10 item 9).
__all__ += [
    "GossipRemoved",
    "GossipConflict",
    "TombstoneAdded",
    "TombstoneRemoved",
    "RetentionChanged",
    "Retention",
    "Tombstone",
]
