"""Hosts in Linux network namespaces for the multi-host tests: a switch, cables, node processes.

A :class:`Lab` builds, as root and with iproute2's ``ip``::

    host h0 (netns) ─ cable ─┐
    host h1 (netns) ─ cable ─┼─ bridge in the switch (netns)
    host h2 (netns) ─ cable ─┘

Each host has one address, ``10.213.0.<i+1>/24``, on its end of a veth pair (the cable); the
other end is a port of the switch's bridge. No namespace has a route anywhere else and the root
namespace has no link into them, so no test packet leaves them. Node processes run inside the
hosts with ``ip netns exec``; the test talks to them from threads that entered the host's
namespace (:meth:`Host.run`), so the test process itself needs no route.

Every namespace and link is named after the test process's pid and a per-process counter, so
parallel runs never collide. :meth:`Lab.close` kills every node's process group and deletes
every namespace, which takes the cables and the bridge with them; node processes also get
SIGKILL if the test process dies first (``PR_SET_PDEATHSIG``), and a later lab deletes the
namespaces of a test process that no longer exists (half an hour on).
"""

from __future__ import annotations

import ctypes
import itertools
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, TypeVar

from gossip.auth import client_auth_header
from gossip.errors import TransportError
from gossip.http import http_call

from .nodeproc import PASSWORD, ROOT, derive_key

T = TypeVar("T")

NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
PR_SET_PDEATHSIG = 1
SUBNET = "10.213.0"
PREFIX = "gsp"  # namespaces are gsp<pid>x<n>-sw, gsp<pid>x<n>-h<i>
STALE_AFTER = 30 * 60.0
_STALE = re.compile(rf"^{PREFIX}(\d+)x\d+-")
_labs = itertools.count()


def _tool(name: str) -> str | None:
    """Where iproute2's ``name`` is; also looks in the sbin directories a user's PATH may lack."""
    return shutil.which(name, path=os.pathsep.join([os.environ.get("PATH", os.defpath), "/usr/sbin", "/sbin"]))


IP = _tool("ip")
TC = _tool("tc")


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``ip ARGS``; raise with its stderr when it fails and ``check``."""
    return _run(IP or "ip", *args, check=check)


def tc(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run ``tc ARGS``; raise with its stderr when it fails and ``check``."""
    return _run(TC or "tc", *args, check=check)


def _run(*cmd: str, check: bool) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


@lru_cache(maxsize=None)
def unavailable(need_tc: bool = False) -> str | None:
    """Why namespaces (and, with ``need_tc``, tc's token bucket) cannot be used here, or None.

    Probes by doing it: a namespace with a veth pair inside, and a ``tbf`` qdisc on it.
    """
    if sys.platform != "linux":
        return "network namespaces are Linux only"
    if os.geteuid() != 0:
        return "creating network namespaces needs root (ip netns add)"
    if IP is None:
        return "iproute2's `ip` is not installed (apt-get install iproute2)"
    if need_tc and TC is None:
        return "iproute2's `tc` is not installed (apt-get install iproute2)"
    probe = f"{PREFIX}{os.getpid()}x{next(_labs)}-probe"
    try:
        made = ip("netns", "add", probe, check=False)
        if made.returncode != 0:
            return f"this kernel or user does not allow network namespaces: ip netns add: {made.stderr.strip()}"
        pair = ip("-n", probe, "link", "add", "pa", "type", "veth", "peer", "name", "pb", check=False)
        if pair.returncode != 0:
            return f"cannot create a veth pair: {pair.stderr.strip()}"
        if need_tc:
            tbf = tc("-n", probe, "qdisc", "add", "dev", "pa", "root", "tbf", "rate", "1mbit",
                     "burst", "5kb", "latency", "200ms", check=False)
            if tbf.returncode != 0:
                return f"tc cannot add a token bucket (sch_tbf): {tbf.stderr.strip()}"
        return None
    finally:
        ip("netns", "del", probe, check=False)


def _enter_netns(name: str) -> None:
    """Move the calling thread into namespace ``name``: the sockets it opens are inside."""
    fd = os.open(NETNS_DIR / name, os.O_RDONLY | os.O_CLOEXEC)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"setns into {name}: {os.strerror(errno)}")
    finally:
        os.close(fd)


def _die_with_parent() -> Callable[[], None]:
    """A ``preexec_fn`` that has the child killed when the test process dies. libc is looked up
    here, in the parent: between fork and exec the child only makes the one call."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl
    return lambda: prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class Host:
    """One namespace with one address, cabled to the switch."""

    index: int
    netns: str
    ip: str
    nic: str  # this host's end of the cable
    bridge_port: str  # the switch's end of the cable
    executor: ThreadPoolExecutor

    def run(self, fn: Callable[[], T]) -> Future[T]:
        """Call ``fn`` in a thread inside this host's namespace."""
        return self.executor.submit(fn)


