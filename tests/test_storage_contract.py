"""One contract suite for every Storage adapter, then the JSON-file store's own promises."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import gossip.storage.jsonfile as jsonfile_module
from gossip.errors import LocalProtocolError, StorageError
from gossip.model import Gossip, Peer, PeerStatus, PeerView, Snapshot, compute_sha2
from gossip.events import PeerForgotten, PeerJoined
from gossip.storage import MemoryStorage, Storage, persist
from gossip.storage.jsonfile import JsonFileStorage, locate_long_number

REPO_ROOT = Path(jsonfile_module.__file__).resolve().parents[2]
RNG_SEED = 20261124


def make_guid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def make_gossip(rng: random.Random, msg: str = "hello", who: str = "alpha") -> Gossip:
    return Gossip.create(
        guid=make_guid(rng),
        date_time="2026-11-24T06:35:13.123456+00:00",
        who_name=who,
        msg=msg,
    )


def make_view(
    rng: random.Random,
    network: str = "net-a",
    *,
    guid: str | None = None,
    name: str = "bravo",
    port: int = 8471,
    status: PeerStatus = PeerStatus.ALIVE,
    last_seen: float | None = 1_700_000_000.25,
    failures: int = 0,
) -> PeerView:
    peer = Peer(
        guid=guid or make_guid(rng),
        name=name,
        ip="127.0.0.1",
        port=port,
        network_name=network,
    )
    return PeerView(peer=peer, status=status, last_seen=last_seen, failures=failures)


@pytest.fixture
def rng() -> random.Random:
    return random.Random(RNG_SEED)


# -- the contract, for every adapter ----------------------------------------------------------


@pytest.fixture(params=["memory", "jsonfile"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    factories: dict[str, Callable[[], Storage]] = {
        "memory": MemoryStorage,
        "jsonfile": lambda: JsonFileStorage(tmp_path / "store"),
    }
    store = factories[request.param]()
    yield store
    store.close()


def test_empty_store_loads_empty_snapshot(storage: Storage) -> None:
    assert storage.load() == Snapshot()


def test_gossips_round_trip_across_networks(storage: Storage, rng: random.Random) -> None:
    storage.load()
    expected: dict[str, list[Gossip]] = {"net-a": [], "net-b": [], "net-c": []}
    for i in range(12):
        network = ["net-a", "net-b", "net-c"][i % 3]
        gossip = make_gossip(rng, msg=f"message {i} \u00e9\u2028\U0001f600 \"quoted\"\n{{}}")
        storage.save_gossip(network, gossip)
        expected[network].append(gossip)
    assert storage.load().gossips == expected


def test_same_guid_on_two_networks_is_two_gossips(storage: Storage, rng: random.Random) -> None:
    gossip = make_gossip(rng)
    storage.save_gossip("net-a", gossip)
    storage.save_gossip("net-b", gossip)
    assert storage.load().gossips == {"net-a": [gossip], "net-b": [gossip]}


def test_save_gossip_is_idempotent(storage: Storage, rng: random.Random) -> None:
    first, second = make_gossip(rng), make_gossip(rng)
    storage.save_gossip("net-a", first)
    storage.save_gossip("net-a", second)
    storage.save_gossip("net-a", first)
    storage.save_gossip("net-a", first)
    assert storage.load().gossips == {"net-a": [first, second]}


def test_peers_round_trip_with_liveness(storage: Storage, rng: random.Random) -> None:
    views = [
        make_view(rng, "net-a", name="bravo"),
        make_view(rng, "net-a", name="charlie", status=PeerStatus.SUSPECT, failures=1),
        make_view(rng, "net-b", name="delta", status=PeerStatus.DEAD, last_seen=None, failures=7),
    ]
    for view in views:
        storage.save_peer(view)
    assert storage.load().peers == {"net-a": views[:2], "net-b": views[2:]}


def test_forget_peers_removes_by_network_and_guid_and_survives_reopening(storage: Storage, rng: random.Random) -> None:
    guid = make_guid(rng)
    keep, drop_a = make_view(rng, "net-a", name="keep"), make_view(rng, "net-a", guid=guid, name="drop")
    on_b = make_view(rng, "net-b", guid=guid, name="same guid, other network")
    storage.save_peers([keep, drop_a, on_b])
    storage.forget_peers([("net-a", guid), ("net-a", make_guid(rng))])  # an unknown one is ignored
    assert storage.load().peers == {"net-a": [keep], "net-b": [on_b]}
    storage.forget_peers([])
    assert storage.load().peers == {"net-a": [keep], "net-b": [on_b]}


def test_persist_writes_what_the_events_say_forgotten_peers_included(storage: Storage, rng: random.Random) -> None:
    joined, gone = make_view(rng, "net-a", name="joined"), make_view(rng, "net-a", name="gone")
    storage.save_peer(gone)
    persist(storage, [PeerJoined(peer=joined), PeerForgotten(peer=gone, reason="never answered")])
    assert storage.load().peers == {"net-a": [joined]}
    # forgotten then learnt again in one batch: kept
    persist(storage, [PeerForgotten(peer=joined, reason="evicted"), PeerJoined(peer=joined)])
    assert storage.load().peers == {"net-a": [joined]}


def test_save_peer_replaces_by_network_and_guid(storage: Storage, rng: random.Random) -> None:
    guid = make_guid(rng)
    on_a = make_view(rng, "net-a", guid=guid, name="bravo")
    on_b = make_view(rng, "net-b", guid=guid, name="bravo")
    storage.save_peer(on_a)
    storage.save_peer(on_b)
    newer = make_view(
        rng, "net-a", guid=guid, name="bravo-2", port=9000, status=PeerStatus.SUSPECT,
        last_seen=1_700_000_123.5, failures=2,
    )
    storage.save_peer(newer)
    assert storage.load().peers == {"net-a": [newer], "net-b": [on_b]}


def test_close_is_idempotent(storage: Storage, rng: random.Random) -> None:
    storage.save_gossip("net-a", make_gossip(rng))
    storage.close()
    storage.close()  # no error the second time
    if isinstance(storage, JsonFileStorage):
        with pytest.raises(StorageError, match="closed"):
            storage.load()
    else:
        assert isinstance(storage, MemoryStorage) and storage.closed


# -- JsonFileStorage only -------------------------------------------------------------------------


@pytest.fixture
def store_dir(tmp_path: Path) -> Path:
    return tmp_path / "store"


def fill(directory: Path, rng: random.Random, count: int = 3) -> list[Gossip]:
    store = JsonFileStorage(directory)
    store.load()
    gossips = [make_gossip(rng, msg=f"line {i + 1}") for i in range(count)]
    for gossip in gossips:
        store.save_gossip("net-a", gossip)
    store.close()
    return gossips


def test_reopen_gets_everything_back(store_dir: Path, rng: random.Random) -> None:
    first = JsonFileStorage(store_dir)
    first.load()
    gossips = {"net-a": [make_gossip(rng) for _ in range(5)], "net-b": [make_gossip(rng)]}
    for network, items in gossips.items():
        for gossip in items:
            first.save_gossip(network, gossip)
    views = [make_view(rng, "net-a"), make_view(rng, "net-b", status=PeerStatus.DEAD)]
    first.save_peers(views)
    first.close()

    second = JsonFileStorage(store_dir)
    snapshot = second.load()
    assert snapshot.gossips == gossips
    assert snapshot.peers == {"net-a": views[:1], "net-b": views[1:]}
    # The reopened store still knows what it holds: no duplicate line is appended.
    size = (store_dir / "gossip.jsonl").stat().st_size
    second.save_gossip("net-a", gossips["net-a"][0])
    assert (store_dir / "gossip.jsonl").stat().st_size == size
    second.close()


def test_save_before_load_keeps_what_is_stored(store_dir: Path, rng: random.Random) -> None:
    gossips = fill(store_dir, rng, 2)
    view = make_view(rng)
    store = JsonFileStorage(store_dir)
    store.save_peer(view)  # no load() first: must not wipe anything
    store.save_gossip("net-a", gossips[0])
    store.close()
    snapshot = JsonFileStorage(store_dir).load()
    assert snapshot.gossips == {"net-a": gossips}
    assert snapshot.peers == {"net-a": [view]}


def test_log_is_one_line_per_gossip(store_dir: Path, rng: random.Random) -> None:
    gossips = fill(store_dir, rng, 4)
    lines = (store_dir / "gossip.jsonl").read_bytes().split(b"\n")
    assert lines[-1] == b""
    assert [json.loads(line) for line in lines[:-1]] == [
        {"network": "net-a", "gossip": g.to_dict()} for g in gossips
    ]
    # byte for byte what json.dumps writes (the line is built by hand for speed)
    assert lines[:-1] == [
        json.dumps({"network": "net-a", "gossip": g.to_dict()}, separators=(",", ":"), ensure_ascii=False).encode()
        for g in gossips
    ]


def test_torn_last_line_is_ignored_and_truncated(
    store_dir: Path, rng: random.Random, caplog: pytest.LogCaptureFixture
) -> None:
    gossips = fill(store_dir, rng, 2)
    log = store_dir / "gossip.jsonl"
    good = log.read_bytes()
    torn = json.dumps({"network": "net-a", "gossip": make_gossip(rng).to_dict()})[:57]
    with open(log, "ab") as f:
        f.write(torn.encode())

    store = JsonFileStorage(store_dir)
    with caplog.at_level(logging.WARNING, logger="gossip.storage"):
        snapshot = store.load()
    assert snapshot.gossips == {"net-a": gossips}
    assert log.read_bytes() == good
    assert any("torn" in r.getMessage() and "line 3" in r.getMessage() for r in caplog.records)
    assert all(r.name == "gossip.storage.jsonfile" for r in caplog.records)
    # Appending after the repair gives a clean log.
    extra = make_gossip(rng)
    store.save_gossip("net-a", extra)
    store.close()
    assert JsonFileStorage(store_dir).load().gossips == {"net-a": [*gossips, extra]}


def test_complete_last_line_without_newline_is_kept(store_dir: Path, rng: random.Random) -> None:
    gossips = fill(store_dir, rng, 2)
    log = store_dir / "gossip.jsonl"
    log.write_bytes(log.read_bytes().rstrip(b"\n"))
    assert JsonFileStorage(store_dir).load().gossips == {"net-a": gossips}
    assert log.read_bytes().endswith(b"}\n")


@pytest.mark.parametrize(
    ("bad_line", "what"),
    [
        (b'{"network": "net-a", "gossip": {', "not valid JSON"),
        (b"\xff\xfe garbage", "not UTF-8"),
        (b"[1, 2, 3]", "expected an object"),
        (b'{"gossip": {}}', "network"),
        (b'{"network": "net-a", "gossip": {"guid": "x"}}', "bad gossip"),
        (b"[" * 100_000, "JSON"),
        # int() refuses more than 4,300 digits: a bare ValueError and a traceback before.
        (b'{"network": "net-a", "gossip": {}, "n": ' + b"9" * 5000 + b"}", "column 41: a number of more than 4300 digits"),
        (b'{"network": "net-a", "gossip": {"msg": "1.5", "x": [-' + b"1" * 4301 + b"]}}", "column 53: a number of more"),
    ],
)
def test_corrupt_middle_line_names_file_and_line(
    store_dir: Path, rng: random.Random, bad_line: bytes, what: str
) -> None:
    fill(store_dir, rng, 3)
    log = store_dir / "gossip.jsonl"
    lines = log.read_bytes().split(b"\n")
    lines[1] = bad_line
    log.write_bytes(b"\n".join(lines))
    before = log.read_bytes()
    with pytest.raises(StorageError) as info:
        JsonFileStorage(store_dir).load()
    message = str(info.value)
    assert str(log) in message
    assert "line 2" in message
    assert what in message
    assert "\n" not in message
    assert log.read_bytes() == before  # refused, not "repaired"


def test_torn_last_line_holding_a_long_number_is_cut_away(
    store_dir: Path, rng: random.Random, caplog: pytest.LogCaptureFixture
) -> None:
    """A crash can tear a line inside a long number: the torn tail is cut as any other."""
    gossips = fill(store_dir, rng, 2)
    log = store_dir / "gossip.jsonl"
    good = log.read_bytes()
    log.write_bytes(good + b'{"network": "net-a", "gossip": {"n": ' + b"7" * 5000)
    with caplog.at_level(logging.WARNING, logger="gossip.storage"):
        assert JsonFileStorage(store_dir).load().gossips == {"net-a": gossips}
    assert log.read_bytes() == good
    assert any("torn" in r.getMessage() and "line 3" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("text", "place"),
    [
        ('{"a": ' + "1" * 4301 + "}", (1, 7)),
        ('{"a": -' + "1" * 4301 + "}", (1, 7)),
        ('{"s": "' + "1" * 5000 + '", "f": 1.' + "2" * 5000 + ', "e": ' + "3" * 5000 + "e1,\n\n  \"n\": " + "4" * 5000 + "}",
         (3, 8)),
        ('["' + "\\\"" + "5" * 5000 + '", ' + "6" * 4301 + "]", (1, 5008)),  # an escaped quote in a string
        ('{"a": ' + "1" * 4300 + "}", None),  # at the limit: int() reads it
    ],
    ids=["int", "negative", "after-strings-floats-exponents", "escaped-quote", "at-limit"],
)
def test_locate_long_number_skips_strings_and_floats(text: str, place: tuple[int, int] | None) -> None:
    assert locate_long_number(text) == place
    if place is not None:
        with pytest.raises(ValueError, match="digits"):
            json.loads(text)


def record_dated(rng: random.Random, date_time: str, **changes: str) -> bytes:
    """A log line for a gossip with that date_time and a matching sha2, built by hand: an
    older version stored such lines; this one refuses to build the Gossip."""
    fields = dict(guid=make_guid(rng), date_time=date_time, who_name="alpha", msg="from year 1")
    fields.update(changes)
    gossip = dict(fields, sha2=compute_sha2(**fields))
    return json.dumps({"network": "net-a", "gossip": gossip}).encode()


@pytest.mark.parametrize("date_time", ["0001-01-01T00:00:00+01:00", "1969-12-31T23:59:59+00:00", "9999-12-31T23:00:00-02:00"])
def test_gossip_dated_out_of_range_is_quarantined(
    store_dir: Path, rng: random.Random, caplog: pytest.LogCaptureFixture, date_time: str
) -> None:
    """A stored date that no longer converts to UTC within 1970..9999 is set aside like a bad
    sha2, with a warning naming file and line: the node starts, and no status output meets it."""
    gossips = fill(store_dir, rng, 3)
    log = store_dir / "gossip.jsonl"
    lines = log.read_bytes().split(b"\n")
    lines[1] = record_dated(rng, date_time)
    log.write_bytes(b"\n".join(lines))

    with caplog.at_level(logging.WARNING, logger="gossip.storage"):
        snapshot = JsonFileStorage(store_dir).load()
    assert snapshot.gossips == {"net-a": [gossips[0], gossips[2]]}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(log) in m and "line 2" in m and "date_time" in m and "quarantine" in m for m in warnings)
    quarantine = store_dir / "quarantine.jsonl"
    [entry] = [json.loads(line) for line in quarantine.read_text().splitlines()]
    assert entry["reason"] == "date_time" and entry["line"] == 2 and entry["file"] == str(log)
    assert entry["record"] == json.loads(lines[1])
    assert JsonFileStorage(store_dir).load().gossips == {"net-a": [gossips[0], gossips[2]]}
    assert len(quarantine.read_text().splitlines()) == 1


def test_gossip_bad_in_more_than_its_date_is_still_refused(store_dir: Path, rng: random.Random) -> None:
    fill(store_dir, rng, 3)
    log = store_dir / "gossip.jsonl"
    lines = log.read_bytes().split(b"\n")
    lines[1] = record_dated(rng, "0001-01-01T00:00:00+01:00", who_name="")
    log.write_bytes(b"\n".join(lines))
    with pytest.raises(StorageError, match="line 2: bad gossip: "):
        JsonFileStorage(store_dir).load()
    assert not (store_dir / "quarantine.jsonl").exists()


def test_blank_lines_are_skipped(store_dir: Path, rng: random.Random) -> None:
    gossips = fill(store_dir, rng, 2)
    log = store_dir / "gossip.jsonl"
    log.write_bytes(log.read_bytes().replace(b"}\n", b"}\n\n", 1))
    assert JsonFileStorage(store_dir).load().gossips == {"net-a": gossips}


def test_tampered_gossip_is_quarantined(
    store_dir: Path, rng: random.Random, caplog: pytest.LogCaptureFixture
) -> None:
    gossips = fill(store_dir, rng, 3)
    log = store_dir / "gossip.jsonl"
    lines = log.read_bytes().split(b"\n")
    record = json.loads(lines[1])
    record["gossip"]["msg"] = "tampered"
    lines[1] = json.dumps(record).encode()
    log.write_bytes(b"\n".join(lines))

    with caplog.at_level(logging.WARNING, logger="gossip.storage"):
        snapshot = JsonFileStorage(store_dir).load()
    assert snapshot.gossips == {"net-a": [gossips[0], gossips[2]]}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(log) in m and "line 2" in m and "sha2" in m for m in warnings)

    quarantine = store_dir / "quarantine.jsonl"
    entries = [json.loads(line) for line in quarantine.read_text().splitlines()]
    assert len(entries) == 1
    assert entries[0]["record"] == record and entries[0]["line"] == 2
    # Moved, not copied: loading again neither returns nor re-quarantines it.
    assert JsonFileStorage(store_dir).load().gossips == {"net-a": [gossips[0], gossips[2]]}
    assert len(quarantine.read_text().splitlines()) == 1
    assert b"tampered" not in log.read_bytes()


def test_save_refuses_unverified_gossip_and_bad_network(
    store_dir: Path, rng: random.Random
) -> None:
    store = JsonFileStorage(store_dir)
    good = make_gossip(rng)
    forged = Gossip(**{**good.to_dict(), "msg": "forged"})
    with pytest.raises(LocalProtocolError, match="sha2"):
        store.save_gossip("net-a", forged)
    with pytest.raises(LocalProtocolError, match="network name"):
        store.save_gossip("bad network!", good)
    store.close()
    assert JsonFileStorage(store_dir).load() == Snapshot()


def test_files_are_owner_only(store_dir: Path, rng: random.Random) -> None:
    store = JsonFileStorage(store_dir)
    store.load()
    store.save_gossip("net-a", make_gossip(rng))
    store.save_peer(make_view(rng))
    store.close()
    log = store_dir / "gossip.jsonl"
    log.write_bytes(log.read_bytes().replace(b'"msg":"hello"', b'"msg":"evil"'))
    JsonFileStorage(store_dir).load()  # quarantines and compacts: both files are new
    assert stat.S_IMODE(store_dir.stat().st_mode) == 0o700
    for name in ("gossip.jsonl", "peers.json", "quarantine.jsonl"):
        assert stat.S_IMODE((store_dir / name).stat().st_mode) == 0o600, name
    assert sorted(p.name for p in store_dir.iterdir()) == [
        "gossip.jsonl", "peers.json", "quarantine.jsonl",
    ]


def test_compact_keeps_everything_once(store_dir: Path, rng: random.Random) -> None:
    gossips = fill(store_dir, rng, 8)
    log = store_dir / "gossip.jsonl"
    clean = log.read_bytes()
    lines = clean.split(b"\n")[:-1]
    # One duplicate line: below the threshold at which load() compacts by itself.
    log.write_bytes(clean + lines[0] + b"\n")

    store = JsonFileStorage(store_dir)
    assert store.load().gossips == {"net-a": gossips}
    assert log.read_bytes().count(b"\n") == 9
    store.compact()
    assert _records(log.read_bytes()) == _numbered(clean)  # each once, now with its cursor
    extra = make_gossip(rng)
    store.save_gossip("net-a", extra)  # the append descriptor follows the new file
    store.close()
    assert JsonFileStorage(store_dir).load().gossips == {"net-a": [*gossips, extra]}


def test_load_compacts_when_mostly_garbage(store_dir: Path, rng: random.Random) -> None:
    gossips = fill(store_dir, rng, 2)
    log = store_dir / "gossip.jsonl"
    clean = log.read_bytes()
    log.write_bytes(clean * 4)
    assert JsonFileStorage(store_dir).load().gossips == {"net-a": gossips}
    assert _records(log.read_bytes()) == _numbered(clean)


def _records(data: bytes) -> list[Any]:
    return [json.loads(line) for line in data.splitlines()]


def _numbered(clean: bytes) -> list[Any]:
    """The records of a log written without cursors, as a rewrite writes them: numbered in file order."""
    return [dict(record, cursor=i) for i, record in enumerate(_records(clean), 1)]


def test_stale_temp_files_are_removed(store_dir: Path, rng: random.Random) -> None:
    gossips = fill(store_dir, rng, 1)
    stale = store_dir / ".peers.json.0123456789ab.tmp"
    stale.write_text("{half a peer file")
    assert JsonFileStorage(store_dir).load().gossips == {"net-a": gossips}
    assert not stale.exists()


@pytest.mark.parametrize(
    ("content", "what"),
    [
        ('{"v": 1, "peers": [\n  {"guid": ', "line 2, column"),
        ('{"v": 2, "peers": []}', "version"),
        ('{"v": 1, "peers": [{"guid": "nope"}]}', "peer #1"),
        ('{"v": 1,\n "peers": [\n  {"port": ' + "9" * 5000 + "}]}", "line 3, column 12: a number of more than 4300 digits"),
        ('["not", "an", "object"]', "expected"),
    ],
)
def test_bad_peer_file_names_the_file(store_dir: Path, content: str, what: str) -> None:
    store_dir.mkdir()
    (store_dir / "peers.json").write_text(content)
    with pytest.raises(StorageError) as info:
        JsonFileStorage(store_dir).load()
    assert str(store_dir / "peers.json") in str(info.value)
    assert what in str(info.value)


@pytest.mark.parametrize(
    "last_seen", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:00:00-02:00", "soon", "2026-09-21T14:13:20", 1700000000, ["x"]]
)
def test_peer_last_seen_out_of_range_is_read_as_never_seen(
    store_dir: Path, rng: random.Random, caplog: pytest.LogCaptureFixture, last_seen: object
) -> None:
    """A year-1 last_seen made the peers endpoint answer 500; any last_seen that is not a time
    from 1970 to 9999 is now read as "never seen", with a warning naming the file and the peer."""
    store = JsonFileStorage(store_dir)
    store.load()
    broken, kept = make_view(rng, name="broken"), make_view(rng, name="kept")
    store.save_peers([broken, kept])
    store.close()
    path = store_dir / "peers.json"
    data = json.loads(path.read_text())
    data["peers"][0]["last_seen"] = last_seen
    path.write_text(json.dumps(data))

    with caplog.at_level(logging.WARNING, logger="gossip.storage"):
        views = JsonFileStorage(store_dir).load().peers["net-a"]
    assert views == [dataclasses.replace(broken, last_seen=None), kept]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(str(path) in m and "peer #1" in m and broken.peer.guid in m and "never seen" in m for m in warnings)
    json.dumps([view.to_dict() for view in views])  # what GET /v1/peers sends


def test_operations_after_close_raise(store_dir: Path, rng: random.Random) -> None:
    store = JsonFileStorage(store_dir)
    store.close()
    for call in (
        store.load,
        store.compact,
        lambda: store.save_gossip("net-a", make_gossip(rng)),
        lambda: store.save_peer(make_view(rng)),
    ):
        with pytest.raises(StorageError, match="closed"):
            call()


def test_failed_append_leaves_a_loadable_log(
    store_dir: Path, rng: random.Random, monkeypatch: pytest.MonkeyPatch
) -> None:
    gossips = fill(store_dir, rng, 2)
    store = JsonFileStorage(store_dir)
    store.load()
    real_write = os.write

    def half_then_fail(fd: int, data: bytes | memoryview) -> int:
        real_write(fd, bytes(data)[: len(data) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", half_then_fail)
    lost = make_gossip(rng)
    with pytest.raises(StorageError, match="No space left"):
        store.save_gossip("net-a", lost)
    monkeypatch.undo()
    store.save_gossip("net-a", lost)  # not marked as stored: retried for real
    store.close()
    assert JsonFileStorage(store_dir).load().gossips == {"net-a": [*gossips, lost]}


def test_concurrent_saves_from_threads(store_dir: Path) -> None:
    store = JsonFileStorage(store_dir)
    store.load()
    per_thread = 20
    made: list[list[Gossip]] = [
        [make_gossip(random.Random(t * 1000 + i)) for i in range(per_thread)] for t in range(4)
    ]

    def work(items: list[Gossip], t: int) -> None:
        for i, gossip in enumerate(items):
            store.save_gossip("net-a", gossip)
            store.save_gossip("net-a", items[0])  # duplicates race too
            store.save_peer(make_view(random.Random(t), port=8000 + i))

    threads = [threading.Thread(target=work, args=(items, t)) for t, items in enumerate(made)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    store.close()
    snapshot = JsonFileStorage(store_dir).load()
    assert sorted(g.guid for g in snapshot.gossips["net-a"]) == sorted(
        g.guid for items in made for g in items
    )
    assert (store_dir / "gossip.jsonl").read_bytes().count(b"\n") == 4 * per_thread
    assert sorted(v.peer.port for v in snapshot.peers["net-a"]) == [8000 + per_thread - 1] * 4


@settings(max_examples=40, deadline=None)
@given(msg=st.text(max_size=200), who=st.text(min_size=1, max_size=20))
def test_any_text_round_trips(msg: str, who: str) -> None:
    if not who.strip() or any(ord(c) < 32 or ord(c) == 127 for c in who):
        who = "alpha"
    gossip = make_gossip(random.Random(len(msg)), msg=msg, who=who)
    with tempfile.TemporaryDirectory() as directory:
        store = JsonFileStorage(directory)
        store.save_gossip("net-a", gossip)
        store.close()
        assert JsonFileStorage(directory).load().gossips == {"net-a": [gossip]}


# -- crash safety: kill -9 in the middle of a burst ----------------------------------------------

CHILD = r"""
import random, sys, uuid
from gossip.model import Gossip
from gossip.storage.jsonfile import JsonFileStorage

