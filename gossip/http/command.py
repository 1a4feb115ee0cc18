"""``python -m gossip.http``: flags, ``server.json``, the store's lock, the banner, signals.

Run it with ``-m``: run by path, ``import http.server`` would find this package instead.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import ipaddress
from dataclasses import replace
import logging
import os
import re
import secrets
import signal
import ssl
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Sequence

from ..auth import derive_key
from ..configfile import load_config, read_secret_file, save_config
from ..errors import ConfigError, GossipError, LocalProtocolError, StorageError, StorageInUse, TransportError
from ..messages import MAX_MESSAGE_BYTES
from ..model import ACTIVE_VIEW, FULL_VIEW_LIMIT, Network, NodeConfig, Quota, Retention, check_network_name
from ..storage.jsonfile import JsonFileStorage
from .api import parse_hostport
from .join import JoinTarget, join_network, parse_join_target
from .client import HttpTransport
from .runner import NodeRunner
from .server import Request, Response, hostport

__all__ = ["main", "build_config", "tls_contexts", "data_dir_for", "listen_address", "parse_age", "DEFAULT_PORT"]

DEFAULT_PORT = 8470
#: Seconds per unit of an AGE flag (``90s``, ``30m``, ``12h``, ``30d``).
_AGE_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_age(text: str) -> float:
    """An age such as ``90s``, ``30m``, ``12h``, ``30d`` (a bare number is seconds), in seconds.

    Raises:
        argparse.ArgumentTypeError: not of that form, or not positive.
    """
    match = re.fullmatch(r"([0-9]{1,9}(?:\.[0-9]{1,6})?)([smhd]?)", text.strip().lower())
    seconds = float(match[1]) * _AGE_UNITS[match[2] or "s"] if match else 0.0
    if not seconds > 0:
        raise argparse.ArgumentTypeError(f"{text[:40]!r} is not an age such as 90s, 30m, 12h or 30d")
    return seconds


def data_dir_for(config_path: Path) -> Path:
    """Where a node keeps gossips and peers: ``server.json`` -> ``server-data/`` beside it."""
    return config_path.with_name(config_path.stem + "-data")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m gossip.http",
        description="Run a gossip node: it serves its peers, the client API and the web page over HTTP.",
    )
    p.add_argument("--config", default="server.json", help="the node's properties file (default ./server.json)")
    p.add_argument("--name", help="this node's name (default node-<guid prefix>)")
    p.add_argument("--network", help="the network to create or join (default 'default')")
    pw = p.add_mutually_exclusive_group()
    pw.add_argument("--password", help="the network password (prefer GOSSIP_PASSWORD or --password-file)")
    pw.add_argument("--password-file", help="read the network password from this file")
    p.add_argument("--ip", help="address peers are told to use; also the one listened on without --listen (default 127.0.0.1)")
    p.add_argument("--port", type=int, help=f"port to listen on (default {DEFAULT_PORT}; 0 picks a free one)")
    p.add_argument("--timer", type=float, help="seconds between gossip rounds (default 1)")
    p.add_argument("--max-peers", type=int, help="peers a new gossip is pushed to at once (default 3)")
    p.add_argument(
        "--active-view", type=int, metavar="SIZE",
        help=f"peers this node gossips with once it knows more than --full-view-limit nodes (default {ACTIVE_VIEW};"
        " set it the same on every node)",
    )
    p.add_argument(
        "--full-view-limit", type=int, metavar="N",
        help=f"known nodes (this one included) up to which this node gossips with all of them; past it, with"
        f" its active view only (default {FULL_VIEW_LIMIT}; set it the same on every node)",
    )
    p.add_argument(
        "--forget-after", type=parse_age, metavar="AGE",
        help="forget peers that left or are dead after this long without news, e.g. 12h (default 24h)",
    )
    p.add_argument(
        "--join", metavar="HOST:PORT", action="append",
        help="register with a running node of the network; repeat it to name several (the first that answers"
        " is used), and a HOST with several addresses is tried address by address",
    )
    p.add_argument(
        "--retry-join", action="store_true",
        help="keep trying the --join targets, with backoff, until one answers (nodes may start in any order)",
    )
    p.add_argument(
        "--listen", metavar="IP|HOST:PORT",
        help="address (and port) to listen on instead of --ip:--port, which peers are still told",
    )
    p.add_argument("--tls-cert", metavar="PATH", help="serve HTTPS with this certificate (PEM); needs --tls-key")
    p.add_argument("--tls-key", metavar="PATH", help="the certificate's private key (PEM)")
    p.add_argument("--tls-ca", metavar="PATH", help="verify peers' certificates against this CA (PEM); turns on HTTPS to peers")
    p.add_argument("--max-body", type=int, default=MAX_MESSAGE_BYTES, metavar="BYTES", help="largest request body accepted (default 1 MiB)")
    p.add_argument("--clock-offset", type=float, default=0.0, metavar="SECONDS", help=argparse.SUPPRESS)
    p.add_argument(
        "--retention",
        metavar="AGE",
        help="how long the network keeps a gossip, e.g. 30d, 12h, 90s, or forever (the default);"
        " spreads to every node of the network",
    )
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"], help="default INFO")
    return p


def _password(args: argparse.Namespace) -> str | None:
    if args.password is not None:
        if not args.password:
            raise ConfigError(f"--password is empty; {_PASS_IT}")
        return str(args.password)
    if args.password_file is not None:
        return read_secret_file(args.password_file, "--password-file")
    return os.environ.get("GOSSIP_PASSWORD") or None


#: How to give the password, for the refusals that need one.
_PASS_IT = "set GOSSIP_PASSWORD='...', or pass --password-file PATH (or --password PW)"


#: The flags that set a field of NodeConfig: (argparse dest, field).
_FLAG_FIELDS = (
    ("name", "node_name"),
    ("ip", "ip"),
    ("port", "port"),
    ("timer", "gossip_timer"),
    ("max_peers", "gossip_max_peer_count"),
    ("forget_after", "forget_after"),
    ("active_view", "active_view"),
    ("full_view_limit", "full_view_limit"),
)


def build_config(args: argparse.Namespace, path: Path) -> tuple[NodeConfig, str | None, bool]:
    """The config to run with: loaded and updated by flags, or new.

    Returns:
        ``(config, generated_password, changed)``; the password is set only when this call
        made it up, so that it can be shown once.
    """
    password = _password(args)
    generated = None
    network_name = args.network
    if network_name is not None:
        try:
            check_network_name(network_name)
        except LocalProtocolError as exc:
            raise ConfigError(f"--network: {exc}") from None
    existed = path.exists()
    if existed:
        config = load_config(path)
        network_name = network_name or config.networks[0].name
        changed = False
    else:
        guid = str(uuid.uuid4())
        network_name = network_name or "default"
        if password is None and args.join:  # a made-up password could never join
            raise ConfigError(
                f"to --join {', '.join(args.join)} this node needs the password of network {network_name!r}: {_PASS_IT}"
            )
        if password is None:
            password = generated = secrets.token_urlsafe(18)
        config = NodeConfig(
            node_guid=guid,
            node_name=args.name or f"node-{guid[:8]}",
            networks=(Network(name=network_name, key=derive_key(network_name, password)),),
            port=DEFAULT_PORT,
        )
        changed = True
    updates: dict[str, Any] = {}
    for flag, attr in _FLAG_FIELDS:
        value = getattr(args, flag)
        if flag == "port" and value == 0:
            continue  # "pick a free one": main() binds port 0 and records the port it got
        if value is not None and value != getattr(config, attr):
            updates[attr] = value
    if password is not None and generated is None and existed:
        key = derive_key(network_name, password)
        # Any key of the network's ring will do: after a rotation (`gossip keys`) the node is
        # still started with the password it was first given, and keeps the ring it has.
        ring = next((n for n in config.networks if n.name == network_name), None)
        if ring is not None and ring.key_version and key not in ring.keys:
            # Its keys were rotated (`gossip keys`): an old password left in the environment or
            # a unit file must not quietly put back a key the network has dropped.
            raise ConfigError(
                f"the password given is not one of network {network_name!r}'s keys, which were"
                f" rotated with `gossip keys` (ring version {ring.key_version}); give the new password,"
                " or none (server.json holds the keys)"
            )
        if (network_name, key) not in {(n.name, k) for n in config.networks for k in n.keys}:
            others = tuple(n for n in config.networks if n.name != network_name)
            old = next((n for n in config.networks if n.name == network_name), None)
            kept, retention = (Quota(), Retention()) if old is None else (old.quota, old.retention)
            updates["networks"] = (Network(name=network_name, key=key, quota=kept, retention=retention),) + others
    elif password is None and network_name not in config.network_names:
        raise ConfigError(f"to join network {network_name!r} this node needs its password: {_PASS_IT}")
    if getattr(args, "retention", None) is not None:
        networks = _with_retention(updates.get("networks", config.networks), network_name, args.retention)
        if networks is not None:
            updates["networks"] = networks
    if updates:
        if existed and {"node_name", "ip", "port"} & set(updates):
            updates["incarnation"] = config.incarnation + 1  # peers must prefer the new record
        try:
            config = config.with_changes(**updates)
        except LocalProtocolError as exc:
            # The config names its fields; the person typed flags: say the flag.
            message = str(exc)
            for flag, attr in _FLAG_FIELDS:
                if attr in updates and message.startswith(f"{attr} "):
                    message = f"--{flag.replace('_', '-')} {message[len(attr) + 1:]}"
            raise ConfigError(f"bad option: {message}") from None
        changed = True
    return config, generated, changed


def _with_retention(networks: tuple[Network, ...], name: str, text: str) -> tuple[Network, ...] | None:
    """The networks with ``name``'s retention set to ``text`` (``--retention``), stamped now so
    that it supersedes what the network held (see :meth:`Retention.supersedes`); None when it
    already keeps that age.

    Raises:
        ConfigError: not an age.
    """
    try:
        age = None if text.strip().lower() in ("forever", "0") else parse_age(text)
        Retention(max_age=age)  # the config's bounds
    except (argparse.ArgumentTypeError, LocalProtocolError) as exc:
        raise ConfigError(f"--retention: {exc}; or forever") from None
    out = []
    changed = False
    for net in networks:
        if net.name == name and net.retention.max_age != age:
            net = replace(net, retention=Retention(max_age=age, set_at=int(time.time() * 1000)))
            changed = True
        out.append(net)
    return tuple(out) if changed else None


def tls_contexts(args: argparse.Namespace) -> tuple[ssl.SSLContext | None, ssl.SSLContext | None]:
    """The server and client TLS contexts the flags ask for (both None: plain HTTP).

    Raises:
        ConfigError: a half-given pair, or a file that cannot be loaded.
    """
    if bool(args.tls_cert) != bool(args.tls_key):
        raise ConfigError("--tls-cert and --tls-key go together")
    server = client = None
    try:
        if args.tls_cert:
            server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            server.minimum_version = ssl.TLSVersion.TLSv1_2
            server.load_cert_chain(args.tls_cert, args.tls_key)
        if args.tls_ca:
            client = ssl.create_default_context(cafile=args.tls_ca)
            client.minimum_version = ssl.TLSVersion.TLSv1_2
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"cannot load the TLS files: {exc}") from None
    if server is not None and client is None:
        raise ConfigError("with --tls-cert, also give --tls-ca: peers are then reached over HTTPS and verified")
    return server, client


#: The banner's line for a node that did not just make up its password (docs/operating.md).
_LOST_PASSWORD = (
    "Lost the password? It is not kept: restart with a new one (GOSSIP_PASSWORD or --password),"
    " the same on every node (docs/operating.md)"
)


def _second_port(advertised: int, bound: int) -> int:
    """The port the banner suggests for a second node on this machine: the next one up, but
    neither of this node's ports (``--listen`` may bind the next one) nor above 65535."""
    candidates: list[int] = [*range(advertised + 1, min(advertised + 3, 65536)), advertised - 1, advertised - 2]
    return next(port for port in candidates if port != bound)


