// The bridge's WHIP client (RFC 9725): microphone (and optionally tab audio) -> POST /api/v1/whip,
// live transcript from /api/v1/live?call=ID.  Self-contained: reads the dashboard token
// (sessionStorage "bridgeToken") or ?token= in the page URL.
// Trickle ICE (RFC 9725 §4.3.2): the offer goes out at once, with whatever candidates are ready;
// later ones are buffered until the 201, then sent as application/trickle-ice-sdpfrag PATCHes
// (If-Match: the 201's ETag), in order, ending with a=end-of-candidates.
"use strict";
const Softphone = (() => {
  const params = new URLSearchParams(location.search);
  const token = params.get("token") || sessionStorage.getItem("bridgeToken");
  const $ = (id) => document.getElementById(id);
  const state = { pc: null, location: null, callId: null, ws: null, seq: null, stopped: true,
                  retries: 0, segments: new Map(), streams: [] };

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
    const headers = { "Content-Type": "application/trickle-ice-sdpfrag",
                      Authorization: "Bearer " + token };
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
      headers: { "Content-Type": "application/sdp", Authorization: "Bearer " + token },
      body: trickle.offer,
    });
    if (resp.status !== 201) {
      pc.close();
      const err = new Error("The bridge refused the call (" + resp.status + "): " + await problem(resp));
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
    subscribe();
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

  function subscribe() {
    if (state.ws) state.ws.close();
    const q = new URLSearchParams({ call: state.callId, token });
    if (state.seq !== null) q.set("resume_from", String(state.seq));
    const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host +
                             "/api/v1/live?" + q);
    state.ws = ws;
    ws.onmessage = (m) => {
      const data = JSON.parse(m.data);
      for (const event of Array.isArray(data) ? data : [data]) show(event);
    };
    ws.onclose = () => {
      if (state.ws === ws && !state.stopped) setTimeout(() => state.ws === ws && subscribe(), 1000);
    };
  }

  function show(event) {
    if (typeof event.seq === "number") state.seq = event.seq;
    if (event.type === "call.ended") { status("ended: " + ((event.call && event.call.end_cause) || "")); return; }
    const seg = event.segment || (event.type && event.type.startsWith("segment") ? event : null);
    if (!seg || seg.text === undefined) return;
    const key = (seg.leg_id || seg.leg || "") + "/" + seg.seq;
    let row = state.segments.get(key);
    if (!row) {
      row = document.createElement("p");
      row.className = "seg";
      row.appendChild(document.createElement("b")).textContent = (seg.role || event.role || "") + ": ";
      row.appendChild(document.createElement("span")).className = "text";
      state.segments.set(key, row);
      $("transcript").appendChild(row);
    }
    row.classList.toggle("partial", !seg.final);
    row.querySelector(".text").textContent = seg.text;
  }

  function fail(e) { message(e.message); status("stopped"); stop(false); }

  async function start(ev) {
    ev.preventDefault();
    if (!token) { message("No API token: log in first (/login) or open /softphone?token=…"); return; }
    message(""); state.stopped = false; state.seq = null;
    $("start").disabled = true; $("stop").disabled = false;
    try { state.streams = await capture(); status("connecting"); await connect(); }
    catch (e) { e.fatal === false ? reconnect(e.message) : fail(e); }
  }

  async function stop(sendDelete = true) {
    state.stopped = true;
    $("start").disabled = false; $("stop").disabled = true;
    if (sendDelete && state.location)
      await fetch(state.location, { method: "DELETE", headers: { Authorization: "Bearer " + token } })
        .catch(() => {});
    if (state.pc) state.pc.close();
    state.streams.forEach((s) => s.getTracks().forEach((t) => t.stop()));
    state.location = null;
  }

  $("form").addEventListener("submit", start);
  if (params.get("autostart")) $("start").click();
  $("stop").addEventListener("click", () => stop(true));
  return { start, stop, state };
})();
