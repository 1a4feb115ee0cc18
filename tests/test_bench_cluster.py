"""bench/bench_cluster.py: its arithmetic, and its smallest cluster of real processes end to end."""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

import bench_cluster as bc  # noqa: E402

METRICS = """\
# HELP gossip_rounds_total Gossip rounds started.
# TYPE gossip_rounds_total counter
gossip_rounds_total 12
gossip_requests_sent_total{verb="did_you_hear"} 30
gossip_requests_sent_total{verb="push"} 12
gossip_requests_sent_total_not_this 99
gossip_bytes_total{direction="sent"} 4096
gossip_bytes_total{direction="received"} 9999
gossip_gossips{network="default"} 50
gossip_gossips{network="other"} 2
gossip_peers{network="default",status="alive"} 3
gossip_peers{network="default",status="dead"} 1
gossip_http_connections 5
"""


def counters(at: float, sent: float, rounds: float = 0.0, bytes_sent: float = 0.0) -> bc.Counters:
    return bc.Counters(rounds=rounds, sent=sent, bytes_sent=bytes_sent, gossips=0, peers=0, connections=0, at=at)


def test_metrics_are_summed_over_labels_and_only_sent_bytes_count() -> None:
    c = bc.parse_metrics(METRICS, at=7.0)
    assert c == bc.Counters(rounds=12, sent=42, bytes_sent=4096, gossips=52, peers=4, connections=5, at=7.0,
                            verbs={"did_you_hear": 30, "push": 12})


def test_requests_per_round_are_per_round_elapsed_on_the_clock() -> None:
    before = [counters(10.0, 5, rounds=3), counters(10.0, 0), None]
    # Node 0: 20 requests in 4 s at a 2 s timer = 2 rounds elapsed, whatever rounds it ran
    # (its rounds slipped to 1): 10 a round. Node 1: 3 in 6 s at 2 s = 1 a round. Node 2
    # did not answer the first read: left out.
    after = [counters(14.0, 25, rounds=4), counters(16.0, 3), counters(16.0, 100)]
    assert bc.per_round(before, after, "sent", timer=2.0) == [10.0, 1.0]


def cluster(n: int, rss_mib: float, spread: float, idle: float) -> bc.Cluster:
    return bc.Cluster(nodes=n, converge_s=1.0, lost=0, exit_codes=[0] * n, rss_kb=[int(rss_mib * 1024)] * n,
                      spread_req=[spread] * n, spread_req_per_gossip=[spread / 2] * n, idle_req=[idle] * n,
                      peers=[float(n - 1)] * n, connections=[float(n)] * n)


def test_verdict_compares_the_smallest_and_the_largest_size() -> None:
    flat = bc.verdict([cluster(50, 30, 2.0, 0.3), cluster(25, 29, 1.9, 0.3), cluster(100, 31, 2.1, 0.35)])
    assert "N=25 -> N=100" in flat and "-> FLAT" in flat
    assert "peers known 24 -> 99, open connections 25 -> 100, RSS +27.3 KiB per extra peer known" in flat
    grows = bc.verdict([cluster(25, 29, 2.0, 0.3), cluster(100, 40, 2.0, 0.3)])
    assert "RSS (median) x1.38" in grows and "NOT FLAT" in grows
    busier = bc.verdict([cluster(25, 29, 2.0, 0.3), cluster(100, 29, 2.0, 0.5)])
    assert "requests per round idle (median) x1.67" in busier and "NOT FLAT" in busier
    failed = cluster(100, 30, 2.0, 0.3)
    failed.lost = 3  # a size that lost gossips is no evidence either way
    assert "needs at least two sizes" in bc.verdict([cluster(25, 29, 2.0, 0.3), failed])


def test_the_smallest_cluster_converges_is_measured_and_cleaned_up() -> None:
    args = bc.parse_args(["--nodes", "4", "--gossips", "50", "--rate", "100", "--idle", "2", "--settle", "1",
                          "--bound", "60", "--node-arg=--forget-after=1h"])
    t0 = time.monotonic()
    c = bc.measure(4, args, random.Random(1))
    assert c.notes == [] and c.ok, c.notes
    assert c.acked == 50 and c.lost == 0 and c.converge_s is not None
    assert c.create_s is not None and c.create_s >= 49 / 100  # paced: the 50th create 0.49 s after the first
    assert c.peers == [3.0] * 4  # everyone joined and knows the other three
    assert len(c.rss_kb) == 4 and all(kb > 10_000 for kb in c.rss_kb)  # a Python process: over 10 MB
    assert len(c.spread_req) == 4 and sum(c.spread_req) > 0  # the 50 gossips were sent node to node
    assert sum(c.spread_verbs.values()) == round(sum(c.spread_req_per_gossip) * 50)
    assert len(c.idle_req) == 4 and len(c.idle_rounds) == 4
    # Every process reaped after SIGTERM (exit codes known) and the data directories gone.
    assert len(c.exit_codes) == 4 and None not in c.exit_codes
    assert c.work_removed
    assert time.monotonic() - t0 < 60


def test_a_cluster_that_cannot_start_is_reported_and_cleaned_up() -> None:
    args = bc.parse_args(["--nodes", "3", "--gossips", "5", "--bound", "30", "--node-arg=--no-such-flag"])
    c = bc.measure(3, args, random.Random(1))
    assert not c.ok and c.converge_s is None
    assert len(c.notes) == 1 and c.notes[0].startswith("FAILED: RuntimeError") and "before its banner" in c.notes[0]
    assert None not in c.exit_codes and c.work_removed
