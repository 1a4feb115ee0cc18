"""Real node processes on 127.0.0.1 for tests: start, talk to, kill, and always clean up."""

from __future__ import annotations

import functools
import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from gossip.auth import client_auth_header
from gossip.auth import derive_key as _derive_key
from gossip.http import http_call

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "correct horse battery staple"


@functools.lru_cache(maxsize=None)
def derive_key(network: str, password: str) -> bytes:
    return _derive_key(network, password)  # PBKDF2 costs ~0.15 s: once per password here


def _own_ports() -> range:
    """The ports this test process picks from: below the kernel's ephemeral range, one slice
    per pytest-xdist worker.

    A port that ``bind(("127.0.0.1", 0))`` found free lies in the ephemeral range, which every
    outgoing connection also draws its source port from: with tests running on four workers,
    one of their thousands of connections could take it before the node bound it ("address
    already in use"; it failed a CI run). Ports below the range are never handed out by the
    kernel, and the slices keep the workers apart.
    """
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    first = 10_000
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    index = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
    size = (low - first) // max(1, workers)
    if size < 200:  # an unusual range: fall back on the kernel's pick
        return range(0)
    return range(first + index * size, first + (index + 1) * size)


_OWN_PORTS = _own_ports()
_next_port = secrets.randbelow(max(1, len(_OWN_PORTS)))  # a new start each run: no stale TIME_WAIT


def free_port() -> int:
    """A port on 127.0.0.1 that is free now and that no other test or connection will take
    (see :func:`_own_ports`); taken in turn, so a port is not handed out twice in a run."""
    global _next_port
    for _ in range(len(_OWN_PORTS)):
        port = _OWN_PORTS[_next_port % len(_OWN_PORTS)]
        _next_port += 1
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port
    with socket.socket() as s:  # no slice, or every port of it busy
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@dataclass
class NodeProc:
    name: str
    config: Path
    port: int
    proc: subprocess.Popen[str]
    password: str = PASSWORD
    network: str = "default"
    banner: list[str] = field(default_factory=list)
    ca: str | None = None  # the node serves HTTPS, verified with this CA

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{'https' if self.ca else 'http'}://{self.address}"

    @property
    def node_guid(self) -> str:
        """This node's guid, from its config file."""
        return str(json.loads(self.config.read_text())["node_guid"])

    def clock_offset_ms(self) -> int:
        """How far the node's clock is ahead of this one (``GET /healthz``'s ``time_ms``), for
        stamping client requests on its clock, as the CLI does (a node started with
        ``--clock-offset`` refuses client timestamps from before it started)."""
        sent = time.time()
        status, answer = http_call(f"{self.url}/healthz", timeout=10.0, ssl_context=self.ssl_context())
        assert status == 200, answer
        return int(json.loads(answer)["time_ms"]) - int((sent + time.time()) / 2 * 1000)

    def ssl_context(self) -> ssl.SSLContext | None:
        return ssl.create_default_context(cafile=self.ca) if self.ca else None

    def call(self, method: str, path: str, body: Any = None, *, password: str | None = None, timeout: float = 10.0) -> tuple[int, Any]:
        data = b"" if body is None else json.dumps(body).encode()
        key = derive_key(self.network, password or self.password)
        # The offset first, then the clock: read before the /healthz round trip, the stamp
        # would lag by that round trip, and on a loaded machine a request made right after
        # the node started could then fall before its start (refused as a replay).
        offset = self.clock_offset_ms()
        header = client_auth_header(
            network=self.network, node=self.node_guid, key=key, method=method, path=path, query={}, body=data,
            ts=int(time.time() * 1000) + offset, nonce=secrets.token_hex(12),
        )
        status, answer = http_call(
            f"{self.url}{path}", method=method, body=data if body is not None else None,
            headers={"X-Gossip-Auth": header}, timeout=timeout, ssl_context=self.ssl_context(),
        )
        return status, json.loads(answer) if answer else None

    def create(self, msg: str) -> str:
        status, body = self.call("POST", "/v1/gossip", {"msg": msg})
        assert status == 201, body
        return str(body["guid"])

    def guids(self, complete: bool = True) -> set[str]:
        status, rows = self.call("GET", "/v1/gossip")
        assert status == 200, rows
        return {r["guid"] for r in rows if r["complete"] or not complete}

    def peers(self) -> list[dict[str, Any]]:
        """The node's peers (``GET /v1/peers`` without its own row)."""
        status, rows = self.call("GET", "/v1/peers")
        assert status == 200, rows
        assert rows[0]["self"] is True and rows[0]["guid"] == self.node_guid, rows[0]
        return [r for r in rows[1:]]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return int(self.proc.returncode)


