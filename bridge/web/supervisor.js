// Supervisor view: every active call, its duration, the latest line per leg and ASR health.
"use strict";
(() => {
  const tbody = document.getElementById("calls");
  const status = document.getElementById("status");
  const calls = new Map(); // call id -> {call, legs: Map(leg id -> leg with latest/health), row}

  function render(c) {
    if (!c.row) {
      c.row = Bridge.el("tr", { class: "call-row" });
      c.row.addEventListener("click", (e) => { if (e.target.tagName !== "A") location.href = "/calls/" + c.call.id; });
      tbody.prepend(c.row);
    }
    const link = Bridge.el("a", { href: "/calls/" + encodeURIComponent(c.call.id), text: c.call.title || c.call.id.slice(0, 8) });
    const who = Bridge.el("td");
    const health = Bridge.el("td");
    for (const l of c.legs.values()) {
      const line = Bridge.el("span", { class: "line" + (l.latest && !l.latest.final ? " partial" : "") },
        Bridge.el("span", { class: "who", text: `${l.role}:`, title: l.label }),
        Bridge.el("span", { class: "t", text: (l.latest && l.latest.text) || "…" }));
      who.append(line);
      const h = l.health || {};
      const bad = (h.errors || 0) > 0 || (h.gaps || 0) > 0 || (h.lag_ms || 0) > 5000;
      health.append(Bridge.el("span", { class: "line health" + (bad ? " bad" : ""),
        text: `${l.role}: lag ${h.lag_ms == null ? "–" : (h.lag_ms / 1000).toFixed(1) + " s"}, ${h.errors || 0} errors, ${h.gaps || 0} gaps` }));
    }
    const dur = Bridge.el("td", { class: "dur", text: Bridge.clock(Date.now() - c.call.started_at_ms) });
    const first = Bridge.el("td", {}, link, Bridge.el("br"), Bridge.el("small", { text: c.call.agent ? "agent " + c.call.agent : "" }));
    c.row.replaceChildren(first, dur, who, health);
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
      if (ev.type === "call.ended") { c.row && c.row.remove(); calls.delete(ev.call_id); dirty.delete(ev.call_id); document.getElementById("empty").hidden = calls.size > 0; return; }
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
  setInterval(() => { for (const c of calls.values()) { const d = c.row && c.row.querySelector(".dur"); if (d) d.textContent = Bridge.clock(Date.now() - c.call.started_at_ms); } }, 1000);
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
  }
  start().catch((e) => { status.textContent = "error: " + e.message; });
})();
