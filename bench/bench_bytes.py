"""Where the simulator's bytes go: a breakdown by verb and by part of the message.

    python bench/bench_bytes.py [--nodes 1000] [--messages 100] [--seed 0] [--loss 0] [--json]
                                [--estimate-rounds N]

Runs the same simulation as ``python -m gossip.sim`` (same arguments, same seed, same
result), watching every request and answer that crosses the in-memory network. Each message
is split into parts, and each part is reported in bytes and as a multiple of the run's floor
(every gossip's body once to every other live node):

- ``envelope``: everything outside ``body`` but the MAC (``v``, ``type``, ``net``, ``from``,
  ``to``, ``ts``, ``nonce``, ``re``, ``now``, the braces);
- ``mac``: the ``"mac":"…"`` member;
- each body field by name (``probe``, ``hello``, ``ids``, ``gossips``, ``ring``, ...), with a
  probe answer split into ``answer.sync``, ``answer.iblt``, ``answer.page``;
- ``bodies``: of ``gossips``, each gossip's own JSON, what the floor counts; the list's
  brackets and commas stay under ``gossips``.

Also by verb (requests and answers counted apart), the in-sync exchanges (a round's
``did_you_hear`` whose answers were all in sync, with its reply), and the IBLTs: first tables
(answers to a probe that asked for no size) and how many of them, and of their bytes, did not
peel and were asked for again (the ceiling of what a better-sized first table can save).
``--estimate-rounds 0`` turns the difference estimator off (:data:`gossip.sets.ESTIMATE_ROUNDS`),
for a before-and-after in one sitting. Error answers are counted
under ``error``. Asserts nothing: a measuring tool (issue 11, "Bytes over the floor").
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gossip import messages as gm  # noqa: E402
from gossip import sets as gsets  # noqa: E402
from gossip import sim as gsim  # noqa: E402
from gossip.sets import ReconciledSet, Step  # noqa: E402
from gossip.transport.memory import MemoryNetwork  # noqa: E402


def _size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))


class Breakdown:
    """Byte counters by part and by verb, fed every message that crosses the network."""

    def __init__(self) -> None:
        self.parts: Counter[str] = Counter()
        self.verbs: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()
        self.in_sync = 0
        self.total = 0
        #: IBLT answers: ``first`` (to a probe that asked no size) and ``retry`` (to a larger
        #: one asked after a table did not peel); ``.failed`` those that did not peel; counts
        #: and bytes of their cells.
        self.tables: Counter[str] = Counter()

    def table(self, probe: gm.Probe | None, answer: gm.ProbeAnswer, step: Step) -> None:
        if answer.cells is None:
            return
        kind = "first" if probe is None or not probe.size else "retry"
        for name in (kind, f"{kind}.failed") if step.retry else (kind,):
            self.tables[name] += 1
            self.tables[f"{name}.bytes"] += len(answer.cells)

    def add(self, data: bytes) -> dict[str, Any] | None:
        self.total += len(data)
        try:
            message = json.loads(data)
        except ValueError:
            self.parts["other"] += len(data)
            return None
        if not isinstance(message, dict):
            self.parts["other"] += len(data)
            return None
        verb = str(message.get("type") or message.get("t") or "?")
        self.verbs[verb] += len(data)
        self.counts[verb] += 1
        if verb == "error" or "body" not in message and "b" not in message:
            self.parts["error"] += len(data)
            return message
        body_name = "body" if "body" in message else "b"
        body = message[body_name]
        mac = _size("mac") + 1 + _size(message.get("mac", ""))
        body_total = _size(body_name) + 1 + _size(body)
        self.parts["mac"] += mac
        self.parts["envelope"] += len(data) - mac - body_total
        inner = 2 + max(0, len(body) - 1)  # braces and commas of the body object
        self.parts["body.{}"] += _size(body_name) + 1 + inner
        for name, value in body.items():
            size = _size(name) + 1 + _size(value)
            part = name
            if name in ("answer", "hello", "a", "h") and isinstance(value, dict) and ("sync" in value or "cells" in value or "keys" in value or "s" in value or "c" in value or "k" in value):
                kind = "sync" if value.get("sync") or value.get("s") is True else "iblt" if ("cells" in value or "c" in value) else "page"
                part = f"{name}.{kind}"
            if name in ("gossips", "g") and isinstance(value, list):
                bodies = sum(_size(g) for g in value)
                self.parts["bodies"] += bodies
                size -= bodies
            self.parts[part] += size
        return message


def run(args: argparse.Namespace) -> dict[str, Any]:
    breakdown = Breakdown()
    original_send = MemoryNetwork.send
    original_handle = MemoryNetwork._handle
    original_reconcile = ReconciledSet.reconcile

    def reconcile(self: ReconciledSet, probe: gm.Probe | None, answer: gm.ProbeAnswer) -> Step:
        step = original_reconcile(self, probe, answer)
        breakdown.table(probe, answer, step)
        return step

    def send(self: MemoryNetwork, src: Any, dst: Any, data: bytes, on_reply: Any) -> None:
        breakdown.add(data)
        original_send(self, src, dst, data, on_reply)

    def handle(self: MemoryNetwork, dst: Any, data: bytes) -> bytes:
        answer = original_handle(self, dst, data)
        reply = breakdown.add(answer)
        if reply is not None and reply.get("type", reply.get("t")) in ("did_you_hear_reply", "dyh_reply"):
            request = json.loads(data)
            body = reply.get("body", reply.get("b", {}))
            answers = [body.get(n) for n in ("answer", "hello", "a", "h") if body.get(n) is not None]
            if answers and all(a.get("sync", a.get("s")) is True for a in answers):
                breakdown.in_sync += len(data) + len(answer)
        return answer

    MemoryNetwork.send = send  # type: ignore[method-assign]
    MemoryNetwork._handle = handle  # type: ignore[method-assign]
    ReconciledSet.reconcile = reconcile  # type: ignore[method-assign]
    estimate_rounds = gsets.ESTIMATE_ROUNDS
    gsets.ESTIMATE_ROUNDS = args.estimate_rounds
    try:
        result = gsim.simulate(nodes=args.nodes, messages=args.messages, seed=args.seed, loss=args.loss)
    finally:
        MemoryNetwork.send = original_send  # type: ignore[method-assign]
        MemoryNetwork._handle = original_handle  # type: ignore[method-assign]
        ReconciledSet.reconcile = original_reconcile  # type: ignore[method-assign]
        gsets.ESTIMATE_ROUNDS = estimate_rounds
    floor = result.floor or 1
    return {
        "nodes": result.nodes,
        "messages": result.messages,
        "rounds": result.rounds,
        "bytes": result.bytes,
        "floor": result.floor,
        "over_floor": round(result.over_floor, 3),
        "counted": breakdown.total,
        "in_sync": round(breakdown.in_sync / floor, 3),
        "parts": {k: round(v / floor, 3) for k, v in breakdown.parts.most_common()},
        "tables": {k: round(v / floor, 3) if k.endswith(".bytes") else v for k, v in sorted(breakdown.tables.items())},
        "verbs": {k: [breakdown.counts[k], round(v / floor, 3)] for k, v in breakdown.verbs.most_common()},
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/bench_bytes.py", description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--messages", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--loss", type=float, default=0.0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--estimate-rounds", type=int, default=gsets.ESTIMATE_ROUNDS, help="0: the difference estimator off"
    )
    args = parser.parse_args(argv)
    out = run(args)
    if args.json:
        print(json.dumps(out))
        return 0
    print(
        f"{out['nodes']} nodes, {out['messages']} gossips: {out['rounds']} rounds, {out['bytes']:,} bytes,"
        f" {out['over_floor']}x the floor ({out['floor']:,} bytes)"
    )
    print("parts (x the floor):")
    for name, share in out["parts"].items():
        print(f"  {name:<16} {share:.3f}")
    print("verbs (messages, x the floor):")
    for name, (count, share) in out["verbs"].items():
        print(f"  {name:<20} {count:>7} {share:.3f}")
    print(f"in-sync did_you_hear exchanges: {out['in_sync']:.3f}")
    tables = out["tables"]
    for kind in ("first", "retry"):
        print(
            f"{kind} IBLTs: {tables.get(kind, 0)} ({tables.get(kind + '.bytes', 0):.3f}x),"
            f" did not peel: {tables.get(kind + '.failed', 0)} ({tables.get(kind + '.failed.bytes', 0):.3f}x)"
        )
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
