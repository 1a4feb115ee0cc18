"""gossip: eventually consistent message sets by gossip, with a sans-I/O core.

Everything in ``__all__`` is the public API. The runners (``python -m gossip.http``,
``python -m gossip.sim``) are not imported here, so that running them with ``-m`` does not
load them twice.
"""

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
    PeerJoined,
    PeerStatusChanged,
    PeerUpdated,
    RegisterFailed,
    Registered,
)
from .model import Gossip, Network, NodeConfig, Peer, PeerStatus, PeerView, Snapshot, compute_sha2
from .node import GossipNode, GossipStatus, Outgoing
from .storage import JsonFileStorage, MemoryStorage, Storage, persist
from .transport import HttpTransport, MemoryNetwork, MemoryTransport, Transport

__version__ = "0.1.0"

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
    "Registered",
    "RegisterFailed",
    "Gossip",
    "Network",
    "NodeConfig",
    "Peer",
    "PeerStatus",
    "PeerView",
    "Snapshot",
    "compute_sha2",
    "GossipNode",
    "GossipStatus",
    "Outgoing",
    "Storage",
    "MemoryStorage",
    "JsonFileStorage",
    "persist",
    "Transport",
    "MemoryNetwork",
    "MemoryTransport",
    "HttpTransport",
]
