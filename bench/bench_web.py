"""Benchmark the web page on a node holding many gossips (issue 12's targets), in Debian's chromium.

    python bench/bench_web.py [--stored 100000] [--creates 10] [--keep]

One ``python -m gossip.http`` node is started on ``--stored`` gossips written to its data
directory beforehand (``tests.nodeproc.write_stored_node``: the node's own JsonFileStorage,
valid sha2). Playwright drives ``/usr/bin/chromium`` (headless, one tab, 1,280 x 800):

- login: from the click on "Log in" (PBKDF2 in the browser, 600,000 rounds) to the first
  gossip row drawn;
- first render: a reload of the logged-in tab (the key is in sessionStorage) until the first
  gossip row is drawn, and until the count shows; best and worst of 3;
- new gossip: ``--creates`` gossips created one by one through the API while the page is open;
  from the API's acknowledgement to the row being visible in the tab (p50, max);
- memory, after all of the above and a forced garbage collection: the tab's JS heap and DOM
  node count (CDP ``Performance.getMetrics``: JSHeapUsedSize, Nodes), and the resident memory
  of the tab's renderer process (Rss and Pss from /proc/PID/smaps_rollup), beside the same
  figures for that tab on about:blank before the page opened; also the largest API answer the
  page fetched;
- search: typing a text only one gossip holds, until that gossip alone is shown.

Targets (issue 12): first render under 1 s, a new gossip visible under 1 s, the tab under
200 MB. Prints a markdown table; asserts nothing about timing. The node is stopped and its
directory removed (unless ``--keep``) before it exits.
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.nodeproc import PASSWORD, Cluster, NodeProc, derive_key, write_stored_node  # noqa: E402

__all__ = ["main"]

CHROMIUM = "/usr/bin/chromium"
WAIT_MS = 30_000


def renderers(hint: str) -> list[tuple[int, float, float]]:
    """(pid, VmRSS MB, Pss MB) of each chromium renderer process whose command line holds
    ``hint`` (the user data directory of the browser this bench launched, not other ones).
    RSS counts the shared chromium code in full; PSS divides shared pages among their users."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if "--type=renderer" not in cmdline or hint not in cmdline:
                continue
            fields = dict(line.split(":", 1) for line in (entry / "smaps_rollup").read_text().splitlines()[1:])
            found.append((int(entry.name), int(fields["Rss"].split()[0]) / 1024, int(fields["Pss"].split()[0]) / 1024))
        except (OSError, KeyError, ValueError):
            continue
    return found


def tab_memory(hint: str) -> tuple[float, float]:
    """(RSS, PSS) in MB of the tab's renderer: the largest of the browser's renderers (the
    others are spare or idle ones)."""
    rows = renderers(hint)
    if not rows:
        return float("nan"), float("nan")
    _, rss, pss = max(rows, key=lambda r: r[1])
    return rss, pss


