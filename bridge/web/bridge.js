// Shared by the dashboard pages: REST calls, the live socket with resume, the login.
// The login is a session cookie (HttpOnly: no script of the page ever sees the token) that the
// browser sends with every request of these pages, in every tab, until Log out or until the
// browser closes.  A 401 means "not logged in (any more)": to the login page, and back here.
"use strict";
const Bridge = (() => {
  function toLogin() {
    location.href = "/login?next=" + encodeURIComponent(location.pathname + location.search);
  }
  async function api(path, options = {}) {
    const r = await fetch(path, Object.assign({ credentials: "same-origin" }, options));
    if (r.status === 401) { toLogin(); throw new Error("not logged in"); }
    if (!r.ok) {
      let detail = r.statusText;
      try { detail = (await r.json()).detail; } catch (e) { /* not a problem body */ }
      throw new Error(detail);
    }
    return r.status === 204 ? null : r.json();
  }
  // Whom this browser is logged in as: {role: "supervisor"|"agent", agent}.
  function session() { return api("/api/v1/session"); }
  function clock(ms) {
    const s = Math.floor(ms / 1000), h = Math.floor(s / 3600), m = Math.floor(s / 60) % 60;
    const ss = String(s % 60).padStart(2, "0"), mm = String(m).padStart(2, "0");
    return h ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
  }
  function el(tag, attrs = {}, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (k === "class") e.className = v; else if (k === "text") e.textContent = v; else e.setAttribute(k, v);
    }
    for (const c of children) e.append(c);
    return e;
  }
  // Puts a transcript row (data-t: its call time in ms) into box in call-time order; live rows
  // almost always go last, so the walk from the end is short.
  function place(box, row) {
    let after = box.lastElementChild;
    while (after && Number(after.dataset.t) > Number(row.dataset.t)) after = after.previousElementSibling;
    if (after) after.after(row); else box.prepend(row);
  }
  // A live subscription that reconnects (0.5 s doubling to 5 s) and resumes from the last seq.
  // Each message is a JSON array of events, oldest first: handlers.event(ev) runs per event,
  // then handlers.batch() (if given) once per message, to update the page once per burst.
  class Live {
    constructor(params, handlers) {
      this.params = params; this.h = handlers; this.seq = null; this.delay = 500; this.closed = false;
    }
    start(seq) { this.seq = seq; this.connect(); }
    connect() {
      const q = new URLSearchParams(this.params);
      if (this.seq !== null) q.set("resume_from", this.seq);
      const proto = location.protocol === "https:" ? "wss:" : "ws:";
      const ws = new WebSocket(`${proto}//${location.host}/api/v1/live?${q}`);
      this.ws = ws;
      ws.onopen = () => { this.delay = 500; this.h.status("live"); };
      ws.onmessage = (m) => {
        for (const ev of JSON.parse(m.data)) {
          this.seq = ev.seq;
          if (ev.type === "resync") this.h.resync(ev); else this.h.event(ev);
        }
        if (this.h.batch) this.h.batch();
      };
      ws.onclose = () => {
        if (this.closed) return;
        this.h.status("reconnecting");
        setTimeout(() => this.connect(), this.delay);
        this.delay = Math.min(this.delay * 2, 5000);
      };
    }
    close() { this.closed = true; if (this.ws) this.ws.close(); }
  }
  // Log out: the server clears the cookie (every tab of this browser is logged out).
  async function logout() {
    try { await fetch("/api/v1/session", { method: "DELETE", credentials: "same-origin" }); }
    finally { location.href = "/login"; }
  }
  // Where the login page may send the browser: a path on this origin, else "/".  One leading
  // "/" (not "//" nor "/\": browsers read a backslash as a slash, so "/\evil.example" is
  // "//evil.example", another host), no backslash or control character anywhere (the URL parser
  // drops tabs and newlines: "/\t/evil.example" is "//evil.example" too), and, parsed against
  // this page, still this origin.
  function safeNext(next) {
    if (typeof next !== "string" || next.length > 2048) return "/";
    if (!/^\/(?![\/\\])[^\\\u0000-\u001f\u007f]*$/.test(next)) return "/";
    let url;
    try { url = new URL(next, location.origin); } catch (e) { return "/"; }
    if (url.origin !== location.origin) return "/";
    return url.pathname + url.search + url.hash;
  }
  return { api, session, clock, el, place, Live, logout, safeNext };
})();
