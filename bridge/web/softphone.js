// The bridge's WHIP client (RFC 9725): microphone (and optionally tab audio) -> POST /api/v1/whip,
// live transcript from /api/v1/live?call=ID.  Self-contained: reads the dashboard token
// (sessionStorage "bridgeToken") or ?token= in the page URL.
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

  async function connect() {
    const pc = new RTCPeerConnection();
    state.pc = pc;
    for (const s of state.streams)
      for (const t of s.getAudioTracks()) pc.addTransceiver(t, { direction: "sendonly", streams: [s] });
    await pc.setLocalDescription(await pc.createOffer());
    await new Promise((resolve) => {  // non-trickle WHIP: send all candidates in the offer
      if (pc.iceGatheringState === "complete") return resolve();
      const timer = setTimeout(resolve, 3000);
      pc.addEventListener("icegatheringstatechange", () => {
        if (pc.iceGatheringState === "complete") { clearTimeout(timer); resolve(); }
      });
    });
    const query = new URLSearchParams();
    if ($("title").value) query.set("call", $("title").value);
    if (params.get("agent")) query.set("agent", params.get("agent"));
    const resp = await fetch("/api/v1/whip?" + query, {
      method: "POST",
      headers: { "Content-Type": "application/sdp", Authorization: "Bearer " + token },
      body: pc.localDescription.sdp,
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
