"""The web client in a real browser: Debian's chromium, driven by Playwright, against real nodes.

Never downloads a browser: Playwright launches ``/usr/bin/chromium`` (``.ci/run`` installs it
with apt-get). Screenshots go to each test's tmp_path; set ``GOSSIP_WEB_SHOTS=DIR`` to keep
copies to look at.
"""

from __future__ import annotations

import json
import os
import shutil
import urllib.parse
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from gossip.auth import client_auth_header

from .nodeproc import PASSWORD, Cluster, NodeProc, derive_key, free_port

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(
        "needs Debian's chromium at /usr/bin/chromium (apt-get install chromium; .ci/run installs it)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="needs playwright from PyPI (pip install -e '.[test]')"
)
expect = sync_api.expect

XSS = "<img src=x onerror=alert(1)>"
WAIT_MS = 20_000  # the longest any single expectation waits


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("web-nodes"))
    try:
        yield c
    finally:
        c.close()


@pytest.fixture(scope="module")
def nodes(cluster: Cluster) -> tuple[NodeProc, NodeProc]:
    return cluster.start("alpha", "--name", "alpha"), cluster.start("beta", "--name", "beta")


@pytest.fixture(scope="module")
def playwright() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright: Any) -> Iterator[Any]:
    b = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
    try:
        yield b
    finally:
        b.close()


@dataclass
class Opened:
    page: Any
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # uncaught exceptions in the page
    console: list[str] = field(default_factory=list)  # console errors (CSP violations show here)

    def assert_clean(self) -> None:
        assert self.dialogs == [], self.dialogs
        assert self.errors == [], self.errors
        assert not [c for c in self.console if "Content Security Policy" in c], self.console


@contextmanager
def opened(browser: Any, node: NodeProc, width: int = 1000, height: int = 700) -> Iterator[Opened]:
    context = browser.new_context(viewport={"width": width, "height": height})
    try:
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        seen = Opened(page)

        def on_dialog(dialog: Any) -> None:
            seen.dialogs.append(dialog.message)
            dialog.dismiss()

        page.on("dialog", on_dialog)
        page.on("pageerror", lambda exc: seen.errors.append(str(exc)))
        page.on("console", lambda m: seen.console.append(m.text) if m.type == "error" else None)
        page.goto(f"http://{node.address}/")
        yield seen
    finally:
        context.close()


def login(page: Any, password: str = PASSWORD, network: str = "default") -> None:
    page.get_by_label("Network").fill(network)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def logged_in(page: Any, node_name: str) -> None:
    login(page)
    expect(page.locator("#app")).to_be_visible()
    expect(page.locator("#node-name")).to_have_text(node_name)


def create(page: Any, text: str) -> None:
    page.get_by_label("Message").fill(text)
    page.get_by_role("button", name="Send gossip").click()
    expect(page.locator("#create-status")).to_contain_text("Created gossip")


def register(page: Any, address: str) -> None:
    page.get_by_label("Other node's address (HOST:PORT)").fill(address)
    page.get_by_role("button", name="Register", exact=True).click()


def shot(page: Any, tmp_path: Path, name: str, full_page: bool = False) -> Path:
    path = tmp_path / name
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(path), full_page=full_page)
    keep = os.environ.get("GOSSIP_WEB_SHOTS")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(keep) / name)
    assert path.stat().st_size > 1000
    return path


def test_page_is_served_with_a_strict_content_security_policy(browser: Any, nodes: tuple[NodeProc, NodeProc]) -> None:
    a, _ = nodes
    with opened(browser, a) as seen:
        response = seen.page.goto(f"http://{a.address}/")
        csp = response.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "style-src 'self'" in csp and "connect-src 'self'" in csp
        assert "unsafe-inline" not in csp
        expect(seen.page.get_by_role("heading", name="Log in to this node")).to_be_visible()
        expect(seen.page.get_by_label("Network")).to_have_value("default")
        seen.assert_clean()