@dataclass
class Node:
    """A ``python -m gossip.http`` process on a host; its client API is reached from inside the host."""

    name: str
    host: Host
    port: int
    config: Path
    log: Path
    proc: subprocess.Popen[bytes]
    network: str = "default"
    password: str = PASSWORD

    @property
    def address(self) -> str:
        return f"{self.host.ip}:{self.port}"

    def _call(self, method: str, path: str, body: Any = None, timeout: float = 5.0) -> tuple[int, Any]:
        data = b"" if body is None else json.dumps(body).encode()
        node = str(json.loads(self.config.read_text())["node_guid"])  # what the request is signed for
        header = client_auth_header(
            network=self.network, node=node, key=derive_key(self.network, self.password), method=method, path=path,
            query={}, body=data, ts=int(time.time() * 1000), nonce=secrets.token_hex(12),
        )
        status, answer = http_call(
            f"http://{self.address}{path}", method=method, body=data if body is not None else None,
            headers={"X-Gossip-Auth": header}, timeout=timeout,
        )
        return status, json.loads(answer) if answer else None

    def call(self, method: str, path: str, body: Any = None, timeout: float = 5.0) -> tuple[int, Any]:
        """One signed client request, sent from inside this node's host."""
        return self.host.run(lambda: self._call(method, path, body, timeout)).result(timeout + 5)

    def create(self, msg: str) -> str:
        status, body = self.call("POST", "/v1/gossip", {"msg": msg})
        assert status == 201, (self.name, status, body)
        return str(body["guid"])

    def guids(self) -> set[str]:
        """The complete gossips this node holds."""
        status, rows = self.call("GET", "/v1/gossip")
        assert status == 200, (self.name, status, rows)
        return {r["guid"] for r in rows if r["complete"]}

    def peers(self) -> dict[str, dict[str, Any]]:
        """Each known peer's row of ``GET /v1/peers`` (``status``: alive, suspect or dead in
        this node's eyes; ``failures``: requests failed in a row), by name."""
        status, rows = self.call("GET", "/v1/peers")
        assert status == 200, (self.name, status, rows)
        return {r["name"]: r for r in rows if not r.get("self")}

    def healthy(self) -> bool:
        def probe() -> bool:
            try:
                return http_call(f"http://{self.address}/healthz", timeout=1)[0] == 200
            except TransportError:
                return False
        return self.host.run(probe).result(10)

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError as exc:
            return f"(no log: {exc})"
        return "\n".join(f"  {self.name}| {line}" for line in text[-lines:])