def _banner(config: NodeConfig, address: tuple[str, int], path: Path, password: str | None, scheme: str = "http") -> str:
    host = f"[{address[0]}]" if ":" in address[0] else address[0]
    network = config.networks[0].name
    lines = [
        f"gossip node {config.node_name} ({config.node_guid}) on network {', '.join(config.network_names)}",
        f"Serving {scheme.upper()} on {address[0]} port {address[1]} ({scheme}://{host}:{address[1]}/) ...",
        f"config {path}, data {data_dir_for(path)}/",
        "",
        "To join a second node to this network, run:",
    ]
    if address != (config.ip, config.port):
        lines.insert(2, f"peers are told {hostport(config.ip, config.port)} (--ip, --port)")
    # The join command names the address peers are told, which --listen may differ from.
    port = _second_port(config.port, address[1])
    join = f"python -m gossip.http --config node-{port}.json --port {port} --network {network} --join {hostport(config.ip, config.port)}"
    if scheme == "https":
        join += " --tls-cert CERT --tls-key KEY --tls-ca CA"
    if password is not None:
        lines[-1] = "To join a second node to this network, run (the password is shown only this once;"
        lines.append("server.json keeps only a key derived from it):")
        lines.append(f"    GOSSIP_PASSWORD='{password}' {join}")
    else:
        # Only the key is stored, so a lost password cannot be shown: say how to replace it.
        lines.insert(lines.index(""), _LOST_PASSWORD)
        lines.append(f"    GOSSIP_PASSWORD='<the password of {network}>' {join}")
    return "\n".join(lines)


