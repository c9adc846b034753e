// Parley's agent dashboard (/dashboard). Plain JavaScript over the vendored Socket.IO
// client (global `io`, loaded before this file). Elements are built with textContent,
// never innerHTML: message content comes from visitors.
(() => {
  "use strict";
  const ACK_TIMEOUT = 10000; // ms to wait for an ack
  const SYNC_PAGES = 100; // sync answers to follow before giving up on one catch-up
  const LIST_PAGE = 20; // conversations per page of the list
  const READ_DEBOUNCE = 400; // ms: a burst of visitor messages costs one PATCH
  const [TOKEN_KEY, PROJECT_KEY] = ["parley.dashboardToken", "parley.dashboardProject"];
  const RANK = { sent: 0, delivered: 1, read: 2 }; // an agent message's status only moves forward
  const params = new URLSearchParams(location.search);
  const server = params.get("server") || location.origin;
  const $ = (id) => document.getElementById(id);
  // The token lives in sessionStorage: it ends with the tab, it is not shared with other tabs.
  const load = (key) => { try { return sessionStorage.getItem(key); } catch { return null; } };
  const save = (key, value) => { try { sessionStorage.setItem(key, value); } catch { /* storage blocked */ } };
  const el = (tag, className = "", text = null) => Object.assign(document.createElement(tag), { className }, text == null ? {} : { textContent: text });
  const wrap = (node, ...children) => { node.append(...children); return node; };
  const setStatus = (text, state = null, kind = "") => {
    Object.assign($("status"), { textContent: text, className: kind });
    if (state) $("status").dataset.state = state;
  };
  const visible = () => document.visibilityState === "visible";

  $("token").value = params.get("token") || load(TOKEN_KEY) || "";
  $("project").value = params.get("projectId") || load(PROJECT_KEY) || "1";
  if (params.has("token")) { // keep the token out of the address bar and browser history
    params.delete("token");
    history.replaceState(null, "", location.pathname + (params.toString() ? `?${params}` : "") + location.hash);
  }

  function uuid() {
    if (crypto.randomUUID) return crypto.randomUUID();
    const b = crypto.getRandomValues(new Uint8Array(16));
    [b[6], b[8]] = [(b[6] & 0x0f) | 0x40, (b[8] & 0x3f) | 0x80];
    const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
    return [h.slice(0, 8), h.slice(8, 12), h.slice(12, 16), h.slice(16, 20), h.slice(20)].join("-");
  }

  let socket = null, token = "", projectId = 0, joined = false, cursor = null, selected = null, syncing = null;
  let conversations = new Map(); // id -> {id, visitorUid, status, unread, snippet, lastAt, lastSeq, messages: Map(id -> message), …}
  let online = new Map();        // visitorUid -> isOnline, from visitorStatusChanged
  let replies = new Map();       // tempId -> a reply not stored yet
  let listCursor = null, listDone = false, listLoading = false;
  const filter = () => $("filter").value;

  function conv(id, uid) {
    const c = conversations.get(id) || { id, status: "open", unread: 0, snippet: "", lastAt: 0, lastSeq: 0, messages: new Map(),
      deliveredUpTo: 0, readUpTo: 0, url: null, typing: false, draft: "", visitor: null };
    conversations.set(id, c);
    c.visitorUid ||= uid;
    return c;
  }
  const seqs = (c) => [...c.messages.values()].map((m) => m.seq);

  function addMessage(m) {
    if (!m || m.id == null || m.conversationId == null) return false;
    const c = conv(m.conversationId, m.visitorUid);
    const old = c.messages.get(m.id);
    let status = m.status || "sent";
    if (m.senderType === "agent") { // receipts may have come before the message
      if (c.readUpTo >= m.seq) status = "read";
      else if (c.deliveredUpTo >= m.seq && status === "sent") status = "delivered";
    }
    if (old && (RANK[old.status] ?? 0) > (RANK[status] ?? 0)) status = old.status;
    c.messages.set(m.id, { ...m, status });
    if (m.tempId) replies.delete(m.tempId);
    if (m.seq >= c.lastSeq) Object.assign(c, { lastSeq: m.seq, snippet: m.content, lastAt: Date.parse(m.createdAt) || Date.now() });
    return !old;
  }

  function mergeItem(item) {
    if (!item || item.id == null) return;
    const c = conv(item.id, item.visitor && item.visitor.uid);
    Object.assign(c, { status: item.status || c.status, unread: item.unreadCount ?? c.unread });
    if ((item.lastSeq ?? 0) >= c.lastSeq) {
      Object.assign(c, { lastSeq: item.lastSeq ?? 0, snippet: item.lastMessageSnippet || c.snippet,
        lastAt: Date.parse(item.lastMessageAt || item.updatedAt) || c.lastAt });
    }
    if (item.visitorDeliveredSeq) receipt({ conversationId: item.id, upToSeq: item.visitorDeliveredSeq }, "delivered");
    if (item.visitorReadSeq) receipt({ conversationId: item.id, upToSeq: item.visitorReadSeq }, "read");
  }

  function receipt(data, status) {
    const c = data && conversations.get(data.conversationId);
    if (!c || typeof data.upToSeq !== "number") return;
    const key = status === "read" ? "readUpTo" : "deliveredUpTo";
    c[key] = Math.max(c[key], data.upToSeq);
    for (const m of c.messages.values()) {
      if (m.senderType === "agent" && m.seq <= data.upToSeq && RANK[m.status] < RANK[status]) m.status = status;
    }
    if (c.id === selected) renderThread();
  }

  async function api(path, options = {}) {
    const headers = { Authorization: `Bearer ${token}`, ...(options.body ? { "Content-Type": "application/json" } : {}) };
    const res = await fetch(`${server}/api/projects/${projectId}${path}`, { ...options, headers });
    const body = await res.json().catch(() => ({}));
    if (!res.ok) throw new Error((body.error && body.error.message) || `HTTP ${res.status}`);
    return body;
  }
  const patch = (c, change) => api(`/conversations/${c.id}`, { method: "PATCH", body: JSON.stringify(change) })
    .then((item) => { mergeItem(item); render(); })
    .catch((err) => setStatus(`could not update conversation ${c.id}: ${err.message}`, null, "error"));
  let readTimer = null;
  function markRead(c, now) {
    clearTimeout(readTimer);
    readTimer = setTimeout(() => { if (selected === c.id) patch(c, { read: true }); }, now ? 0 : READ_DEBOUNCE);
  }

  // The list pages on scroll, newest activity first, one status at a time.
  async function loadPage() {
    if (listLoading || listDone || !token) return;
    listLoading = true;
    $("more").hidden = false;
    const wanted = filter(), project = projectId;
    try {
      const query = new URLSearchParams({ status: wanted, limit: String(LIST_PAGE), ...(listCursor ? { cursor: listCursor } : {}) });
      const page = await api(`/conversations?${query}`);
      if (wanted !== filter() || project !== projectId) return; // the filter changed meanwhile
      page.conversations.forEach(mergeItem);
      listCursor = page.nextCursor;
      listDone = !listCursor;
      render();
    } catch (err) {
      setStatus(`could not load conversations: ${err.message}`, null, "error");
    } finally {
      listLoading = false;
      $("more").hidden = true;
    }
    const pane = $("list-pane"); // a page that does not fill the pane cannot be scrolled: load on
    if (!listDone && pane.scrollHeight <= pane.clientHeight) loadPage();
  }
  function resetList() { [listCursor, listDone] = [null, false]; render(); loadPage(); }
  $("list-pane").addEventListener("scroll", () => {
    const pane = $("list-pane");
    if (pane.scrollHeight - pane.scrollTop - pane.clientHeight < 80) loadPage();
  });
  $("filter").addEventListener("change", resetList);

  const handlers = {
    newMessage(m) {
      const before = conversations.has(m && m.conversationId) ? conversations.get(m.conversationId).lastSeq : 0;
      if (!addMessage(m)) return render();
      const c = conversations.get(m.conversationId);
      if (m.senderType !== "agent") {
        c.typing = false;
        if (m.seq > before && c.id === selected && visible()) markRead(c);
        else if (m.seq > before) c.unread++;
      }
      render();
    },
    messageSent(data) {
      if (data && data.finalMessage) addMessage({ ...data.finalMessage, tempId: data.finalMessage.tempId || data.tempId });
      render();
    },
    conversationUpdated({ conversationId, fields } = {}) {
      const c = fields && conversations.get(conversationId);
      if (c) { Object.assign(c, { unread: fields.unreadCount ?? c.unread, status: fields.status || c.status }); render(); }
    },
    messagesRead(data) { if (data && data.by === "visitor") receipt(data, "read"); },
    messagesDelivered(data) { receipt(data, "delivered"); },
    visitorContextUpdated(data) {
      const c = data && data.currentUrl && conversations.get(data.conversationId);
      if (!c) return;
      c.url = data.currentUrl;
      if (c.visitor) c.visitor.pageHistory = [...(c.visitor.pageHistory || []), { url: data.currentUrl, title: "", timestamp: Date.now() }];
      if (c.id === selected) renderThread();
    },
    visitorIsTyping(data) {
      const c = data && (data.conversationId != null ? conversations.get(data.conversationId)
        : [...conversations.values()].find((x) => x.visitorUid === data.visitorUid && x.status === "open"));
      if (!c) return;
      clearTimeout(c.typingTimer);
      c.typing = !!data.isTyping;
      if (c.typing) c.typingTimer = setTimeout(() => { c.typing = false; render(); }, 7000); // in case "false" is lost
      render();
    },
    visitorStatusChanged(data) {
      if (data && data.visitorUid != null && (data.projectId ?? projectId) === projectId) { online.set(data.visitorUid, !!data.isOnline); render(); }
    },
    // The gateway lost its event subscription for a while: catch up on what it missed.
    resync() { if (socket && socket.connected && joined) sync(socket); },
  };

  function connect() {
    token = $("token").value.trim();
    projectId = parseInt($("project").value, 10);
    if (!token || !(projectId > 0)) return setStatus("Enter a token and a positive project id.", "idle", "error");
    save(TOKEN_KEY, token);
    save(PROJECT_KEY, String(projectId));
    if (socket) { socket.off(); socket.disconnect(); }
    [conversations, online, replies, selected, cursor, joined] = [new Map(), new Map(), new Map(), null, null, false];
    resetList();
    setStatus("connecting…", "connecting");
    const s = socket = io(server, { transports: ["websocket"], auth: { token }, forceNew: true });
    s.on("connect", () => join(s));
    s.on("disconnect", (reason) => {
      joined = false;
      syncing = null; // the rejoin starts a new walk from the kept cursor
      typingConv = null;
      for (const r of replies.values()) if (r.state === "sending") { r.attempt++; r.state = "queued"; }
      renderThread();
      setStatus(`offline (${reason}); reconnecting…`, "offline", "warn");
    });
    s.on("connect_error", (err) => {
      const data = err.data || {};
      const retrying = s.active ? "; retrying…" : "";
      setStatus(`connection error: ${data.message || err.message}${data.code ? ` (${data.code})` : ""}${retrying}`, "offline", "error");
    });
    for (const [event, handler] of Object.entries(handlers)) s.on(event, handler);
  }

  function join(s) {
    setStatus(`connected; joining project ${projectId}…`, "connecting");
    s.timeout(ACK_TIMEOUT).emit("joinProjectRoom", { projectId }, (err, ack) => {
      if (s !== socket || !s.connected) return;
      if (err || !ack || ack.status !== "ok") {
        const why = err ? "no answer from the server" : (ack && ack.message) || "unexpected answer";
        setStatus(`could not join project ${projectId}: ${why}${why === "Forbidden" ? "" : "; retrying in 5 s"}`, "offline", "error");
        return why === "Forbidden" || setTimeout(() => { if (s === socket && s.connected && !joined) join(s); }, 5000);
      }
      joined = true;
      sync(s);
    });
  }

  /** Catch up (after every connect and on resync): `sync` pages until hasMore is false. */
  /** The highest seq held with none missing below it: a gap (events lost while the gateway
   *  resubscribed) is asked for again. */
  function contiguousSeq(c) {
    const have = new Set(seqs(c));
    let seq = Math.min(...have);
    while (have.has(seq + 1)) seq++;
    return seq;
  }

  function sync(s) {
    if (syncing && syncing.socket === s) { syncing.again = true; return; } // one walk at a time
    const run = syncing = { socket: s, again: false };
    const lastSeqs = {};
    const known = [...conversations.values()].filter((c) => c.messages.size).sort((a, b) => b.lastAt - a.lastAt);
    for (const c of known.slice(0, 1000)) lastSeqs[c.id] = contiguousSeq(c);
    setStatus("online; catching up…", "connecting");
    let pages = 0, total = 0;
    const page = (since) => {
      s.timeout(ACK_TIMEOUT).emit("sync", { projectId, lastSeqs, ...(since ? { since } : {}) }, (err, res) => {
        if (s !== socket || !s.connected || run !== syncing) return;
        if (err || !res || res.ok === false || !Array.isArray(res.conversations)) {
          const why = err ? "no answer from the server" : (res && res.error && res.error.message) || "unexpected answer";
          setStatus(`catch-up failed: ${why}; retrying in 5 s`, "connecting", "error");
          return setTimeout(() => { if (s === socket && s.connected && run === syncing) page(since); }, 5000);
        }
        res.conversations.forEach(mergeItem);
        for (const list of Object.values(res.messages || {})) list.forEach(addMessage);
        total += res.conversations.length;
        render();
        if (res.hasMore && res.cursor && ++pages < SYNC_PAGES) return page(res.cursor);
        cursor = res.cursor || cursor; // the last answer's cursor is the next catch-up's start
        syncing = null;
        if (run.again) return sync(s); // a resync came while this walk ran
        setStatus(`online: project ${projectId}; caught up (${total} conversation(s) changed)`, "online", "ok");
        const c = conversations.get(selected);
        if (c && c.unread && visible()) markRead(c);
        for (const r of replies.values()) if (r.state === "queued") sendReply(r);
        renderThread();
      });
    };
    page(cursor);
  }

  function sendReply(r) {
    if (!socket || !socket.connected || !joined) { r.state = "queued"; return renderThread(); }
    const attempt = ++r.attempt;
    Object.assign(r, { state: "sending", error: null, retryAt: 0 });
    renderThread();
    socket.timeout(ACK_TIMEOUT).emit("sendReply", { conversationId: r.conversationId, content: r.content, tempId: r.tempId }, (err, ack) => {
      if (attempt !== r.attempt || !replies.has(r.tempId)) return;
      if (!err && ack && ack.ok) { r.state = "accepted"; return renderThread(); }
      const error = err ? { message: "no answer from the server" } : (ack && ack.error) || { message: "unexpected answer" };
      const retryAt = error.code === "rate_limited" && error.retryAfter ? Date.now() + error.retryAfter * 1000 : 0;
      Object.assign(r, { state: "failed", error: error.message || error.code || "error", retryAt });
      renderThread();
    });
  }

  let typingConv = null, typingAt = 0, typingIdle = null;
  function agentTyping(on) {
    clearTimeout(typingIdle);
    if (!socket || !socket.connected) { typingConv = null; return; }
    if (typingConv != null && (!on || typingConv !== selected)) {
      socket.emit("agentTyping", { conversationId: typingConv, isTyping: false });
      typingConv = null;
    }
    if (!on || selected == null) return;
    typingIdle = setTimeout(() => agentTyping(false), 2000);
    if (typingConv === selected && Date.now() - typingAt < 1000) return;
    [typingConv, typingAt] = [selected, Date.now()];
    socket.emit("agentTyping", { conversationId: selected, isTyping: true });
  }

  function open(c) {
    const old = conversations.get(selected);
    if (old) old.draft = $("reply").value;
    agentTyping(false);
    selected = c.id;
    $("reply").value = c.draft;
    render();
    $("thread").scrollTop = $("thread").scrollHeight;
    markRead(c, true);
    if (c.lastSeq > 0 && (!c.messages.size || Math.min(...seqs(c)) > 1) && c.messages.size < 50) loadEarlier(c, c.messages.size ? Math.min(...seqs(c)) : c.lastSeq + 1);
    if (c.visitorUid) {
      api(`/visitors/${encodeURIComponent(c.visitorUid)}`).then((v) => {
        c.visitor = v;
        const last = (v.pageHistory || []).at(-1);
        if (last && last.url && !c.url) c.url = last.url;
        if (c.id === selected) renderThread();
      }).catch(() => {});
    }
  }

  const ago = (t) => {
    if (!t) return "";
    const s = Math.max(0, Math.round((Date.now() - t) / 1000));
    return s < 60 ? "now" : s < 3600 ? `${Math.floor(s / 60)} min` : s < 86400 ? `${Math.floor(s / 3600)} h` : new Date(t).toLocaleDateString();
  };

  function render() {
    const list = [...conversations.values()].filter((c) => c.status === filter()).sort((a, b) => b.lastAt - a.lastAt || b.id - a.id);
    $("no-convs").hidden = list.length > 0;
    $("conversations").replaceChildren(...list.map((c) => {
      const isOnline = online.get(c.visitorUid);
      const dot = Object.assign(el("span", `dot${isOnline ? " on" : ""}`), { title: isOnline ? "online" : "offline, or not heard of yet" });
      const who = wrap(el("span", "who"), dot, c.visitorUid || `conversation ${c.id}`);
      const uid = wrap(el("div", "uid"), who, el("span", "when", ago(c.lastAt)), ...(c.unread ? [el("span", "badge", c.unread)] : []));
      const snippet = c.typing ? el("div", "snippet typing", "typing…") : el("div", "snippet", c.snippet);
      const button = Object.assign(el("button", `${c.id === selected ? "selected" : ""} ${c.status}`), { type: "button", onclick: () => open(c) });
      button.dataset.conversationId = c.id;
      return wrap(el("li"), wrap(button, uid, snippet));
    }));
    renderThread();
  }

  function renderDetails(c) {
    const box = $("details");
    if (!c) return box.replaceChildren(el("p", "empty", "Select a conversation to see the visitor's details and pages."));
    const v = c.visitor || {};
    const meta = v.sessionMetadata || {};
    const dl = el("dl");
    const row = (k, value) => value && dl.append(el("dt", "", k), el("dd", "", String(value)));
    row("Visitor", c.visitorUid);
    row("Status", online.get(c.visitorUid) ? "online" : "offline");
    row("First seen", v.createdAt && new Date(v.createdAt).toLocaleString());
    row("Last seen", v.lastSeenAt && new Date(v.lastSeenAt).toLocaleString());
    row("Landing page", meta.landingPage);
    row("Referrer", meta.referrer);
    const pages = (v.pageHistory || []).slice(-20).reverse();
    const ol = el("ol");
    ol.id = "pages";
    for (const p of pages) ol.append(el("li", "", [p.title, p.url].filter(Boolean).join(" · ")));
    box.replaceChildren(el("h3", "", "Visitor"), dl, el("h3", "", "Pages"), pages.length ? ol : el("p", "empty", "No pages yet."));
  }

  let tick = null;
  function renderThread() {
    const c = conversations.get(selected);
    const thread = $("thread"), rows = [];
    $("reply").disabled = $("send").disabled = $("close").hidden = !c;
    $("conv-title").textContent = c ? `Conversation ${c.id} · visitor ${c.visitorUid} · ${c.status}` : "No conversation selected";
    $("viewing").hidden = !(c && c.url);
    $("viewing").textContent = c && c.url ? `Now viewing: ${c.url}` : "";
    $("typing").textContent = c && c.typing ? "Visitor is typing…" : "";
    renderDetails(c);
    if (!c) return thread.replaceChildren();
    $("close").textContent = c.status === "closed" ? "Reopen" : "Close conversation";
    const atBottom = thread.scrollHeight - thread.scrollTop - thread.clientHeight < 40;
    const lowest = c.messages.size ? Math.min(...seqs(c)) : 0;
    if (lowest > 1) rows.push(Object.assign(el("button", "", "Load earlier"), { type: "button", id: "earlier", onclick: () => loadEarlier(c, lowest) }));
    for (const m of [...c.messages.values()].sort((a, b) => a.seq - b.seq)) {
      const agent = m.senderType === "agent";
      const when = m.createdAt ? new Date(m.createdAt).toLocaleTimeString() : "";
      const meta = el("div", "meta", [`#${m.seq}`, agent ? m.agentName || "agent" : "visitor", when].filter(Boolean).join(" · "));
      if (agent) meta.append(m.status === "read" ? el("span", "read", " · read ✓✓") : ` · ${m.status === "delivered" ? "delivered ✓✓" : "sent ✓"}`);
      const row = wrap(el("div", `msg ${agent ? "agent" : "visitor"}`), el("div", "bubble", m.content), meta);
      row.dataset.seq = m.seq;
      rows.push(row);
    }
    let countdown = false;
    for (const r of [...replies.values()].filter((x) => x.conversationId === c.id)) {
      const meta = el("div", "meta", r.state === "failed" ? `failed: ${r.error}` : r.state === "queued" ? "queued: waiting for the connection" : "sending…");
      if (r.state === "failed") {
        const wait = Math.ceil((r.retryAt - Date.now()) / 1000);
        meta.append(Object.assign(el("button", "", wait > 0 ? `Retry in ${wait}s` : "Retry"), { type: "button", disabled: wait > 0, onclick: () => sendReply(r) }));
        countdown ||= wait > 0;
      }
      rows.push(wrap(el("div", `msg agent pending ${r.state}`), el("div", "bubble", r.content), meta));
    }
    thread.replaceChildren(...rows);
    if (atBottom) thread.scrollTop = thread.scrollHeight;
    clearTimeout(tick);
    if (countdown) tick = setTimeout(renderThread, 1000);
  }

  const loadEarlier = (c, lowest) => api(`/conversations/${c.id}/messages?before_seq=${lowest}&limit=50`).then((body) => {
    const thread = $("thread"), fromBottom = thread.scrollHeight - thread.scrollTop;
    (body.messages || []).forEach(addMessage);
    renderThread();
    if (c.id === selected) thread.scrollTop = thread.scrollHeight - fromBottom;
  }).catch((err) => setStatus(`could not load earlier messages: ${err.message}`, null, "error"));
  $("thread").addEventListener("scroll", () => { // pages back in history as the agent scrolls up
    const c = conversations.get(selected);
    if (c && $("thread").scrollTop < 40 && c.messages.size && Math.min(...seqs(c)) > 1 && !c.loadingEarlier) {
      c.loadingEarlier = true;
      loadEarlier(c, Math.min(...seqs(c))).finally(() => { c.loadingEarlier = false; });
    }
  });

  $("reply-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const content = $("reply").value.trim();
    if (!content || selected == null) return;
    $("reply").value = "";
    agentTyping(false);
    const r = { tempId: uuid(), conversationId: selected, content, state: "sending", attempt: 0 };
    replies.set(r.tempId, r);
    sendReply(r);
    $("thread").scrollTop = $("thread").scrollHeight;
  });
  $("reply").addEventListener("input", () => agentTyping($("reply").value.trim() !== ""));
  $("reply").addEventListener("keydown", (ev) => {
    if (ev.key === "Enter" && !ev.shiftKey && !ev.isComposing) { ev.preventDefault(); $("reply-form").requestSubmit(); }
  });
  $("close").addEventListener("click", () => {
    const c = conversations.get(selected);
    if (c) patch(c, { status: c.status === "closed" ? "open" : "closed" });
  });
  document.addEventListener("visibilitychange", () => {
    const c = conversations.get(selected);
    if (c && c.unread && visible()) markRead(c, true);
  });
  // The browser knows it lost the network before the socket's heartbeat does.
  addEventListener("offline", () => { if (socket && socket.connected) socket.io.engine.close(); });
  setInterval(() => { if (conversations.size) render(); }, 60000); // "3 min" ages
  $("login").addEventListener("submit", (ev) => { ev.preventDefault(); connect(); });
  if ($("token").value) connect();
})();
