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
// - The page holds one page of gossip, never the node's whole list: pages come from the
//   node's change feed, new gossip from its stream; what is polled is small (counts, peers).
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
  const AGO_MS = 10000; // how often relative times ("3 min ago") are brought up to date
  const SVG_NS = "http://www.w3.org/2000/svg";

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

  /** The headers of one signed request (a fresh timestamp and nonce each time). */
  async function signed(method, url, body, as, timeout, accept) {
    const node = await thisNode(timeout);
    const header = await authHeader({
      network: as.network, node, key: as.key, method, path: url.pathname, query: url.search,
      body, ts: Date.now() + clockOffsetMs, nonce: newNonce(),
    });
    return { [AUTH_HEADER]: header, Accept: accept };
  }

  /**
   * One signed API request; its parsed JSON answer (with `full`: {data, headers}).
   * Throws an ApiError for an error answer, a timeout or an unreachable node.
   */
  async function call(method, target, payload, { as = session, timeout = CALL_TIMEOUT_MS, full = false } = {}) {
    const url = new URL(target, window.location.origin);
    const body = payload === undefined ? new Uint8Array(0) : enc.encode(JSON.stringify(payload));
    const headers = await signed(method, url, body, as, timeout, "application/json");
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
    return full ? { data, headers: response.headers } : data;
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

  /** "just now", "42 s ago", "3 min ago", "5 h ago", "12 d ago"; a time ahead of this clock is "just now". */
  function ago(ms) {
    const s = Math.max(0, (Date.now() + clockOffsetMs - ms) / 1000);
    if (s < 2) return "just now";
    if (s < 90) return `${Math.round(s)} s ago`;
    if (s < 90 * 60) return `${Math.round(s / 60)} min ago`;
    if (s < 36 * 3600) return `${Math.round(s / 3600)} h ago`;
    return `${Math.round(s / 86400)} d ago`;
  }

  /** A <time> saying how long ago, with the exact time (local, then as the node wrote it) on hover. */
  function timeEl(iso) {
    const ms = parseTime(iso);
    if (Number.isNaN(ms)) return el("span", "muted", iso ? String(iso) : "never");
    const node = el("time", "ago", ago(ms));
    node.setAttribute("datetime", iso);
    node.title = `${localTime(ms)} (${iso})`;
    return node;
  }

  /** Bring every relative time on the page up to date (they age while nothing else changes). */
  function refreshAgo() {
    for (const node of document.querySelectorAll("time.ago")) {
      const text = ago(parseTime(node.getAttribute("datetime")));
      if (node.textContent !== text) node.textContent = text;
    }
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
    if (Number.isInteger(n.gossip_count)) setText("gossip-count", `(${n.gossip_count.toLocaleString("en")})`);
    const pending = Number.isInteger(n.pending_count) ? n.pending_count : 0;
    setText("pending-count", pending ? `${pending.toLocaleString("en")} pending` : "");
    $("pending-count").hidden = !pending;
  }

  /** "7 of 7 known nodes hold the same set": in_sync of this node (always) and of each peer
   * that has not left, as GET /v1/peers last knew it. */
  function renderConverged(rows) {
    const known = rows.filter((p) => p.status !== "left");
    const same = known.filter((p) => p.in_sync === true).length;
    const badge = $("converged");
    if (known.length <= 1) {
      badge.textContent = "alone: no peers yet";
      badge.className = "badge unknown";
    } else {
      badge.textContent = `${same} of ${known.length} known nodes hold the same set`;
      badge.className = same === known.length ? "badge ok" : "badge warn";
    }
    const unknown = known.filter((p) => p.in_sync !== true && p.in_sync !== false).length;
    badge.title = unknown ? `${unknown} not compared yet` : "as of each peer's latest round";
  }

  function svgEl(tag, attrs, ...children) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
    node.append(...children);
    return node;
  }

  /** The network as a picture: this node in the middle, its peers on a circle around it, each
   * filled by its status and ringed by whether it holds the same set (solid), another (dashed)
   * or has not been compared yet (dotted). Plain SVG; names go in as text nodes. */
  function renderNetwork(rows) {
    const me = rows.find((p) => p.self === true);
    const peers = rows.filter((p) => p.self !== true).sort((a, b) => byCodePoint(String(a.name), String(b.name)));
    const cx = 160, cy = 120, radius = peers.length > 1 ? 88 : 70;
    const labelled = peers.length <= 16; // beyond that, names only on hover
    const links = [], circles = [], labels = [];
    const describe = (p) => {
      const sync = p.in_sync === true ? "same set" : p.in_sync === false ? "set differs" : "not compared yet";
      return `${p.name} (${hostport(p.ip, p.port)}): ${p.status}, ${sync}`;
    };
    const nodeClass = (p) => {
      const status = STATUSES.includes(p.status) ? p.status : "unknown";
      const sync = p.in_sync === true ? "same" : p.in_sync === false ? "differs" : "unsure";
      return `node ${status} ${sync}`;
    };
    peers.forEach((p, i) => {
      const angle = -Math.PI / 2 + (2 * Math.PI * i) / peers.length;
      const x = (cx + radius * Math.cos(angle)).toFixed(1);
      const y = (cy + radius * Math.sin(angle)).toFixed(1);
      links.push(svgEl("line", { class: "link", x1: cx, y1: cy, x2: x, y2: y }));
      const circle = svgEl("circle", { class: nodeClass(p), cx: x, cy: y, r: 9 }, svgEl("title", {}, describe(p)));
      circle.dataset.name = String(p.name);
      circles.push(circle);
      if (labelled) {
        const below = Math.sin(angle) > -0.2;
        labels.push(svgEl("text", { x, y: (Number(y) + (below ? 22 : -14)).toFixed(1) }, String(p.name)));
      }
    });
    if (me) {
      const circle = svgEl("circle", { class: `${nodeClass(me)} self`, cx, cy, r: 14 }, svgEl("title", {}, `${describe(me)} (this node)`));
      circle.dataset.name = String(me.name);
      circles.push(circle);
      labels.push(svgEl("text", { class: "self", x: cx, y: cy + 30 }, String(me.name)));
    }
    const svg = $("netmap");
    svg.replaceChildren(...links, ...circles, ...labels);
    const counts = STATUSES.map((s) => [s, peers.filter((p) => p.status === s).length]).filter(([, n]) => n);
    svg.setAttribute("aria-label", `${me ? me.name : "this node"} and ${peers.length} peer(s)` +
      (counts.length ? `: ${counts.map(([s, n]) => `${n} ${s}`).join(", ")}` : ""));
  }

  function renderPeers(rows) {
    renderConverged(rows);
    renderNetwork(rows);
    // GET /v1/peers lists this node first (self: true); the panel lists its peers.
    const peers = rows.filter((p) => p.self !== true);
    const sorted = [...peers].sort((a, b) => byCodePoint(String(a.name), String(b.name)));
    const items = sorted.map((p) => {
      const status = STATUSES.includes(p.status) ? p.status : "unknown";
      const badge = el("span", `badge ${status}`, String(p.status));
      if (p.failures) badge.title = `${p.failures} failed contact(s)`;
      const seen = p.last_seen
        ? el("span", "peer-seen", "seen ", timeEl(p.last_seen))
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

  // ------------------------------------------------------------------ the gossip list, a page at a time
  // The page holds and draws one page of gossip (PAGE_SIZE rows), never the whole list: at
  // 100,000 gossips that would be ~35 MB a fetch and 100,000 DOM nodes. The node lists its
  // change feed newest first (highest cursor: most recently learnt), filtered by the search on
  // the node; "Older" asks for the page before the last row's cursor (the Gossip-Next header),
  // "Newer" goes back up a stack of those anchors. New gossip comes from the stream (below),
  // never from fetching the list again.
  const PAGE_SIZE = 50;
  const SEARCH_DEBOUNCE_MS = 250;
  const list = {
    q: "", // the search, as sent to the node
    anchors: [null], // "before" of each page walked through; the last one is shown
    rows: [], // this page: pending ids (first page only), then complete gossip, newest first
    older: null, // "before" of the next older page, or null on the last page
    unseen: 0, // new gossip the stream brought while an older page is shown
    pending: null, // the node's pending count when the first page was last fetched
    loaded: false,
    signature: null,
    gen: 0, // bumped by every fetch of a page: a slower, older fetch is not drawn
  };

  function listUrl(q, before) {
    const params = new URLSearchParams({ order: "newest", limit: String(PAGE_SIZE) });
    if (before !== null) params.set("before", String(before));
    if (q) params.set("q", q);
    return `/v1/gossip?${params}`;
  }

  function cursorOf(headers, name) {
    const text = headers.get(name);
    return text !== null && /^[0-9]{1,19}$/.test(text) ? Number(text) : null;
  }

  /** Fetch and draw the page wanted now; on the first page, (re)start the stream after it. */
  async function loadPage() {
    const gen = ++list.gen;
    const q = list.q;
    const before = list.anchors[list.anchors.length - 1];
    const { data, headers } = await call("GET", listUrl(q, before), undefined, { full: true });
    if (gen !== list.gen) return;
    list.rows = Array.isArray(data) ? data : [];
    list.older = cursorOf(headers, "Gossip-Next");
    list.loaded = true;
    list.unseen = 0;
    renderGossip();
    if (before === null) {
      // Everything up to Gossip-Cursor is in this answer: the stream goes on from there.
      const upto = cursorOf(headers, "Gossip-Cursor");
      const known = Math.max(0, ...list.rows.map((r) => (Number.isInteger(r.cursor) ? r.cursor : 0)));
      if (!stream.running || stream.q !== q) startStream(q, upto === null ? known : upto);
    }
  }

  /** A gossip from the stream: on top of the first page, or counted while an older page shows. */
  function landed(row) {
    if (list.anchors.length > 1) {
      list.unseen += 1;
      renderGossip();
      return;
    }
    const rows = list.rows.filter((r) => r.guid !== row.guid); // a pending id that just arrived
    const firstComplete = rows.findIndex((r) => r.complete);
    const at = firstComplete === -1 ? rows.length : firstComplete;
    rows.splice(at, 0, row);
    const complete = rows.filter((r) => r.complete);
    if (complete.length > PAGE_SIZE) {
      const dropped = complete[complete.length - 1];
      rows.splice(rows.indexOf(dropped), 1);
      list.older = complete[PAGE_SIZE - 1].cursor; // the next page now starts below the last row kept
    }
    list.rows = rows;
    renderGossip();
  }

  function gossipItem(g) {
    const meta = el("div", "meta");
    const item = el("li", g.complete ? "item" : "item pending", meta);
    item.dataset.guid = String(g.guid);
    if (g.complete) {
      const sha = el("code", "sha", `${String(g.sha2).slice(0, 12)}…`);
      sha.title = `sha2 ${g.sha2}`;
      meta.append(el("strong", "who", String(g.who_name)), timeEl(g.date_time), sha);
      item.append(el("p", "msg", String(g.msg)));
    } else {
      meta.append(el("span", "badge pending", "pending"), el("code", "sha", String(g.guid)));
      item.append(el("p", "msg muted", "Only the id has arrived; the text follows in a later round."));
    }
    return item;
  }

  function renderGossip() {
    const signature = JSON.stringify([list.q, list.anchors.length, list.older, list.unseen, list.rows]);
    if (signature === list.signature) return; // unchanged: leave selections and hovers alone
    list.signature = signature;
    $("gossip").replaceChildren(...list.rows.map(gossipItem));
    const empty = $("gossip-empty");
    empty.hidden = list.rows.length > 0;
    empty.textContent = list.q ? `No gossip matches “${list.q}”.` : "No gossip yet.";
    const first = list.anchors.length === 1;
    $("newer").disabled = first;
    $("older").disabled = list.older === null;
    $("pager").hidden = first && list.older === null;
    setText("page-info", first && list.older === null ? "" : `page ${list.anchors.length}`);
    const unseen = $("unseen");
    unseen.hidden = list.unseen === 0;
    unseen.textContent = list.unseen === 1 ? "1 new gossip: show the newest" : `${list.unseen} new gossip: show the newest`;
  }

  function showPage(anchors) {
    list.anchors = anchors;
    loadPage().catch(listFailed);
  }

  function turnPage(older) {
    if (older && list.older !== null) showPage([...list.anchors, list.older]);
    else if (!older && list.anchors.length > 1) showPage(list.anchors.slice(0, -1));
  }

  /** A page that could not be fetched: the refresh loop fetches it again (its banner says
   * why meanwhile); a refused key logs out. */
  function listFailed(err) {
    if (err.kind === "auth") {
      logout(`The node no longer accepts this key: ${sentence(err.message)} Log in again.`);
      return;
    }
    list.loaded = false;
    refreshNow();
  }

  let searchTimer = 0;
  function onSearch() {
    clearTimeout(searchTimer);
    searchTimer = setTimeout(() => {
      const q = $("search").value.trim();
      if (q === list.q) return;
      list.q = q;
      showPage([null]);
    }, SEARCH_DEBOUNCE_MS);
  }

  // ------------------------------------------------------------------ the stream of new gossip
  // GET /v1/gossip/stream (Server-Sent Events) read with fetch() and a ReadableStream, so that
  // the request carries the signed X-Gossip-Auth header (EventSource cannot send headers, and
  // the key never goes in a URL). Each event is one gossip, its id the cursor; after a drop it
  // resumes after the last cursor seen, so nothing is lost or shown twice.
  const STREAM_SILENCE_MS = 40000; // the node sends a keep-alive every 15 s: longer silence is a dead connection
  const stream = { gen: 0, running: false, q: "", after: 0, abort: null };

  function startStream(q, after) {
    stopStream();
    stream.gen += 1;
    stream.running = true;
    stream.q = q;
    stream.after = after;
    follow(stream.gen);
  }

  function stopStream() {
    stream.gen += 1;
    stream.running = false;
    if (stream.abort) stream.abort.abort();
    stream.abort = null;
  }

  async function follow(gen) {
    let wait = 1000;
    while (gen === stream.gen && session) {
      try {
        await readStream(gen);
        wait = 1000; // it ended cleanly (the node stopped): try again soon
      } catch (err) {
        if (gen !== stream.gen) return;
        if (err.kind === "auth") {
          logout(`The node no longer accepts this key: ${sentence(err.message)} Log in again.`);
          return;
        }
        wait = Math.min(wait * 2, 15000); // the refresh loop's banner tells the user
      }
      if (gen !== stream.gen) return;
      await new Promise((resolve) => setTimeout(resolve, wait));
    }
  }

  async function readStream(gen) {
    const params = new URLSearchParams({ after: String(stream.after) });
    if (stream.q) params.set("q", stream.q);
    const url = new URL(`/v1/gossip/stream?${params}`, window.location.origin);
    const headers = await signed("GET", url, new Uint8Array(0), session, CALL_TIMEOUT_MS, "text/event-stream");
    const abort = new AbortController();
    stream.abort = abort;
    let silence = setTimeout(() => abort.abort(), CALL_TIMEOUT_MS);
    try {
      const response = await fetch(url.pathname + url.search, {
        headers, signal: abort.signal, cache: "no-store", credentials: "omit", redirect: "error",
      });
      if (!response.ok) {
        let data = null;
        try {
          data = JSON.parse(await response.text());
        } catch (err) {
          data = null;
        }
        throw answerError(response.status, data);
      }
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        clearTimeout(silence);
        silence = setTimeout(() => abort.abort(), STREAM_SILENCE_MS);
        const { value, done } = await reader.read();
        if (done || gen !== stream.gen) return;
        buffer += value;
        let end;
        while ((end = buffer.indexOf("\n\n")) !== -1) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const row = sseGossip(block);
          if (row !== null && gen === stream.gen) {
            stream.after = row.cursor;
            landed(row);
          }
        }
      }
    } catch (err) {
      if (err instanceof ApiError) throw err;
      throw new ApiError("unreachable", 0, "the stream of new gossip broke off");
    } finally {
      clearTimeout(silence);
      if (stream.abort === abort) stream.abort = null;
    }
  }

  /** The gossip row of one Server-Sent Event ("id:", "event: gossip", "data:" lines), or null
   * for a comment (keep-alive), a "retry:" line or any other event. */
  function sseGossip(block) {
    let event = "message", data = "", id = null;
    for (const line of block.split("\n")) {
      const colon = line.indexOf(":");
      if (colon === 0) continue; // a comment
      const name = colon === -1 ? line : line.slice(0, colon);
      const value = colon === -1 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (name === "event") event = value;
      else if (name === "data") data += (data ? "\n" : "") + value;
      else if (name === "id") id = value;
    }
    if (event !== "gossip" || !/^[0-9]{1,19}$/.test(id || "")) return null;
    try {
      const row = JSON.parse(data);
      return row && typeof row === "object" && row.cursor === Number(id) ? row : null;
    } catch (err) {
      return null;
    }
  }

  const TABS = ["gossip", "network"];

  /** Narrow screens: show one column (the other tab's stays in the page, hidden). */
  function showTab(name) {
    $("app").dataset.tab = name;
    for (const tab of TABS) {
      $(`tab-${tab}`).setAttribute("aria-selected", String(tab === name));
      $(`tab-${tab}`).tabIndex = tab === name ? 0 : -1; // one tab stop; the arrow keys move between tabs
    }
  }

  function onTabKey(event) {
    if (event.key !== "ArrowLeft" && event.key !== "ArrowRight") return;
    const at = TABS.indexOf($("app").dataset.tab);
    const next = TABS[(at + (event.key === "ArrowRight" ? 1 : TABS.length - 1)) % TABS.length];
    showTab(next);
    $(`tab-${next}`).focus();
    event.preventDefault();
  }

  function clearData() {
    clearTimeout(searchTimer);
    stopStream();
    Object.assign(list, {
      q: "", anchors: [null], rows: [], older: null, unseen: 0, pending: null, loaded: false, signature: null,
      gen: list.gen + 1, // a fetch still under way is not drawn
    });
    $("search").value = "";
    for (const id of ["peers", "gossip", "netmap"]) $(id).replaceChildren();
    $("pending-count").hidden = true;
    for (const id of ["title-node", "node-name", "node-guid", "node-networks", "node-address", "node-timer",
      "node-max-peers", "peers-count", "gossip-count", "pending-count", "converged", "page-info", "live", "create-status", "register-status"]) setText(id, "");
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
      // Small answers only: the list itself comes a page at a time, and new gossip by the stream.
      const [node, peers] = await Promise.all([call("GET", "/v1/node"), call("GET", "/v1/peers")]);
      if (gen !== loop.gen) return;
      renderNode(node);
      renderPeers(peers);
      // The stream carries gossip as it completes; ids heard of (pending) show on the first
      // page, fetched again when their count moves.
      const first = list.anchors.length === 1;
      if (!list.loaded || !stream.running || (first && node.pending_count !== list.pending)) {
        await loadPage();
        list.pending = node.pending_count;
      }
      refreshAgo();
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
    $("search").addEventListener("input", onSearch);
    $("older").addEventListener("click", () => turnPage(true));
    $("newer").addEventListener("click", () => turnPage(false));
    $("unseen").addEventListener("click", () => showPage([null]));
    $("tab-gossip").addEventListener("click", () => showTab("gossip"));
    $("tab-network").addEventListener("click", () => showTab("network"));
    document.querySelector(".tabs").addEventListener("keydown", onTabKey);
    showTab("gossip");
    setInterval(refreshAgo, AGO_MS);
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
