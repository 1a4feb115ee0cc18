"""NodeRunner: a GossipNode served over HTTP, persisted to JSON files, driven by the clock.

Theory of operation
-------------------
One asyncio event loop (the transport's) does everything that touches the node: answering
peers and clients, starting rounds, sending requests and taking their answers. So the node
needs no lock, and every change to it goes through one method, :meth:`NodeRunner._drive`,
the one commit path:

1. call the core (``handle_request``, ``tick``, ``receive_response``, ``create_gossip``...);
   a :class:`~gossip.errors.GossipError` there means nothing changed;
2. take the events and the requests it queued;
3. write the events (:class:`_Committer`: batches in the order taken, one fsync for all the
   batches ready at once). A call that changed nothing skips the disk, but still waits for
   writes already under way, so that no answer gets ahead of a change it may reveal;
4. then, and only then, let the effects out: answer, send the queued requests.

**Where the writes run.** By default on a writer thread, so that an fsync never stalls the
loop (an application's own loop may serve other things). With ``writer_thread=False`` they
run on the loop: a call queues its batch and the loop's next pass writes every batch queued
by the pass before, with one fsync. The loop then waits for the disk (about 0.2 ms an fsync on
the test machines' SSD); in exchange a change costs no wake-up of another thread and no
hand-back to the loop, two context switches that cost more than the fsync once many node
processes share a few cores: ``bench/bench_load.py`` (50 processes, 3,000 creates) made
97-112 creates/s with the thread and 139-179 on the loop, and every node held all 3.4 s
after the last create instead of 3.9-4.8 s. ``python -m gossip.http`` writes on the loop.

**When a write fails**, the change does not stay: the node reverts the batch's events (a
gossip leaves its set and its listing, a new peer is forgotten), cancels the batch's requests
(its pushes never leave), and the caller gets the :class:`~gossip.errors.StorageError`
(507). The batches queued after it were computed on top of it: none of them is written, and
all are undone with it, the newest first, before any caller hears of the failure (the
committer does it, on the loop). A call that was waiting for the failed write fails the same
way. So a client that was answered 507 and retries makes one gossip, not two, and a delete
made while the create it deletes was being written fails with it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncGenerator, Callable, Coroutine, TypeVar

from ..auth import key_id
from ..configfile import save_config
from ..errors import ConfigError, GossipError, StorageError, TransportError, excerpt
from ..events import (
    Event, GossipConflict, GossipReceived, KeyringChanged, PeerForgotten, PeerJoined, PeerStatusChanged, RegisterFailed,
    Registered, RetentionChanged,
)
from ..model import Gossip, NodeConfig, PeerStatus, PeerView, Tombstone
from ..node import GossipNode, GossipStatus, Outgoing
from ..storage import persist
from ..storage.jsonfile import JsonFileStorage
from .client import HttpTransport
from .feed import Feed
from .server import RateLimitedLog

__all__ = ["NodeRunner", "REGISTER_WAIT", "LEAVE_WAIT", "Departure"]

logger = logging.getLogger(__name__)
T = TypeVar("T")

#: Seconds a REGISTER waits for the other node's answer, beyond the request timeout.
REGISTER_WAIT = 10.0
#: The round timer never sleeps longer than this (a clock that jumps is caught up soon),
#: nor less than _MIN_SLEEP; it is set again earlier only to fire more than _TIMER_SLACK sooner.
_MAX_SLEEP = 1.0
_MIN_SLEEP = 0.001
_TIMER_SLACK = 0.0001
#: Most seconds a leaving node waits for its peers to take the announcement; it stops anyway.
LEAVE_WAIT = 2.0


def _sleep_until(deadline: float, now: float) -> float:
    """Seconds the timer sleeps, at ``now``, for the node's ``deadline``."""
    return min(max(deadline - now, _MIN_SLEEP), _MAX_SLEEP)


@dataclass(frozen=True)
class Departure:
    """What a leave did: peers told, how many took it in time, the incarnation to come back with."""

    told: int
    answered: int
    incarnation: int


@dataclass
class _Write:
    events: list[Event]
    done: asyncio.Future[None]
    #: The node's configuration to write to ``server.json``, when the batch changed a key ring.
    config: NodeConfig | None = None
    #: Takes the batch back out of the node (its events reverted, its requests cancelled).
    undo: Callable[[], None] | None = None


