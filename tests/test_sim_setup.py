"""The simulator's cheap set-up: starting peer records shared between the nodes' stores, and
key sets that build their IBLT only when first asked, from hashes cached process-wide."""

from __future__ import annotations

import gc
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from gossip.digest import KeySet, _hashes
from gossip.model import PeerView
from gossip.sim import NETWORK, Simulator, _SharedStartStorage, simulate
from gossip.storage import MemoryStorage


def _views(count: int) -> list[PeerView]:
    sim = Simulator(nodes=count, seed=4, bootstrap_mode="register")
    return [PeerView(peer=m.config.self_peer(NETWORK)) for m in sim.members]


def test_shared_start_storage_loads_what_a_plain_store_would() -> None:
    views = _views(12)
    own = views[3].peer.guid
    shared = _SharedStartStorage(views, frozenset(v.peer.guid for v in views), own)
    plain = MemoryStorage()
    for view in views:
        if view.peer.guid != own:
            plain.save_peer(view)
    assert shared.load() == plain.load()
    outsider = _views(13)[12]  # a record from outside the starting list
    changed = PeerView(peer=views[5].peer, last_seen=1.0, failures=0)
    rng = random.Random(0)
    steps = [
        ("save", changed), ("forget", views[7]), ("save", outsider), ("forget", views[0]),
        ("save", views[7]), ("forget", outsider), ("save", outsider),
    ]
    for _ in range(40):
        steps.append((rng.choice(["save", "forget"]), rng.choice([*views[:6], outsider])))
    for op, view in steps:
        for store in (shared, plain):
            if op == "save":
                store.save_peer(view)
            else:
                store.forget_peers([(NETWORK, view.peer.guid)])
        assert sorted(shared.load().peers[NETWORK], key=lambda v: v.peer.guid) == sorted(
            plain.load().peers[NETWORK], key=lambda v: v.peer.guid
        ), (op, view.peer.guid)


def test_full_bootstrap_nodes_start_knowing_every_other_and_restart_from_their_own_store() -> None:
    sim = Simulator(nodes=20, seed=6)
    assert all(m.node.peer_count() == 19 for m in sim.members)
    assert all(isinstance(m.storage, _SharedStartStorage) for m in sim.members)
    sim.create(4)
    sim.run(max_rounds=20)
    sim.crash(2)
    sim.restart(2)
    assert sim.members[2].node.peer_count() == 19 and sim.members[2].node.gossip_count() == 4


def test_a_key_set_answers_the_same_whether_its_table_was_kept_from_the_start_or_built_late() -> None:
    rng = random.Random(1)
    keys = [rng.getrandbits(256) for _ in range(300)]
    late = KeySet()
    for key in keys[:200]:
        late.add(key)
    late.discard(keys[0])  # before any table exists
    early = KeySet()
    early.iblt(8)  # the table exists from here on and follows every add and discard
    for key in keys[:200]:
        early.add(key)
    early.discard(keys[0])
    fresh = KeySet(keys[1:200])
    for size in (8, 64, 256):
        assert late.iblt(size).to_text() == early.iblt(size).to_text() == fresh.iblt(size).to_text()
    late.update(keys[200:])
    early.update(keys[200:])
    assert late.fingerprint == early.fingerprint == KeySet(keys[1:]).fingerprint
    decoded = late.iblt(64).subtract(KeySet(keys[1:290]).iblt(64)).decode()
    assert decoded == (set(keys[290:]), set())


def test_key_hashes_are_cached_across_key_sets() -> None:
    key = random.Random(2).getrandbits(256)
    KeySet([key])
    hits = _hashes.cache_info().hits
    KeySet([key])
    assert _hashes.cache_info().hits == hits + 1


def test_the_network_is_set_apart_from_the_collector_for_the_run_only() -> None:
    """simulate() builds the network with the cyclic collector off, freezes it for the run
    (its collections then skip the million peer entries of 1,000 nodes), and leaves the
    collector as it found it, also when the run fails."""
    seen: list[tuple[bool, int]] = []
    assert gc.isenabled() and gc.get_freeze_count() == 0
    result = simulate(nodes=20, messages=3, seed=1, progress=lambda r, c: seen.append((gc.isenabled(), gc.get_freeze_count())))
    assert result.converged and seen
    assert all(enabled and frozen > 0 for enabled, frozen in seen)  # collecting, the network apart
    assert gc.isenabled() and gc.get_freeze_count() == 0

    def fail(round_: int, coverage: float) -> None:
        raise RuntimeError("stop")

    with pytest.raises(RuntimeError):
        simulate(nodes=5, messages=1, seed=1, progress=fail)
    assert gc.isenabled() and gc.get_freeze_count() == 0
    with pytest.raises(ValueError):
        simulate(nodes=0, messages=1)  # refused while building
    assert gc.isenabled() and gc.get_freeze_count() == 0
    gc.disable()
    try:
        simulate(nodes=5, messages=1, seed=1)
        assert not gc.isenabled()  # off before: off after
    finally:
        gc.enable()


def test_python_m_gossip_sim_leaves_the_network_to_the_os_at_exit() -> None:
    """The command's process ends right after the run: what the run built stays frozen, so
    no last collection walks and frees it (about 1 s of CPU at 1,000 nodes)."""
    script = (
        "import atexit, gc, runpy, sys\n"
        "atexit.register(lambda: print('frozen at exit:', gc.get_freeze_count(), file=sys.stderr))\n"
        "sys.argv = ['gossip.sim', '--nodes', '30', '--messages', '2', '--json']\n"
        "runpy.run_module('gossip.sim', run_name='__main__')\n"
    )
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120, cwd=root)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["converged"] is True
    frozen = int(done.stderr.split("frozen at exit:")[1].split()[0])
    assert frozen > 30 * 30  # at least the peer entries of 30 nodes that know each other
