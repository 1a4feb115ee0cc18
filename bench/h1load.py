"""A lean HTTP/1.1 keep-alive load generator for the benchmarks: measure the server, not the client.

Each worker process holds ``connections`` persistent connections (TCP_NODELAY) to one
address and, on each, sends one request, waits for the whole answer, records the latency and
sends the next (no pipelining: ``connections`` requests in flight per process). Request bodies
are made *before* the clock starts (``make_bodies`` runs in the worker, e.g. to sign each one
with its own nonce), so the client's CPU goes to sockets only. Loopback only: the caller gives
the address.
"""

from __future__ import annotations

import multiprocessing
import selectors
import socket
import time
from dataclasses import dataclass
from typing import Callable


@dataclass
class LoadResult:
    requests: int
    errors: int
    reconnects: int
    seconds: float
    latencies: list[float]
    client_cpu: float


def _worker(address: tuple[str, int], path: str, make_bodies: Callable[[int], list[bytes]], count: int,
            connections: int, start_at: float, seconds: float, out: "multiprocessing.Queue[LoadResult]") -> None:
    try:
        _load(address, path, make_bodies, count, connections, start_at, seconds, out)
    except BaseException:
        out.put(LoadResult(0, 1, 0, 0.0, [], 0.0))  # the parent must not wait for a dead worker
        raise


def _load(address: tuple[str, int], path: str, make_bodies: Callable[[int], list[bytes]], count: int,
          connections: int, start_at: float, seconds: float, out: "multiprocessing.Queue[LoadResult]") -> None:
    bodies = make_bodies(count)
    host = f"{address[0]}:{address[1]}"
    requests = [
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\nContent-Length: {len(b)}\r\n\r\n".encode() + b
        for b in bodies
    ]
    sel = selectors.DefaultSelector()
    state: dict[socket.socket, list[object]] = {}

    def connect() -> socket.socket:
        sock = socket.create_connection(address, timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setblocking(False)
        return sock

    def reopen(sock: socket.socket) -> socket.socket:
        """The server closed ``sock``: the same slot on a new connection."""
        sel.unregister(sock)
        state.pop(sock, None)
        sock.close()
        fresh = connect()
        sel.register(fresh, selectors.EVENT_READ)
        return fresh

    socks = [connect() for _ in range(connections)]
    latencies: list[float] = []
    errors = reconnects = 0
    nxt = 0
    while time.time() < start_at:
        time.sleep(0.001)
    cpu0 = time.process_time()
    t_end = time.perf_counter() + seconds

    def send(sock: socket.socket) -> None:
        nonlocal nxt
        data = requests[nxt % len(requests)]
        nxt += 1
        state[sock] = [time.perf_counter(), bytearray()]
        sock.sendall(data)

    for sock in socks:
        sel.register(sock, selectors.EVENT_READ)
        send(sock)
    while time.perf_counter() < t_end and nxt < len(requests):
        for key, _ in sel.select(timeout=0.5):
            sock = key.fileobj
            assert isinstance(sock, socket.socket)
            t0, buf = state[sock]
            assert isinstance(buf, bytearray) and isinstance(t0, float)
            try:
                chunk = sock.recv(65536)
            except OSError:
                chunk = b""
            if not chunk:
                errors += 1
                reconnects += 1
                send(reopen(sock))
                continue
            buf += chunk
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                continue
            head = bytes(buf[:end]).lower()
            i = head.find(b"content-length:")
            length = int(head[i + 15 :].split(b"\r\n", 1)[0]) if i >= 0 else 0
            if len(buf) < end + 4 + length:
                continue
            latencies.append(time.perf_counter() - t0)
            if not head.startswith(b"http/1.1 200"):
                errors += 1
            if b"connection: close" in head:
                reconnects += 1
                sock = reopen(sock)
            send(sock)
    elapsed = seconds - max(0.0, t_end - time.perf_counter())
    for sock in list(state):
        sock.close()
    out.put(LoadResult(len(latencies), errors, reconnects, elapsed, latencies, time.process_time() - cpu0))


def run_load(address: tuple[str, int], make_bodies: Callable[[int], list[bytes]], *, path: str = "/v1/peer",
             processes: int = 2, connections: int = 10, seconds: float = 10.0, rate_hint: int = 10_000) -> LoadResult:
    """``processes`` x ``connections`` persistent connections for ``seconds``; merged figures.

    ``make_bodies(n)`` must be a module-level function (it runs in the worker processes).
    """
    ctx = multiprocessing.get_context("fork")
    out: multiprocessing.Queue[LoadResult] = ctx.Queue()
    count = int(rate_hint * seconds / processes) + 1000
    start_at = time.time() + 1.0 + count * 40e-6  # time to make the bodies first
    procs = [
        ctx.Process(target=_worker, args=(address, path, make_bodies, count, connections, start_at, seconds, out), daemon=True)
        for _ in range(processes)
    ]
    for p in procs:
        p.start()
    try:
        results = [out.get(timeout=seconds + 120) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
                p.join(5)
    lat = sorted(x for r in results for x in r.latencies)
    return LoadResult(
        requests=sum(r.requests for r in results),
        errors=sum(r.errors for r in results),
        reconnects=sum(r.reconnects for r in results),
        seconds=max(r.seconds for r in results),
        latencies=lat,
        client_cpu=sum(r.client_cpu for r in results),
    )