def _raise_fd_limit() -> None:
    """Let the server hold as many connections as the system allows (Go's runtime does the same)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not on POSIX: the system's default stands
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):  # not allowed here: keep the soft limit
            pass


def _claim(storage: JsonFileStorage, path: Path) -> None:
    try:
        storage.claim()
    except StorageInUse as exc:
        holder = f"process {exc.pid}" if exc.pid else "another process"
        raise ConfigError(
            f"{path} is already in use by {holder} (it holds {storage.directory}/)."
            f" To run a second node here, give it its own config and port:"
            f" python -m gossip.http --config other.json --port {DEFAULT_PORT + 1}"
        ) from None


def listen_address(text: str, port: int) -> tuple[str, int]:
    """``--listen``: an IP address (then the port is ``port``, the one from ``--port``) or
    ``HOST:PORT``.

    Raises:
        ConfigError: neither.
    """
    bare = text.strip()
    try:
        return str(ipaddress.ip_address(bare.strip("[]"))), port
    except ValueError:
        pass
    try:
        return parse_hostport(bare)
    except LocalProtocolError as exc:
        raise ConfigError(f"--listen {text[:100]!r}: give an IP address or HOST:PORT ({exc})") from None


async def _join(
    runner: NodeRunner, targets: list[JoinTarget], network: str, *, retry: bool, stop: threading.Event, failed: threading.Event
) -> None:
    """Run the join on the runner's loop and report it: one line on stdout when it worked;
    without retry, when every target failed, one error line, then stop the node (exit 1)."""
    outcome = await join_network(targets, lambda ip, port: runner.register_async(ip, port, network), network=network, retry=retry)
    if outcome.registered is not None:
        print(f"joined network {network}: {outcome.describe()}", flush=True)
        return
    print(f"error: could not join {outcome.describe()}", file=sys.stderr, flush=True)
    failed.set()
    stop.set()
def _leave(runner: NodeRunner) -> None:
    """A clean stop announces that the node leaves (bounded: LEAVE_WAIT), then stops anyway."""
    try:
        departure = runner.leave()
    except (GossipError, TimeoutError) as exc:
        print(f"error: {exc}; stopping without telling the peers (they will see this node dead)", file=sys.stderr)
        return
    if departure.told:
        print(f"left the network: told {departure.told} peers, {departure.answered} took it", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run a node until SIGINT or SIGTERM. Returns the exit status."""
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    path = Path(args.config)
    runner: NodeRunner | None = None

    # The server must listen before the runner exists (to learn the port of --port 0).
    async def handler(data: bytes) -> bytes:
        if runner is None:
            raise GossipError("this node is starting; try again", status_hint=503)
        return await runner.handle_peer(data)

    async def app(request: Request) -> Response:
        if runner is None:
            raise GossipError("this node is starting; try again", status_hint=503)
        return await runner.api.handle(request)

    transport: HttpTransport | None = None
    storage: JsonFileStorage | None = None
    try:
        server_tls, client_tls = tls_contexts(args)
        config, generated, changed = build_config(args, path)
        targets = [parse_join_target(text) for text in args.join or ()]
        if args.retry_join and not targets:
            raise ConfigError("--retry-join needs at least one --join HOST:PORT")
        port = 0 if args.port == 0 else config.port
        listen = listen_address(args.listen, port) if args.listen else (config.ip, port)
        if args.port == 0 and listen[1] != 0:
            raise ConfigError("--port 0 picks a free port to listen on and advertise: give --listen an IP, without a port")
        storage = JsonFileStorage(data_dir_for(path))
        _claim(storage, path)
        _raise_fd_limit()
        transport = HttpTransport(
            app=app, max_body=args.max_body, ssl_server_context=server_tls, ssl_client_context=client_tls
        )
        try:
            address = transport.serve(listen, handler)
        except TransportError as exc:
            raise ConfigError(f"{exc}; pick another --port") from None
        if listen[1] == 0:  # --port 0: advertise the port we got
            config = config.with_changes(port=address[1], incarnation=config.incarnation + 1)
            changed = True
        if changed:
            save_config(path, config)
        offset = args.clock_offset
        # The loop serves this node alone: writes run on it (see NodeRunner's writer_thread).
        runner = NodeRunner(
            config, storage, transport=transport, clock=lambda: time.time() + offset, config_path=path,
            writer_thread=False,
        )
    except (ConfigError, StorageError, LocalProtocolError) as exc:
        if transport is not None:
            transport.close()
        if storage is not None:
            storage.close()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    stop = runner.done  # set by a signal, or by a leave through the client API (gossip leave)
    for sig in (signal.SIGINT, signal.SIGTERM):  # before the banner: a signal right after it stops cleanly
        signal.signal(sig, lambda *_: stop.set())
    # The store is loaded: everything alive now (a big store's gossips, the node's tables)
    # lives as long as the process. Frozen, the cyclic collector no longer walks it at each
    # full collection (a quarter of a second with 200,000 gossips held, the loop stopped
    # meanwhile: bench/bench_storage.py); they still go as usual when their count drops to zero.
    gc.freeze()
    print(_banner(config, address, path, generated, "https" if server_tls else "http"), flush=True)
    runner.start_gossiping()
    failed = threading.Event()
    joining = None
    if targets:
        network = args.network or config.networks[0].name
        coro = _join(runner, targets, network, retry=args.retry_join, stop=stop, failed=failed)
        joining = asyncio.run_coroutine_threadsafe(coro, runner.loop)
    stop.wait()  # a signal's handler sets it (lock waits are interruptible on POSIX)
    if joining is not None:
        joining.cancel()  # a stop while retrying: the next round never starts
    _leave(runner)
    runner.stop()
    status = 1 if failed.is_set() else 0
    print("stopped; everything acknowledged is on disk", flush=True)
    return status