def test_create_on_a_register_a_with_b_and_see_it_on_b(
    browser: Any, nodes: tuple[NodeProc, NodeProc], tmp_path: Path
) -> None:
    a, b = nodes
    text = "hello from alpha's web page"
    with opened(browser, a) as on_a:
        page = on_a.page
        logged_in(page, "alpha")
        expect(page.locator("#node-address")).to_have_text(a.address)
        expect(page.locator("#node-networks")).to_have_text("default")
        create(page, text)
        item = page.locator("#gossip li", has_text=text)
        expect(item).to_have_count(1)
        expect(item.locator(".who")).to_have_text("alpha")
        [row] = [r for r in a.call("GET", "/v1/gossip")[1] if r["msg"] == text]
        expect(item.locator(".sha")).to_have_attribute("title", f"sha2 {row['sha2']}")
        expect(item.locator(".sha")).to_have_text(row["sha2"][:12] + "…")
        register(page, b.address)
        expect(page.locator("#register-status")).to_contain_text(f"Registered with beta at {b.address}")
        peer = page.locator("#peers li", has_text="beta")
        expect(peer.locator(".badge")).to_have_text("alive")
        expect(peer.locator(".peer-addr")).to_have_text(b.address)
        shot(page, tmp_path, "a-desktop.png")
        on_a.assert_clean()
    with opened(browser, b) as on_b:
        page = on_b.page
        logged_in(page, "beta")
        expect(page.locator("#gossip li", has_text=text)).to_have_count(1)  # gossiped a -> b
        expect(page.locator("#peers li", has_text="alpha").locator(".badge")).to_have_text("alive")
        # Newest first: one more gossip made on b goes on top.
        create(page, "and beta answers")
        expect(page.locator("#gossip li").first).to_contain_text("and beta answers")
        shot(page, tmp_path, "b-desktop.png")
        on_b.assert_clean()


def test_html_in_a_gossip_renders_as_text(browser: Any, nodes: tuple[NodeProc, NodeProc], tmp_path: Path) -> None:
    a, _ = nodes
    with opened(browser, a) as seen:
        page = seen.page
        logged_in(page, "alpha")
        create(page, XSS)
        msg = page.locator("#gossip li .msg", has_text="onerror")
        expect(msg).to_have_count(1)
        expect(msg).to_have_text(XSS)
        assert page.locator("#gossip img").count() == 0
        assert page.locator("img").count() == 0
        page.wait_for_timeout(300)  # an onerror handler, had one been made, fires by now
        shot(page, tmp_path, "xss.png")
        seen.assert_clean()


def test_wrong_password_shows_an_error_and_changes_nothing(
    browser: Any, nodes: tuple[NodeProc, NodeProc], tmp_path: Path
) -> None:
    a, _ = nodes
    def state() -> tuple[set[str], set[tuple[str, int]]]:  # last_seen moves on; the rest must not
        return a.guids(complete=False), {(p["guid"], p["incarnation"]) for p in a.peers()}

    before = state()
    with opened(browser, a) as seen:
        page = seen.page
        login(page, "not the password")
        error = page.locator("#login-error")
        expect(error).to_contain_text("Wrong password for network 'default'")
        expect(page.locator("#app")).to_be_hidden()
        expect(page.get_by_role("button", name="Log in")).to_be_enabled()
        assert page.evaluate("window.sessionStorage.length") == 0
        shot(page, tmp_path, "wrong-password.png")
        login(page, PASSWORD, network="nope")
        expect(error).to_contain_text("not on network 'nope'")
        # A stored key the node no longer accepts sends the page back to the form.
        page.evaluate(
            "window.sessionStorage.setItem('gossip.session', JSON.stringify({network: 'default', key: '00'.repeat(32)}))"
        )
        page.reload()
        expect(error).to_contain_text("no longer accepts this key")
        expect(page.locator("#login")).to_be_visible()
        assert seen.dialogs == [] and seen.errors == []
    assert state() == before