store = JsonFileStorage(sys.argv[1])
store.load()
rng = random.Random(int(sys.argv[2]))
for i in range(100_000):
    guid = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    gossip = Gossip.create(guid=guid, date_time="2026-11-24T06:35:13.123456+00:00",
                           who_name="crasher", msg="burst %d %s" % (i, "x" * (i % 300)))
    store.save_gossip("net-a", gossip)
    print(guid, flush=True)  # acknowledged: save_gossip has returned
"""


def test_kill_9_never_loses_an_acknowledged_gossip(store_dir: Path) -> None:
    pythonpath = os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])
    env = {**os.environ, "PYTHONPATH": pythonpath}
    acknowledged: set[str] = set()
    rng = random.Random(RNG_SEED)
    for run in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(store_dir), str(run)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=REPO_ROOT,
        )
        watchdog = threading.Timer(60, proc.kill)  # never hang the suite (generous: CI machines are shared)
        watchdog.start()
        try:
            assert proc.stdout is not None
            kill_after = rng.randrange(20, 150)
            for _ in range(kill_after):
                line = proc.stdout.readline()
                assert line, proc.stderr.read().decode() if proc.stderr else "child died"
                acknowledged.add(line.decode().strip())
            os.kill(proc.pid, signal.SIGKILL)
            # Read on through proc.stdout: readline() may hold more lines in its buffer, which
            # communicate() (reading the pipe's descriptor itself) would never see: gossips
            # the child acknowledged would then look stored without acknowledgement.
            rest = proc.stdout.read()
            proc.communicate(timeout=10)
        finally:
            watchdog.cancel()
        assert proc.returncode == -signal.SIGKILL
        acknowledged.update(rest.decode().split())  # printed just before the kill
        snapshot = JsonFileStorage(store_dir).load()
        stored = {g.guid for g in snapshot.gossips.get("net-a", [])}
        assert acknowledged <= stored, f"run {run}: lost {len(acknowledged - stored)}"
        assert len(stored - acknowledged) <= run + 1  # at most one in flight per run


# -- found in review: failures part-way through a change ------------------------------------


def _tombstone_for(gossip: Gossip) -> Any:
    from gossip.model import Tombstone

    return Tombstone(guid=gossip.guid, date_time="2026-11-25T00:00:00+00:00")


def test_write_items_is_one_change_for_every_adapter(storage: Storage, rng: random.Random) -> None:
    """A delete (its tombstone added, its gossip removed) and a new gossip, two networks, one call."""
    kept, doomed, other = make_gossip(rng, "kept"), make_gossip(rng, "doomed"), make_gossip(rng, "other")
    storage.load()
    storage.write_items({"net-a": [kept, doomed]}, {}, {"net-a": {kept.guid: 1, doomed.guid: 2}})
    storage.write_items({"net-a": [_tombstone_for(doomed)], "net-b": [other]}, {"net-a": [doomed]},
                        {"net-b": {other.guid: 3}})
    snap = storage.load()
    assert snap.gossips == {"net-a": [kept], "net-b": [other]}
    assert [t.guid for t in snap.tombstones["net-a"]] == [doomed.guid]
    assert snap.last_cursor == 3


def test_a_delete_that_fails_is_not_written_in_part(store_dir: Path, rng: random.Random,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The tombstone and the removal of a delete go in one append: a disk that refuses it
    keeps neither, so the gossip acknowledged before it is still there after a restart (it
    was once kept by the tombstone, written alone, while the delete was answered 507)."""
    gossip = make_gossip(rng)
    store = JsonFileStorage(store_dir)
    store.load()
    store.write_items({"net-a": [gossip]}, {}, {"net-a": {gossip.guid: 1}})

    def full(fd: int, data: bytes | memoryview) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(StorageError, match="No space left"):
        store.write_items({"net-a": [_tombstone_for(gossip)]}, {"net-a": [gossip]})
    monkeypatch.undo()
    store.close()
    snap = JsonFileStorage(store_dir).load()
    assert snap.gossips == {"net-a": [gossip]} and not snap.tombstones.get("net-a")


