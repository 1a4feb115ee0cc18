// The web client of a gossip node: log in, watch the node, create gossip, register.
//
// Rules this file keeps:
// - The password only ever goes into PBKDF2, here in the browser. What the page keeps is the
//   derived network key: in memory, and (hex) in sessionStorage so that a reload of this tab
//   does not ask again. Never a cookie, never a URL. "Log out" forgets it.
// - Every API call is signed exactly like gossip.auth.client_auth_header (docs/http-api.md,
//   "Clients: authentication").
// - Data from the node reaches the page through textContent / text nodes / setAttribute only,
//   never innerHTML: a gossip "<img src=x onerror=alert(1)>" shows as those characters.
"use strict";

(() => {
  const AUTH_HEADER = "X-Gossip-Auth";
  const PBKDF2_ITERATIONS = 600000; // gossip.auth.PBKDF2_ITERATIONS
  const SALT_PREFIX = "gossip/v1/network/";
  const MAC_HEX = 32;
  const REFRESH_MS = 3000;
  const CALL_TIMEOUT_MS = 10000;
  const REGISTER_TIMEOUT_MS = 30000; // the node itself waits ~15 s for the other node
  const STORE = "gossip.session"; // sessionStorage: {"network", "key": hex}; never the password
  const NETWORK_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
  const HOSTPORT_RE = /^(?:\[[0-9A-Fa-f:.]+\]|[^\s:[\]/?#@]+):([0-9]{1,5})$/;
  const STATUSES = ["alive", "suspect", "dead", "left"];

  const enc = new TextEncoder();
  const $ = (id) => document.getElementById(id);

  // ------------------------------------------------------------------ crypto (WebCrypto)
  function toHex(buffer) {
    return Array.from(new Uint8Array(buffer), (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function fromHex(text) {
    if (!/^(?:[0-9a-f]{2})*$/.test(text)) throw new Error("not hex");
    return new Uint8Array((text.match(/../g) || []).map((h) => parseInt(h, 16)));
  }

  /** The 32-byte network key: PBKDF2-HMAC-SHA256(password, "gossip/v1/network/" + network). */
  async function deriveKeyBits(network, password) {
    const base = await crypto.subtle.importKey("raw", enc.encode(password), "PBKDF2", false, ["deriveBits"]);
    const bits = await crypto.subtle.deriveBits(
      { name: "PBKDF2", hash: "SHA-256", salt: enc.encode(SALT_PREFIX + network), iterations: PBKDF2_ITERATIONS },
      base,
      256,
    );
    return new Uint8Array(bits);
  }

  function hmacKey(raw) {
    return crypto.subtle.importKey("raw", raw, { name: "HMAC", hash: "SHA-256" }, false, ["sign"]);
  }

  function byCodePoint(a, b) {
    const x = Array.from(a, (c) => c.codePointAt(0));
    const y = Array.from(b, (c) => c.codePointAt(0));
    for (let i = 0; i < Math.min(x.length, y.length); i++) {
      if (x[i] !== y[i]) return x[i] - y[i];
    }
    return x.length - y.length;
  }

  /** The query as the node sees it (urllib.parse.parse_qs): decoded name=value, sorted by name. */
  function canonicalQuery(search) {
    const params = new URLSearchParams(search);
    const names = Array.from(new Set(params.keys())).sort(byCodePoint);
    return names.flatMap((name) => params.getAll(name).map((value) => `${name}=${value}`)).join("&");
  }

  /** The X-Gossip-Auth value for one request, as gossip.auth.client_auth_header makes it. */
  async function authHeader({ network, node, key, method, path, query = "", body = new Uint8Array(0), ts, nonce }) {
    const bodyHash = toHex(await crypto.subtle.digest("SHA-256", body));
    const text = ["gossip-client-v2", node, method.toUpperCase(), path, canonicalQuery(query), String(ts), nonce, bodyHash].join("\n");
    const mac = toHex(await crypto.subtle.sign("HMAC", key, enc.encode(text))).slice(0, MAC_HEX);
    return `network=${network}, node=${node}, ts=${ts}, nonce=${nonce}, mac=${mac}`;
  }

  // Every request is signed for this node's guid (so that a captured one is worth nothing at
  // any other node), with timestamps on the node's clock (it refuses any from before it
  // started): both asked once of the open GET /healthz. The clock is followed only within the
  // 15-minute window; beyond it the node's clock_skew refusal tells the user.
  const WINDOW_MS = 900 * 1000;
  let nodeGuid = null;
  let clockOffsetMs = 0;
  async function thisNode(timeout) {
    if (nodeGuid !== null) return nodeGuid;
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), timeout);
    try {
      const sent = Date.now();
      const response = await fetch("/healthz", { cache: "no-store", credentials: "omit", signal: abort.signal });
      const data = await response.json();
      if (!response.ok || typeof data.node_guid !== "string") throw new Error(`HTTP ${response.status}`);
      if (Number.isInteger(data.time_ms)) {
        const offset = data.time_ms - Math.round((sent + Date.now()) / 2);
        if (Math.abs(offset) <= WINDOW_MS) clockOffsetMs = offset;
      }
      nodeGuid = data.node_guid;
      return nodeGuid;
    } catch (err) {
      throw new ApiError("unreachable", 0, `cannot reach the node at ${window.location.host}: is it running?`);
    } finally {
      clearTimeout(timer);
    }
  }

  function newNonce() {
    const bytes = new Uint8Array(12); // 24 hex digits
    crypto.getRandomValues(bytes);
    return toHex(bytes);
  }

  // ------------------------------------------------------------------ the API
  class ApiError extends Error {
    /**
     * kind: "auth" (the node refuses this key), "clock" (this computer's clock is off),
     * "http" (another error answer), "unreachable" or "timeout".
     * code: the answer's error code (docs/http-api.md, "Error codes"), or null.
     */
    constructor(kind, status, message, code = null) {
      super(message);
      this.kind = kind;
      this.status = status;
      this.code = code;
    }
  }

  // What the page does about an error answer is chosen by its code, never by its text.
  const KEY_REFUSED = ["bad_mac", "wrong_network"];
  const EXPLAIN = {
    clock_skew: "This computer's clock and the node's differ too much; set the clock right",
    replayed: "The node took the request for a replay; try again",
    too_large: "The node refused it as too large",
    quota: "A limit of the network was reached; try again later",
    timeout: "The node gave up waiting for the request; try again",
    unavailable: "The node is starting or busy; try again shortly",
    storage_failed: "The node could not write to its disk; nothing was kept",
    internal: "The node failed; its log has the details",
  };

  /** The ApiError of an error answer: its kind and a message from its code and text. */
  function answerError(status, data) {
    const said = data && typeof data.error === "string" && data.error ? data.error : `HTTP ${status}`;
    const code = data && typeof data.code === "string" ? data.code : null;
    if (code === null) return new ApiError(status === 401 ? "auth" : "http", status, said); // a node without codes
    if (status === 401 && KEY_REFUSED.includes(code)) return new ApiError("auth", status, said, code);
    if (code === "peer_refused") {
      const hint = data.cause === "clock_skew"
        ? "the two nodes' clocks must agree within 15 minutes"
        : "both nodes need the same network and password";
      return new ApiError("http", status, `${said}; ${hint}`, code);
    }
    if (code === "peer_unreachable") return new ApiError("http", status, `${said}; is a gossip node running there?`, code);
    const kind = code === "clock_skew" ? "clock" : "http";
    return new ApiError(kind, status, EXPLAIN[code] ? `${EXPLAIN[code]} (${said})` : said, code);
  }

  let session = null; // {network, key: CryptoKey}

  async function call(method, target, payload, { as = session, timeout = CALL_TIMEOUT_MS } = {}) {
    const url = new URL(target, window.location.origin);
    const body = payload === undefined ? new Uint8Array(0) : enc.encode(JSON.stringify(payload));
    const node = await thisNode(timeout);
    const header = await authHeader({
      network: as.network, node, key: as.key, method, path: url.pathname, query: url.search,
      body, ts: Date.now() + clockOffsetMs, nonce: newNonce(),
    });
    const headers = { [AUTH_HEADER]: header, Accept: "application/json" };
    if (payload !== undefined) headers["Content-Type"] = "application/json";
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(), timeout);
    let response, text;
    try {
      response = await fetch(url.pathname + url.search, {
        method, headers, body: payload === undefined ? undefined : body,
        signal: abort.signal, cache: "no-store", credentials: "omit", redirect: "error",
      });
      text = await response.text();
    } catch (err) {
      if (err && err.name === "AbortError") {
        throw new ApiError("timeout", 0, `the node did not answer within ${Math.round(timeout / 1000)} s`);
      }
      throw new ApiError("unreachable", 0, `cannot reach the node at ${window.location.host}: is it running?`);
    } finally {
      clearTimeout(timer);
    }
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch (err) {
      data = null;
    }
    if (!response.ok) throw answerError(response.status, data);
    return data;
  }

  function sentence(text) {
    const t = String(text);
    return t.charAt(0).toUpperCase() + t.slice(1) + (/[.!?]$/.test(t) ? "" : ".");
  }

  // ------------------------------------------------------------------ small DOM helpers
  /** An element with a class and children; strings become text nodes (never parsed as HTML). */
  function el(tag, className, ...children) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    node.append(...children.filter((c) => c !== null && c !== undefined));
    return node;
  }

  function setText(id, text) {
    $(id).textContent = text;
  }

  /** Show an error line (hidden while empty). */
  function showMessage(id, text) {
    const node = $(id);
    node.textContent = text || "";
    node.hidden = !text;
  }

  function setBusy(button, busy) {
    button.disabled = busy;
    button.setAttribute("aria-busy", busy ? "true" : "false");
  }

  function parseTime(iso) {
    if (typeof iso !== "string") return NaN;
    return Date.parse(iso.replace(/(\.\d{3})\d+/, "$1")); // JS dates keep milliseconds only
  }

  function two(n) {
    return String(n).padStart(2, "0");
  }

  function localTime(ms) {
    const d = new Date(ms);
    return `${d.getFullYear()}-${two(d.getMonth() + 1)}-${two(d.getDate())} ${two(d.getHours())}:${two(d.getMinutes())}:${two(d.getSeconds())}`;
  }

  function ago(ms) {
    const s = Math.max(0, (Date.now() - ms) / 1000);
    if (s < 2) return "just now";
    if (s < 90) return `${Math.round(s)} s ago`;
    if (s < 90 * 60) return `${Math.round(s / 60)} min ago`;
    return localTime(ms);
  }

  function timeEl(iso, relative) {
    const ms = parseTime(iso);
    if (Number.isNaN(ms)) return el("span", "muted", iso ? String(iso) : "never");
    const node = el("time", "", relative ? ago(ms) : localTime(ms));
    node.setAttribute("datetime", iso);
    node.title = iso;
    return node;
  }

  function hostport(ip, port) {
    return String(ip).includes(":") ? `[${ip}]:${port}` : `${ip}:${port}`;
  }

  // ------------------------------------------------------------------ rendering
  function renderNode(n) {
    setText("title-node", n.node_name);
    document.title = `${n.node_name} · gossip`;
    setText("node-name", n.node_name);
    setText("node-guid", n.node_guid);
    setText("node-networks", (n.networks || []).join(", "));
    setText("node-address", hostport(n.ip, n.port));
    setText("node-timer", `${n.gossip_timer} s between rounds`);
    setText("node-max-peers", `pushes to ${n.gossip_max_peer_count}`);
  }

  function renderPeers(rows) {
    // GET /v1/peers lists this node first (self: true); the panel lists its peers.
    const peers = rows.filter((p) => p.self !== true);
    const sorted = [...peers].sort((a, b) => byCodePoint(String(a.name), String(b.name)));
    const items = sorted.map((p) => {
      const status = STATUSES.includes(p.status) ? p.status : "unknown";
      const badge = el("span", `badge ${status}`, String(p.status));
      if (p.failures) badge.title = `${p.failures} failed contact(s)`;
      const seen = p.last_seen
        ? el("span", "peer-seen", "seen ", timeEl(p.last_seen, true))
        : el("span", "peer-seen", "not seen yet");
      const item = el(
        "li", "peer", badge,
        el("span", "peer-name", String(p.name)),
        el("span", "peer-addr mono", hostport(p.ip, p.port)),
        seen,
      );
      item.title = `guid ${p.guid}`;
      return item;
    });
    $("peers").replaceChildren(...items);
    $("peers-empty").hidden = items.length > 0;
    setText("peers-count", `(${items.length})`);
  }

  let lastGossip = null;

  function renderGossip(rows) {
    const signature = JSON.stringify(rows);
    if (signature === lastGossip) return; // unchanged: leave selections and hovers alone
    lastGossip = signature;
    const pending = rows.filter((r) => !r.complete);
    const complete = rows.filter((r) => r.complete).sort((a, b) => {
      const d = parseTime(b.date_time) - parseTime(a.date_time);
      return d || byCodePoint(String(b.date_time), String(a.date_time)) || byCodePoint(String(a.guid), String(b.guid));
    });
    // Newest first: the ids just heard of (pending) lead, then complete gossip by date_time.
    const items = [...pending, ...complete].map((g) => {
      const meta = el("div", "meta");
      const item = el("li", g.complete ? "item" : "item pending", meta);
      item.dataset.guid = String(g.guid);
      if (g.complete) {
        const sha = el("code", "sha", `${String(g.sha2).slice(0, 12)}…`);
        sha.title = `sha2 ${g.sha2}`;
        meta.append(el("strong", "who", String(g.who_name)), timeEl(g.date_time, false), sha);
        item.append(el("p", "msg", String(g.msg)));
      } else {
        meta.append(el("span", "badge pending", "pending"), el("code", "sha", String(g.guid)));
        item.append(el("p", "msg muted", "Only the id has arrived; the text follows in a later round."));
      }
      return item;
    });
    $("gossip").replaceChildren(...items);
    $("gossip-empty").hidden = items.length > 0;
    setText("gossip-count", pending.length ? `(${rows.length}, ${pending.length} pending)` : `(${rows.length})`);
  }

  function clearData() {
    lastGossip = null;
    for (const id of ["peers", "gossip"]) $(id).replaceChildren();
    for (const id of ["title-node", "node-name", "node-guid", "node-networks", "node-address", "node-timer",
      "node-max-peers", "peers-count", "gossip-count", "live", "create-status", "register-status"]) setText(id, "");
    for (const id of ["create-error", "register-error"]) showMessage(id, "");
    document.title = "gossip node";
  }

  // ------------------------------------------------------------------ the refresh loop
  const loop = { gen: 0, timer: 0, running: false, again: false };

  function startLoop() {
    loop.gen += 1;
    clearTimeout(loop.timer);
    loop.running = false;
    tick();
  }

  function stopLoop() {
    loop.gen += 1;
    clearTimeout(loop.timer);
    loop.running = false;
  }

  function refreshNow() {
    if (loop.running) {
      loop.again = true;
    } else {
      clearTimeout(loop.timer);
      tick();
    }
  }

  async function tick() {
    const gen = loop.gen;
    loop.running = true;
    loop.again = false;
    try {
      const [node, peers, gossip] = await Promise.all([
        call("GET", "/v1/node"), call("GET", "/v1/peers"), call("GET", "/v1/gossip"),
      ]);
      if (gen !== loop.gen) return;
      renderNode(node);
      renderPeers(peers);
      renderGossip(gossip);
      showMessage("banner", "");
      setText("live", `updated ${localTime(Date.now()).slice(11)}`);
      $("live").className = "live ok";
    } catch (err) {
      if (gen !== loop.gen) return;
      if (err.kind === "auth") {
        logout(`The node no longer accepts this key: ${sentence(err.message)} Log in again.`);
        return;
      }
      showMessage("banner", `${sentence(err.message)} Retrying every ${REFRESH_MS / 1000} s.`);
      setText("live", "offline");
      $("live").className = "live bad";
    }
    if (gen !== loop.gen) return;
    loop.running = false;
    loop.timer = setTimeout(tick, loop.again ? 0 : REFRESH_MS);
  }

  // ------------------------------------------------------------------ session and views
  function remember(network, raw) {
    try {
      window.sessionStorage.setItem(STORE, JSON.stringify({ network, key: toHex(raw) }));
    } catch (err) {
      // storage disabled: the key stays in memory only, and a reload asks again
    }
  }

  async function recall() {
    try {
      const saved = JSON.parse(window.sessionStorage.getItem(STORE) || "null");
      if (!saved || !NETWORK_RE.test(saved.network)) return null;
      return { network: saved.network, key: await hmacKey(fromHex(saved.key)) };
    } catch (err) {
      return null;
    }
  }

  function showLogin(message) {
    $("app").hidden = true;
    $("logout").hidden = true;
    $("login").hidden = false;
    showMessage("login-error", message || "");
    setText("login-status", "");
    $(message ? "password" : "network").focus();
  }

  function showApp() {
    $("login").hidden = true;
    $("app").hidden = false;
    $("logout").hidden = false;
  }

  function logout(message) {
    stopLoop();
    session = null;
    try {
      window.sessionStorage.removeItem(STORE);
    } catch (err) {
      // nothing stored
    }
    clearData();
    showMessage("banner", "");
    showLogin(message);
  }

  // ------------------------------------------------------------------ forms
  async function onLogin(event) {
    event.preventDefault();
    const network = $("network").value.trim();
    const password = $("password").value;
    showMessage("login-error", "");
    if (!NETWORK_RE.test(network)) {
      showMessage("login-error", "A network name is 1 to 64 letters, digits, '.', '_' or '-', and starts with a letter or digit.");
      return;
    }
    if (!password) {
      showMessage("login-error", "Enter the network's password.");
      $("password").focus();
      return;
    }
    const button = $("login-button");
    setBusy(button, true);
    setText("login-status", "Deriving the network key (600,000 rounds of PBKDF2)…");
    try {
      const raw = await deriveKeyBits(network, password);
      const candidate = { network, key: await hmacKey(raw) };
      setText("login-status", "Asking the node…");
      const node = await call("GET", "/v1/node", undefined, { as: candidate });
      session = candidate;
      $("password").value = "";
      remember(network, raw);
      setText("login-status", "");
      showApp();
      renderNode(node);
      startLoop();
    } catch (err) {
      setText("login-status", "");
      const text = err.kind === "auth"
        ? `${sentence(err.message)} Check the network name and the password.`
        : sentence(err.message);
      showMessage("login-error", text);
      $("password").focus();
    } finally {
      setBusy(button, false);
    }
  }

  function failed(err, where) {
    if (err.kind === "auth") {
      logout(`The node refused this key: ${sentence(err.message)} Log in again.`);
    } else {
      showMessage(where, sentence(err.message));
    }
  }

  async function onCreate(event) {
    event.preventDefault();
    showMessage("create-error", "");
    setText("create-status", "");
    const msg = $("msg").value;
    if (!msg.trim()) {
      showMessage("create-error", "Write a message first.");
      $("msg").focus();
      return;
    }
    const button = $("create-button");
    setBusy(button, true);
    try {
      const gossip = await call("POST", "/v1/gossip", { msg });
      $("msg").value = "";
      setText("create-status", `Created gossip ${String(gossip.guid).slice(0, 8)}; it spreads from the next round.`);
      refreshNow();
    } catch (err) {
      failed(err, "create-error");
    } finally {
      setBusy(button, false);
    }
  }

  async function onRegister(event) {
    event.preventDefault();
    showMessage("register-error", "");
    setText("register-status", "");
    const address = $("address").value.trim();
    const match = HOSTPORT_RE.exec(address);
    if (!match || Number(match[1]) < 1 || Number(match[1]) > 65535) {
      showMessage("register-error", `Bad address ${JSON.stringify(address)}: write HOST:PORT, for example 127.0.0.1:8471.`);
      $("address").focus();
      return;
    }
    const button = $("register-button");
    setBusy(button, true);
    setText("register-status", `Registering with ${address}…`);
    try {
      const answer = await call("POST", "/v1/register", { address }, { timeout: REGISTER_TIMEOUT_MS });
      const peer = answer && answer.peer ? answer.peer : {};
      setText("register-status", `Registered with ${peer.name || address} at ${address}.`);
      $("address").value = "";
      refreshNow();
    } catch (err) {
      setText("register-status", "");
      failed(err, "register-error");
    } finally {
      setBusy(button, false);
    }
  }

  // ------------------------------------------------------------------ start
  async function start() {
    $("login-form").addEventListener("submit", onLogin);
    $("create-form").addEventListener("submit", onCreate);
    $("register-form").addEventListener("submit", onRegister);
    $("logout").addEventListener("click", () => logout(""));
    document.addEventListener("visibilitychange", () => {
      if (!document.hidden && session) refreshNow();
    });
    if (!window.isSecureContext || !window.crypto || !window.crypto.subtle) {
      $("login").hidden = false;
      $("insecure").hidden = false;
      for (const node of $("login-form").elements) node.disabled = true;
      return;
    }
    const saved = await recall();
    if (saved) {
      session = saved;
      $("network").value = saved.network;
      showApp();
      startLoop(); // a 401 sends the page back to the login form
    } else {
      showLogin("");
    }
  }

  // For tests and the curious: the signing, so that it can be checked against gossip.auth, and
  // how an error answer is taken (by its code).
  window.gossipClient = Object.freeze({ deriveKeyBits, hmacKey, authHeader, canonicalQuery, fromHex, toHex, answerError });

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