@dataclass
class _Committer:
    """Writes batches of events in the order submitted, one fsync for the batches ready at
    once (group commit): on a writer thread of its own (``threaded``), or on the loop at the
    start of its next pass, for everything the pass before changed.

    A failed write is undone here, on the loop, before its callers hear of it: its batches and
    every batch queued after them (each was computed on top of them, and none of them is
    written) are undone newest first, so that the node is back where the last good write left
    it (undone in the order the callers woke, a delete's undo put back the gossip its create's
    undo had already taken out); then each of their callers gets the failure.
    """

    storage: JsonFileStorage
    loop: asyncio.AbstractEventLoop
    #: Where the node's configuration lives (``server.json``); None: key rings stay in memory.
    config_path: Path | None = None
    threaded: bool = True
    _queue: deque[_Write] = field(default_factory=deque)
    _ready: threading.Condition = field(default_factory=threading.Condition)
    _closing: bool = False
    #: A write failed on the writer thread and the loop has not undone it yet: the writer
    #: writes nothing more (what is queued was computed on top of the failed batches).
    _broken: bool = False
    _tail: asyncio.Future[None] | None = None
    _thread: threading.Thread | None = None
    _flush_due: bool = False

    def start(self) -> None:
        if self.threaded:
            self._thread = threading.Thread(target=self._run, name="gossip-writer", daemon=True)
            self._thread.start()

    async def commit(
        self, events: list[Event], config: NodeConfig | None = None, undo: Callable[[], None] | None = None
    ) -> None:
        """Return once ``events`` and every batch submitted before them are on disk.

        ``undo`` takes the batch back out of the node; it runs, on the loop, before this
        raises (see the class docstring for the order).

        Raises:
            StorageError: this batch, or one it waited for, could not be written.
        """
        if not events and config is None:
            tail = self._tail
            if tail is not None and not tail.done():
                try:
                    await asyncio.shield(tail)
                except StorageError:
                    if undo is not None:
                        undo()  # no events, so no order to keep: only its requests go
                    raise
            return
        done: asyncio.Future[None] = self.loop.create_future()
        with self._ready:
            if self._closing:
                if undo is not None:
                    undo()  # nothing is queued behind it: the writer takes no more
                raise StorageError("the node is stopping; nothing more is written")
            self._queue.append(_Write(events, done, config, undo))
            if self.threaded:
                self._ready.notify()
            elif not self._flush_due:
                self._flush_due = True
                self.loop.call_soon(self._flush)
        self._tail = done
        await asyncio.shield(done)

    def _flush(self) -> None:
        """On the loop: write what the calls since the last flush queued."""
        with self._ready:
            self._flush_due = False
            run = list(self._queue)
            self._queue.clear()
        if run:
            failure = self._write(run)
            if failure is not None:
                self._fail(run, failure)
                return
            for write in run:
                try:
                    _settle(write.done, None)
                except RuntimeError:  # the loop is closed: nobody waits any more
                    pass

    def _fail(self, run: list[_Write], failure: StorageError) -> None:
        """On the loop: ``run`` could not be written (see the class docstring)."""
        with self._ready:
            failed = run + list(self._queue)
            self._queue.clear()
            self._broken = False
            self._ready.notify()
        _undo(failed)
        for write in failed:
            try:
                _settle(write.done, failure)
            except RuntimeError:  # the loop is closed: nobody waits any more
                pass

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._closing and (self._broken or not self._queue):
                    self._ready.wait()
                if self._broken or not self._queue:
                    return  # stopping, with nothing left or only batches built on a failed one
                run = list(self._queue)
                self._queue.clear()
            failure = self._write(run)
            if failure is not None:
                with self._ready:
                    self._broken = True
                try:
                    self.loop.call_soon_threadsafe(self._fail, run, failure)
                except RuntimeError:  # the loop is closed: nobody waits any more
                    return
                continue
            for write in run:
                try:
                    self.loop.call_soon_threadsafe(_settle, write.done, None)
                except RuntimeError:  # the loop is closed: nobody waits any more
                    pass

    def _write(self, run: list[_Write]) -> StorageError | None:
        """Write batches, in order, as one; the failure every caller of them gets, if any."""
        try:
            # The key ring first: rings change rarely, and one kept on disk by a write whose
            # gossips then failed is only the ring the network spreads anyway.
            configs = [w.config for w in run if w.config is not None]
            if configs and self.config_path is not None:
                save_config(self.config_path, configs[-1])  # the latest ring (batches are in order)
            persist(self.storage, [e for w in run for e in w.events])
        except ConfigError as exc:
            logger.error("%s", exc)
            return StorageError(str(exc))
        except StorageError as exc:
            logger.error("%s", exc)
            return exc
        except Exception as exc:  # a bug in a store must not hang every caller
            logger.exception("writing to the store failed")
            return StorageError(f"writing to the store failed: {exc}")
        return None

    def close(self) -> None:
        """Write what is queued, then stop (the thread, if any). Not from the loop's thread
        while the loop runs."""
        with self._ready:
            self._closing = True
            self._ready.notify()
        if self._thread is not None:
            self._thread.join(timeout=10.0)
            return
        if self.loop.is_running():
            asyncio.run_coroutine_threadsafe(self._drain(), self.loop).result(10.0)
        elif not self.loop.is_closed():
            self._flush()

    async def _drain(self) -> None:
        self._flush()