def test_register_and_connection_errors_show_inline(
    browser: Any, cluster: Cluster, nodes: tuple[NodeProc, NodeProc]
) -> None:
    a, _ = nodes
    other = cluster.start("gamma", "--name", "gamma", password="another network password")
    with opened(browser, a) as seen:
        page = seen.page
        logged_in(page, "alpha")
        error = page.locator("#register-error")
        register(page, "not an address")
        expect(error).to_contain_text("Bad address")
        register(page, f"127.0.0.1:{free_port()}")  # nobody listens there: the node answers 502
        expect(error).to_contain_text("did not answer")
        register(page, other.address)  # another password: the node answers 403
        expect(error).to_contain_text("refused the registration")
        expect(page.locator("#app")).to_be_visible()  # a 403 from elsewhere is not a logout
        page.route("**/v1/**", lambda route: route.abort())  # the node is gone, as the browser sees it
        expect(page.locator("#banner")).to_contain_text(f"Cannot reach the node at {a.address}")
        expect(page.locator("#live")).to_have_text("offline")
        page.unroute("**/v1/**")
        expect(page.locator("#banner")).to_be_hidden()
        expect(page.locator("#live")).to_contain_text("updated")
        seen.assert_clean()
    assert not [p for p in a.peers() if p["name"] == "gamma"]


def test_phone_width_has_no_horizontal_scroll(
    browser: Any, nodes: tuple[NodeProc, NodeProc], tmp_path: Path
) -> None:
    a, _ = nodes
    with opened(browser, a, width=390, height=844) as seen:
        page = seen.page
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        logged_in(page, "alpha")
        create(page, "a-long-word-without-spaces-" * 12)
        register(page, "still not an address")
        expect(page.locator("#register-error")).to_be_visible()
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        shot(page, tmp_path, "phone.png", full_page=True)
        seen.assert_clean()


def test_the_page_derives_and_signs_like_gossip_auth(browser: Any, nodes: tuple[NodeProc, NodeProc]) -> None:
    a, _ = nodes
    with opened(browser, a) as seen:
        page = seen.page
        for network, password in (("default", PASSWORD), ("net-2.x_y", "pässwörd ☃ 🔑")):
            in_browser = page.evaluate(
                "async ([n, p]) => window.gossipClient.toHex(await window.gossipClient.deriveKeyBits(n, p))",
                [network, password],
            )
            assert in_browser == derive_key(network, password).hex()
        key = derive_key("default", PASSWORD)
        cases = [
            ("GET", "/v1/gossip", "", b""),
            ("POST", "/v1/gossip", "?network=default&b=2&a=1&a=0", '{"msg":"hé ☃"}'.encode()),
            ("GET", "/v1/peers", "?z=%C3%A9&y=&x=a+b%20c&flag", b""),
        ]
        for method, path, query, body in cases:
            header = page.evaluate(
                """async ([keyHex, method, path, query, bodyHex]) => {
                    const c = window.gossipClient;
                    return c.authHeader({network: "default", node: "1b4e28ba-2fa1-41d2-883f-0016d3cca427",
                        key: await c.hmacKey(c.fromHex(keyHex)), method, path, query, body: c.fromHex(bodyHex),
                        ts: 1790000000123, nonce: "5f2b9c0e4d1a7b3c8e6f0a12"});
                }""",
                [key.hex(), method.lower(), path, query, body.hex()],
            )
            assert header == client_auth_header(
                network="default", node="1b4e28ba-2fa1-41d2-883f-0016d3cca427", key=key, method=method, path=path,
                query=urllib.parse.parse_qs(query.lstrip("?"), keep_blank_values=True),
                body=body, ts=1790000000123, nonce="5f2b9c0e4d1a7b3c8e6f0a12",
            )
        seen.assert_clean()


