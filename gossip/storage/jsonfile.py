"""JSON-file storage: an append-only, fsynced gossip log plus an atomically rewritten peer file.

Theory of operation
-------------------

A store is one directory (mode 0700) holding, all with mode 0600:

``gossip.jsonl``
    One line per gossip, ``{"network": NAME, "gossip": {...}, "cursor": N}`` (``cursor``: the
    node's number for it, the change feed's; lines written before cursors existed have none
    and are numbered in file order at load, after the highest cursor before them), or per tombstone,
    ``{"network": NAME, "tombstone": {"guid", "date_time"}}``, in the order they were saved,
    and one ``{"network": NAME, "drop": KEY}`` per item removed (expired, deleted or
    replaced; ``KEY`` its :func:`~gossip.model.item_key` in hex). A change is appended lines
    followed by ``os.fsync``, so saving costs the same with ten or a million stored. Nothing
    is ever rewritten in place: once the dead lines (drops, what they dropped, duplicates)
    outnumber the live ones (and number at least :data:`COMPACT_MIN`), the log is compacted:
    the live lines written to a temp file, fsynced, renamed over the log, the directory
    fsynced. So the log stays within about twice what the node holds.
``peers.json``
    ``{"v": 1, "peers": [...]}``. Peers are few and change often, so the whole file is
    rewritten on each change: temp file, fsync, ``os.replace``, fsync of the directory. It
    also keeps ``last_cursor``, the highest cursor ever stored, once a rewrite of the log
    removed the gossip that held it: a cursor is never given twice.
``quarantine.jsonl``
    Stored gossips that this version refuses, set aside by :meth:`JsonFileStorage.load`
    rather than lost, one ``{"v": 1, "file", "line", "reason", "record"}`` a line: a sha2
    that does not verify (``"reason": "sha2"``), or a ``date_time`` outside 1970..9999 once
    in UTC (``"reason": "date_time"``; older versions accepted such dates).

Rule 1: a ``save_*`` call returns only once its data is on disk ("persist, then
acknowledge"). Rule 2: a crash at any instant leaves a store that loads. Each append
is fsynced before the next starts, so the only damage a crash can do is one torn line at
the very end of the log, which :meth:`~JsonFileStorage.load` cuts away with a warning.
Any other bad line was not made by a crash; ``load`` refuses it with a
:class:`~gossip.errors.StorageError` naming the file and line, and changes nothing. So
does a JSON integer longer than Python reads (4,300 digits), in either file: the message
gives its line and column (:func:`locate_long_number`). A peer's ``last_seen`` that is not a
time from 1970 to 9999 is read as "never seen", with a warning: it is this node's passing
opinion, relearnt at the next contact.

One process owns a directory at a time: a node runner calls :meth:`~JsonFileStorage.claim`,
which holds an exclusive ``flock`` on the ``lock`` file (naming the owner's pid) until
:meth:`~JsonFileStorage.close`; a second claim gets :class:`~gossip.errors.StorageInUse` at
once. A store may be read without claiming it, as tests and tools do; beside an owner such
a store only reads (no repair, quarantine or compaction: the owner would go on appending to
a replaced file) and refuses writes. Within the owner, a lock makes every method safe to
call from several threads.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import secrets
import sys
import threading
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Mapping

from ..errors import LocalProtocolError, StorageError, StorageInUse
from ..digest import key_hex
from ..model import Gossip, Item, PeerView, Snapshot, Tombstone, check_network_name, item_key, timestamp_from_iso

__all__ = [
    "JsonFileStorage",
    "write_file_atomically",
    "locate_long_number",
    "long_number_error",
    "LOG_NAME",
    "PEERS_NAME",
    "QUARANTINE_NAME",
]

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: no flock; one process per directory is on trust
    fcntl = None  # type: ignore[assignment]

logger = logging.getLogger(__name__)

#: The append-only gossip log.
LOG_NAME = "gossip.jsonl"
#: The peer file, rewritten atomically on each change.
PEERS_NAME = "peers.json"
#: Where gossips that fail verification are set aside.
QUARANTINE_NAME = "quarantine.jsonl"
#: Held locked by the process that owns the store; holds its pid.
LOCK_NAME = "lock"

_PEERS_VERSION = 1
_FILE_MODE = 0o600
_DIR_MODE = 0o700
_O_CLOEXEC: int = getattr(os, "O_CLOEXEC", 0)
_O_BINARY: int = getattr(os, "O_BINARY", 0)
_FIX_HINT = "repair or delete that line (keep a copy of the directory first), then start again"


#: A JSON string, or a JSON number as ``json``'s scanner reads it: integer part, then an
#: optional fraction (group 1) and exponent (group 2).
_JSON_TOKEN = re.compile(r'"(?:[^"\\]|\\.)*"|-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?')


def locate_long_number(text: str) -> tuple[int, int] | None:
    """Where ``json.loads(text)`` meets an integer longer than ``int()`` reads.

    Python refuses to convert more than ``sys.get_int_max_str_digits()`` digits (4,300 by
    default, CVE-2020-10735), and ``json.loads`` then raises a bare ValueError that says
    neither where nor that it is JSON. Numbers with a fraction or an exponent are floats,
    which have no such limit.

    Args:
        text: JSON that ``json.loads`` refused with a ValueError that is not a
            ``json.JSONDecodeError`` (everything before the long integer is then valid JSON,
            so scanning string by string finds it).

    Returns:
        The line and column (both from 1) of the first such integer, or None if none is.
    """
    limit = sys.get_int_max_str_digits()
    if not limit:
        return None
    for match in _JSON_TOKEN.finditer(text):
        token = match.group()
        if token[0] != '"' and match.group(1) is None and match.group(2) is None:
            if len(token) - token.startswith("-") > limit:
                start = match.start()
                return text.count("\n", 0, start) + 1, start - text.rfind("\n", 0, start)
    return None


def long_number_error(where: str, text: str, *, one_line: bool = False) -> str:
    """The message for a file whose JSON holds an integer too long to read.

    Args:
        where: the file (and line, for a file of JSON lines), as the message starts.
        text: the JSON that ``json.loads`` refused (see :func:`locate_long_number`).
        one_line: ``text`` is one line of the file: give only the column.

    Returns:
        ``"<where>, line L, column C: a number of more than N digits"``.
    """
    place = locate_long_number(text)
    if place is not None:
        where += f", column {place[1]}" if one_line else f", line {place[0]}, column {place[1]}"
    return f"{where}: a number of more than {sys.get_int_max_str_digits()} digits"


def _fsync_directory(directory: Path) -> None:
    """Make a new or replaced directory entry durable (no-op where directories can't be opened)."""
    if os.name == "nt":  # pragma: no cover - Windows cannot open a directory
        return
    fd = os.open(directory, os.O_RDONLY | _O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _temp_name(target: Path) -> Path:
    return target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")


def write_file_atomically(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves either the old or the new file.

    Writes a temp file (mode 0600) in the same directory, fsyncs it, renames it over
    ``path`` with ``os.replace`` and fsyncs the directory.

    Args:
        path: the file to create or replace; its directory must exist.
        data: the whole new content.

    Raises:
        OSError: the file could not be written; ``path`` is then unchanged, unless only the
            directory's fsync after the rename failed (``path`` then holds the new content,
            not yet durably): either way, read ``path`` again before relying on it.
    """
    target = Path(path)
    temp = _temp_name(target)
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_CLOEXEC | _O_BINARY, _FILE_MODE)
    try:
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, target)
    except BaseException:
        try:
            os.unlink(temp)
        except OSError:
            pass
        raise
    _fsync_directory(target.parent)


#: Fewest dead lines that trigger a compaction (see the module docstring).
COMPACT_MIN = 1024


def _lines_for(network: str, items: Iterable[Item], cursors: Mapping[str, int]) -> bytes:
    """The log lines of items of one network (a gossip's with its cursor, if it has one)."""
    head = f'{{"network":{json.encoder.encode_basestring(network)},'
    lines = []
    for item in items:
        if isinstance(item, Gossip):
            # json.dumps({"network": network, "gossip": item.to_dict(), "cursor": cursor},
            # separators=(",", ":"), ensure_ascii=False), three times faster: every gossip a
            # node learns is written here.
            cursor = cursors.get(item.guid)
            tail = "}\n" if cursor is None else f',"cursor":{int(cursor)}}}\n'
            lines.append(f'{head}"gossip":{item.to_json()}{tail}')
        else:
            lines.append(f'{head}"tombstone":{json.dumps(item.to_dict(), separators=(",", ":"))}}}\n')
    # JSON escapes "\n" inside strings, so the only b"\n" is each terminator. (Never split
    # the log with str.splitlines: it also breaks on U+2028, U+0085 and friends.)
    return "".join(lines).encode("utf-8")


def _check_cursors(cursors: Mapping[str, int]) -> None:
    """Refuse, before anything is written, a cursor the next load would refuse."""
    for guid, cursor in cursors.items():
        if type(cursor) is not int or cursor <= 0:
            raise LocalProtocolError(f"cursor of gossip {guid} must be a positive integer, not {cursor!r}; not stored")


#: Why a stored gossip was set aside: the ``reason`` of a quarantine entry, and its log line.
_QUARANTINE_REASONS = {
    "sha2": "gossip does not match its sha2",
    "date_time": "gossip's date_time is not from 1970 to 9999 once in UTC",
}
#: A date_time that passes every check, put in place of a refused one to test the rest.
_ANY_GOOD_DATE_TIME = "1970-01-01T00:00:00+00:00"


def _refused_for_date_only(data: Any) -> bool:
    """True if ``data`` is a gossip refused only for its ``date_time``: ISO 8601 with an
    offset that lies outside 1970..9999 once in UTC. Versions before that rule accepted such
    gossips, so they are set aside in the quarantine, not refused like corruption."""
    if not isinstance(data, dict):
        return False
    value = data.get("date_time")
    if not isinstance(value, str) or len(value) > 64:
        return False
    try:
        aware = datetime.fromisoformat(value).tzinfo is not None
        Gossip.from_dict(dict(data, date_time=_ANY_GOOD_DATE_TIME))
    except (ValueError, TypeError):
        return False
    return aware


@dataclass
class _Scan:
    """What one pass over the log found."""

    records: list[tuple[str, Item]] = field(default_factory=list)
    #: Per network, the item key of each record.
    keys: dict[str, set[int]] = field(default_factory=dict)
    duplicates: int = 0
    quarantined: int = 0
    #: Drop lines and the lines they dropped.
    dropped: int = 0
    #: Each gossip record's cursor, by (network, guid); the highest one read.
    cursors: dict[tuple[str, str], int] = field(default_factory=dict)
    last_cursor: int = 0


class JsonFileStorage:
    """Gossips and peers in JSON files in one directory (see the module docstring).

    Call :meth:`load` first; a ``save_*`` call made before it loads the store itself.

    Args:
        directory: where the files live; created (mode 0700) if missing.

    Raises:
        StorageError: the directory cannot be created.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.log_path = self.directory / LOG_NAME
        self.peers_path = self.directory / PEERS_NAME
        self.quarantine_path = self.directory / QUARANTINE_NAME
        self._lock = threading.Lock()
        self._fd: int | None = None
        self._log_size = 0
        self._keys: dict[str, set[int]] = {}  # per network, the item key of each record
        #: Lines of the log that hold nothing live (drops, dropped items, duplicates).
        self._dead = 0
        #: The highest cursor ever stored, and the one the peer file keeps (see _rewrite_log).
        self._last_cursor = 0
        self._peers_last_cursor = 0
        self._peers: dict[tuple[str, str], PeerView] = {}
        self._loaded = False
        self._closed = False
        try:
            self.directory.mkdir(mode=_DIR_MODE, parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                f"cannot create storage directory {self.directory}: {exc.strerror or exc};"
                " check the path and its permissions"
            ) from exc
        self._lock_fd: int | None = None
        #: Loaded beside another process that claims the directory: reads only (see load).
        self._readonly = False

    def claim(self) -> None:
        """Own the directory until :meth:`close`: no other claim succeeds meanwhile.

        Raises:
            StorageInUse: another process (or another store in this one) has claimed it.
            StorageError: the lock file cannot be opened.
        """
        if fcntl is None or self._lock_fd is not None:  # pragma: no cover
            return
        path = self.directory / LOCK_NAME
        writable = True
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | _O_CLOEXEC, _FILE_MODE)
        except PermissionError:
            # A store made read-only can still be locked; its files then say what is wrong.
            writable = False
            try:
                fd = os.open(path, os.O_RDONLY | _O_CLOEXEC)
            except OSError as exc:
                raise StorageError(f"cannot open {path}: {exc.strerror or exc}") from exc
        except OSError as exc:
            raise StorageError(f"cannot open {path}: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                text = os.read(fd, 32).decode("ascii", "replace").strip()
            finally:
                os.close(fd)
            pid = int(text) if text.isdigit() else None
            raise StorageInUse(
                f"{self.directory} is in use by {'process ' + str(pid) if pid else 'another process'}",
                pid=pid,
            ) from None
        if writable:
            try:  # only says who holds the lock, for the message above: the flock is the claim
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
            except OSError as exc:  # a full disk: the claim holds all the same
                logger.warning("cannot write this process's id to %s: %s", path, exc.strerror or exc)
        self._lock_fd = fd

    def __repr__(self) -> str:
        return f"JsonFileStorage({str(self.directory)!r})"

    # -- the Storage protocol -------------------------------------------------------------

    def load(self) -> Snapshot:
        """Read everything stored, repairing what a crash may have left.

        A torn last line of the log is cut away (with a warning). Gossips whose sha2 does
        not verify are moved to ``quarantine.jsonl`` (with a warning). Duplicates are
        skipped; if there are many, the log is compacted.

        A store that has not claimed the directory while another process (or store) has,
        reads without changing anything: a repair or compaction beside the owner would
        leave the owner appending to a replaced file. Such a store then refuses writes.

        Returns:
            The gossips by network, in the order they were saved, and the peers by network.

        Raises:
            StorageError: a file is unreadable or holds a bad line; the message names the
                file and the line. Nothing is changed in that case.
        """
        with self._lock:
            self._check_open()
            scan = self._load_locked()
            peers: dict[str, list[PeerView]] = {}
            for (network, _), view in self._peers.items():
                peers.setdefault(network, []).append(view)
        gossips: dict[str, list[Gossip]] = {}
        tombstones: dict[str, list[Tombstone]] = {}
        cursors: dict[str, dict[str, int]] = {}
        for network, item in scan.records:
            if isinstance(item, Gossip):
                gossips.setdefault(network, []).append(item)
                cursors.setdefault(network, {})[item.guid] = scan.cursors[(network, item.guid)]
            else:
                tombstones.setdefault(network, []).append(item)
        # _scan_log checked every sha2
        return Snapshot(
            gossips=gossips, peers=peers, tombstones=tombstones, cursors=cursors, last_cursor=scan.last_cursor,
            verified=True,
        )

    def save_gossip(self, network: str, gossip: Gossip) -> None:
        """Append one gossip to the log and fsync it; a gossip already stored is skipped.

        Args:
            network: the network the gossip belongs to.
            gossip: a verified gossip.

        Raises:
            LocalProtocolError: the network name is invalid or the gossip does not verify.
            StorageError: the store is closed or the disk refused the write (the log is
                then left as it was).
        """
        self.save_gossips(network, [gossip])

    def save_gossips(self, network: str, gossips: Iterable[Gossip], cursors: Mapping[str, int] | None = None) -> None:
        """Append several gossips with one write and one fsync (idempotent like save_gossip).

        Args:
            network: the network the gossips belong to.
            gossips: verified gossips; those already stored are skipped.
            cursors: the node's cursor of each gossip, by guid (one missing is numbered at
                the next load, after the others).

        Raises:
            LocalProtocolError: the network name is invalid or a gossip does not verify;
                nothing is written then.
            StorageError: as for :meth:`save_gossip`.
        """
        self.write_items({network: gossips}, {}, None if cursors is None else {network: cursors})

    def save_tombstones(self, network: str, tombstones: Iterable[Tombstone]) -> None:
        """Append tombstones with one write and one fsync; those already stored are skipped.

        Raises:
            LocalProtocolError: the network name is invalid.
            StorageError: as for :meth:`save_gossip`.
        """
        self.write_items({network: tombstones}, {})

    def write_items(
        self,
        added: Mapping[str, Iterable[Item]],
        removed: Mapping[str, Iterable[Item]],
        cursors: Mapping[str, Mapping[str, int]] | None = None,
    ) -> None:
        """Store items and remove others, of every network, as one change: one append and one
        fsync. If the write fails, none of it is on disk (the log is cut back) and the store
        is as it was; so a batch answered "not written" is not written in part. Additions come
        before the removals in the log, so that a crash that tears the append keeps the
        newer version of a guid (see :func:`gossip.storage.persist`).

        Raises:
            LocalProtocolError: a network name is invalid or a gossip does not verify;
                nothing is written then.
            StorageError: as for :meth:`save_gossip`.
        """
        adds = {network: list(items) for network, items in added.items()}
        drops = {network: {item_key(item) for item in items} for network, items in removed.items()}
        for network in itertools.chain(adds, drops):
            check_network_name(network)
        for items in adds.values():
            for item in items:
                if isinstance(item, Gossip) and not item.verify():
                    raise LocalProtocolError(f"gossip {item.guid} does not match its sha2; not stored")
        given = cursors or {}
        for by_guid in given.values():
            _check_cursors(by_guid)
        with self._lock:
            self._check_writable()  # and loaded
            chunks: list[bytes] = []
            new: dict[str, dict[int, Item]] = {}
            for network, items in adds.items():
                held = self._keys.get(network, set())
                fresh: dict[int, Item] = {}
                for item in items:
                    key = item_key(item)
                    if key not in held and key not in fresh:
                        fresh[key] = item
                if fresh:
                    new[network] = fresh
                    chunks.append(_lines_for(network, fresh.values(), given.get(network) or {}))
            gone: dict[str, list[int]] = {}
            for network, keys in drops.items():
                held = self._keys.get(network, set())
                kept = [k for k in sorted(keys) if k in held]
                if kept:
                    gone[network] = kept
                    name = json.encoder.encode_basestring(network)
                    chunks.append(b"".join(f'{{"network":{name},"drop":"{key_hex(k)}"}}\n'.encode("utf-8") for k in kept))
            if not chunks:
                return
            self._append(b"".join(chunks))
            for network, fresh in new.items():
                self._keys.setdefault(network, set()).update(fresh)
                numbers = given.get(network) or {}
                written = [numbers[g.guid] for g in fresh.values() if isinstance(g, Gossip) and g.guid in numbers]
                self._last_cursor = max(self._last_cursor, *written, 0)
            for network, dropped in gone.items():
                self._keys[network].difference_update(dropped)
                self._dead += 2 * len(dropped)
            if gone:
                self._compact_if_due()

    def remove_items(self, network: str, items: Iterable[Item]) -> None:
        """Remove stored gossips or tombstones (each exactly: a gossip by guid and sha2) with
        one appended line each and one fsync; those not stored are ignored. Compacts the log
        when the dead lines outnumber the live ones.

        Raises:
            LocalProtocolError: the network name is invalid.
            StorageError: as for :meth:`save_gossip` (a compaction that fails is logged:
                the removal is written).
        """
        self.write_items({}, {network: items})

    def _compact_if_due(self) -> None:
        """Compact the log once its dead lines outnumber the live ones. A compaction that
        fails (a disk too full for a second copy) is logged, not raised: the changes that
        led to it are written already, and the next change that finds it due tries again."""
        if self._dead >= COMPACT_MIN and self._dead > sum(map(len, self._keys.values())):
            scan = self._scan_log()
            self._note_cursors(scan)
            try:
                self._rewrite_log(scan)
            except StorageError as exc:
                logger.warning("%s", exc)
                return
            self._keys = scan.keys
            self._dead = 0

    def save_peer(self, view: PeerView) -> None:
        """Store or replace one peer (by network and guid); rewrites ``peers.json``.

        Raises:
            StorageError: the store is closed or the file could not be written.
        """
        self.save_peers([view])

    def save_peers(self, views: Iterable[PeerView]) -> None:
        """Store or replace several peers with a single rewrite of ``peers.json``.

        Raises:
            StorageError: the store is closed or the file could not be written; the
                stored peers are then unchanged.
        """
        batch = list(views)
        with self._lock:
            self._check_writable()  # and loaded
            peers = dict(self._peers)
            for view in batch:
                peers[(view.peer.network_name, view.peer.guid)] = view
            self._write_peers(peers)
            self._peers = peers

    def forget_peers(self, peers: Iterable[tuple[str, str]]) -> None:
        """Remove peers by (network, guid) with a single rewrite of ``peers.json`` (none if
        none of them is stored).

        Raises:
            StorageError: as for :meth:`save_peers`.
        """
        gone = set(peers)
        with self._lock:
            self._check_writable()  # and loaded
            if not gone & self._peers.keys():
                return
            kept = {key: view for key, view in self._peers.items() if key not in gone}
            self._write_peers(kept)
            self._peers = kept

    def close(self) -> None:
        """Release the log file. Idempotent; every other method then raises StorageError."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._close_fd()
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # releases the flock
                self._lock_fd = None

    # -- maintenance ------------------------------------------------------------------------

    def compact(self) -> None:
        """Rewrite the log atomically with each gossip once and no torn or quarantined lines.

        Raises:
            StorageError: the store is closed, holds a bad line, or could not be written
                (the old log is then intact).
        """
        with self._lock:
            self._check_writable()  # and loaded
            scan = self._scan_log()
            self._note_cursors(scan)
            self._rewrite_log(scan)
            self._keys = scan.keys
            self._dead = 0

    # -- internals (called with the lock held) -----------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StorageError(f"{self!r} is closed; open a new one to use the store")

    def _check_writable(self) -> None:
        self._check_open()
        self._ensure_loaded()
        if self._readonly:
            raise StorageError(f"{self.directory} is claimed by another process; this store only reads it")

    def _claimed_elsewhere(self) -> bool:
        """Whether another process (or store) holds the directory's claim now."""
        if fcntl is None:  # pragma: no cover
            return False
        try:
            fd = os.open(self.directory / LOCK_NAME, os.O_RDONLY | _O_CLOEXEC)
        except OSError:
            return False  # no lock file: never claimed
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            return True
        finally:
            os.close(fd)  # releases a shared lock taken just now
        return False

    def _ensure_loaded(self) -> None:
        if not self._loaded:
            self._load_locked()

    def _load_locked(self) -> _Scan:
        if self._lock_fd is None and not self._loaded:
            self._readonly = self._claimed_elsewhere()
        if not self._readonly:
            self._remove_stale_temps()
        peers = self._read_peers()  # first: a bad peer file must refuse before any repair
        scan = self._scan_log()  # read-only: neither repairs nor sets aside
        self._peers = peers
        self._note_cursors(scan)
        if not self._readonly:
            self._dead = scan.duplicates + scan.dropped
            if scan.quarantined:  # set aside already: the log must no longer hold those lines
                self._rewrite_log(scan)
                self._dead = 0
            elif self._dead * 4 > len(scan.records):
                try:  # only to save space: a disk too full for it does not stop the node
                    self._rewrite_log(scan)
                    self._dead = 0
                except StorageError as exc:
                    logger.warning("%s", exc)
            self._open_log()
        self._keys = scan.keys
        self._loaded = True
        return scan

    def _note_cursors(self, scan: _Scan) -> None:
        """Keep the highest cursor ever given (the log's, or the peer file's when the gossip
        that held it was removed since); ``scan`` is told it too."""
        self._last_cursor = scan.last_cursor = max(self._last_cursor, scan.last_cursor, self._peers_last_cursor)

    def _remove_stale_temps(self) -> None:
        """Delete temp files left by a crash during an atomic rewrite."""
        for name in (LOG_NAME, PEERS_NAME):
            for temp in self.directory.glob(f".{name}.*.tmp"):
                logger.info("removing %s, left by an interrupted rewrite", temp)
                try:
                    temp.unlink()
                except OSError:
                    pass

    def _open_log(self) -> None:
        if self._fd is not None:
            return
        created = not self.log_path.exists()
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | _O_CLOEXEC | _O_BINARY
        try:
            fd = os.open(self.log_path, flags, _FILE_MODE)
        except OSError as exc:
            raise StorageError(f"cannot open {self.log_path}: {exc.strerror or exc}") from exc
        try:
            if created:
                _fsync_directory(self.directory)
            self._log_size = os.fstat(fd).st_size
        except OSError as exc:
            os.close(fd)
            raise StorageError(f"cannot open {self.log_path}: {exc.strerror or exc}") from exc
        self._fd = fd

    def _close_fd(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                os.close(fd)
            except OSError:  # pragma: no cover - nothing left to flush: every write was fsynced
                pass

    def _append(self, data: bytes) -> None:
        self._open_log()
        assert self._fd is not None
        try:
            _write_all(self._fd, data)
            os.fsync(self._fd)
        except OSError as exc:
            # Never leave a partial line in front of the next append: cut back to the last
            # complete line so that the log still loads.
            try:
                os.ftruncate(self._fd, self._log_size)
            except OSError:
                # The torn tail stays, and the next append would land behind it: the log is
                # read again first (the load cuts the tail, or refuses to write if it cannot).
                self._close_fd()
                self._loaded = False
            raise StorageError(
                f"cannot append to {self.log_path}: {exc.strerror or exc};"
                " the gossip was not stored (check free disk space and permissions)"
            ) from exc
        self._log_size += len(data)

    def _scan_log(self) -> _Scan:
        scan = _Scan()
        set_aside: list[tuple[int, Any, str]] = []
        try:
            f = open(self.log_path, "rb")
        except FileNotFoundError:
            return scan
        except OSError as exc:
            raise StorageError(f"cannot read {self.log_path}: {exc.strerror or exc}") from exc
        live: dict[tuple[str, int], tuple[str, Item]] = {}
        with f:
            offset = 0
            for lineno, raw in enumerate(f, 1):
                if not raw.endswith(b"\n") and not self._repair_tail(raw, offset, lineno):
                    break
                offset += len(raw)
                if not raw.strip():
                    continue
                obj, network, gossip = self._parse_line(raw, lineno)
                if isinstance(gossip, str):  # a drop line: the key it drops
                    scan.dropped += 1 + (live.pop((network, int(gossip, 16)), None) is not None)
                    continue
                reason = "date_time" if gossip is None else "sha2" if isinstance(gossip, Gossip) and not gossip.verify() else None
                if reason is not None:
                    set_aside.append((lineno, obj, reason))
                    cursor = obj.get("cursor")  # given once: never given again
                    if type(cursor) is int and cursor > 0:
                        scan.last_cursor = max(scan.last_cursor, cursor)
                    continue
                assert gossip is not None
                key = (network, item_key(gossip))
                if key in live:
                    scan.duplicates += 1
                    continue
                if isinstance(gossip, Gossip):
                    cursor = obj.get("cursor")
                    if cursor is None:  # written before cursors: the next number, the same at each load
                        cursor = scan.last_cursor + 1
                    elif type(cursor) is not int or cursor < 1:
                        raise StorageError(f"{self._where(lineno)}: cursor must be a positive integer; {_FIX_HINT}")
                    scan.last_cursor = max(scan.last_cursor, cursor)
                    scan.cursors[(network, gossip.guid)] = cursor
                live[key] = (network, gossip)
        for network, item_id in live:
            scan.keys.setdefault(network, set()).add(item_id)
        scan.records = list(live.values())
        if set_aside:
            self._quarantine(set_aside)
            scan.quarantined = len(set_aside)
        return scan

    def _where(self, lineno: int) -> str:
        return f"{self.log_path}, line {lineno}"

    def _parse_line(self, raw: bytes, lineno: int) -> tuple[Any, str, Item | str | None]:
        """The line's object, network and item (gossip or tombstone), or for a drop line the
        key it drops; the gossip is None if it is to be set aside for its date (see
        :func:`_refused_for_date_only`).

        Raises:
            StorageError: the line is not such a record.
        """
        where = self._where(lineno)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise StorageError(
                f"{where}: not UTF-8 text ({exc.reason} at byte {exc.start + 1}); {_FIX_HINT}"
            ) from None
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise StorageError(
                f"{where}: not valid JSON ({exc.msg} at column {exc.colno}); {_FIX_HINT}"
            ) from None
        except RecursionError:
            raise StorageError(f"{where}: JSON nested too deeply; {_FIX_HINT}") from None
        except ValueError:  # int() refuses more than 4,300 digits
            message = long_number_error(where, text, one_line=True)
            raise StorageError(f"{message}; {_FIX_HINT}") from None
        if not isinstance(obj, dict):
            raise StorageError(
                f'{where}: expected an object {{"network": ..., "gossip": {{...}}}},'
                f" found {type(obj).__name__}; {_FIX_HINT}"
            )
        try:
            network = check_network_name(obj.get("network"))
        except LocalProtocolError as exc:
            raise StorageError(f"{where}: bad or missing network: {exc}; {_FIX_HINT}") from None
        if "drop" in obj:
            drop = obj["drop"]
            if not isinstance(drop, str) or len(drop) != 64 or drop.strip("0123456789abcdef"):
                raise StorageError(f"{where}: a drop must name a 64-hex-digit key; {_FIX_HINT}")
            return obj, network, drop
        if "tombstone" in obj:
            try:
                return obj, network, Tombstone.from_dict(obj["tombstone"])
            except (ValueError, TypeError) as exc:
                raise StorageError(f"{where}: bad tombstone: {exc}; {_FIX_HINT}") from None
        try:
            gossip = Gossip.from_dict(obj.get("gossip"))
        except (ValueError, TypeError) as exc:
            if _refused_for_date_only(obj.get("gossip")):
                return obj, network, None
            raise StorageError(f"{where}: bad gossip: {exc}; {_FIX_HINT}") from None
        return obj, network, gossip

    def _repair_tail(self, raw: bytes, offset: int, lineno: int) -> bool:
        """Handle a last line with no newline: keep it if complete, else cut it away.

        Returns:
            True if the line was complete (a newline was added and it is to be read).
        """
        try:
            complete = isinstance(json.loads(raw.decode("utf-8")), dict)
        except (ValueError, RecursionError):
            complete = False
        if self._readonly:
            return complete  # the owner may be writing it right now: read, never repair
        try:
            fd = os.open(self.log_path, os.O_WRONLY | _O_CLOEXEC | _O_BINARY)
            try:
                if complete:
                    os.lseek(fd, 0, os.SEEK_END)
                    _write_all(fd, b"\n")
                else:
                    os.ftruncate(fd, offset)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise StorageError(
                f"{self._where(lineno)}: the last line is unterminated and could not be"
                f" repaired: {exc.strerror or exc}; check the file's permissions"
            ) from exc
        if complete:
            logger.warning("%s: last line had no newline; added one", self._where(lineno))
        else:
            logger.warning(
                "%s: removed a torn last line (%d bytes), left by an interrupted write;"
                " it was never acknowledged",
                self._where(lineno),
                len(raw),
            )
        return complete

    def _quarantine(self, entries: list[tuple[int, Any, str]]) -> None:
        if self._readonly:  # the owner sets them aside at its own load
            for lineno, _, reason in entries:
                logger.warning("%s: %s; skipped", self._where(lineno), _QUARANTINE_REASONS[reason])
            return
        lines = []
        for lineno, obj, reason in entries:
            logger.warning(
                "%s: %s; moved to %s",
                self._where(lineno),
                _QUARANTINE_REASONS[reason],
                self.quarantine_path,
            )
            entry = {
                "v": 1, "file": str(self.log_path), "line": lineno, "reason": reason, "record": obj
            }
            # ASCII: a line set aside may hold anything JSON allows, a lone surrogate included,
            # which no UTF-8 encoder takes.
            lines.append(json.dumps(entry, separators=(",", ":")) + "\n")
        created = not self.quarantine_path.exists()
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | _O_CLOEXEC | _O_BINARY
        try:
            fd = os.open(self.quarantine_path, flags, _FILE_MODE)
            try:
                _write_all(fd, "".join(lines).encode("utf-8"))
                os.fsync(fd)
            finally:
                os.close(fd)
            if created:
                _fsync_directory(self.directory)
        except OSError as exc:
            raise StorageError(
                f"cannot write {self.quarantine_path}: {exc.strerror or exc}; check free disk space"
            ) from exc

    def _rewrite_log(self, scan: _Scan) -> None:
        # Each gossip is written with its cursor (as read by the scan), so that none is
        # renumbered whatever goes; and if the highest cursor goes (a gossip removed), the
        # peer file keeps it, so that it is never given again.
        cursors = scan.cursors
        runs = [(network, [item for _, item in run]) for network, run in itertools.groupby(scan.records, key=lambda r: r[0])]
        data = b"".join(
            _lines_for(network, items, {i.guid: c for i in items if (c := cursors.get((network, i.guid))) is not None})
            for network, items in runs
        )
        kept = max((cursors.get((n, i.guid), 0) for n, i in scan.records if isinstance(i, Gossip)), default=0)
        if kept < self._last_cursor and self._peers_last_cursor < self._last_cursor:
            self._write_peers(self._peers)
        try:
            write_file_atomically(self.log_path, data)
        except OSError as exc:
            raise StorageError(
                f"cannot compact {self.log_path}: {exc.strerror or exc}; the log holds the same"
            ) from exc
        finally:
            # The open descriptor may point at the replaced file: the rename can have happened
            # even when the call failed (the directory's fsync after it). Appends through it
            # would go to a file no longer in the directory.
            self._close_fd()
            self._open_log()

    def _read_peers(self) -> dict[tuple[str, str], PeerView]:
        path = self.peers_path
        try:
            text = path.read_bytes().decode("utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise StorageError(f"cannot read {path}: {exc.strerror or exc}") from exc
        except UnicodeDecodeError as exc:
            raise StorageError(
                f"{path}: not UTF-8 text ({exc.reason}); delete it to forget the peers"
            ) from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise StorageError(
                f"{path}, line {exc.lineno}, column {exc.colno}: not valid JSON ({exc.msg});"
                " fix it or delete the file to forget the peers"
            ) from None
        except RecursionError:
            raise StorageError(f"{path}: JSON nested too deeply") from None
        except ValueError:  # int() refuses more than 4,300 digits
            message = long_number_error(str(path), text)
            raise StorageError(f"{message}; fix it or delete the file to forget the peers") from None
        if not isinstance(data, dict) or not isinstance(data.get("peers"), list):
            raise StorageError(
                f'{path}: expected {{"v": 1, "peers": [...]}}; fix or delete the file'
            )
        if data.get("v") != _PEERS_VERSION:
            raise StorageError(
                f"{path}: format version {data.get('v')!r} is not {_PEERS_VERSION};"
                " it was written by another version of gossip"
            )
        last_cursor = data.get("last_cursor", 0)
        if type(last_cursor) is not int or last_cursor < 0:
            raise StorageError(f"{path}: last_cursor must be a whole number; fix or delete it")
        self._peers_last_cursor = last_cursor
        peers: dict[tuple[str, str], PeerView] = {}
        for index, item in enumerate(data["peers"], 1):
            try:
                view = PeerView.from_dict(self._forget_bad_last_seen(item, index))
            except (ValueError, TypeError, AttributeError) as exc:
                raise StorageError(
                    f"{path}: peer #{index}: {exc}; fix it or delete the file to forget the peers"
                ) from None
            peers[(view.peer.network_name, view.peer.guid)] = view
        return peers

    def _forget_bad_last_seen(self, item: Any, index: int) -> Any:
        """``item`` with a ``last_seen`` that is not a time from 1970 to 9999 read as None
        ("never seen"), with a warning: a passing opinion must not keep the node from
        starting, nor make every status output that formats it fail."""
        if not isinstance(item, dict) or item.get("last_seen") is None:
            return item
        try:
            timestamp_from_iso(item["last_seen"], "last_seen")
        except LocalProtocolError as exc:
            guid = item.get("guid")
            logger.warning(
                "%s: peer #%d%s: %s; read as never seen",
                self.peers_path,
                index,
                f" ({guid})" if isinstance(guid, str) and len(guid) <= 64 else "",
                exc,
            )
            return dict(item, last_seen=None)
        return item

    def _write_peers(self, peers: dict[tuple[str, str], PeerView]) -> None:
        body: dict[str, Any] = {"v": _PEERS_VERSION, "peers": [view.to_dict() for view in peers.values()]}
        if self._last_cursor:  # older versions ignore it
            body["last_cursor"] = self._last_cursor
        data = (json.dumps(body, ensure_ascii=False, indent=1) + "\n").encode("utf-8")
        try:
            write_file_atomically(self.peers_path, data)
        except OSError as exc:
            raise StorageError(
                f"cannot write {self.peers_path}: {exc.strerror or exc}; the peers were not stored"
            ) from exc
        self._peers_last_cursor = self._last_cursor
