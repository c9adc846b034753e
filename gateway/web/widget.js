// Parley's embeddable chat widget. Bundled by gateway/assets.py inside one function
// scope after the Socket.IO client, which it reaches as the local `io`.
// Everything it draws lives in a Shadow DOM: the host page's CSS cannot reach in,
// its own cannot leak out. Message content is only ever set with textContent.
"use strict";
const ACK_TIMEOUT = 10000; // ms to wait for an ack before offering a retry
const SETTINGS_TIMEOUT = 5000; // ms to wait for the settings before drawing with defaults
const TYPING_EVERY = 1000; // ms between visitorIsTyping {isTyping: true} while typing
const TYPING_IDLE = 2000; // ms without a keystroke before {isTyping: false}
const AGENT_TYPING_TTL = 7000; // ms an agent's "typing" lasts if nobody refreshes it
const CONTENT_LIMIT = 5000; // characters, the server's limit on a message
const COUNTDOWN_FROM = 500; // characters left when the counter starts to show
const URL_HISTORY_LIMIT = 50; // pages kept for sessionMetadata.urlHistory

const script = document.currentScript;
const projectId = parseInt((script && script.getAttribute("data-project-id")) || "", 10);
// A site that verifies identities names the visitor itself (its own UUID for the
// signed-in user) and signs it: hex HMAC-SHA256(project secret, visitorUid).
const givenUid = script && script.getAttribute("data-visitor-uid");
const signature = script && script.getAttribute("data-visitor-signature");
const UUID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[1-8][0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/i;
const base = (script && script.getAttribute("data-parley-base")) || (script ? new URL(script.src).origin : location.origin);

const DEFAULTS = {
  theme: "light", backgroundImageUrl: null, backgroundOpacity: 1, headerText: "Chat with us",
  position: "bottom-right", fontFamily: null, companyLogoUrl: null,
  welcomeMessage: "Hi! Ask us anything, we usually answer within minutes.", agentDisplayName: null,
  offlineMessage: "You are offline. Messages are sent when you reconnect.", autoOpenDelay: null,
  historyVisibility: "limit_to_active",
};

const store = {
  get(key, fallback) { try { const v = localStorage.getItem(key); return v == null ? fallback : JSON.parse(v); } catch { return fallback; } },
  set(key, value) { try { localStorage.setItem(key, JSON.stringify(value)); } catch { /* storage blocked or full */ } },
  session(key, value) {
    try {
      if (value === undefined) { const v = sessionStorage.getItem(key); return v == null ? null : JSON.parse(v); }
      sessionStorage.setItem(key, JSON.stringify(value));
    } catch { /* storage blocked */ }
    return null;
  },
};
const KEYS = {
  uid: `parley.${projectId}.visitorUid`,
  open: `parley.${projectId}.open`,
  pages: `parley.${projectId}.pages`,
  landing: `parley.${projectId}.landing`,
};

// crypto.randomUUID exists only on secure origins (https, localhost): else a hand-made v4 UUID.
function uuid() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

const CSS = `
:host { all: initial !important; }
.root { --accent: #2563eb; --accent-text: #fff; --bg: #fff; --text: #111827; --muted: #6b7280; --line: #e5e7eb;
  --bubble: #f3f4f6; --bad: #b91c1c; --ok: #047857; --warn: #b45309;
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--text);
  position: fixed; bottom: 20px; right: 20px; z-index: 2147483000; display: flex; flex-direction: column;
  align-items: flex-end; gap: 12px; letter-spacing: normal; text-align: left; text-transform: none; }
.root.left { right: auto; left: 20px; align-items: flex-start; }
.root.dark { --accent: #3b82f6; --bg: #111827; --text: #f9fafb; --muted: #9ca3af; --line: #374151; --bubble: #1f2937;
  --bad: #f87171; --ok: #34d399; --warn: #fbbf24; }
*, *::before, *::after { box-sizing: border-box; }
[hidden] { display: none !important; }
button, textarea { font: inherit; color: inherit; }
.sr { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
.launcher { position: relative; width: 56px; height: 56px; border-radius: 50%; border: 0; cursor: pointer;
  background: var(--accent); color: var(--accent-text); box-shadow: 0 6px 20px rgba(0,0,0,.25);
  display: flex; align-items: center; justify-content: center; padding: 0; }
.launcher svg { width: 26px; height: 26px; fill: currentColor; }
.launcher:focus-visible, button:focus-visible, textarea:focus-visible { outline: 3px solid #f59e0b; outline-offset: 2px; }
.badge { position: absolute; top: -4px; right: -4px; min-width: 20px; height: 20px; padding: 0 6px; border-radius: 10px;
  background: #dc2626; color: #fff; font-size: 12px; line-height: 20px; text-align: center; }
.panel { width: 370px; max-width: calc(100vw - 24px); height: 560px; max-height: calc(100vh - 110px);
  display: flex; flex-direction: column; background: var(--bg); border: 1px solid var(--line); border-radius: 14px;
  overflow: hidden; box-shadow: 0 12px 40px rgba(0,0,0,.25); }
header { display: flex; align-items: center; gap: 10px; padding: 12px 14px; background: var(--accent); color: var(--accent-text); }
header img { width: 32px; height: 32px; border-radius: 8px; object-fit: cover; background: #fff; }
.titles { flex: 1; min-width: 0; }
h2 { margin: 0; font-size: 16px; font-weight: 600; line-height: 1.3; overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
.conn { font-size: 12px; opacity: .9; display: flex; align-items: center; gap: 6px; }
.conn::before { content: ""; width: 8px; height: 8px; border-radius: 50%; background: #fbbf24; }
.conn[data-state="online"]::before { background: #4ade80; }
.conn[data-state="offline"]::before { background: #f87171; }
.close { background: transparent; border: 0; color: inherit; cursor: pointer; width: 32px; height: 32px; border-radius: 8px;
  font-size: 22px; line-height: 1; }
.close:hover { background: rgba(255,255,255,.15); }
.log { position: relative; flex: 1; overflow-y: auto; padding: 12px 14px; display: flex; flex-direction: column; gap: 8px; isolation: isolate; }
.log.bg::before { content: ""; position: absolute; inset: 0; z-index: -1; background-image: var(--bg-image);
  background-size: cover; background-position: center; opacity: var(--bg-opacity); }
.notice { font-size: 13px; padding: 6px 14px; border-top: 1px solid var(--line); }
.notice.warn { color: var(--warn); } .notice.error { color: var(--bad); }
.msg { max-width: 82%; align-self: flex-start; display: flex; flex-direction: column; align-items: flex-start; }
.msg.mine { align-self: flex-end; align-items: flex-end; }
.bubble { padding: 8px 12px; border-radius: 14px; background: var(--bubble); white-space: pre-wrap;
  overflow-wrap: anywhere; max-width: 100%; }
.mine .bubble { background: var(--accent); color: var(--accent-text); }
.mine.pending .bubble { opacity: .7; }
.welcome .bubble { font-style: italic; }
.meta { font-size: 11px; color: var(--muted); margin-top: 2px; display: flex; gap: 6px; align-items: center; }
.failed .meta { color: var(--bad); }
.meta .read { color: var(--accent); font-weight: 600; }
.meta button { font-size: 11px; padding: 1px 8px; cursor: pointer; border: 1px solid currentColor; border-radius: 6px; background: transparent; }
.meta button:disabled { cursor: default; opacity: .6; }
.typing { min-height: 18px; padding: 0 14px; font-size: 12px; font-style: italic; color: var(--muted); }
form { display: flex; flex-direction: column; gap: 4px; padding: 10px; border-top: 1px solid var(--line); }
.row { display: flex; gap: 8px; }
textarea { flex: 1; resize: none; height: 44px; padding: 10px; border: 1px solid var(--line); border-radius: 10px;
  background: var(--bg); font-size: 15px; line-height: 1.4; }
.send { padding: 0 16px; border: 0; border-radius: 10px; background: var(--accent); color: var(--accent-text); cursor: pointer; }
.count { font-size: 11px; color: var(--muted); text-align: right; min-height: 14px; }
.count.low { color: var(--bad); }
@media (max-width: 420px) {
  .root { right: 8px; bottom: 8px; } .root.left { left: 8px; }
  .panel { width: calc(100vw - 16px); max-width: none; height: calc(100vh - 90px); max-height: none; }
}
`;

const ICON = '<svg viewBox="0 0 24 24" aria-hidden="true"><path d="M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H8l-4 4V6a2 2 0 0 1 2-2z"/></svg>';

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value == null || value === false) continue;
    if (key === "text") node.textContent = value;
    else if (key === "className") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  node.append(...children);
  return node;
}