def test_a_compaction_the_disk_refuses_does_not_fail_the_change(
    store_dir: Path, rng: random.Random, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The removal is written; the compaction it makes due (a second copy of the log) fails on
    a full disk and is logged; the change is not answered as failed, and load still works."""
    monkeypatch.setattr(jsonfile_module, "COMPACT_MIN", 4)
    gossips = [make_gossip(rng, f"m{i}") for i in range(6)]
    store = JsonFileStorage(store_dir)
    store.load()
    store.write_items({"net-a": gossips}, {}, {"net-a": {g.guid: i + 1 for i, g in enumerate(gossips)}})

    def full(*args: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(jsonfile_module, "write_file_atomically", full)
    with caplog.at_level(logging.WARNING, logger="gossip.storage.jsonfile"):
        store.write_items({}, {"net-a": gossips[:5]})  # 10 dead lines, 1 live: due
    assert "cannot compact" in caplog.text
    kept = make_gossip(rng, "after")
    store.write_items({"net-a": [kept]}, {}, {"net-a": {kept.guid: 7}})
    store.close()
    snap = JsonFileStorage(store_dir).load()  # the load's own compaction fails too, and is logged
    assert sorted(g.msg for g in snap.gossips["net-a"]) == ["after", "m5"]


def test_a_failed_directory_fsync_after_the_rename_leaves_appends_in_the_live_log(
    store_dir: Path, rng: random.Random, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The compacted log replaced the old one, then the directory's fsync failed: the store
    must append to the new file, not the unlinked one (every later save was lost)."""
    gossips = fill(store_dir, rng, 3)
    store = JsonFileStorage(store_dir)
    store.load()

    def eio(directory: Path) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(jsonfile_module, "_fsync_directory", eio)
    with pytest.raises(StorageError, match="cannot compact"):
        store.compact()
    monkeypatch.undo()
    later = make_gossip(rng, "later")
    store.save_gossip("net-a", later)
    store.close()
    assert JsonFileStorage(store_dir).load().gossips == {"net-a": [*gossips, later]}


def test_bad_cursors_are_refused_before_anything_is_written(store_dir: Path, rng: random.Random) -> None:
    gossip = make_gossip(rng)
    store = JsonFileStorage(store_dir)
    store.load()
    for bad in (0, -1, True, 1.5):
        with pytest.raises(LocalProtocolError, match="cursor"):
            store.save_gossips("net-a", [gossip], {gossip.guid: bad})  # type: ignore[dict-item]
        with pytest.raises(LocalProtocolError, match="cursor"):
            store.write_items({"net-a": [gossip]}, {}, {"net-a": {gossip.guid: bad}})  # type: ignore[dict-item]
    store.close()
    assert JsonFileStorage(store_dir).load() == Snapshot()


def test_a_quarantined_line_with_a_lone_surrogate_is_set_aside_cleanly(store_dir: Path, rng: random.Random) -> None:
    gossip = make_gossip(rng)
    record = {**gossip.to_dict(), "sha2": "0" * 64}
    store_dir.mkdir(parents=True)
    line = json.dumps({"network": "net-a", "gossip": record, "x\ud800": 1}) + "\n"  # ASCII JSON, \ud800 escaped
    (store_dir / "gossip.jsonl").write_text(line, encoding="ascii")
    snap = JsonFileStorage(store_dir).load()
    assert snap.gossips == {}
    assert "\\ud800" in (store_dir / jsonfile_module.QUARANTINE_NAME).read_text(encoding="ascii")


def test_a_claim_on_a_full_disk_still_holds(store_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store_dir.mkdir(parents=True)
    store = JsonFileStorage(store_dir)

    def full(*args: Any) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "pwrite", full)
    store.claim()  # the pid could not be written: the lock holds all the same
    monkeypatch.undo()
    with pytest.raises(StorageError):
        JsonFileStorage(store_dir).claim()
    store.close()
    again = JsonFileStorage(store_dir)
    again.claim()
    again.close()


def test_a_quarantined_gossip_keeps_its_cursor_from_being_given_again(store_dir: Path, rng: random.Random) -> None:
    first, second = make_gossip(rng, "first"), make_gossip(rng, "second")
    store = JsonFileStorage(store_dir)
    store.load()
    store.write_items({"net-a": [first, second]}, {}, {"net-a": {first.guid: 1, second.guid: 2}})
    store.close()
    log = store_dir / "gossip.jsonl"
    lines = log.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[1] = lines[1].replace(second.sha2, "0" * 64)  # bit rot: set aside at load
    log.write_text("".join(lines), encoding="utf-8")
    snap = JsonFileStorage(store_dir).load()
    assert snap.gossips == {"net-a": [first]}
    assert snap.last_cursor == 2  # the next gossip gets 3, not 2 again


def test_a_store_read_beside_its_owner_changes_nothing(store_dir: Path, rng: random.Random,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A tool that loads a claimed store (here, with enough dead lines that a load would
    compact) reads it as it is and refuses writes: a compaction beside the owner left the
    owner appending to the replaced file, and its later acknowledged saves were lost."""
    monkeypatch.setattr(jsonfile_module, "COMPACT_MIN", 2)
    gossips = fill(store_dir, rng, 4)
    owner = JsonFileStorage(store_dir)
    owner.claim()
    owner.load()
    owner.remove_items("net-a", gossips[:3])  # dead lines: 6, live: 1 (compacted by the owner)
    owner.save_gossips("net-a", [make_gossip(rng, "a"), make_gossip(rng, "b")])
    owner.remove_items("net-a", gossips[3:])  # a load would now compact: 2 dead, 2 live... and more
    before = (store_dir / "gossip.jsonl").read_bytes()
    reader = JsonFileStorage(store_dir)
    assert sorted(g.msg for g in reader.load().gossips["net-a"]) == ["a", "b"]
    assert (store_dir / "gossip.jsonl").read_bytes() == before
    with pytest.raises(StorageError, match="claimed by another process"):
        reader.save_gossip("net-a", make_gossip(rng))
    reader.close()
    later = make_gossip(rng, "later")
    owner.save_gossip("net-a", later)
    owner.close()
    assert sorted(g.msg for g in JsonFileStorage(store_dir).load().gossips["net-a"]) == ["a", "b", "later"]


def test_a_torn_tail_that_cannot_be_cut_at_once_is_cut_before_the_next_write(
    store_dir: Path, rng: random.Random, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failed append whose cut-back fails too left its torn line in front of the next
    append (the log then refused to load) and the store's idea of the log's end behind it."""
    gossips = fill(store_dir, rng, 2)
    store = JsonFileStorage(store_dir)
    store.load()
    real_write, real_truncate = os.write, os.ftruncate

    def half_then_fail(fd: int, data: bytes | memoryview) -> int:
        real_write(fd, bytes(data)[: len(data) // 2])
        raise OSError(28, "No space left on device")

    def eio(fd: int, length: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "write", half_then_fail)
    monkeypatch.setattr(os, "ftruncate", eio)
    lost = make_gossip(rng, "lost")
    with pytest.raises(StorageError, match="No space left"):
        store.save_gossip("net-a", lost)
    monkeypatch.undo()
    later = make_gossip(rng, "later")
    store.save_gossip("net-a", later)
    store.close()
    assert JsonFileStorage(store_dir).load().gossips == {"net-a": [*gossips, later]}