def test_pending_gossip_and_peer_statuses_are_marked(
    browser: Any, nodes: tuple[NodeProc, NodeProc], tmp_path: Path
) -> None:
    a, _ = nodes
    gossip = [  # as GET /v1/gossip answers: oldest first, then pending
        {"network": "default", "guid": "11111111-1111-4111-8111-111111111111", "date_time": "2026-01-01T10:00:00.000001+00:00",
         "who_name": "n1", "msg": "older", "sha2": "a" * 64, "complete": True},
        {"network": "default", "guid": "22222222-2222-4222-8222-222222222222", "date_time": "2026-01-02T10:00:00.123456+00:00",
         "who_name": "n2", "msg": "newer", "sha2": "b" * 64, "complete": True},
        {"network": "default", "guid": "33333333-3333-4333-8333-333333333333", "date_time": None,
         "who_name": None, "msg": None, "sha2": None, "complete": False},
    ]
    peers = [
        {"guid": f"{i}" * 8 + "-0000-4000-8000-000000000000", "name": status, "ip": "127.0.0.1", "port": 9000 + i,
         "network_name": "default", "incarnation": 0, "status": status,
         "last_seen": "2026-01-01T10:00:00+00:00" if i else None, "failures": i}
        for i, status in enumerate(["alive", "suspect", "dead", "left"])
    ]
    with opened(browser, a) as seen:
        page = seen.page
        page.route("**/v1/gossip", lambda route: route.fulfill(json=gossip) if route.request.method == "GET" else route.continue_())
        page.route("**/v1/peers", lambda route: route.fulfill(json=peers))
        logged_in(page, "alpha")
        items = page.locator("#gossip li")
        expect(items).to_have_count(3)
        expect(items.nth(0).locator(".badge.pending")).to_have_text("pending")
        expect(items.nth(0)).to_contain_text("33333333-3333-4333-8333-333333333333")
        expect(items.nth(1).locator(".msg")).to_have_text("newer")
        expect(items.nth(2).locator(".msg")).to_have_text("older")
        expect(page.locator("#gossip-count")).to_have_text("(3, 1 pending)")
        for status in ("alive", "suspect", "dead", "left"):
            expect(page.locator(f"#peers li .badge.{status}")).to_have_text(status)
        expect(page.locator("#peers li", has_text="alive")).to_contain_text("not seen yet")
        shot(page, tmp_path, "marks.png")
        seen.assert_clean()


def error_answer(status: int, code: str, text: str, **extra: str) -> dict[str, Any]:
    """A route.fulfill() of a node's error answer (docs/http-api.md)."""
    body = {"v": 1, "type": "error", "status": status, "code": code, "error": text, **extra}
    return {"status": status, "content_type": "application/json", "body": json.dumps(body)}