@dataclass
class Lab:
    """A switch and ``hosts`` hosts in namespaces of their own; :meth:`close` removes all of it."""

    directory: Path
    hosts: list[Host] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        tag = f"{PREFIX}{os.getpid()}x{next(_labs)}"
        self.tag = tag
        self.switch = f"{tag}-sw"
        self.bridge = f"br{os.getpid()}"  # link names: at most 15 characters

    # ------------------------------------------------------------------ topology
    def build(self, hosts: int = 3) -> None:
        """Create the switch and the hosts. On failure the caller's :meth:`close` undoes it."""
        _reap_stale()
        pid = os.getpid()
        self._add_netns(self.switch)
        ip("-n", self.switch, "link", "add", self.bridge, "type", "bridge")
        ip("-n", self.switch, "link", "set", self.bridge, "up")
        for i in range(hosts):
            netns = f"{self.tag}-h{i}"
            self._add_netns(netns)
            host = Host(
                index=i, netns=netns, ip=f"{SUBNET}.{i + 1}", nic=f"e{pid}h{i}", bridge_port=f"s{pid}h{i}",
                executor=ThreadPoolExecutor(1, f"netns-{netns}", initializer=_enter_netns, initargs=(netns,)),
            )
            self.hosts.append(host)
            ip("-n", self.switch, "link", "add", host.bridge_port, "type", "veth", "peer", "name", host.nic, "netns", netns)
            ip("-n", self.switch, "link", "set", host.bridge_port, "master", self.bridge)
            ip("-n", self.switch, "link", "set", host.bridge_port, "up")
            ip("-n", netns, "addr", "add", f"{host.ip}/24", "dev", host.nic)
            ip("-n", netns, "link", "set", "lo", "up")
            ip("-n", netns, "link", "set", host.nic, "up")

    def _add_netns(self, name: str) -> None:
        self.namespaces.append(name)  # before: a half-made one is deleted too
        ip("netns", "add", name)

    def cut(self, host: Host) -> None:
        """Unplug ``host``'s cable at the switch: its frames go nowhere, both ways."""
        ip("-n", self.switch, "link", "set", host.bridge_port, "down")

    def restore(self, host: Host) -> None:
        ip("-n", self.switch, "link", "set", host.bridge_port, "up")

    def limit(self, host: Host, rate: str, burst: str, latency: str) -> None:
        """A token bucket on both ends of ``host``'s cable: at most ``rate`` each way."""
        tc("-n", self.switch, "qdisc", "add", "dev", host.bridge_port, "root", "tbf",
           "rate", rate, "burst", burst, "latency", latency)
        tc("-n", host.netns, "qdisc", "add", "dev", host.nic, "root", "tbf",
           "rate", rate, "burst", burst, "latency", latency)

    def qdisc_stats(self, host: Host) -> list[dict[str, Any]]:
        """``tc -s -j qdisc show`` for both ends of ``host``'s cable (switch end first)."""
        out: list[dict[str, Any]] = []
        for netns, dev in ((self.switch, host.bridge_port), (host.netns, host.nic)):
            shown = json.loads(tc("-s", "-j", "-n", netns, "qdisc", "show", "dev", dev).stdout)
            out.extend(q for q in shown if q.get("kind") == "tbf")
        return out

    # ------------------------------------------------------------------ nodes
    def start_node(self, host: Host, port: int, *, timer: float, join: Node | None = None) -> Node:
        """Start a node process on ``host`` (does not wait for it: see :meth:`wait_healthy`)."""
        name = f"h{host.index}n{port % 10}"
        config = self.directory / f"{name}.json"
        log = self.directory / f"{name}.log"
        cmd = [IP or "ip", "netns", "exec", host.netns, sys.executable, "-m", "gossip.http",
               "--config", str(config), "--name", name, "--ip", host.ip, "--port", str(port),
               "--timer", str(timer), "--log-level", "INFO"]
        if join is not None:
            cmd += ["--join", join.address]
        env = dict(os.environ, GOSSIP_PASSWORD=PASSWORD, PYTHONPATH=str(ROOT))
        with open(log, "wb") as out:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                    cwd=self.directory, env=env, start_new_session=True,
                                    preexec_fn=_die_with_parent())
        node = Node(name=name, host=host, port=port, config=config, log=log, proc=proc)
        self.nodes.append(node)
        return node

    def wait_healthy(self, nodes: list[Node], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        waiting = list(nodes)
        while waiting and time.monotonic() < deadline:
            for node in list(waiting):
                if node.proc.poll() is not None:
                    raise AssertionError(f"{node.name} exited with {node.proc.returncode}:\n{node.log_tail()}")
                if node.healthy():
                    waiting.remove(node)
            time.sleep(0.1)
        assert not waiting, f"not answering /healthz after {timeout}s: {[n.name for n in waiting]}"

    def logs(self, lines: int = 15) -> str:
        """The last lines of every node's log, for a failure message."""
        return "\n".join(node.log_tail(lines) for node in self.nodes)

    # ------------------------------------------------------------------ cleanup
    def close(self) -> None:
        """Kill every node's process group, then delete every namespace. Safe to call twice."""
        for node in self.nodes:
            if node.proc.poll() is None:
                try:
                    os.killpg(node.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            try:
                node.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        for host in self.hosts:
            host.executor.shutdown(wait=True, cancel_futures=True)
        for netns in reversed(self.namespaces):
            # Anything still inside was started by this lab (a node's child, say): kill it by pid.
            pids = ip("netns", "pids", netns, check=False).stdout.split()
            for pid in pids:
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except (ProcessLookupError, ValueError):
                    pass
            ip("netns", "del", netns, check=False)
        left = [n for n in self.namespaces if (NETNS_DIR / n).exists()]
        self.namespaces.clear()
        assert not left, f"could not delete the namespaces {left}"


def _reap_stale() -> None:
    """Delete the namespaces of test processes that died before their cleanup ran.

    Only those older than :data:`STALE_AFTER` whose pid is gone: a lab lives for a minute or
    two, so a younger one may belong to a run in another pid namespace.
    """
    try:
        entries = list(NETNS_DIR.iterdir())
    except OSError:
        return
    for entry in entries:
        found = _STALE.match(entry.name)
        if found is None or int(found.group(1)) == os.getpid():
            continue
        try:
            if time.time() - entry.lstat().st_mtime < STALE_AFTER:
                continue
            os.kill(int(found.group(1)), 0)
        except ProcessLookupError:
            ip("netns", "del", entry.name, check=False)
        except OSError:
            pass  # gone meanwhile, or that process exists
