// Agent view: one call's transcript, live.  Segments are keyed by leg:seq; a partial's text
// grows in place and is replaced by the final.  Auto-scroll pauses while the user reads above.
"use strict";
(() => {
  Bridge.requireToken();
  const callId = decodeURIComponent(location.pathname.split("/").pop());
  const box = document.getElementById("transcript");
  const status = document.getElementById("status");
  const jump = document.getElementById("jump");
  const legs = new Map();   // leg id -> {role, label, offset_ms}
  const rows = new Map();   // "leg:seq" -> element
  let follow = true;

  for (const fmt of ["txt", "vtt", "srt", "json"]) {
    const a = document.getElementById("export-" + fmt);
    a.href = `/api/v1/calls/${encodeURIComponent(callId)}/export?format=${fmt}&token=${encodeURIComponent(Bridge.token())}`;
  }
  function setStatus(s) { status.textContent = s; status.className = "status " + s; }
  function atBottom() { return box.scrollHeight - box.scrollTop - box.clientHeight < 40; }
  box.addEventListener("scroll", () => { follow = atBottom(); jump.classList.toggle("show", !follow); });
  function toBottom() { box.scrollTop = box.scrollHeight; follow = true; jump.classList.remove("show"); }
  jump.addEventListener("click", toBottom);
  document.addEventListener("keydown", (e) => { if (e.key === "End" && e.target === document.body) toBottom(); });

  function addLeg(l) { legs.set(l.id, { role: l.role, label: l.label, offset_ms: l.offset_ms || 0 }); }
  function callTime(s) { const l = legs.get(s.leg_id); return (l ? l.offset_ms : 0) + s.start_ms; }
  function upsert(s) {
    const key = s.leg_id + ":" + s.seq;
    let row = rows.get(key);
    const l = legs.get(s.leg_id) || { role: s.role || "unknown", label: "" };
    if (!row) {
      row = Bridge.el("div", { class: "seg role-" + l.role },
        Bridge.el("time"), Bridge.el("span", { class: "who" }), Bridge.el("span", { class: "text" }));
      row.dataset.t = callTime(s);
      rows.set(key, row);
      // Insert in call-time order (live segments almost always go last).
      let after = box.lastElementChild;
      while (after && Number(after.dataset.t) > Number(row.dataset.t)) after = after.previousElementSibling;
      if (after) after.after(row); else box.prepend(row);
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
    const row = Bridge.el("div", { class: "seg gap" }, Bridge.el("time", { text: Bridge.clock(callTime(g)) }),
      Bridge.el("span", { class: "who", text: (legs.get(g.leg_id) || {}).role || "" }),
      Bridge.el("span", { class: "text", text: `(not transcribed: ${(g.duration_ms / 1000).toFixed(1)} s, ${g.reason})` }));
    row.dataset.t = callTime(g);
    box.append(row);
  }
  function scroll() { if (follow) box.scrollTop = box.scrollHeight; }

  async function load() {
    const snap = await Bridge.api(`/api/v1/live/snapshot?call=${encodeURIComponent(callId)}`);
    const doc = await Bridge.api(`/api/v1/calls/${encodeURIComponent(callId)}`);
    document.getElementById("title").textContent = doc.call.title || "Call " + callId.slice(0, 8);
    document.title = (doc.call.title || callId.slice(0, 8)) + " – bridge";
    document.getElementById("meta").textContent = `Started ${new Date(doc.call.started_at_ms).toLocaleString()}` +
      ` · ${doc.legs.map((l) => `${l.role} (${l.label})`).join(", ")}` + (doc.call.agent ? ` · agent ${doc.call.agent}` : "");
    doc.legs.forEach(addLeg);
    box.textContent = "";
    rows.clear();
    const frag = document.createDocumentFragment();
    const saved = box; // build off-DOM for long calls
    for (const s of doc.segments) {
      const l = legs.get(s.leg_id) || { role: s.role, label: "" };
      const row = Bridge.el("div", { class: "seg role-" + l.role + (s.final ? " final" : " partial") },
        Bridge.el("time", { text: Bridge.clock(callTime(s)) }), Bridge.el("span", { class: "who", text: l.role, title: l.label }),
        Bridge.el("span", { class: "text", text: s.text }));
      row.dataset.t = callTime(s);
      rows.set(s.leg_id + ":" + s.seq, row);
      frag.append(row);
    }
    saved.append(frag);
    doc.gaps.forEach(gap);
    setStatus(doc.call.active ? "live" : "ended");
    toBottom();
    return { seq: snap.seq, active: doc.call.active };
  }

  const live = new Bridge.Live({ call: callId }, {
    status: (s) => { if (!status.classList.contains("ended")) setStatus(s); },
    resync: () => { load().catch(() => {}); },
    event: (ev) => {
      if (ev.type === "leg.started") addLeg(ev.leg);
      else if (ev.type === "segment.partial" || ev.type === "segment.final") upsert(ev.segment);
      else if (ev.type === "gap") gap(ev.gap);
      else if (ev.type === "call.ended") setStatus("ended");
      else if (ev.type === "call.started") setStatus("live");
    },
    batch: scroll, // once per message
  });
  document.getElementById("copy").addEventListener("click", async () => {
    const text = [...box.querySelectorAll(".seg.final, .seg.gap")].map((r) =>
      `[${r.children[0].textContent}] ${r.children[1].textContent}: ${r.children[2].textContent}`).join("\n");
    try { await navigator.clipboard.writeText(text); setTimeout(() => {}, 0); document.getElementById("copy").textContent = "Copied"; }
    catch (e) { document.getElementById("copy").textContent = "Copy failed"; }
    setTimeout(() => { document.getElementById("copy").textContent = "Copy"; }, 1500);
  });
  load().then((r) => live.start(r.seq)).catch((e) => {
    document.getElementById("meta").textContent = "Cannot load the call: " + e.message;
    document.getElementById("meta").className = "error";
  });
})();