function mount() {
  // A custom element name: a host rule aimed at div or section does not match it.
  const host = document.createElement("parley-chat");
  host.setAttribute("style", "all: initial !important; position: fixed !important; z-index: 2147483000 !important; "
    + "display: block !important; width: 0 !important; height: 0 !important; bottom: 0 !important; right: 0 !important;");
  const shadow = host.attachShadow({ mode: "open" });
  shadow.append(el("style", { text: CSS }));
  const ids = `parley-${projectId}`;
  const ui = {};
  ui.count = el("div", { className: "count", id: `${ids}-count`, "aria-live": "polite" });
  ui.input = el("textarea", { id: `${ids}-input`, maxlength: CONTENT_LIMIT, rows: 1, placeholder: "Type a message…",
    "aria-describedby": `${ids}-count` });
  ui.send = el("button", { type: "submit", className: "send", text: "Send" });
  ui.form = el("form", {}, el("label", { className: "sr", for: `${ids}-input`, text: "Your message" }),
    el("div", { className: "row" }, ui.input, ui.send), ui.count);
  ui.log = el("div", { className: "log", role: "log", "aria-live": "polite", "aria-label": "Conversation" });
  ui.typing = el("div", { className: "typing", "aria-live": "polite" });
  ui.notice = el("div", { className: "notice", role: "status", hidden: true });
  ui.title = el("h2", { id: `${ids}-title`, text: DEFAULTS.headerText });
  ui.conn = el("div", { className: "conn", "data-state": "connecting", text: "Connecting…" });
  ui.logo = el("img", { alt: "", hidden: true });
  ui.close = el("button", { type: "button", className: "close", "aria-label": "Close chat", text: "×" });
  ui.panel = el("div", { className: "panel", role: "dialog", id: `${ids}-panel`, "aria-labelledby": `${ids}-title`, hidden: true },
    el("header", {}, ui.logo, el("div", { className: "titles" }, ui.title, ui.conn), ui.close),
    ui.log, ui.typing, ui.notice, ui.form);
  ui.badge = el("span", { className: "badge", hidden: true });
  ui.launcher = el("button", { type: "button", className: "launcher", "aria-label": "Open chat", "aria-expanded": "false",
    "aria-controls": `${ids}-panel` });
  ui.launcher.innerHTML = ICON; // a constant, never content
  ui.launcher.append(ui.badge);
  ui.root = el("div", { className: "root" }, ui.panel, ui.launcher);
  shadow.append(ui.root);
  document.body.append(host);
  return ui;
}

