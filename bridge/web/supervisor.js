// Supervisor view: every active call, its duration, the latest line per leg and ASR health;
// above them the ASR servers, polled every 5 s.
"use strict";
(() => {
  const tbody = document.getElementById("calls");
  const status = document.getElementById("status");
  const calls = new Map(); // call id -> {call, legs: Map(leg id -> leg with latest/health), row}

  // A row is built once and then only its text changes: a live call re-renders several times a
  // second, and a click whose mousedown lands on an element replaced before the mouseup is lost
  // (Chromium fires no click when the pressed node has left the document).
  function build(c) {
    const link = Bridge.el("a", { href: "/calls/" + encodeURIComponent(c.call.id) });
    const agent = Bridge.el("small");
    const dur = Bridge.el("td", { class: "dur" });
    const who = Bridge.el("td");
    const health = Bridge.el("td");
    const row = Bridge.el("tr", { class: "call-row" }, Bridge.el("td", {}, link, Bridge.el("br"), agent), dur, who, health);
    row.addEventListener("click", (e) => { if (e.target.tagName !== "A") location.href = "/calls/" + c.call.id; });
    tbody.prepend(row);
    return { row, link, agent, dur, who, health, legs: [] };
  }
  function legLines(l) { // the leg's line in the "latest" and "health" columns, made once per leg
    if (!l.el) {
      const t = Bridge.el("span", { class: "t" });
      l.el = {
        line: Bridge.el("span", { class: "line" }, Bridge.el("span", { class: "who", text: `${l.role}:`, title: l.label }), t),
        t, health: Bridge.el("span", { class: "line health" }),
      };
    }
    return l.el;
  }
  function render(c) {
    const v = c.view || (c.view = build(c));
    v.link.textContent = c.call.title || c.call.id.slice(0, 8);
    v.agent.textContent = c.call.agent ? "agent " + c.call.agent : "";
    v.dur.textContent = Bridge.clock(Date.now() - c.call.started_at_ms);
    const legs = [...c.legs.values()];
    if (legs.length !== v.legs.length || legs.some((l, i) => l !== v.legs[i])) { // a leg came or went
      v.who.replaceChildren(...legs.map((l) => legLines(l).line));
      v.health.replaceChildren(...legs.map((l) => legLines(l).health));
      v.legs = legs;
    }
    for (const l of legs) {
      const e = legLines(l);
      e.line.className = "line" + (l.latest && !l.latest.final ? " partial" : "");
      e.t.textContent = (l.latest && l.latest.text) || "…";
      const h = l.health || {};
      const bad = (h.errors || 0) > 0 || (h.gaps || 0) > 0 || (h.lag_ms || 0) > 5000;
      e.health.className = "line health" + (bad ? " bad" : "");
      e.health.textContent = `${l.role}: lag ${h.lag_ms == null ? "–" : (h.lag_ms / 1000).toFixed(1) + " s"}, ${h.errors || 0} errors, ${h.gaps || 0} gaps`;
    }
    document.getElementById("empty").hidden = calls.size > 0;
  }
  function reset(snap) {
    calls.clear(); tbody.textContent = "";
    for (const call of snap.calls) {
      calls.set(call.id, { call, legs: new Map(call.legs.map((l) => [l.id, l])) });
      render(calls.get(call.id));
    }
    document.getElementById("empty").hidden = calls.size > 0;
  }
  const dirty = new Set(); // calls changed by the events of the current message
  const live = new Bridge.Live({ all: "1" }, {
    status: (s) => { status.textContent = s; status.className = "status " + s; },
    resync: async () => reset(await Bridge.api("/api/v1/live/snapshot")),
    event: (ev) => {
      if (ev.type === "call.started") { calls.set(ev.call_id, { call: ev.call, legs: new Map() }); dirty.add(ev.call_id); return; }
      const c = calls.get(ev.call_id);
      if (!c) return;
      if (ev.type === "call.ended") { c.view && c.view.row.remove(); calls.delete(ev.call_id); dirty.delete(ev.call_id); document.getElementById("empty").hidden = calls.size > 0; return; }
      if (ev.type === "leg.started") c.legs.set(ev.leg.id, Object.assign(ev.leg, { health: { lag_ms: null, errors: 0, gaps: 0 } }));
      else if (ev.type === "leg.ended") c.legs.delete(ev.leg.id);
      else if (ev.type === "segment.partial" || ev.type === "segment.final") {
        const l = c.legs.get(ev.segment.leg_id);
        if (l) {
          l.latest = { text: ev.segment.text, final: ev.segment.final };
          l.health.lag_ms = Math.max(0, ev.at_ms - l.started_at_ms - ev.segment.end_ms);
        }
      } else if (ev.type === "gap") { const l = c.legs.get(ev.gap.leg_id); if (l) l.health.gaps++; }
      else if (ev.type === "asr.health") { const l = c.legs.get(ev.health.leg_id); if (l) l.health.errors = ev.health.errors; }
      dirty.add(ev.call_id);
    },
    batch: () => { // one render per changed call per message
      for (const id of dirty) { const c = calls.get(id); if (c) render(c); }
      dirty.clear();
    },
  });
  // The ASR servers: one chip each, legs against budget; an unhealthy one says why.
  const asr = document.getElementById("asr");
  const chips = new Map(); // backend name -> its <li>
  async function pollBackends() {
    let list;
    try { list = (await Bridge.api("/api/v1/asr/backends")).backends; } catch { return; }
    for (const b of list) {
      let li = chips.get(b.name);
      if (!li) { li = Bridge.el("li", { class: "backend" }); chips.set(b.name, li); asr.append(li); }
      const budget = b.max_legs == null ? "" : "/" + b.max_legs;
      const why = b.problem && b.problem.length > 90 ? b.problem.slice(0, 89) + "…" : b.problem;
      const state = !b.healthy ? `unhealthy (${why})` : b.lagging ? `${b.lagging} behind` : "ok";
      li.className = "backend" + (!b.healthy || b.lagging ? " bad" : "");
      li.textContent = `${b.name}: ${state}, ${b.legs}${budget} ${b.legs === 1 && !budget ? "leg" : "legs"}`;
      li.title = b.problem ? `${b.url}: ${b.problem}` : b.url;
    }
  }
  setInterval(pollBackends, 5000);
  setInterval(() => { for (const c of calls.values()) { if (c.view) c.view.dur.textContent = Bridge.clock(Date.now() - c.call.started_at_ms); } }, 1000);
  // The server sends an agent its own live call at "/" (agent.html) when the request carries the
  // login cookie; a link from another site opens "/" without it (SameSite=Strict), and this
  // page's own requests do carry it: an agent is sent on, once.
  async function start() {
    const me = await Bridge.session();
    const params = new URLSearchParams(location.search);
    if (me.role === "agent" && !params.has("mine")) { location.replace("/?mine"); return; }
    const snap = await Bridge.api("/api/v1/live/snapshot");
    reset(snap);
    live.start(snap.seq);
    pollBackends();
  }
  start().catch((e) => { status.textContent = "error: " + e.message; });
})();
