"""Make the screenshots of docs/web.md from real nodes in Debian's chromium.

    python bench/web_shots.py DIR        # writes DIR/web.png and DIR/web-phone.png

Starts four nodes on 127.0.0.1 (alpha, on 2,000 stored gossips; beta, gamma and delta
registered with it), creates a few gossips, stops gamma (dead) and delta, waits until beta
holds alpha's set, and shoots alpha's page at 1,000 x 640 and, on the Network tab, at
390 x 844. Every node it starts is stopped and its directory removed before it exits.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.nodeproc import PASSWORD, Cluster, derive_key, wait_for, write_stored_node  # noqa: E402

__all__ = ["main"]

TOPICS = ["build green on main", "coffee machine fixed", "standup moved to 10:15", "new intern starts Monday",
          "disk on db-2 at 81%", "release notes drafted", "VPN certificate renewed", "lunch: the usual place"]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python bench/web_shots.py DIR", file=sys.stderr)
        return 2
    out = Path(args[0])
    out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    work = Path(tempfile.mkdtemp(prefix="web-shots-"))
    cluster = Cluster(work)
    try:
        write_stored_node(work / "alpha.json", "alpha", [f"{TOPICS[i % len(TOPICS)]} (#{i})" for i in range(2000)],
                          newest=time.time() - 3600)
        alpha = cluster.start("alpha", timer=1.0)
        others = {name: cluster.start(name, "--name", name, timer=1.0) for name in ("beta", "gamma", "delta")}
        for node in others.values():
            status, body = node.call("POST", "/v1/register", {"address": alpha.address})
            assert status == 200, body
        wait_for(lambda: len(alpha.peers()) == 3, 20, "alpha to know three peers")
        others["gamma"].stop()
        others["delta"].stop()
        others["beta"].create("Deploy of v0.2 went fine; metrics look normal.")
        alpha.create("Who is up for a code review this afternoon?")
        alpha.create("<img src=x onerror=alert(1)> shows as text, not as HTML")
        wait_for(lambda: {p["name"]: p["status"] for p in alpha.peers()}.get("gamma") == "dead", 60, "gamma to be dead")
        wait_for(lambda: {p["name"]: p["in_sync"] for p in alpha.peers()}.get("beta") is True, 60, "beta in sync")
        key = derive_key("default", PASSWORD).hex()
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            try:
                for name, size, tab in (("web.png", (1000, 640), None), ("web-phone.png", (390, 844), "Network")):
                    context = browser.new_context(viewport={"width": size[0], "height": size[1]})
                    page = context.new_page()
                    page.goto(f"http://{alpha.address}/")
                    page.evaluate(f"sessionStorage.setItem('gossip.session', JSON.stringify({{network: 'default', key: '{key}'}}))")
                    page.reload()
                    page.locator("#gossip li").first.wait_for()
                    page.locator('#netmap circle[data-name="gamma"]').wait_for(state="attached")
                    if tab:
                        page.get_by_role("tab", name=tab).click()
                    page.wait_for_timeout(500)
                    page.screenshot(path=str(out / name))
                    context.close()
            finally:
                browser.close()
    finally:
        cluster.close()
        shutil.rmtree(work, ignore_errors=True)
    for name in ("web.png", "web-phone.png"):
        print(f"{out / name}: {(out / name).stat().st_size / 1e3:.0f} kB")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
