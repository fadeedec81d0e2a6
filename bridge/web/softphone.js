// The bridge's WHIP client (RFC 9725): microphone (and optionally tab audio) -> POST /api/v1/whip,
// live transcript from /api/v1/live?call=ID.  Authorized by the dashboards' login cookie (the
// login page, or a /softphone?token=… link, which the server turns into the cookie).
// Trickle ICE (RFC 9725 §4.3.2): the offer goes out at once, with whatever candidates are ready;
// later ones are buffered until the 201, then sent as application/trickle-ice-sdpfrag PATCHes
// (If-Match: the 201's ETag), in order, ending with a=end-of-candidates.
"use strict";
const Softphone = (() => {
  const params = new URLSearchParams(location.search);
  const $ = (id) => document.getElementById(id);
  const state = { pc: null, location: null, callId: null, live: null, stopped: true,
                  retries: 0, segments: new Map(), legs: new Map(), streams: [] };

  function status(text) { $("status").textContent = text; }
  function message(text) { $("message").textContent = text || ""; }

  async function problem(resp) {
    try { const body = await resp.json(); return body.detail || resp.statusText; }
    catch (e) { return resp.statusText; }
  }

  async function capture() {
    const audio = { echoCancellation: false, noiseSuppression: false, autoGainControl: false };
    let mic;
    try { mic = await navigator.mediaDevices.getUserMedia({ audio }); }
    catch (e) {
      throw new Error(e.name === "NotAllowedError"
        ? "Microphone access was denied: allow it in the browser's site settings and retry."
        : "No microphone available: " + e.message);
    }
    const streams = [mic];
    if ($("second").checked) {
      try {
        const tab = await navigator.mediaDevices.getDisplayMedia({ audio: true, video: true });
        tab.getVideoTracks().forEach((t) => t.stop());
        if (tab.getAudioTracks().length) streams.push(new MediaStream(tab.getAudioTracks()));
      } catch (e) { message("No tab audio (" + e.name + "): sending the microphone only."); }
    }
    return streams;
  }

  // One trickle ICE stream per peer connection: candidates wait for the session URL and ETag.
  function trickler(pc) {
    const t = { pc, url: null, etag: null, offer: "", pending: [], end: false, sent: false,
                chain: Promise.resolve(), off: false };
    pc.addEventListener("icecandidate", (e) => {
      if (e.candidate && e.candidate.candidate) {
        if (!t.offer.includes(e.candidate.candidate)) t.pending.push(e.candidate);
      } else if (!e.candidate) t.end = true;
      flush(t);
    });
    return t;
  }

  function sdpfrag(t, candidates, end) {
    const sdp = t.pc.localDescription.sdp;
    const ufrag = (sdp.match(/a=ice-ufrag:(\S+)/) || [])[1];
    const pwd = (sdp.match(/a=ice-pwd:(\S+)/) || [])[1];
    const lines = ["a=ice-ufrag:" + ufrag, "a=ice-pwd:" + pwd];
    const mids = [...new Set(candidates.map((c) => c.sdpMid))];
    if (!mids.length) mids.push((sdp.match(/a=mid:(\S+)/) || [])[1]);
    for (const mid of mids) {
      lines.push("m=audio 9 UDP/TLS/RTP/SAVPF 0", "a=mid:" + mid);
      for (const c of candidates) if (c.sdpMid === mid) lines.push("a=" + c.candidate);
    }
    if (end) lines.push("a=end-of-candidates");
    return lines.join("\r\n") + "\r\n";
  }

  function flush(t) {
    if (!t.url || t.off || (!t.pending.length && !(t.end && !t.sent))) return;
    const candidates = t.pending.splice(0);
    const end = t.end;
    if (end) t.sent = true;
    const body = sdpfrag(t, candidates, end);
    const headers = { "Content-Type": "application/trickle-ice-sdpfrag" };
    if (t.etag) headers["If-Match"] = t.etag;
    t.chain = t.chain.then(async () => {
      const resp = await fetch(t.url, { method: "PATCH", headers, body }).catch(() => null);
      // A server without trickle ICE (405/415/422/501): the offer's candidates must do.
      if (resp && resp.status !== 204 && resp.status < 500) t.off = true;
    });
  }

  async function connect() {
    const pc = new RTCPeerConnection();
    state.pc = pc;
    const trickle = trickler(pc);
    for (const s of state.streams)
      for (const t of s.getAudioTracks()) pc.addTransceiver(t, { direction: "sendonly", streams: [s] });
    await pc.setLocalDescription(await pc.createOffer());
    const query = new URLSearchParams();
    if ($("title").value) query.set("call", $("title").value);
    if (params.get("agent")) query.set("agent", params.get("agent"));
    trickle.offer = pc.localDescription.sdp;  // candidates gathered so far travel in the offer
    const resp = await fetch("/api/v1/whip?" + query, {
      method: "POST",
      headers: { "Content-Type": "application/sdp" },
      body: trickle.offer,
    });
    if (resp.status !== 201) {
      pc.close();
      const why = await problem(resp);
      const err = new Error("The bridge refused the call (" + resp.status + "): " + why +
                            (resp.status === 401 ? " Log in at /login, then start again." : ""));
      err.retryAfter = resp.headers.get("Retry-After");
      err.fatal = resp.status !== 503;
      throw err;
    }
    state.location = resp.headers.get("Location");
    state.callId = resp.headers.get("Bridge-Call-Id");
    await pc.setRemoteDescription({ type: "answer", sdp: await resp.text() });
    trickle.url = new URL(state.location, location.href).href;
    trickle.etag = resp.headers.get("ETag");
    flush(trickle);
    pc.addEventListener("connectionstatechange", () => {
      status(pc.connectionState);
      if (pc.connectionState === "failed" && !state.stopped) reconnect("the connection failed");
    });
    window.__softphone = { callId: state.callId, location: state.location };
    subscribe().catch((e) => message("No live transcript: " + e.message));
  }

  function reconnect(why) {
    if (state.stopped) return;
    state.retries += 1;
    const delay = Math.min(30, 2 ** state.retries);
    message("Connection lost (" + why + "); reconnecting in " + delay + " s…");
    if (state.pc) state.pc.close();
    setTimeout(() => { if (!state.stopped) connect().then(() => { state.retries = 0; message(""); })
      .catch((e) => e.fatal ? fail(e) : reconnect(e.message)); }, delay * 1000);
  }

  // The call's live transcript: the snapshot gives the legs' offsets and the seq to resume
  // from, the live socket the rest (Bridge.Live reconnects and resumes by itself).
  async function subscribe() {
    if (state.live) state.live.close();
    const callId = state.callId;
    const snap = await Bridge.api("/api/v1/live/snapshot?call=" + encodeURIComponent(callId));
    for (const c of snap.calls) for (const l of c.legs) state.legs.set(l.id, l);
    state.live = new Bridge.Live({ call: callId }, {
      status: () => {},
      resync: () => { Bridge.api("/api/v1/calls/" + encodeURIComponent(callId)).then(reread).catch(() => {}); },
      event: show,
      batch: () => { const box = $("transcript"); box.scrollTop = box.scrollHeight; },
    });
    state.live.start(snap.seq);
  }

  function reread(doc) {
    for (const l of doc.legs) state.legs.set(l.id, l);
    for (const seg of doc.segments) line(seg);
    if (!doc.call.active) ended(doc.call.end_cause);
  }

  function ended(cause) {
    status("ended: " + (cause || ""));
    if (state.live) { state.live.close(); state.live = null; }
  }

  function show(event) {
    if (event.type === "call.ended") ended(event.call && event.call.end_cause);
    else if (event.type === "leg.started") state.legs.set(event.leg.id, event.leg);
    else if (event.type === "segment.partial" || event.type === "segment.final") line(event.segment);
  }

  // One utterance: its time in the call and who spoke above the text, which takes the whole
  // width of the page (the dashboards' three-column grid would squeeze it here).
  function line(seg) {
    const key = seg.leg_id + "/" + seg.seq;
    const leg = state.legs.get(seg.leg_id) || { role: seg.role || "", offset_ms: 0 };
    const at = (leg.offset_ms || 0) + seg.start_ms;
    let row = state.segments.get(key);
    if (!row) {
      row = Bridge.el("div", { class: "utterance role-" + leg.role },
        Bridge.el("div", { class: "meta" }, Bridge.el("time"), Bridge.el("span", { class: "who", text: leg.role })),
        Bridge.el("p", { class: "text" }));
      row.dataset.t = at;
      state.segments.set(key, row);
      Bridge.place($("transcript"), row);
    }
    if (row.classList.contains("final") && !seg.final) return;  // a final never goes back
    const time = row.querySelector("time");
    time.textContent = Bridge.clock(at);
    time.setAttribute("datetime", "PT" + (at / 1000).toFixed(1) + "S");
    row.classList.toggle("partial", !seg.final);
    row.classList.toggle("final", !!seg.final);
    row.querySelector(".text").textContent = seg.text;
  }

  function fail(e) { message(e.message); status("stopped"); stop(false); }

  async function start(ev) {
    ev.preventDefault();
    message(""); state.stopped = false;
    state.segments.clear(); state.legs.clear(); $("transcript").textContent = "";
    $("start").disabled = true; $("stop").disabled = false;
    try { state.streams = await capture(); status("connecting"); await connect(); }
    catch (e) { e.fatal === false ? reconnect(e.message) : fail(e); }
  }

  async function stop(sendDelete = true) {
    state.stopped = true;
    $("start").disabled = false; $("stop").disabled = true;
    if (sendDelete && state.location)
      await fetch(state.location, { method: "DELETE" }).catch(() => {});
    if (state.pc) state.pc.close();
    state.streams.forEach((s) => s.getTracks().forEach((t) => t.stop()));
    state.location = null;
  }

  $("form").addEventListener("submit", start);
  if (params.get("autostart")) $("start").click();
  $("stop").addEventListener("click", () => stop(true));
  return { start, stop, state };
})();