def measure(node: NodeProc, stored: int, creates: int) -> dict[str, Any]:
    from playwright.sync_api import sync_playwright

    result: dict[str, Any] = {"stored": stored}
    largest = [0, ""]
    with sync_playwright() as p:
        data_dir = tempfile.mkdtemp(prefix="bench-web-chromium-")
        try:
            context = p.chromium.launch_persistent_context(
                data_dir, executable_path=CHROMIUM, args=["--no-sandbox"], headless=True,
                viewport={"width": 1280, "height": 800},
            )
            try:
                page = context.pages[0] if context.pages else context.new_page()
                page.set_default_timeout(WAIT_MS)

                def on_response(response: Any) -> None:
                    size = int(response.headers.get("content-length", "0") or 0)
                    if "/v1/" in response.url and size > largest[0]:
                        largest[:] = [size, response.url.split("?")[0].replace(f"http://{node.address}", "")]

                page.on("response", on_response)
                page.goto("about:blank")
                page.wait_for_timeout(500)
                result["blank"] = tab_memory(data_dir)
                page.goto(f"http://{node.address}/")
                page.get_by_role("textbox", name="Network").fill("default")
                page.get_by_label("Password").fill(PASSWORD)
                t0 = time.perf_counter()
                page.get_by_role("button", name="Log in").click()
                page.locator("#gossip li").first.wait_for(state="visible")
                result["login"] = time.perf_counter() - t0

                firsts, counts = [], []
                for _ in range(3):
                    t0 = time.perf_counter()
                    page.reload()
                    page.locator("#gossip li").first.wait_for(state="visible")
                    firsts.append(time.perf_counter() - t0)
                    page.locator("#gossip-count", has_text=f"{stored:,}").wait_for(state="visible")
                    counts.append(time.perf_counter() - t0)
                result["first"], result["count"] = firsts, counts
                result["rows"] = page.locator("#gossip li").count()

                delays = []
                for i in range(creates):
                    text = f"bench-web new gossip {i} {time.time_ns()}"
                    status, _ = node.call("POST", "/v1/gossip", {"msg": text})
                    assert status == 201
                    t0 = time.perf_counter()
                    page.locator("#gossip li .msg", has_text=text).wait_for(state="visible")
                    delays.append(time.perf_counter() - t0)
                    time.sleep(0.3)
                result["delays"] = delays

                # One match among them all: the node scans its whole feed for it.
                needle = f"stored gossip {stored // 2}:"
                searches: list[Any] = []
                page.on("requestfinished", lambda r: searches.append(r) if "q=" in r.url and "/stream" not in r.url else None)
                t0 = time.perf_counter()
                page.get_by_label("Search gossip").fill(needle)
                page.locator("#gossip li .msg", has_text=needle).wait_for(state="visible")
                page.locator("#gossip li").nth(1).wait_for(state="detached")
                result["search"] = time.perf_counter() - t0
                result["search_answer"] = searches[-1].timing["responseEnd"] / 1000 if searches else float("nan")
                page.get_by_label("Search gossip").fill("")
                page.locator("#gossip li").nth(49).wait_for(state="visible")

                cdp = context.new_cdp_session(page)
                cdp.send("HeapProfiler.collectGarbage")  # count what is live, not what awaits collection
                cdp.send("Performance.enable")
                metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
                result["heap_mb"] = metrics["JSHeapUsedSize"] / 1e6
                result["heap_total_mb"] = metrics["JSHeapTotalSize"] / 1e6
                result["dom_nodes"] = int(metrics["Nodes"])
                result["tab"] = tab_memory(data_dir)
                result["largest"] = largest
            finally:
                context.close()
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/bench_web.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stored", type=int, default=100_000, help="gossips the node holds (default 100,000)")
    parser.add_argument("--creates", type=int, default=10, help="gossips created while the page is open (default 10)")
    parser.add_argument("--keep", action="store_true", help="keep the node's directory")
    args = parser.parse_args(argv)
    if not Path(CHROMIUM).exists():
        print(f"needs Debian's chromium at {CHROMIUM}", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="bench-web-"))
    cluster = Cluster(work)
    try:
        derive_key("default", PASSWORD)
        t0 = time.perf_counter()
        write_stored_node(work / "web.json", "web", [
            f"stored gossip {i}: " + "lorem ipsum dolor sit amet " * 3 for i in range(args.stored)
        ])
        build = time.perf_counter() - t0
        t0 = time.perf_counter()
        node = cluster.start("web")
        startup = time.perf_counter() - t0
        r = measure(node, args.stored, args.creates)
    finally:
        cluster.close()
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"# bench_web — Python {sys.version.split()[0]}, {os.cpu_count()} cores, "
          f"{time.strftime('%Y-%m-%d %H:%M:%S')}, load average {os.getloadavg()[0]:.1f}")
    print()
    print("Command: " + shlex.join(["python", "bench/bench_web.py", *(argv if argv is not None else sys.argv[1:])]))
    print(f"(store written in {build:.1f} s; node up in {startup:.1f} s; {r['rows']} rows drawn of {args.stored:,})")
    print()
    print("| figure | value | target |")
    print("|---|---|---|")
    print(f"| login → first row (PBKDF2 included) | {r['login']:.2f} s | |")
    print(f"| reload → first row, best / worst of 3 | {min(r['first']):.2f} / {max(r['first']):.2f} s | < 1 s |")
    print(f"| reload → count shown, best / worst of 3 | {min(r['count']):.2f} / {max(r['count']):.2f} s | |")
    d = r["delays"]
    if d:
        print(f"| created (API ack) → visible, p50 / max of {len(d)} | {statistics.median(d):.2f} / {max(d):.2f} s | < 1 s |")
    print(f"| search for one gossip in {args.stored:,} (typing → only it shown; 0.25 s of it is the debounce) "
          f"| {r['search']:.2f} s | |")
    print(f"| of which the node's answer to the search request | {r['search_answer']:.2f} s | |")
    print(f"| tab: JS heap used / total | {r['heap_mb']:.1f} / {r['heap_total_mb']:.1f} MB | |")
    print(f"| tab: renderer process RSS / PSS | {r['tab'][0]:.0f} / {r['tab'][1]:.0f} MB | < 200 MB |")
    print(f"| the same tab on about:blank, before: RSS / PSS | {r['blank'][0]:.0f} / {r['blank'][1]:.0f} MB | |")
    print(f"| DOM nodes | {r['dom_nodes']:,} | |")
    print(f"| largest API answer fetched | {r['largest'][0] / 1e3:.1f} kB ({r['largest'][1]}) | |")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