function start() {
  if (!(projectId > 0)) {
    console.error("Parley widget: the script tag needs data-project-id");
    return;
  }
  const ui = mount();
  let settings = { ...DEFAULTS };
  const visitorUid = (() => {
    if (givenUid && UUID_RE.test(givenUid)) return givenUid.toLowerCase();
    let uid = store.get(KEYS.uid, null);
    // The gateway accepts only UUIDs; anything else in storage is replaced.
    if (typeof uid !== "string" || !UUID_RE.test(uid)) { uid = uuid(); store.set(KEYS.uid, uid); }
    return uid;
  })();
  // Messages not yet stored, kept across reloads: one queue per visitor, so a sign-in
  // or sign-out on the site never sends one visitor's text as another's.
  KEYS.outbox = `parley.${projectId}.${visitorUid}.outbox`;

  // Every message on screen, keyed by tempId (or "id:<id>" for agent messages without one).
  const entries = new Map();
  const byId = new Map();
  const readUpTo = new Map(); // conversationId -> highest seq of ours the agent has read
  let identified = false, order = 0, isOpen = false, seenSeq = 0;

  // The offline queue survives a reload: sent again with its tempId, stored once.
  function persistOutbox() {
    const pending = [...entries.values()].filter((e) => e.fromCustomer && e.state !== "sent")
      .map((e) => ({ tempId: e.tempId, content: e.content, at: e.at }));
    store.set(KEYS.outbox, pending);
  }
  for (const saved of store.get(KEYS.outbox, [])) {
    if (!saved || typeof saved.tempId !== "string" || typeof saved.content !== "string") continue;
    entries.set(saved.tempId, { key: saved.tempId, tempId: saved.tempId, content: saved.content, at: saved.at,
      fromCustomer: true, order: order++, attempt: 0, state: "queued" });
  }

  function merge(msg) {
    if (!msg || msg.id == null) return null;
    let e = byId.get(msg.id) || (msg.tempId && entries.get(msg.tempId));
    if (!e) {
      e = { key: msg.tempId || `id:${msg.id}`, tempId: msg.tempId, order: order++, attempt: 0 };
      entries.set(e.key, e);
    }
    const fromCustomer = msg.fromCustomer !== false;
    Object.assign(e, { id: msg.id, seq: msg.seq, conversationId: msg.conversationId, content: msg.content,
      fromCustomer, agentName: msg.agentName, createdAt: msg.createdAt, state: "sent", error: null, retryAt: 0 });
    if (fromCustomer) e.receipt = msg.status === "read" || (readUpTo.get(msg.conversationId) ?? 0) >= msg.seq ? "read"
      : msg.status === "delivered" ? "delivered" : e.receipt;
    byId.set(msg.id, e);
    return e;
  }
  const stored = () => [...entries.values()].filter((e) => e.seq != null);
  function latest(filter = () => true) {
    let conv = null, seq = null;
    for (const e of stored()) if (conv == null || e.conversationId > conv) conv = e.conversationId;
    for (const e of stored()) if (e.conversationId === conv && filter(e) && (seq == null || e.seq > seq)) seq = e.seq;
    return { conv, seq };
  }

  // Where the visitor has been, for sessionMetadata; kept for this tab's session.
  const landing = store.session(KEYS.landing) || { referrer: document.referrer, page: location.href };
  store.session(KEYS.landing, landing);
  function notePage() {
    const pages = store.session(KEYS.pages) || [];
    if (!pages.length || pages[pages.length - 1].url !== location.href) {
      pages.push({ url: location.href.slice(0, 2048), title: document.title.slice(0, 512), timestamp: Date.now() });
      store.session(KEYS.pages, pages.slice(-URL_HISTORY_LIMIT));
    }
  }
  notePage();
  const metadata = () => ({ referrer: landing.referrer, landingPage: landing.page, urlHistory: store.session(KEYS.pages) || [] });

  const socket = io(base, {
    transports: ["websocket"],
    autoConnect: false,
    auth: { projectId, visitorUid, ...(signature ? { visitorSignature: signature } : {}) },
  });
  const live = () => socket.connected && identified;

  function send(e) {
    if (!live()) { e.state = "queued"; persistOutbox(); return render(); }
    const attempt = ++e.attempt;
    Object.assign(e, { state: "sending", error: null, retryAt: 0 });
    persistOutbox();
    render();
    socket.timeout(ACK_TIMEOUT).emit("sendMessage", { content: e.content, tempId: e.tempId, sessionMetadata: metadata() }, (err, ack) => {
      if (attempt !== e.attempt || e.state === "sent") return; // superseded, or already stored
      if (err) return fail(e, { message: "no answer from the server" });
      if (ack && ack.ok) { e.state = "accepted"; return render(); }
      fail(e, (ack && ack.error) || { message: "unexpected answer" });
    });
  }
  function fail(e, error) {
    e.state = "failed";
    e.error = error.code === "rate_limited" ? "too many messages" : error.message || error.code || "error";
    e.retryAt = error.code === "rate_limited" && error.retryAfter ? Date.now() + error.retryAfter * 1000 : 0;
    render();
  }
  function flush() {
    for (const e of [...entries.values()].sort((a, b) => a.order - b.order)) if (e.state === "queued") send(e);
  }

  // Receipts: delivered for every agent message received; read only while the window shows it.
  const receipts = { markDelivered: { conv: null, seq: 0, busy: false }, markRead: { conv: null, seq: 0, busy: false } };
  function receipt(event) {
    if (!live()) return;
    if (event === "markRead" && !(isOpen && document.visibilityState === "visible")) return;
    const r = receipts[event];
    const { conv, seq } = latest((e) => !e.fromCustomer);
    if (seq == null || r.busy || (r.conv === conv && r.seq >= seq)) return;
    r.busy = true;
    socket.timeout(ACK_TIMEOUT).emit(event, { upToSeq: seq }, (err, ack) => {
      r.busy = false;
      if (err || !ack || !ack.ok) return; // tried again with the next agent message or connect
      Object.assign(r, { conv, seq });
      receipt(event);
    });
  }
  function acknowledge() { receipt("markDelivered"); receipt("markRead"); }
  document.addEventListener("visibilitychange", () => receipt("markRead"));

  let typingOn = false, typingAt = 0, typingIdle = null;
  function typing(on) {
    clearTimeout(typingIdle);
    if (on) typingIdle = setTimeout(() => typing(false), TYPING_IDLE);
    if (!live()) { typingOn = false; return; }
    if (on ? typingOn && Date.now() - typingAt < TYPING_EVERY : !typingOn) return;
    typingOn = on;
    typingAt = Date.now();
    socket.emit("visitorIsTyping", { isTyping: on });
  }
  const agentsTyping = new Map();
  function showAgentTyping(name, on) {
    clearTimeout(agentsTyping.get(name));
    agentsTyping.delete(name);
    if (on) agentsTyping.set(name, setTimeout(() => showAgentTyping(name, false), AGENT_TYPING_TTL));
    const names = [...agentsTyping.keys()];
    ui.typing.textContent = names.length ? `${names.join(", ")} ${names.length > 1 ? "are" : "is"} typing…` : "";
  }

  // Context: the page the visitor is on, on every navigation, single-page apps included.
  let contextStored = true;
  function sendContext() {
    notePage();
    if (!live()) return;
    socket.timeout(ACK_TIMEOUT).emit("updateContext", { currentUrl: location.href.slice(0, 2048), currentTitle: document.title.slice(0, 512) },
      (err, ack) => { if (!err && ack && ack.ok) contextStored = ack.stored !== false; });
  }
  for (const method of ["pushState", "replaceState"]) {
    const original = history[method];
    history[method] = function (...args) {
      const result = original.apply(this, args);
      setTimeout(sendContext, 0); // after the app changed its title too
      return result;
    };
  }
  addEventListener("popstate", sendContext);
  addEventListener("hashchange", sendContext);

  // Connection state, shown in the header.
  function setConn(state, text) {
    ui.conn.dataset.state = state;
    ui.conn.textContent = text;
    const offline = state === "offline";
    const error = ui.notice.dataset.error; // a refusal says more than "offline"
    ui.notice.hidden = !error && !(offline && settings.offlineMessage);
    if (error) Object.assign(ui.notice, { textContent: error, className: "notice error" });
    else if (offline && settings.offlineMessage) Object.assign(ui.notice, { textContent: settings.offlineMessage, className: "notice warn" });
  }
  function setError(text) {
    ui.notice.dataset.error = text || "";
    if (!text) delete ui.notice.dataset.error;
    setConn(ui.conn.dataset.state, ui.conn.textContent);
  }

  const when = (iso) => (iso ? new Date(iso).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" }) : "");
  const rank = (e) => (e.seq == null ? [Infinity, e.order] : [e.conversationId ?? 0, e.seq]);
  const STATE_TEXT = { queued: "Queued: sent when you are back online", sending: "Sending…", accepted: "Sending…" };
  let tick = null;
  function render() {
    const box = ui.log;
    const atBottom = box.scrollHeight - box.scrollTop - box.clientHeight < 40;
    let list = [...entries.values()].sort((a, b) => { const x = rank(a), y = rank(b); return x[0] - y[0] || x[1] - y[1]; });
    if (settings.historyVisibility === "limit_to_active") { // older conversations stay out of view
      const { conv } = latest();
      list = list.filter((e) => e.conversationId == null || e.conversationId === conv);
    }
    const rows = [];
    if (settings.welcomeMessage) {
      rows.push(el("div", { className: "msg theirs welcome" }, el("div", { className: "bubble", text: settings.welcomeMessage })));
    }
    let countdown = false;
    for (const e of list) {
      const state = e.fromCustomer && e.state === "sent" ? e.receipt || "sent" : e.state;
      const meta = el("div", { className: "meta" });
      if (!e.fromCustomer) {
        meta.textContent = [settings.agentDisplayName || e.agentName || "Agent", when(e.createdAt)].filter(Boolean).join(" · ");
      } else if (e.state === "sent") {
        meta.append(el("span", { text: when(e.createdAt) }), state === "read" ? el("span", { className: "read", text: "Read ✓✓" })
          : state === "delivered" ? "Delivered ✓✓" : "Sent ✓");
      } else if (e.state === "failed") {
        const wait = Math.ceil((e.retryAt - Date.now()) / 1000);
        meta.append(`Not sent: ${e.error}`, el("button", { type: "button", disabled: wait > 0,
          text: wait > 0 ? `Retry in ${wait}s` : "Retry", onclick: () => send(e) })); // the same tempId
        countdown ||= wait > 0;
      } else meta.textContent = STATE_TEXT[e.state] || e.state;
      rows.push(el("div", { className: `msg ${e.fromCustomer ? "mine" : "theirs"}${e.state === "sent" ? "" : " pending"} ${e.state}`,
        "data-state": state, "data-temp-id": e.tempId || null }, el("div", { className: "bubble", text: e.content }), meta));
    }
    box.replaceChildren(...rows);
    if (atBottom) box.scrollTop = box.scrollHeight;
    clearTimeout(tick);
    if (countdown) tick = setTimeout(render, 1000);
    // Unread: agent messages that arrived while the window was closed.
    const { seq } = latest((x) => !x.fromCustomer);
    if (isOpen && seq != null) seenSeq = Math.max(seenSeq, seq);
    const unread = list.filter((x) => !x.fromCustomer && x.seq > seenSeq).length;
    ui.badge.hidden = isOpen || !unread;
    ui.badge.textContent = String(unread);
  }

  function setOpen(open, { focus = true } = {}) {
    isOpen = open;
    ui.panel.hidden = !open;
    ui.launcher.setAttribute("aria-expanded", String(open));
    ui.launcher.setAttribute("aria-label", open ? "Close chat" : "Open chat");
    store.session(KEYS.open, open);
    render();
    if (open) {
      ui.log.scrollTop = ui.log.scrollHeight;
      if (focus) ui.input.focus();
      receipt("markRead");
    } else if (focus) ui.launcher.focus();
  }
  ui.launcher.addEventListener("click", () => setOpen(!isOpen));
  ui.close.addEventListener("click", () => setOpen(false));
  ui.panel.addEventListener("keydown", (ev) => { if (ev.key === "Escape") { ev.stopPropagation(); setOpen(false); } });

  function updateCount() {
    const left = CONTENT_LIMIT - ui.input.value.length;
    ui.count.textContent = left <= COUNTDOWN_FROM ? `${left} characters left` : "";
    ui.count.className = left <= 50 ? "count low" : "count";
  }
  ui.form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const content = ui.input.value.trim();
    if (!content) return;
    ui.input.value = "";
    updateCount();
    typing(false);
    const tempId = uuid();
    const e = { key: tempId, tempId, content, at: Date.now(), fromCustomer: true, order: order++, attempt: 0, state: "sending" };
    entries.set(tempId, e);
    ui.log.scrollTop = ui.log.scrollHeight;
    send(e);
  });
  ui.input.addEventListener("input", () => { updateCount(); typing(ui.input.value.trim() !== ""); });
  ui.input.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) { ev.preventDefault(); ui.form.requestSubmit(); }
  });

  let asked = null;
  /** identify's lastSeq: in the newest conversation, the highest seq held with none missing
   *  below it, so a gap (events lost while the gateway resubscribed) is sent again. */
  function lastSeq() {
    const { conv } = latest();
    const have = new Set(stored().filter((e) => e.conversationId === conv).map((e) => e.seq));
    if (!have.size) return { conv, seq: null };
    let seq = Math.min(...have);
    while (have.has(seq + 1)) seq++;
    return { conv, seq };
  }

  function identify() {
    const last = lastSeq();
    const payload = { projectId, visitorUid };
    if (last.seq != null) payload.lastSeq = last.seq; // only what we missed
    asked = last;
    socket.timeout(ACK_TIMEOUT).emit("identify", payload, (err, ack) => {
      if (!err && ack && ack.ok) {
        identified = true;
        setConn("online", "Online");
        setError(null);
        flush();
        sendContext();
        return acknowledge();
      }
      const why = err ? "no answer from the server" : (ack && ack.error && ack.error.message) || "refused";
      setConn("connecting", "Reconnecting…");
      setError(`Could not connect: ${why}`);
      setTimeout(() => { if (socket.connected && !identified) identify(); }, 3000);
    });
  }

  socket.on("connect", () => {
    identified = false;
    typingOn = false;
    setConn("connecting", "Connecting…");
    identify(); // on every connect: a reconnect is a new server-side socket
  });
  socket.on("disconnect", () => {
    identified = false;
    for (const r of Object.values(receipts)) r.busy = false; // their acks are lost
    for (const e of entries.values()) if (e.state === "sending") { e.attempt++; e.state = "queued"; }
    persistOutbox();
    render();
    setConn("offline", "Offline");
  });
  socket.on("connect_error", (err) => {
    const data = err.data || {};
    setConn("offline", "Offline");
    if (!socket.active) { // refused by the server: no automatic retry
      setError(`Chat unavailable: ${data.message || err.message}`);
      if (data.code === "unavailable") setTimeout(() => socket.connect(), 5000);
    }
  });
  // The gateway lost its event subscription for a while: ask for what we missed and
  // send again, with their tempIds, whatever was not confirmed stored.
  socket.on("resync", () => {
    if (!socket.connected) return;
    for (const e of entries.values()) if (e.state === "sending" || e.state === "accepted") { e.attempt++; e.state = "queued"; }
    identified = false;
    identify();
  });
  socket.on("conversationHistory", (data) => {
    const messages = (data && data.messages) || [];
    messages.forEach(merge);
    persistOutbox();
    render();
    acknowledge();
    const first = messages[0]; // another conversation is open now: ask for the whole of it
    if (asked && asked.seq != null && first && first.conversationId !== asked.conv && first.seq > 1) {
      asked = null;
      socket.emit("identify", { projectId, visitorUid });
    }
  });
  socket.on("messageSent", (data) => {
    if (!data || !data.finalMessage) return;
    merge({ ...data.finalMessage, tempId: data.finalMessage.tempId || data.tempId });
    persistOutbox();
    render();
    if (!contextStored) sendContext(); // the first message opened the conversation
  });
  socket.on("agentReplied", (msg) => {
    const e = merge(msg);
    if (!e) return;
    if (e.agentName) showAgentTyping(e.agentName, false);
    render();
    acknowledge();
  });
  socket.on("messagesRead", (data) => {
    if (!data || data.upToSeq == null || data.by === "visitor") return;
    const conv = data.conversationId;
    readUpTo.set(conv, Math.max(readUpTo.get(conv) ?? 0, data.upToSeq));
    for (const e of entries.values()) if (e.fromCustomer && e.conversationId === conv && e.seq <= data.upToSeq) e.receipt = "read";
    render();
  });
  socket.on("agentIsTyping", (data) => {
    if (data && data.agentName) showAgentTyping(settings.agentDisplayName || String(data.agentName), !!data.isTyping);
  });
  // The browser knows it lost the network before the socket's heartbeat does.
  addEventListener("offline", () => { if (socket.connected) socket.disconnect(); setConn("offline", "Offline"); });
  addEventListener("online", () => { if (!socket.connected) socket.connect(); });

  function applySettings(loaded) {
    settings = { ...DEFAULTS, ...loaded };
    ui.root.classList.toggle("dark", settings.theme === "dark");
    ui.root.classList.toggle("left", settings.position === "bottom-left");
    ui.title.textContent = settings.headerText || DEFAULTS.headerText;
    if (settings.fontFamily) ui.root.style.fontFamily = settings.fontFamily;
    ui.logo.hidden = !settings.companyLogoUrl;
    if (settings.companyLogoUrl) ui.logo.src = settings.companyLogoUrl;
    ui.log.classList.toggle("bg", !!settings.backgroundImageUrl);
    if (settings.backgroundImageUrl) {
      ui.log.style.setProperty("--bg-image", `url(${JSON.stringify(settings.backgroundImageUrl)})`);
      ui.log.style.setProperty("--bg-opacity", String(settings.backgroundOpacity ?? 1));
    }
    render();
    const remembered = store.session(KEYS.open);
    if (remembered) setOpen(true, { focus: false });
    else if (remembered == null && typeof settings.autoOpenDelay === "number") {
      setTimeout(() => { if (store.session(KEYS.open) == null) setOpen(true, { focus: false }); }, settings.autoOpenDelay * 1000);
    }
  }

  render();
  const controller = new AbortController();
  const timer = setTimeout(() => controller.abort(), SETTINGS_TIMEOUT);
  fetch(`${base}/api/v1/public/projects/${projectId}/settings`, { signal: controller.signal, credentials: "omit" })
    .then((res) => (res.ok ? res.json() : Promise.reject(new Error(`HTTP ${res.status}`))))
    .catch(() => ({})) // the chat works with the defaults; connecting reports a refusal
    .then((loaded) => { clearTimeout(timer); applySettings(loaded && typeof loaded === "object" ? loaded : {}); });
  socket.connect();
}

if (document.body) start();
else document.addEventListener("DOMContentLoaded", start);
