// Agent view, two ways:
// * /calls/ID: that call's transcript, live;
// * / for an agent: the agent's own live call, following them: when it ends and their next one
//   starts, the view moves to it; between calls the last one stays on screen and the page says
//   it waits for the next.  (The live API sends an agent's token only its own calls' events.)
// Segments are keyed by leg:seq; a partial's text grows in place and is replaced by the final.
// Auto-scroll pauses while the user reads above.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const box = $("transcript"), status = $("status"), jump = $("jump"), notice = $("notice");
  const legs = new Map();   // leg id -> {role, label, offset_ms}
  const rows = new Map();   // "leg:seq" (segments), "gap:leg:start" (gaps) -> element
  let stick = true;         // auto-scroll: the reader is at the live end

  function setStatus(s) { status.textContent = s; status.className = "status " + s; }
  function atBottom() { return box.scrollHeight - box.scrollTop - box.clientHeight < 40; }
  box.addEventListener("scroll", () => { stick = atBottom(); jump.classList.toggle("show", !stick); });
  function toBottom() { box.scrollTop = box.scrollHeight; stick = true; jump.classList.remove("show"); }
  jump.addEventListener("click", toBottom);
  document.addEventListener("keydown", (e) => { if (e.key === "End" && e.target === document.body) toBottom(); });
  function scroll() { if (stick) box.scrollTop = box.scrollHeight; }
  $("logout").addEventListener("click", () => Bridge.logout());

  // The download buttons: plain links, authorized by the login cookie (no token in the URL).
  function exportLinks(callId) {
    for (const fmt of ["txt", "vtt", "srt", "json"]) {
      const a = $("export-" + fmt);
      if (callId) a.href = `/api/v1/calls/${encodeURIComponent(callId)}/export?format=${fmt}`;
      else a.removeAttribute("href");
    }
  }

  function addLeg(l) { legs.set(l.id, { role: l.role, label: l.label, offset_ms: l.offset_ms || 0 }); }
  function callTime(s) { const l = legs.get(s.leg_id); return (l ? l.offset_ms : 0) + s.start_ms; }
  let into = box;           // where new rows go: the box, or a fragment while rendering a call
  function place(row) { Bridge.place(into, row); }
  function upsert(s) {
    const key = s.leg_id + ":" + s.seq;
    let row = rows.get(key);
    const l = legs.get(s.leg_id) || { role: s.role || "unknown", label: "" };
    if (!row) {
      row = Bridge.el("div", { class: "seg role-" + l.role },
        Bridge.el("time"), Bridge.el("span", { class: "who" }), Bridge.el("span", { class: "text" }));
      row.dataset.t = callTime(s);
      rows.set(key, row);
      place(row);
    }
    if (row.classList.contains("final") && !s.final) return;  // a final never goes back
    row.children[0].textContent = Bridge.clock(callTime(s));
    row.children[0].setAttribute("datetime", "PT" + (callTime(s) / 1000).toFixed(1) + "S");
    row.children[1].textContent = l.role;
    row.children[1].title = l.label;
    row.children[2].textContent = s.text;
    row.classList.toggle("partial", !s.final);
    row.classList.toggle("final", !!s.final);
  }
  function gap(g) {
    const key = `gap:${g.leg_id}:${g.start_ms}`;
    if (rows.has(key)) return;
    const row = Bridge.el("div", { class: "seg gap" }, Bridge.el("time", { text: Bridge.clock(callTime(g)) }),
      Bridge.el("span", { class: "who", text: (legs.get(g.leg_id) || {}).role || "" }),
      Bridge.el("span", { class: "text", text: `(not transcribed: ${(g.duration_ms / 1000).toFixed(1)} s, ${g.reason})` }));
    row.dataset.t = callTime(g);
    rows.set(key, row);
    place(row);
  }
  // One live event of the call on screen.
  function apply(ev) {
    if (ev.type === "leg.started") addLeg(ev.leg);
    else if (ev.type === "segment.partial" || ev.type === "segment.final") upsert(ev.segment);
    else if (ev.type === "gap") gap(ev.gap);
  }

  // The call from REST, and the live seq it is current at.
  async function fetchCall(callId) {
    const snap = await Bridge.api(`/api/v1/live/snapshot?call=${encodeURIComponent(callId)}`);
    const doc = await Bridge.api(`/api/v1/calls/${encodeURIComponent(callId)}`);
    return { seq: snap.seq, doc };
  }
  // Puts a call on screen in place of what was there.
  function render(callId, doc) {
    const name = doc.call.title || "Call " + callId.slice(0, 8);
    $("title").textContent = name;
    document.title = name + " – bridge";
    $("meta").textContent = `Started ${new Date(doc.call.started_at_ms).toLocaleString()}` +
      ` · ${doc.legs.map((l) => `${l.role} (${l.label})`).join(", ")}` + (doc.call.agent ? ` · agent ${doc.call.agent}` : "");
    $("meta").className = "empty";
    legs.clear(); rows.clear(); box.textContent = "";
    into = document.createDocumentFragment();  // built off the page: one layout for a long call
    doc.legs.forEach(addLeg);
    doc.segments.forEach(upsert);
    doc.gaps.forEach(gap);
    box.append(into);
    into = box;
    toBottom();
  }
  function cannotLoad(e) {
    $("meta").textContent = "Cannot load the call: " + e.message;
    $("meta").className = "error";
  }

  // /calls/ID: one call.
  function oneCall(callId) {
    exportLinks(callId);
    async function load() {
      const { seq, doc } = await fetchCall(callId);
      render(callId, doc);
      setStatus(doc.call.active ? "live" : "ended");
      return seq;
    }
    const live = new Bridge.Live({ call: callId }, {
      status: (s) => { if (!status.classList.contains("ended")) setStatus(s); },
      resync: () => { load().catch(() => {}); },
      event: (ev) => {
        apply(ev);
        if (ev.type === "call.ended") setStatus("ended");
        else if (ev.type === "call.started") setStatus("live");
      },
      batch: scroll, // once per message
    });
    load().then((seq) => live.start(seq)).catch(cannotLoad);
  }

  // /: the agent's own calls, one after the other.
  function followAgent() {
    let current = null;       // the call on screen: {id, active}
    let pending = null;       // while it loads: its live events, applied once it is on screen
    let others = new Map();   // the agent's other live calls: id -> started_at_ms
    let link = "loading";     // the live socket: loading, live or reconnecting
    document.querySelector('nav a[href="/"]').setAttribute("aria-current", "page");
    if (new URLSearchParams(location.search).has("mine")) history.replaceState(null, "", "/");

    function show() {
      const live = !!(current && current.active);
      setStatus(link !== "live" ? link : live ? "live" : "waiting");
      notice.hidden = live;
      notice.textContent = current
        ? "This call has ended. Waiting for your next call: it opens here when it starts."
        : "No live call right now. Waiting for your next call: it opens here when it starts.";
      if (!current) { $("title").textContent = "Your live call"; document.title = "Your live call – bridge"; }
    }
    function newest() {
      let best = null;
      for (const [id, at] of others) if (!best || at > best[1]) best = [id, at];
      return best && best[0];
    }
    // The current call ended: on to the agent's next live call if there is one, else wait.
    function next() {
      const id = newest();
      if (id) open(id); else { show(); scroll(); }
    }
    async function open(callId) {
      others.delete(callId);
      current = { id: callId, active: true };
      pending = [];
      exportLinks(callId);
      let doc = null;
      try { doc = (await fetchCall(callId)).doc; } catch (e) { cannotLoad(e); }
      if (!current || current.id !== callId) return;  // another call took its place meanwhile
      if (doc) { render(callId, doc); current.active = doc.call.active; }
      const queued = pending;
      pending = null;
      for (const ev of queued) { apply(ev); if (ev.type === "call.ended") current.active = false; }
      if (current.active) { show(); scroll(); } else next();
    }
    function onEvent(ev) {
      if (ev.type === "call.started") {
        if (!current || !current.active) open(ev.call_id); else others.set(ev.call_id, ev.call.started_at_ms);
        return;
      }
      if (ev.type === "call.ended") others.delete(ev.call_id);
      if (!current || ev.call_id !== current.id) return;
      if (pending) { pending.push(ev); return; }
      apply(ev);
      if (ev.type === "call.ended" && current.active) { current.active = false; next(); }
    }
    // After reading the snapshot: the call on screen if it is still live, else the newest live
    // one, else the call on screen re-read (it ended meanwhile), else none: wait.
    function pick(snap) {
      others = new Map(snap.calls.map((c) => [c.id, c.started_at_ms]));
      const keep = current && others.has(current.id) ? current.id : newest() || (current && current.id);
      if (keep) open(keep); else show();
    }
    const live = new Bridge.Live({}, {
      status: (s) => { link = s; show(); },
      resync: () => { Bridge.api("/api/v1/live/snapshot").then(pick).catch(() => {}); },
      event: onEvent,
      batch: scroll,
    });
    // An agent's token reads only its own calls: the snapshot and the socket need no filter.
    Bridge.api("/api/v1/live/snapshot").then((snap) => { live.start(snap.seq); pick(snap); })
      .catch((e) => { notice.hidden = false; notice.textContent = "Cannot read your calls: " + e.message; });
  }

  $("copy").addEventListener("click", async () => {
    const text = [...box.querySelectorAll(".seg.final, .seg.gap")].map((r) =>
      `[${r.children[0].textContent}] ${r.children[1].textContent}: ${r.children[2].textContent}`).join("\n");
    try { await navigator.clipboard.writeText(text); $("copy").textContent = "Copied"; }
    catch (e) { $("copy").textContent = "Copy failed"; }
    setTimeout(() => { $("copy").textContent = "Copy"; }, 1500);
  });

  if (location.pathname.startsWith("/calls/")) oneCall(decodeURIComponent(location.pathname.slice("/calls/".length)));
  else followAgent();
})();
