// LessonFlow reviewer page: plain DOM, no build step, no dependencies.
// Every value from the API is written with textContent, never as HTML.
"use strict";

(() => {
  const KEY = "lessonflow.reviewerKey";
  const ME = "lessonflow.reviewerId";
  const FILTER = "lessonflow.queueFilter";
  const OPEN_STATES = ["pending", "escalated", "claimed"];

  const $ = (id) => document.getElementById(id);
  const el = (tag, props = {}, ...kids) => {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(props)) {
      if (k === "class") n.className = v;
      else if (k === "text") n.textContent = v;
      else if (k.startsWith("on")) n.addEventListener(k.slice(2), v);
      else if (v !== undefined && v !== null && v !== false) n.setAttribute(k, v === true ? "" : v);
    }
    for (const c of kids) if (c !== null && c !== undefined) n.append(c);
    return n;
  };

  const state = {
    queue: [],      // items as last listed, in order
    selected: 0,    // index into queue
    item: null,     // the item on screen
    video: null,
    sharp: new Set(), // segment indexes shown sharp
    refreshedURLs: false,
    busy: false,
    flash: "",      // what the last decision did, said with the queue
  };

  // ---- API -----------------------------------------------------------------

  class APIError extends Error {
    constructor(status, code, message) { super(message); this.status = status; this.code = code; }
  }

  async function api(method, path, body) {
    const key = sessionStorage.getItem(KEY);
    const headers = { Authorization: "Bearer " + key, Accept: "application/json" };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let resp;
    try {
      resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: "no-store" });
    } catch (e) {
      throw new APIError(0, "network", "The server did not answer: " + e.message);
    }
    let data = null;
    const text = await resp.text();
    if (text) { try { data = JSON.parse(text); } catch { data = null; } }
    if (!resp.ok) {
      const err = data && data.error ? data.error : { code: "http_" + resp.status, message: text.slice(0, 200) || resp.statusText };
      if (resp.status === 401 && path !== "/v1/review/items?limit=1") {
        signOut("Your key was not accepted any more; sign in again.");
      }
      throw new APIError(resp.status, err.code, err.message);
    }
    return data;
  }

  // ---- messages ------------------------------------------------------------

  function say(msg) { $("status").textContent = msg; }
  function alertMsg(msg) {
    const a = $("alert");
    a.textContent = msg || "";
    a.hidden = !msg;
  }
  function fail(e) {
    alertMsg(e instanceof APIError ? `${e.message} (${e.code}${e.status ? ", HTTP " + e.status : ""})` : String(e));
  }

  // ---- sign-in ---------------------------------------------------------------

  async function signIn(ev) {
    ev.preventDefault();
    const key = $("key").value.trim();
    if (key.length < 16) { alertMsg("A key has at least 16 characters."); return; }
    sessionStorage.setItem(KEY, key);
    $("signin-btn").disabled = true;
    try {
      // The account the key acts as (a configured name, or rk_ and its hash).
      const account = await api("GET", "/v1/review/me");
      sessionStorage.setItem(ME, account.id);
      $("key").value = "";
      alertMsg("");
      say("Signed in.");
      if (!location.hash || location.hash === "#/signin") location.hash = "#/";
      else route();
    } catch (e) {
      sessionStorage.removeItem(KEY);
      if (e.status === 401) alertMsg("That key is not known to this server.");
      else if (e.status === 403) alertMsg("That key may not review (it needs the reviewer role).");
      else fail(e);
    } finally {
      $("signin-btn").disabled = false;
    }
  }

  function signOut(msg) {
    sessionStorage.removeItem(KEY);
    sessionStorage.removeItem(ME);
    state.queue = [];
    state.item = null;
    if (msg) alertMsg(msg);
    show("signin");
  }

  function me() { return sessionStorage.getItem(ME) || ""; }

  // ---- views -----------------------------------------------------------------

  function show(view) {
    for (const v of ["signin", "queue", "item"]) $(v + "-view").hidden = v !== view;
    const signedIn = !!sessionStorage.getItem(KEY);
    $("signout").hidden = !signedIn;
    $("whoami").textContent = signedIn && me() ? "Signed in as " + me() : "";
    if (view === "signin") $("key").focus();
  }

  async function route() {
    if (!sessionStorage.getItem(KEY)) { show("signin"); return; }
    const m = location.hash.match(/^#\/items\/(ri_[0-9a-f]{20})$/);
    if (m) await openItem(m[1]);
    else await loadQueue();
  }

  // ---- queue -----------------------------------------------------------------

  async function loadQueue() {
    show("queue");
    const filter = $("queue-filter").value;
    say("Loading the queue…");
    try {
      const states = filter === "open" ? OPEN_STATES : [filter];
      const pages = await Promise.all(states.map((s) => api("GET", "/v1/review/items?state=" + s + "&limit=100")));
      let items = pages.flatMap((p) => p.items || []);
      items.sort((a, b) => b.priority - a.priority || a.created_at.localeCompare(b.created_at));
      const keep = state.queue[state.selected] && state.queue[state.selected].id;
      state.queue = items;
      const again = items.findIndex((it) => it.id === keep);
      state.selected = again >= 0 ? again : Math.min(state.selected, Math.max(0, items.length - 1));
      renderQueue();
      say((state.flash ? state.flash + " " : "") + (items.length === 1 ? "1 item." : items.length + " items."));
      state.flash = "";
      alertMsg("");
    } catch (e) {
      if (e.status !== 401) fail(e);
      say("");
    }
  }

  function ago(iso) {
    const s = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
    if (s < 90) return Math.round(s) + " s";
    if (s < 5400) return Math.round(s / 60) + " min";
    if (s < 129600) return Math.round(s / 3600) + " h";
    return Math.round(s / 86400) + " d";
  }

  function renderQueue() {
    const body = $("queue-body");
    body.replaceChildren();
    $("queue-empty").hidden = state.queue.length > 0;
    $("queue").hidden = state.queue.length === 0;
    state.queue.forEach((it, i) => {
      const link = el("a", { href: "#/items/" + it.id, text: it.video_id });
      const tr = el("tr", { "data-id": it.id, "aria-selected": i === state.selected ? "true" : "false", onclick: (ev) => {
        if (ev.target.tagName !== "A") location.hash = "#/items/" + it.id;
      } },
        el("td", { class: "num", text: it.priority.toFixed(2) }),
        el("td", { text: it.kind }),
        el("td", {}, el("span", { class: "state", text: it.state + (it.claimed_by ? " by " + who(it.claimed_by) : "") })),
        el("td", {}, link),
        el("td", { class: "reason", text: it.reason }),
        el("td", { class: "num", text: ago(it.created_at) }));
      body.append(tr);
    });
  }

  function who(id) { return id === me() ? "you" : id; }

  function moveSelection(d) {
    if (!state.queue.length) return;
    state.selected = Math.min(state.queue.length - 1, Math.max(0, state.selected + d));
    const rows = $("queue-body").children;
    for (let i = 0; i < rows.length; i++) rows[i].setAttribute("aria-selected", i === state.selected ? "true" : "false");
    const row = rows[state.selected];
    if (row) {
      row.scrollIntoView({ block: "nearest" });
      row.querySelector("a").focus();
    }
  }

  // ---- item ------------------------------------------------------------------

  async function openItem(id) {
    show("item");
    say("Loading " + id + "…");
    alertMsg("");
    $("block-form").hidden = true;
    $("block-btn").setAttribute("aria-expanded", "false");
    try {
      const it = await api("GET", "/v1/review/items/" + id);
      if (!state.item || state.item.id !== it.id) { state.sharp.clear(); state.refreshedURLs = false; }
      state.item = it;
      const idx = state.queue.findIndex((q) => q.id === id);
      if (idx >= 0) state.selected = idx;
      state.video = null;
      try { state.video = await api("GET", "/v1/videos/" + it.video_id); } catch { /* shown without the video */ }
      renderItem();
      loadPolicy(it.evidence && it.evidence.policy_version);
      say("");
      $("item-title").focus();
    } catch (e) {
      fail(e);
      say("");
    }
  }

  function fmtMS(ms) {
    const s = ms / 1000;
    const m = Math.floor(s / 60);
    return m > 0 ? `${m}:${(s - m * 60).toFixed(1).padStart(4, "0")}` : s.toFixed(1) + " s";
  }

  function renderItem() {
    const it = state.item;
    const ev = it.evidence || {};
    const segs = ev.segments || [];
    const v = state.video;
    $("item-title").textContent = (v && v.title ? v.title + " — " : "") + it.kind + " review";
    $("item-title").setAttribute("tabindex", "-1");
    const meta = $("item-meta");
    meta.replaceChildren();
    const row = (k, val) => { if (val !== "" && val !== undefined && val !== null) meta.append(el("dt", { text: k }), el("dd", { text: String(val) })); };
    row("Item", it.id);
    row("Video", it.video_id + (v ? ` (${v.state}, level ${v.level}, ${v.language})` : ""));
    row("Kind", it.kind);
    row("State", it.state + (it.second_opinion ? " — waiting for a second opinion" : "") + (it.disputed ? " — disputed" : ""));
    row("Priority", it.priority.toFixed(2));
    if (it.claimed_by) row("Claimed by", who(it.claimed_by) + (it.lease_expires_at ? ", lease until " + new Date(it.lease_expires_at).toLocaleTimeString() : ""));
    if (it.deadline_at) row("Deadline", new Date(it.deadline_at).toLocaleString());
    if (ev.policy_version) row("Policy", ev.policy_version);
    if (ev.model_id) row("Model", ev.model_id);
    if (it.decision) row("Decision", `${it.decision.decision}${it.decision.reason_code ? " (" + it.decision.reason_code + ")" : ""} by ${who(it.decision.reviewer)}: ${it.decision.reason || ""}`);
    $("item-reason").textContent = it.reason;

    const ctx = $("item-context");
    ctx.replaceChildren();
    if (ev.diff) ctx.append(el("h3", { text: "What the re-check changed" }), el("p", { class: "context", text: ev.diff }));
    if (ev.statement) ctx.append(el("h3", { text: "The teacher's appeal" }), el("p", { class: "context", text: ev.statement }));
    if (ev.reports && ev.reports.length) {
      ctx.append(el("h3", { text: `Reports (${ev.reports.length})` }),
        el("ul", {}, ...ev.reports.map((r) => el("li", { text: `${new Date(r.reported_at).toLocaleString()}: ${r.reason}` }))));
    }
    const ops = (it.opinions || []).filter((o) => !it.decision || o.version !== it.decision.version);
    if (ops.length) {
      ctx.append(el("h3", { text: "Earlier opinions" }),
        el("ul", {}, ...ops.map((o) => el("li", { text: `${who(o.reviewer)}: ${o.decision}${o.reason_code ? " (" + o.reason_code + ")" : ""} ${o.reason || ""}` }))));
    }
    renderTimeline(segs);
    renderSegments(segs);
    renderActions();
  }

  function renderTimeline(segs) {
    const tl = $("timeline");
    tl.replaceChildren();
    const dur = Math.max(1, (state.video && state.video.media && state.video.media.duration_ms) || 0, ...segs.map((s) => s.end_ms));
    $("timeline-desc").textContent = segs.length
      ? `${segs.length} flagged segment${segs.length > 1 ? "s" : ""} over ${fmtMS(dur)}. Red blocks, amber asks for review.`
      : "No flagged segments in the evidence.";
    segs.forEach((s, i) => {
      const left = (100 * s.start_ms) / dur;
      const width = Math.max(0.5, (100 * (s.end_ms - s.start_ms)) / dur);
      const b = el("button", {
        type: "button", class: "seg " + (s.action === "block" ? "block" : "review"),
        "aria-label": `Segment ${i + 1}: ${s.signal} ${s.action}, ${fmtMS(s.start_ms)} to ${fmtMS(s.end_ms)}`,
        title: `${s.signal} ${s.action} ${fmtMS(s.start_ms)}–${fmtMS(s.end_ms)}`,
        onclick: () => {
          const li = $("seg-" + i);
          document.querySelectorAll(".segments li.hl").forEach((n) => n.classList.remove("hl"));
          li.classList.add("hl");
          li.scrollIntoView({ block: "nearest" });
          li.querySelector("button").focus();
        },
      });
      // Through CSSOM: the page's CSP refuses style attributes.
      b.style.left = left + "%";
      b.style.width = width + "%";
      tl.append(b);
    });
  }

  function renderSegments(segs) {
    const ol = $("segments");
    ol.replaceChildren();
    segs.forEach((s, i) => {
      const sharp = state.sharp.has(i);
      const li = el("li", { id: "seg-" + i },
        el("strong", { text: `${i + 1}. ${s.signal} — ${s.action}` }),
        el("div", { class: "muted", text: `${fmtMS(s.start_ms)} – ${fmtMS(s.end_ms)} · peak ${s.peak_smoothed.toFixed(2)} · max ${s.max_score.toFixed(2)}` }));
      if (s.thumbnail_url) {
        const img = el("img", {
          src: sharp && s.sharp_url ? s.sharp_url : s.thumbnail_url,
          alt: `Frame at ${fmtMS(s.thumbnail_at_ms)}, ${sharp ? "sharp" : "blurred"}`,
          "data-sharp": sharp ? "true" : "false", loading: "lazy", decoding: "async",
          onerror: refreshURLs,
        });
        const btn = el("button", {
          type: "button", class: "thumb", "aria-pressed": sharp ? "true" : "false",
          "aria-label": sharp ? `Blur the frame of segment ${i + 1}` : `Show the frame of segment ${i + 1} sharp`,
          onclick: () => toggleSharp(i),
        }, img, el("span", { class: "hint", text: sharp ? "Sharp — click to blur" : "Blurred — click to show" }));
        li.append(btn);
      } else {
        li.append(el("p", { class: "muted", text: "No frame kept for this segment." }));
      }
      ol.append(li);
    });
  }

  function toggleSharp(i) {
    if (state.sharp.has(i)) state.sharp.delete(i);
    else state.sharp.add(i);
    renderSegments((state.item.evidence && state.item.evidence.segments) || []);
    const b = document.querySelector(`#seg-${i} .thumb`);
    if (b) b.focus();
  }

  function toggleAllSharp() {
    const segs = (state.item && state.item.evidence && state.item.evidence.segments) || [];
    const any = state.sharp.size > 0;
    state.sharp.clear();
    if (!any) segs.forEach((_, i) => state.sharp.add(i));
    renderSegments(segs);
  }

  // Signed URLs expire: fetch the item again once for fresh ones.
  async function refreshURLs() {
    if (state.refreshedURLs || !state.item) return;
    state.refreshedURLs = true;
    try {
      state.item = await api("GET", "/v1/review/items/" + state.item.id);
      renderSegments((state.item.evidence && state.item.evidence.segments) || []);
    } catch (e) { fail(e); }
  }

  function lease() {
    const it = state.item;
    const mine = it.state === "claimed" && it.claimed_by === me() && me() !== "";
    const free = it.state !== "decided" && (it.state !== "claimed" || !it.lease_expires_at || Date.parse(it.lease_expires_at) <= Date.now());
    return { mine, free, decided: it.state === "decided" };
  }

  function renderActions() {
    const { mine, free, decided } = lease();
    $("claim-btn").disabled = decided || mine || !free;
    $("release-btn").disabled = !mine;
    for (const id of ["approve-btn", "block-btn", "escalate-btn"]) $(id).disabled = !mine;
    $("actions").hidden = decided;
  }

  async function loadPolicy(version) {
    $("policy-version").textContent = version || "";
    $("policy-text").textContent = "Loading…";
    try {
      const p = await api("GET", "/v1/review/policy" + (version ? "?version=" + encodeURIComponent(version) : ""));
      $("policy-version").textContent = p.version + (p.active ? " (active)" : "");
      $("policy-text").textContent = p.text;
    } catch (e) {
      $("policy-text").textContent = e.status === 404
        ? `Policy ${version} is not known to this server any more.`
        : "Could not load the policy: " + e.message;
    }
  }

  async function act(label, fn) {
    if (state.busy) return;
    state.busy = true;
    alertMsg("");
    say(label + "…");
    try { await fn(); } catch (e) { fail(e); say(""); if (state.item) await reload(); } finally { state.busy = false; }
  }

  async function reload() {
    try { state.item = await api("GET", "/v1/review/items/" + state.item.id); renderItem(); } catch { /* keep what is shown */ }
  }

  function claim() {
    const it = state.item;
    if (!it || it.state === "decided") return;
    return act("Claiming", async () => {
      const out = await api("POST", `/v1/review/items/${it.id}/claim`);
      if (!me() && out.claimed_by) sessionStorage.setItem(ME, out.claimed_by);
      state.item = out;
      renderItem();
      show("item");
      say(`Claimed. Your lease runs until ${new Date(out.lease_expires_at).toLocaleTimeString()}.`);
      $("approve-btn").focus();
    });
  }

  function release() {
    const it = state.item;
    return act("Releasing", async () => {
      state.item = await api("POST", `/v1/review/items/${it.id}/release`);
      renderItem();
      say("Released: the item is back in the queue.");
    });
  }

  function needLease() {
    if (!state.item) return false;
    if (lease().mine) return true;
    alertMsg(state.item.state === "decided" ? "This item is decided." : "Claim the item first (c).");
    return false;
  }

  function decide(decision, reasonCode, reason) {
    const it = state.item;
    return act(decision === "block" ? "Blocking" : decision === "approve" ? "Approving" : "Escalating", async () => {
      const out = await api("POST", `/v1/review/items/${it.id}/decision`,
        { decision, reason_code: reasonCode || "", reason: reason || "", version: it.version });
      const words = {
        approved: "Approved.", blocked: "Blocked.", escalated: "Escalated: the item is back in the queue, marked escalated.",
        block_proposed: "Block proposed: a second reviewer must agree before it takes effect.",
      };
      $("block-form").hidden = true;
      state.item = null;
      // Said again once the queue is back, so it is not lost in the reload.
      state.flash = `${words[out.outcome] || out.outcome} (${it.video_id})`;
      if (location.hash === "#/") await loadQueue();
      else location.hash = "#/";
    });
  }

  function openBlockForm() {
    if (!needLease()) return;
    $("block-form").hidden = false;
    $("block-btn").setAttribute("aria-expanded", "true");
    $("reason-code").focus();
  }

  function submitBlock(ev) {
    ev.preventDefault();
    const code = $("reason-code").value.trim();
    const text = $("reason-text").value.trim();
    if (!/^[a-z0-9_-]{1,64}$/.test(code)) { alertMsg("Pick a reason code: lower case letters, digits, _ and -."); $("reason-code").focus(); return; }
    if (!text) { alertMsg("Say why: the reason is shown to the teacher."); $("reason-text").focus(); return; }
    decide("block", code, text);
  }

  // ---- keyboard --------------------------------------------------------------

  function onKey(ev) {
    if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
    const t = ev.target;
    const typing = t && (t.tagName === "INPUT" || t.tagName === "TEXTAREA" || t.tagName === "SELECT" || t.isContentEditable);
    if (typing) {
      if (ev.key === "Escape" && !$("block-form").hidden) { $("block-form").hidden = true; $("block-btn").focus(); }
      return;
    }
    if ($("help").open) return;
    const inQueue = !$("queue-view").hidden;
    const inItem = !$("item-view").hidden;
    switch (ev.key) {
      case "?": $("help").showModal(); break;
      case "j": case "k": {
        const d = ev.key === "j" ? 1 : -1;
        if (inQueue) moveSelection(d);
        else if (inItem && state.queue.length) {
          const i = state.queue.findIndex((q) => q.id === (state.item && state.item.id));
          const next = state.queue[Math.min(state.queue.length - 1, Math.max(0, (i < 0 ? state.selected : i) + d))];
          if (next) location.hash = "#/items/" + next.id;
        } else return;
        break;
      }
      case "Enter":
        if (inQueue && state.queue[state.selected] && t.tagName !== "A" && t.tagName !== "BUTTON") location.hash = "#/items/" + state.queue[state.selected].id;
        else return;
        break;
      case "c": if (inItem) claim(); else return; break;
      case "a": if (inItem && needLease()) decide("approve"); else if (!inItem) return; break;
      case "b": if (inItem) openBlockForm(); else return; break;
      case "e": if (inItem && needLease()) decide("escalate"); else if (!inItem) return; break;
      case "u": if (inItem) toggleAllSharp(); else return; break;
      case "Escape": if (inItem) location.hash = "#/"; else return; break;
      default: return;
    }
    ev.preventDefault();
    // A shortcut that moves focus into a field (b) must not type itself
    // there: drop the keypress that follows this keydown.
    swallowChar = ev.key.length === 1;
  }

  let swallowChar = false;
  function onKeyPress(ev) {
    if (swallowChar) { ev.preventDefault(); swallowChar = false; }
  }

  // ---- start -----------------------------------------------------------------

  document.addEventListener("DOMContentLoaded", () => {
    $("signin-form").addEventListener("submit", signIn);
    $("signout").addEventListener("click", () => { signOut(""); say("Signed out."); location.hash = "#/"; });
    $("help-btn").addEventListener("click", () => $("help").showModal());
    $("refresh").addEventListener("click", loadQueue);
    const f = sessionStorage.getItem(FILTER);
    if (f) $("queue-filter").value = f;
    $("queue-filter").addEventListener("change", () => { sessionStorage.setItem(FILTER, $("queue-filter").value); loadQueue(); });
    $("claim-btn").addEventListener("click", claim);
    $("release-btn").addEventListener("click", release);
    $("approve-btn").addEventListener("click", () => needLease() && decide("approve"));
    $("escalate-btn").addEventListener("click", () => needLease() && decide("escalate"));
    $("block-btn").addEventListener("click", openBlockForm);
    $("block-form").addEventListener("submit", submitBlock);
    $("block-cancel").addEventListener("click", () => { $("block-form").hidden = true; $("block-btn").setAttribute("aria-expanded", "false"); $("block-btn").focus(); });
    document.addEventListener("keydown", onKey);
    document.addEventListener("keypress", onKeyPress, true);
    document.addEventListener("keyup", () => { swallowChar = false; }, true);
    window.addEventListener("hashchange", route);
    route();
  });
})();