def _undo(writes: list[_Write]) -> None:
    """Take these batches back out of the node, the newest first."""
    for write in reversed(writes):
        if write.undo is not None:
            try:
                write.undo()
            except Exception:  # the others must still be undone
                logger.exception("undoing a batch that could not be written failed")


def _settle(future: asyncio.Future[None], failure: StorageError | None) -> None:
    if future.done():
        return
    if failure is None:
        future.set_result(None)
    else:
        future.set_exception(failure)
        future.exception()  # retrieved: a batch nobody waits for any more is not an error


class NodeRunner:
    """A GossipNode served over HTTP, persisted to a JSON-file store, driven by the clock.

    Args:
        config: the node's configuration (its ip and port are where it listens).
        storage: where gossips and peers live; claimed for this runner (one process per
            store) and the node starts from ``storage.load()``.
        transport: the HTTP transport (created, with this runner's client API, when None).
        clock: seconds since the epoch (``time.time``); tests may pass another.
        request_timeout: seconds each node-to-node request may take.
        loop: the asyncio loop to run on when ``transport`` is None (several runners may
            share one); None: the transport starts its own in a thread.
        config_path: the node's ``server.json``: a key ring change (``gossip keys``), and the
            incarnation a leaving node comes back with, are written there, atomically, before
            they are acknowledged; so is a newer retention the node adopts from a peer. None:
            kept in memory only (an embedded node keeps its config itself).
        writer_thread: write to disk on a thread of the runner's own, so that the loop never
            waits for an fsync (the default: right for a loop that serves other things too).
            False: write on the loop, at the start of its next pass, everything the pass
            before changed (one fsync for all of it); the loop then waits for the disk, and
            each change saves two thread switches. ``python -m gossip.http``, whose loop
            serves the node alone, does so (see the module docstring).

    Raises:
        StorageInUse: another runner or process has the store.
    """

    def __init__(
        self,
        config: NodeConfig,
        storage: JsonFileStorage,
        *,
        transport: HttpTransport | None = None,
        clock: Callable[[], float] = time.time,
        request_timeout: float = 5.0,
        loop: asyncio.AbstractEventLoop | None = None,
        config_path: Path | None = None,
        writer_thread: bool = True,
    ) -> None:
        from .api import ClientApi  # the API reads the runner; the runner only builds it

        storage.claim()
        self.storage = storage
        self.clock = clock
        self.api = ClientApi(self)
        if transport is None:
            transport = HttpTransport(app=self.api.handle, timeout=request_timeout, loop=loop)
        self.transport = transport
        self.loop = transport.loop
        self._request_timeout = request_timeout
        self._committer = _Committer(storage, self.loop, config_path, threaded=writer_thread)
        self._waiters: dict[int, asyncio.Future[Event]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0  # when the timer fires, on self.clock
        self._ticking = False
        self._stopping = False
        self._stopped = False
        self._warn = RateLimitedLog(logger)
        self._departure: Departure | None = None
        self._leaving: asyncio.Future[Departure] | None = None  # the leave under way
        #: Set once the node left through the client API (``POST /v1/leave``): whoever runs
        #: the runner should then :meth:`stop` it (``python -m gossip.http`` waits on this).
        self.done = threading.Event()
        #: Node-to-node body bytes, by direction ("sent", "received").
        self.bytes: Counter[str] = Counter()
        self.node = GossipNode(
            config,
            rng=random.Random(secrets.randbits(128)),
            now=clock(),
            snapshot=storage.load(),
            # The transport times every call out; this only catches an answer never reported.
            request_timeout=request_timeout * 6,
        )
        #: The change feed as far as it is on disk, and the streams that follow it.
        self.feed = Feed(self.node.last_cursor)
        self._committer.start()

    @property
    def config(self) -> NodeConfig:
        return self.node.config

    @property
    def gossiping(self) -> bool:
        """True while rounds run: from :meth:`start_gossiping` until :meth:`stop`."""
        return not self._stopping and (self._timer is not None or self._ticking)

    # ------------------------------------------------------------------ life cycle
    def start(self) -> tuple[str, int]:
        """Serve on the config's address (its port must not be 0) and start gossiping."""
        address = self.transport.serve((self.config.ip, self.config.port), self.handle_peer)
        self.start_gossiping()
        return address

    async def start_async(self) -> tuple[str, int]:
        """:meth:`start` from a coroutine on the runner's loop (an asyncio application's own,
        given as ``loop``): serve and gossip on that loop. Stop with :meth:`aclose`."""
        address = await self.transport.serve_async((self.config.ip, self.config.port), self.handle_peer)
        self.start_gossiping()
        return address

    async def aclose(self) -> None:
        """:meth:`stop` from a coroutine on the runner's loop: stop the rounds and serving, let
        the writer thread finish what is queued, release the store. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        await self.stop_async()
        await self.loop.run_in_executor(None, self._committer.close)  # joins the writer thread
        self.storage.close()

    async def __aenter__(self) -> NodeRunner:
        await self.start_async()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def watch(self, network: str | None = None, since: int | None = None) -> AsyncGenerator[GossipStatus, None]:
        """Each gossip this node stores from now (or after cursor ``since``), once it is on
        disk, in cursor order; ends when the runner stops. Iterate on the runner's loop.

        Args:
            network: which network's gossip (default: the node's first).
            since: a cursor (``GossipStatus.cursor``) to resume after; None: from now.
        """
        last = self.feed.committed if since is None else since
        while not self.feed.closed:
            upto = self.feed.committed
            rows, more = self.node.gossip_page(network, after=last, before=upto + 1, limit=500)
            for row in rows:
                last = row.cursor or last
                yield row
            if not more:
                last = max(last, upto)
                await self.feed.wait(last, 3600.0)

    def start_gossiping(self) -> None:
        """Start the rounds (serving is started separately)."""
        self.loop.call_soon_threadsafe(self._on_timer)

    def stop(self) -> None:
        """Stop gossiping and serving; everything acknowledged is already on disk. Stopping a
        stopped runner does nothing."""
        if self._stopped:
            return
        self._stopped = True
        self.call(self.stop_async())
        self._committer.close()
        self.transport.close()
        self.storage.close()

    async def stop_async(self) -> None:
        """Stop the rounds, cancel requests under way and stop serving (on the loop)."""
        self._stopping = True
        self.feed.close()  # streams end cleanly (their last writes flushed) before serving stops
        for _ in range(100):
            if not self.feed.streams:
                break
            await asyncio.sleep(0.01)
        if self._timer is not None:
            self._timer.cancel()
        for task in list(self._tasks):
            task.cancel()
        await self.transport.close_async()

    def call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the runner's loop from another thread and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    # ------------------------------------------------------------------ the one commit path
    async def _drive(self, fn: Callable[[float], T]) -> T:
        """Call the core, write what it changed, then let its effects out (module docstring)."""
        result = fn(self.clock())
        events = self.node.events()
        outbox = self.node.outbox()
        # A new key ring or retention is part of the config: written with the batch.
        reconfigured = any(isinstance(e, (KeyringChanged, RetentionChanged)) for e in events)
        def undo() -> None:
            self.node.revert(events)
            for out in outbox:
                self.node.cancel(out.request_id)

        await self._committer.commit(events, self.node.config if reconfigured else None, undo)
        self._note(events)
        for out in outbox:
            self._spawn(self._send(out))
        self._rearm()
        return result

    def _rearm(self) -> None:
        """Bring the timer forward when the call gave the node earlier work (a lingering push).

        Only when it would then fire earlier: every request comes here, and a deadline that
        is already due (the loop is behind) or unchanged must not cancel and set the timer
        again each time (it did, on every request: 5% of a DID_YOU_HEAR's server CPU).
        """
        if self._timer is None:
            return  # a tick is under way; it schedules the next one when done
        now = self.clock()
        delay = _sleep_until(self.node.next_deadline(), now)
        if now + delay < self._timer_at - _TIMER_SLACK:
            self._timer.cancel()
            self._set_timer(now, delay)

    def _schedule(self, deadline: float) -> None:
        now = self.clock()
        self._set_timer(now, _sleep_until(deadline, now))

    def _set_timer(self, now: float, delay: float) -> None:
        self._timer_at = now + delay
        self._timer = self.loop.call_later(delay, self._on_timer)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        if self._stopping:
            coro.close()
            return
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        exc = None if task.cancelled() else task.exception()
        if exc is not None and not isinstance(exc, StorageError):  # a failed write: logged already
            logger.error("a background task failed", exc_info=exc)

    def _on_timer(self) -> None:
        self._timer = None
        if not self._stopping:
            self._ticking = True
            self._spawn(self._tick())

    async def _tick(self) -> None:
        try:
            await self._drive(self.node.tick)
        finally:
            self._ticking = False
            if not self._stopping:
                self._schedule(self.node.next_deadline())

    async def _send(self, out: Outgoing) -> None:
        try:
            answer = await self.transport.request_async(out.address, out.data, timeout=self._request_timeout)
        except TransportError as exc:
            reason, status, code = exc.reason, exc.status, exc.remote_code
            await self._drive(lambda now: self.node.delivery_failed(out.request_id, now, reason, status, code))
            return
        self.bytes["sent"] += len(out.data)
        self.bytes["received"] += len(answer)
        await self._drive(lambda now: self.node.receive_response(out.request_id, answer, now))

    def _note(self, events: list[Event]) -> None:
        """Log one call's events (gossip: one INFO line per network and source) and wake waiters."""
        learnt: Counter[tuple[str, str | None]] = Counter()
        each = logger.isEnabledFor(logging.DEBUG)  # asked once a batch, not once a gossip
        cursor = 0
        for event in events:
            if isinstance(event, GossipReceived):
                if event.cursor > cursor:
                    cursor = event.cursor
                learnt[event.network, event.source] += 1
                if each:
                    logger.debug("gossip %s from %s on %s", event.gossip.guid, event.source or "this node", event.network)
            else:
                self._note_other(event)
        if cursor:
            self.feed.advance(cursor)  # on disk now: streams may show it
        for (network, source), count in learnt.items():
            plural = "" if count == 1 else "s"
            # Creates are answered to their client; a busy node would log a line per create.
            level = logging.DEBUG if source is None else logging.INFO
            if logger.isEnabledFor(level):  # the name lookup walks the peer list: only when logged
                logger.log(level, "learnt %d gossip%s on %s from %s", count, plural, network, self._source_name(network, source))

    def _source_name(self, network: str, source: str | None) -> str:
        if source is None:
            return "this node"
        view = self.node.peer_view(network, source)  # one lookup: this is asked once a log line
        return source if view is None else view.peer.name

    def _note_other(self, event: Event) -> None:
        if isinstance(event, KeyringChanged):
            net = event.network
            logger.warning(
                "key ring of %s is now version %d: %d key(s), primary %s (from %s)",
                net.name, net.key_version, len(net.keys), key_id(net.key),
                "this node" if event.source is None else self._source_name(net.name, event.source),
            )
        elif isinstance(event, PeerJoined):
            peer = event.peer.peer
            logger.info("peer %s (%s:%s) joined %s", peer.name, peer.ip, peer.port, peer.network_name)
        elif isinstance(event, PeerStatusChanged):
            # Leaving is normal; failing is worth a warning.
            level = logging.INFO if event.peer.status in (PeerStatus.ALIVE, PeerStatus.LEFT) else logging.WARNING
            logger.log(level, "peer %s is now %s (was %s)", event.peer.peer.name, event.peer.status, event.old)
        elif isinstance(event, PeerForgotten):
            peer = event.peer.peer
            logger.info("forgot peer %s (%s) on %s: %s", peer.name, peer.guid, peer.network_name, event.reason)
        elif isinstance(event, GossipConflict):
            # Once per losing version (the node reports each once): a member wrote its own text
            # under an existing guid, or two nodes made the same guid.
            logger.warning(
                "gossip %s on %s has two versions; kept sha2 %s…, dropped sha2 %s… (text %s)",
                event.kept.guid, event.network, event.kept.sha2[:12], event.lost.sha2[:12], excerpt(event.lost.msg, 60),
            )
        elif isinstance(event, RetentionChanged):
            age = event.retention.max_age
            logger.info("network %s now keeps gossip %s", event.network, "for ever" if age is None else f"{age:g} s")
        elif isinstance(event, (Registered, RegisterFailed)):
            waiter = self._waiters.pop(event.request_id, None)
            if waiter is not None and not waiter.done():
                waiter.set_result(event)

    # ------------------------------------------------------------------ entry points
    async def handle_peer(self, data: bytes) -> bytes:
        """``POST /v1/peer``: a peer's request. Its effects are on disk before the answer leaves."""
        # A refusal raises on to the server, which logs it once (rate-limited) and answers it.
        answer = await self._drive(lambda now: self.node.handle_request(data, now))
        self.bytes["received"] += len(data)
        self.bytes["sent"] += len(answer)
        return answer

    async def create_async(self, msg: str, network: str | None = None) -> Gossip:
        """CREATE_GOSSIP: returns the new gossip once it is on disk (and being pushed)."""
        return await self._drive(lambda now: self.node.create_gossip(msg, now, network))

    async def delete_async(self, guid: str, network: str | None = None) -> Tombstone:
        """Delete a gossip: returns its tombstone once it is on disk (and spreading)."""
        return await self._drive(lambda now: self.node.delete_gossip(guid, now, network))

    async def register_async(self, ip: str, port: int, network: str | None = None) -> Event:
        """REGISTER with ``ip:port``; the outcome (Registered or RegisterFailed) within ~15 s."""
        rid = await self._drive(lambda now: self.node.register(ip, port, now, network))
        waiter: asyncio.Future[Event] = self.loop.create_future()
        self._waiters[rid] = waiter
        try:
            return await asyncio.wait_for(waiter, REGISTER_WAIT + self._request_timeout)
        except TimeoutError:
            return RegisterFailed(request_id=rid, network=network or "", address=(ip, port), reason="no answer in time", status=None)
        finally:
            self._waiters.pop(rid, None)

    async def install_key_async(self, key: bytes, network: str | None = None) -> bool:
        """``gossip keys install``: once the new ring is in ``server.json``; False: held already."""
        return await self._drive(lambda now: self.node.install_key(key, now, network))

    async def use_key_async(self, kid: str, network: str | None = None) -> bool:
        """``gossip keys use``: once the new ring is in ``server.json``; False: primary already."""
        return await self._drive(lambda now: self.node.use_key(kid, now, network))

    async def remove_key_async(self, kid: str, network: str | None = None) -> None:
        """``gossip keys remove``: once the new ring is in ``server.json``."""
        await self._drive(lambda now: self.node.remove_key(kid, now, network))

    def register(self, ip: str, port: int, network: str | None = None) -> Event:
        """:meth:`register_async` from another thread."""
        return self.call(self.register_async(ip, port, network))

    async def leave_async(self, wait: float = LEAVE_WAIT) -> Departure:
        """Announce to the peers that this node leaves, and wait at most ``wait`` seconds for
        their answers. The node then starts no round and refuses peer requests (503); stop
        the runner next. A second call returns the first one's result.

        The incarnation the node must come back with (its own + 2, above the left record's
        + 1) is saved first: if that fails nothing is announced (the peers will see the node
        dead instead) and the :class:`~gossip.errors.StorageError` is raised.
        """
        if self._departure is not None:
            return self._departure
        # A leave under way (SIGTERM while `gossip leave` runs): wait for it, not a second one.
        if self._leaving is None:
            self._leaving = asyncio.ensure_future(self._leave(wait))
        leaving = self._leaving
        try:
            return await asyncio.shield(leaving)
        finally:
            failed = leaving.done() and (leaving.cancelled() or leaving.exception() is not None)
            if failed and self._leaving is leaving:
                self._leaving = None  # it failed (nothing was announced): a later call tries again

    async def _leave(self, wait: float) -> Departure:
        before = self.config.incarnation
        comeback = before + 2
        # The node's config carries the comeback incarnation from here on, so that a key ring
        # written after this one (a peer's, or `gossip keys` during the leave) is written with
        # it too: with the old one the node would come back below its own left record.
        self.node.config = self.node.config.with_changes(incarnation=comeback)
        def undo() -> None:  # not leaving after all
            self.node.config = self.node.config.with_changes(incarnation=before)

        try:  # through the writer, so that it is ordered with key ring writes to server.json
            await self._committer.commit([], self.node.config, undo)
        except StorageError as exc:
            raise StorageError(f"not leaving: cannot save the config to come back with ({exc})") from None
        failed = self.node.stats["failed.hello"]
        told = await self._drive(self.node.leave)
        announcements = set(self._tasks)  # the HELLOs just spawned, and requests under way
        if announcements:
            await asyncio.wait(announcements, timeout=wait)
        unanswered = self.node.stats["failed.hello"] - failed + sum(not t.done() for t in announcements)
        self._departure = Departure(told=told, answered=max(0, told - unanswered), incarnation=comeback)
        logger.info("left: told %d peers, %d took it", told, self._departure.answered)
        return self._departure

    def leave(self, wait: float = LEAVE_WAIT) -> Departure:
        """:meth:`leave_async` from another thread."""
        return self.call(self.leave_async(wait), timeout=wait + 30.0)

    async def force_leave_async(self, target: str, network: str | None = None) -> tuple[PeerView, bool]:
        """Mark the dead peer ``target`` (name or guid) as left; see :meth:`GossipNode.force_leave`."""
        return await self._drive(lambda now: self.node.force_leave(target, now, network))

    # ------------------------------------------------------------------ metrics
    def metrics_text(self) -> str:
        """The Prometheus text exposition of this node's counters (call on the loop)."""
        stats = self.node.stats
        nets = self.node.networks
        lines: list[str] = []

        def family(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} {kind}")
            lines.extend(f"{name}{labels} {value:g}" for labels, value in samples)

        def by(prefix: str, label: str) -> list[tuple[str, float]]:
            return [(f'{{{label}="{k.split(".", 1)[1]}"}}', n) for k, n in sorted(stats.items()) if k.startswith(prefix + ".")]

        family("gossip_rounds_total", "counter", "Gossip rounds started.", [("", stats.get("rounds", 0))])
        family(
            "gossip_rounds_held_total", "counter",
            "Rounds (per network) that left out the gossip probe while the node's pushes were under way.",
            [("", stats.get("rounds_held", 0))],
        )
        family("gossip_requests_sent_total", "counter", "Node-to-node requests sent, by verb.", by("sent", "verb"))
        family("gossip_requests_failed_total", "counter", "Requests sent that got no usable answer, by verb.", by("failed", "verb"))
        family("gossip_requests_received_total", "counter", "Peer requests accepted, by verb.", by("received", "verb"))
        family("gossip_rejected_total", "counter", "Messages refused, by reason.", by("rejected", "reason"))
        family(
            "gossip_bytes_total", "counter", "Node-to-node body bytes, by direction.",
            [(f'{{direction="{d}"}}', self.bytes[d]) for d in ("sent", "received")],
        )
        family(
            "gossip_duplicates_total", "counter",
            "Gossip bodies received that this node already held, by how they came (push, fetched).",
            by("duplicate", "how"),
        )
        family("gossip_iblt_retries_total", "counter", "IBLTs that did not peel and were asked for again, by set.", by("iblt_retry", "set"))
        family("gossip_gossips", "gauge", "Complete gossips held, by network.", [(f'{{network="{n}"}}', self.node.gossip_count(n)) for n in nets])
        statuses = {n: Counter(v.status for v in self.node.network_status(n)) for n in nets}
        family(
            "gossip_peers", "gauge", "Peers known, by network and status.",
            [(f'{{network="{n}",status="{s.value}"}}', statuses[n][s]) for n in nets for s in PeerStatus],
        )
        family("gossip_http_connections", "gauge", "Connections the node's server holds open.", [("", self.transport.connections)])
        family(
            "gossip_http_connections_opened_total", "counter", "Connections opened, by side (accepted by the server, or opened to peers).",
            [('{side="server"}', self.transport.accepted), ('{side="client"}', self.transport.opened)],
        )
        return "\n".join(lines) + "\n"