class Cluster:
    """Starts node processes in one directory and kills every one of them at the end."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.nodes: list[NodeProc] = []

    def start(self, name: str, *args: str, port: int | None = None, password: str = PASSWORD,
              timer: float = 0.2, expect_banner: bool = True, env: dict[str, str] | None = None,
              tls: tuple[Path, Path, Path] | None = None,
              preexec_fn: Callable[[], None] | None = None) -> NodeProc:
        port = port or free_port()
        config = self.directory / f"{name}.json"
        cmd = [sys.executable, "-m", "gossip.http", "--config", str(config), "--port", str(port),
               "--timer", str(timer), "--log-level", "WARNING", *args]
        if tls is not None:
            cmd += ["--tls-cert", str(tls[0]), "--tls-key", str(tls[1]), "--tls-ca", str(tls[2])]
        full_env = dict(os.environ, GOSSIP_PASSWORD=password, PYTHONPATH=str(ROOT), **(env or {}))
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                cwd=self.directory, env=full_env, preexec_fn=preexec_fn)
        node = NodeProc(name=name, config=config, port=port, proc=proc, password=password,
                        ca=str(tls[2]) if tls else None)
        self.nodes.append(node)
        if expect_banner:
            assert proc.stdout is not None
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                line = proc.stdout.readline()
                if not line:
                    raise AssertionError(f"{name} exited: {proc.wait(5)} {proc.stderr.read() if proc.stderr else ''}")
                node.banner.append(line.rstrip("\n"))
                if "--join" in line:  # the banner's last line: the join command
                    break
            wait_for(lambda: self._healthy(node), 10, f"{name} to answer /healthz")
        return node

    @staticmethod
    def _healthy(node: NodeProc) -> bool:
        try:
            return http_call(f"{node.url}/healthz", timeout=1, ssl_context=node.ssl_context())[0] == 200
        except Exception:
            return False

    def close(self) -> None:
        for node in self.nodes:
            if node.proc.poll() is None:
                node.proc.kill()
            try:
                node.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
            for stream in (node.proc.stdout, node.proc.stderr):
                if stream is not None:
                    stream.close()


def write_stored_node(config: Path, name: str, messages: list[str], *, password: str = PASSWORD,
                      network: str = "default", newest: float | None = None) -> None:
    """A node's ``config`` and its data directory holding one gossip per message, written
    directly with the node's own storage (valid sha2), so that ``Cluster.start`` of that
    config starts on them; far faster than creating 100,000 gossips through the API.

    The gossips are one second apart, the last (``messages[-1]``) at ``newest`` (default: now).
    """
    import datetime as dt
    import random
    import uuid

    from gossip.configfile import save_config
    from gossip.http import data_dir_for
    from gossip.model import Gossip, Network, NodeConfig
    from gossip.storage.jsonfile import JsonFileStorage

    rng = random.Random(name)
    save_config(config, NodeConfig(
        node_guid=str(uuid.UUID(int=rng.getrandbits(128), version=4)), node_name=name,
        networks=(Network(name=network, key=derive_key(network, password)),),
    ))
    last = dt.datetime.fromtimestamp(time.time() if newest is None else newest, dt.timezone.utc)
    first = last - dt.timedelta(seconds=len(messages) - 1)
    storage = JsonFileStorage(data_dir_for(config))
    storage.load()
    try:
        for start in range(0, len(messages), 5000):  # one write and one fsync per batch
            storage.save_gossips(network, [
                Gossip.create(
                    guid=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    date_time=(first + dt.timedelta(seconds=i)).isoformat(timespec="microseconds"),
                    who_name=name, msg=msg,
                )
                for i, msg in enumerate(messages[start:start + 5000], start)
            ])
    finally:
        storage.close()