def test_the_page_tells_errors_apart_by_their_code(browser: Any, nodes: tuple[NodeProc, NodeProc]) -> None:
    """What the page does (log out, warn, explain) follows the answer's code, never its text."""
    a, _ = nodes
    with opened(browser, a) as seen:
        page = seen.page
        logged_in(page, "alpha")
        kinds = page.evaluate("""() => Object.fromEntries([
            [401, "clock_skew"], [401, "bad_mac"], [401, "wrong_network"], [403, "wrong_network"],
            [401, "replayed"], [429, "quota"], [401, null], [401, "a_code_from_the_future"],
          ].map(([status, code]) => [`${status} ${code}`,
            window.gossipClient.answerError(status, {code, error: "a clock spoke"}).kind]))""")
        assert kinds == {
            "401 clock_skew": "clock", "401 bad_mac": "auth", "401 wrong_network": "auth", "403 wrong_network": "http",
            "401 replayed": "http", "429 quota": "http", "401 null": "auth", "401 a_code_from_the_future": "http",
        }
        # This computer's clock is off: say so and keep the session (the old page logged out).
        page.route("**/v1/peers", lambda route: route.fulfill(
            **error_answer(401, "clock_skew", "message timestamp is +1200s off this node's clock")))
        expect(page.locator("#banner")).to_contain_text("This computer's clock and the node's differ too much")
        expect(page.locator("#live")).to_have_text("offline")
        expect(page.locator("#app")).to_be_visible()
        page.unroute("**/v1/peers")
        expect(page.locator("#banner")).to_be_hidden()
        # Over a quota: explained, and the session stays.
        page.route("**/v1/gossip", lambda route: route.fulfill(**error_answer(429, "quota", "30 creates a minute"))
                   if route.request.method == "POST" else route.continue_())
        page.get_by_label("Message").fill("one too many")
        page.get_by_role("button", name="Send gossip").click()
        expect(page.locator("#create-error")).to_have_text(
            "A limit of the network was reached; try again later (30 creates a minute).")
        page.unroute("**/v1/gossip")
        # The other node refused because of the clocks: the cause says so.
        page.route("**/v1/register", lambda route: route.fulfill(**error_answer(
            403, "peer_refused", "127.0.0.1:1 refused the registration: it said no", cause="clock_skew")))
        register(page, "127.0.0.1:1")
        expect(page.locator("#register-error")).to_have_text(
            "127.0.0.1:1 refused the registration: it said no; the two nodes' clocks must agree within 15 minutes.")
        expect(page.locator("#app")).to_be_visible()
        # The key is refused, whatever the text speaks of: back to the login form.
        page.route("**/v1/peers", lambda route: route.fulfill(**error_answer(401, "bad_mac", "the clock is fine")))
        expect(page.locator("#login")).to_be_visible()
        expect(page.locator("#login-error")).to_contain_text("no longer accepts this key")
        seen.assert_clean()


def test_plain_http_on_another_address_explains_that_it_needs_a_secure_context(
    playwright: Any, nodes: tuple[NodeProc, NodeProc], tmp_path: Path
) -> None:
    a, _ = nodes
    # A made-up name that chromium maps to 127.0.0.1: plain http there is no secure context.
    b = playwright.chromium.launch(
        executable_path=str(CHROMIUM),
        args=["--no-sandbox", "--host-resolver-rules=MAP gossip-node.test 127.0.0.1"],
    )
    try:
        page = b.new_page()
        page.set_default_timeout(WAIT_MS)
        page.goto(f"http://gossip-node.test:{a.port}/")
        assert page.evaluate("window.isSecureContext") is False
        expect(page.locator("#insecure")).to_be_visible()
        expect(page.locator("#insecure")).to_contain_text("https")
        expect(page.get_by_label("Password")).to_be_disabled()
        shot(page, tmp_path, "insecure.png")
    finally:
        b.close()


def test_the_page_works_with_a_password_installed_by_gossip_keys(
    browser: Any, nodes: tuple[NodeProc, NodeProc], tmp_path: Path
) -> None:
    import secrets

    from gossip.auth import key_id, seal_key

    a, _ = nodes
    new_password = "the rotated password 🔑"
    new = derive_key("default", new_password)
    sealed = seal_key(derive_key("default", PASSWORD), new, nonce=secrets.token_bytes(16), context="default")
    status, body = a.call("POST", "/v1/keys", {"op": "install", "id": key_id(new), "sealed": sealed})
    assert status == 200, body
    try:
        with opened(browser, a) as seen:
            page = seen.page
            login(page, new_password)  # the page derives the key in the browser, as ever
            expect(page.locator("#app")).to_be_visible()
            expect(page.locator("#node-name")).to_have_text("alpha")
            create(page, "made with the rotated password")
            shot(page, tmp_path, "rotated-password.png")
            seen.assert_clean()
    finally:  # the module's other tests use the first password alone
        status, body = a.call("POST", "/v1/keys", {"op": "remove", "id": key_id(new)})
        assert status == 200, body
