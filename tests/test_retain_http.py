"""Retention and delete across real node processes on 127.0.0.1 (issue 13 item 1): the
network's retention travels to a node that joins, expired gossip leaves every node and does
not come back with a restarted one, and ``gossip delete`` spreads as a tombstone."""

from __future__ import annotations

import signal
import time

from gossip.configfile import load_config

from .nodeproc import Cluster, NodeProc, wait_for
from .test_leave_http import gossip_cli

RETENTION = 8.0  # seconds: long enough to see both nodes hold a gossip, short enough to wait out


def held(node: NodeProc) -> set[str]:
    status, rows = node.call("GET", "/v1/gossip")
    assert status == 200, rows
    return {row["guid"] for row in rows if row["complete"]}


def test_retention_travels_expires_everywhere_and_delete_spreads(cluster: Cluster) -> None:
    a = cluster.start("a", "--name", "a", "--retention", f"{RETENTION:g}s")
    b = cluster.start("b", "--name", "b", "--join", a.address)  # no --retention: learns the network's
    wait_for(lambda: load_config(b.config).networks[0].retention.max_age == RETENTION, 10,
             "b to save the network's retention")
    made = time.monotonic()
    short = a.create("short-lived")
    doomed = a.create("to be deleted")
    wait_for(lambda: {short, doomed} <= held(b), 10, "b to hold both gossips")

    deleted = gossip_cli(cluster, "delete", doomed, "--config", str(a.config))
    assert deleted.returncode == 0, deleted.stderr
    wait_for(lambda: doomed not in held(a) and doomed not in held(b), 10, "the tombstone to reach b")
    assert short in held(a) and short in held(b)

    # b crashes holding `short`, and comes back only after it expired everywhere else.
    assert b.stop(signal.SIGKILL) != 0
    wait_for(lambda: short not in held(a), RETENTION + 10, "a to drop the expired gossip")
    assert time.monotonic() - made >= RETENTION - 1  # dropped for its age, not for anything else
    b = cluster.start("b", "--name", "b", port=b.port)
    time.sleep(1.0)  # several rounds at --timer 0.2
    assert short not in held(b) and short not in held(a)  # nothing resurrected
    assert doomed not in held(b) and doomed not in held(a)
    again = gossip_cli(cluster, "delete", doomed, "--config", str(a.config))
    # Past the retention the tombstone is gone too: the node no longer knows that guid at all.
    assert again.returncode == 1 and "holds no gossip" in again.stderr, again.stderr
    fresh = b.create("after the restart")
    wait_for(lambda: fresh in held(a), 10, "new gossip to spread after all that")
