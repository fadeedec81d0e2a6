"""HTTP fuzzer (issue 12): hypothesis over every route's parameters and bodies, with valid tokens
and without.  Never a 5xx (but 503 for "busy"), never a server path or traceback in a body, and
``/health`` answers quickly while it runs.

The routes are those of ``bridge/http/app.py`` and ``bridge/http/whip.py`` (``ROUTES``; a test
checks that every route of the app is covered).  The bridge is a real uvicorn server on a
thread of its own over a real SQLite file, seeded with two calls (agents alice and bob) and one
open WHIP session (so PATCH reaches the trickle parser).  Requests go over real HTTP (httpx; the
live API through a real WebSocket client).

This module is also the kit of ``benchmarks/fuzz_http.py`` (the long run, with a report): CI
runs ``CI_EXAMPLES`` inputs per route, the benchmark as many as its time allows.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
import statistics
import sys
import threading
import time
import wave
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote_to_bytes

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import InvalidHandshake, InvalidStatus
from websockets.sync.client import connect as ws_connect

from bridge.http.app import create_app
from bridge.live import LiveHub
from bridge.webrtc.session import WhipSettings
from storage import TranscriptStore

from .helpers import call, leg, seg
from .served import ALICE, BOB, NO_ASR, SUPERVISOR, TOKENS, serve_bridge

REPO = Path(__file__).resolve().parents[2]
CHROME = (REPO / "tests" / "webrtc" / "chrome156_two_audio.sdp").read_text()
CI_EXAMPLES = 40
HEALTH_P99_LIMIT_S = 0.5
UNSENDABLE = -1  # the "status" of an input the HTTP client refuses to send
NO_ANSWER = 0  # the "status" when the server never answered
_HEADER_VALUE = re.compile(r"[\x21-\x7e]([\x20-\x7e]*[\x21-\x7e])?|")  # RFC 9110 §5.5, ASCII

# -- the bridge under test, on its own thread ----------------------------------------------------


class FuzzServer:
    """``serve_bridge`` on a thread with its own event loop; seeded; one open WHIP session."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="bridge", daemon=True)
        self.base = ""
        self.ws = ""
        self.whip_session = ""
        self.whip_etag = ""

    def _run(self, coro: object, timeout_s: float = 60) -> object:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout_s)  # type: ignore[arg-type]

    def __enter__(self) -> FuzzServer:
        self.thread.start()
        whip = WhipSettings(connect_timeout_s=3600, loopback_only=True, max_sessions=64)
        self._served_cm = serve_bridge(self.db, whip=whip)
        served = self._run(self._served_cm.__aenter__())
        self.base, self.ws = served.base, served.ws  # type: ignore[attr-defined]
        self._run(_seed(served.store))  # type: ignore[attr-defined]
        with httpx.Client(base_url=self.base, timeout=30) as client:
            r = client.post(
                "/api/v1/whip",
                content=CHROME.encode(),
                headers={
                    "Authorization": f"Bearer {SUPERVISOR}",
                    "Content-Type": "application/sdp",
                },
            )
            assert r.status_code == 201, r.text
            self.whip_session = r.headers["Location"].rsplit("/", 1)[1]
            self.whip_etag = r.headers["ETag"]
        return self

    def __exit__(self, *exc: object) -> None:
        try:
            self._run(self._served_cm.__aexit__(None, None, None))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


async def _seed(store: Any) -> None:
    """call-1 (alice) and call-2 (bob) for reading; call-3..call-42 for DELETE to eat; call-live
    still active (DELETE: 409)."""
    seeded = [("call-1", "alice"), ("call-2", "bob"), ("call-live", "alice")]
    seeded += [(f"call-{n}", "bob" if n % 2 else "alice") for n in range(3, 43)]
    for n, (cid, agent) in enumerate(seeded):
        await store.add_call(call(cid, title=f"+4930123{n} -> Support"))
        await store.add_leg(leg(f"leg-{n}", cid))
        store.put_segment(seg("my router is broken", final=True, leg_id=f"leg-{n}", call_id=cid))
        await store.set_call_agent(cid, agent)
        if cid != "call-live":
            await store.end_call(cid, ended_at_ms=2_000_000_000_000, cause="bye")
    await store.flush()


class HealthProbe:
    """GET /health every 25 ms on its own connection while the fuzzer runs."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.latencies: list[float] = []
        self.failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="health", daemon=True)

    def _run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=10) as client:
            while not self._stop.wait(0.025):
                t0 = time.perf_counter()
                try:
                    ok = client.get("/health").status_code == 200
                except httpx.HTTPError:
                    ok = False
                self.latencies.append(time.perf_counter() - t0)
                self.failures += not ok

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(15)

    def p99(self) -> float:
        if len(self.latencies) < 2:
            return max(self.latencies, default=0.0)
        return statistics.quantiles(self.latencies, n=100)[98]


# -- what one input is, and what is checked ------------------------------------------------------


@dataclass(frozen=True)
class Req:
    method: str
    path: str  # already percent-encoded
    query: str = ""  # already percent-encoded, without "?"
    headers: tuple[tuple[str, bytes], ...] = ()
    body: bytes = b""
    websocket: bool = False

    @property
    def target(self) -> str:
        return self.path + ("?" + self.query if self.query else "")


@dataclass
class Outcome:
    status: int
    body: bytes
    problems: list[str] = field(default_factory=list)  # a 5xx, a leak: the fuzzer's rules
    notes: list[str] = field(default_factory=list)  # worth a look, not against the rules


def leak_markers(server: FuzzServer) -> tuple[str, ...]:
    return (
        str(REPO),
        str(server.db.parent),
        sys.prefix,
        "/site-packages/",
        "/tmp/",
        "/work/",
        "/home/",
        "/root/",
        "Traceback (most recent",
        'File "/',
        "from __future__",
    )


def judge(server: FuzzServer, req: Req, status: int, body: bytes) -> Outcome:
    """The rules: no 5xx but 503, no server path or source in the body (unless the request
    itself carried that text)."""
    outcome = Outcome(status, body)
    if status >= 500 and status != 503:
        outcome.problems.append(f"HTTP {status}")
    sent = (unquote_to_bytes(req.target) + b"\n" + req.body).decode("utf-8", "replace")
    text = body.decode("utf-8", "replace")
    for marker in leak_markers(server):
        if marker in text and marker not in sent:
            outcome.problems.append(f"leaks {marker!r}")
    return outcome


def send(server: FuzzServer, client: httpx.Client, req: Req) -> Outcome:
    if req.websocket:
        return _send_ws(server, req)
    try:
        response = client.request(
            req.method,
            server.base + req.target,
            # One connection per input: a connection the server drops is this input's doing.
            headers=[*req.headers, ("Connection", b"close")],
            content=req.body or None,
        )
    except httpx.LocalProtocolError:
        return Outcome(UNSENDABLE, b"")  # a header h11 will not write: no client sends it
    except httpx.TransportError as exc:
        # The server dropped the connection without an answer: what uvicorn does when the app
        # fails after it started the response (a 500 the client cannot even see).
        outcome = Outcome(NO_ANSWER, b"")
        outcome.problems.append(f"no HTTP answer: {type(exc).__name__}: {str(exc)[:80]}")
        return outcome
    outcome = judge(server, req, response.status_code, response.content)
    if req.method == "POST" and req.path == "/api/v1/whip" and response.status_code == 201:
        # An offer the fuzzer made that the bridge took: end it, not to fill max_sessions.
        client.delete(
            server.base + response.headers["Location"],
            headers={"Authorization": f"Bearer {SUPERVISOR}"},
        )
    return outcome


def _send_ws(server: FuzzServer, req: Req) -> Outcome:
    headers = [(k, v.decode("latin-1")) for k, v in req.headers]
    if any(not _HEADER_VALUE.fullmatch(v) for _, v in headers):
        return Outcome(UNSENDABLE, b"")  # the WebSocket client refuses to send it
    try:
        with ws_connect(
            server.ws + req.target, additional_headers=headers, open_timeout=3, close_timeout=2
        ):
            return judge(server, req, 101, b"")
    except InvalidStatus as exc:
        return judge(server, req, exc.response.status_code, exc.response.body or b"")
    except (InvalidHandshake, OSError, TimeoutError) as exc:
        # No HTTP answer at all (uvicorn's websockets-sansio protocol leaves an upgrade whose
        # request line is over 8 KiB unanswered): not a 5xx nor a leak, reported on its own.
        outcome = Outcome(NO_ANSWER, b"")
        outcome.notes.append(f"no answer: {type(exc).__name__}: {str(exc)[:80]}")
        return outcome


# -- strategies ------------------------------------------------------------------------------------

HOSTILE = [
    "",
    "0",
    "1",
    "200",
    "201",
    "-1",
    "+1",
    "1.5",
    "1e3",
    "0x10",
    " 1",
    "1 ",
    "1_000",
    "²",
    "1²",
    "٣",
    "١٢٣",
    "１２",
    "9" * 19,
    "9" * 20,
    "9" * 25,
    "9" * 400,
    "9" * 5000,
    "\x00",
    "a\x00b",
    '"\x00',
    "\x01\x1f\x7f",
    "\u2028",
    "\ufeff",
    "💥",
    "é",
    "'",
    '"',
    '"unterminated',
    "\\",
    "/",
    "//evil.example",
    "/\\evil.example",
    "../../etc/passwd",
    "..%2F..%2Fapp.py",
    "NEAR(a b)",
    "a*",
    "*",
    "(",
    ")",
    "^",
    "-",
    "OR",
    "AND NOT x",
    "col:val",
    "' OR 1=1 --",
    "<script>alert(1)</script>",
    "%",
    "%%",
    "_",
    "2026-01-31T09:00:00Z",
    "2026-01-31",
    "2026-13-45",
    "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00",
    "2026-01-31T09:00:00+99:00",
    "nan",
    "inf",
    "null",
    "x" * 300,
    "x" * 5000,
    "call-1",
    "call-2",
    "call-",
    "leg-1",
    "leg-2",
    "caller",
    "agent",
    "customer",
    "alice",
    "bob",
    "json",
    "txt",
    "vtt",
    "srt",
    "all",
    "active",
    "ended",
    "realtime",
    "fast",
    "caller,agent",
    "agent,customer",
    ",,,",
    "caller,caller",
    "caller,agent,customer,speaker,unknown",
]
# Numbers as a peer may write them: what int() or str.isdigit() takes and the protocol does not.
NUMBERISH = [
    "²",
    "1²",
    "٣",
    "١٢٣",
    "１２",
    "9" * 20,
    "9" * 5000,
    "-1",
    "1.5",
    " 1",
    "1_000",
    "0x10",
]
# FTS5 and SQL syntax, NUL and other control characters.
SYNTAX = ["\x00", "a\x00b", '"\x00', '"', "NEAR(a b)", "a*", "(", "col:val", "' OR 1=1 --", "\x7f"]
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)
VALUE = st.one_of(
    st.sampled_from(NUMBERISH),
    st.sampled_from(SYNTAX),
    st.sampled_from(HOSTILE),
    st.sampled_from(HOSTILE),
    TEXT,
    st.integers(-(10**25), 10**25).map(str),
    st.from_regex(r"[0-9]{1,30}", fullmatch=True),
)


def _pct(value: str | bytes) -> str:
    return quote(value, safe="")


RAW_VALUE = st.one_of(VALUE.map(_pct), st.binary(max_size=12).map(_pct))  # any bytes, bad UTF-8


def query(*names: str) -> st.SearchStrategy[str]:
    """Mostly the route's own parameters (each at most once), sometimes others or repeats."""
    own = st.sampled_from(names) if names else st.just("x")
    keys = st.one_of(own, own, own, st.sampled_from(["token", "x", *names]))
    pair = st.tuples(keys, RAW_VALUE).map(lambda kv: f"{kv[0]}={kv[1]}")
    return st.lists(pair, min_size=0 if not names else 1, max_size=4).map("&".join)


# Mostly a valid token (the inputs must get past authentication), sometimes none or a bad one.
AUTH = st.sampled_from(
    [SUPERVISOR, SUPERVISOR, SUPERVISOR, ALICE, ALICE, BOB, None, "wrong-token-123", ""]
)
HEADER_VALUE = st.one_of(st.sampled_from(HOSTILE), TEXT).map(lambda v: v.encode("utf-8"))


@st.composite
def auth_and_query(draw: st.DrawFn, *names: str) -> tuple[tuple[tuple[str, bytes], ...], str]:
    token = draw(AUTH)
    q = draw(query(*names))
    headers: list[tuple[str, bytes]] = []
    if token is not None:
        if draw(st.booleans()):
            headers.append(("Authorization", f"Bearer {token}".encode()))
        else:
            q = f"token={_pct(token)}" + ("&" + q if q else "")
    if draw(st.integers(0, 9)) == 0:
        headers.append(("Authorization", draw(HEADER_VALUE)))
    return tuple(headers), q


def path_value(
    ids: tuple[str, ...] = ("call-1", "call-2", "call-live", "nope"),
) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from(ids), RAW_VALUE).filter(bool)


DELETABLE = tuple(f"call-{n}" for n in range(3, 43)) + ("call-live", "nope")


def get(path: str, *names: str) -> st.SearchStrategy[Req]:
    return auth_and_query(*names).map(lambda hq: Req("GET", path, hq[1], hq[0]))


@st.composite
def call_route(draw: st.DrawFn, method: str, suffix: str, *names: str) -> Req:
    headers, q = draw(auth_and_query(*names))
    # DELETE eats its own calls: call-1 and call-2 stay for GET and export.
    call_id = draw(path_value(DELETABLE if method == "DELETE" else ("call-1", "call-2", "nope")))
    return Req(method, f"/api/v1/calls/{call_id}{suffix}", q, headers)


def _wav(seconds: float = 0.2, rate: int = 8000, channels: int = 1) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\x00\x01" * int(seconds * rate) * channels)
    return out.getvalue()


WAV = _wav()
WAV_BODIES = st.one_of(
    st.just(WAV),
    st.just(_wav(channels=2)),
    st.just(_wav(channels=3)),
    st.binary(max_size=200),
    st.binary(max_size=44).map(lambda b: b"RIFF" + b[:4] + b"WAVE" + b[8:]),
    st.integers(0, len(WAV)).map(lambda n: WAV[:n]),
    st.tuples(st.integers(0, len(WAV) - 1), st.binary(min_size=1, max_size=8)).map(
        lambda ib: WAV[: ib[0]] + ib[1] + WAV[ib[0] + len(ib[1]) :]
    ),
)
CONTENT_TYPES = st.sampled_from(
    [
        None,
        "audio/wav",
        "audio/x-wav",
        "audio/wave",
        "multipart/form-data",
        "multipart/form-data; boundary=fuzz",
        "multipart/form-data; boundary=",
        "text/plain",
        "application/sdp",
        "application/trickle-ice-sdpfrag",
        "audio/wav; charset=\x00",
    ]
)


@st.composite
def post_call(draw: st.DrawFn) -> Req:
    headers, q = draw(auth_and_query("agent", "pace", "roles", "title"))
    body = draw(WAV_BODIES)
    content_type = draw(CONTENT_TYPES)
    if content_type == "multipart/form-data; boundary=fuzz" and draw(st.booleans()):
        field_name = draw(st.sampled_from(["file", "other"]))
        filename = draw(st.one_of(st.sampled_from(HOSTILE), TEXT)).replace('"', "")
        body = (
            b"--fuzz\r\nContent-Disposition: form-data; name="
            + f'"{field_name}"; filename="{filename}"'.encode()
            + b"\r\nContent-Type: audio/wav\r\n\r\n"
            + body
            + draw(st.sampled_from([b"\r\n--fuzz--\r\n", b"", b"\r\n--fuzz"]))
        )
    if content_type is not None:
        headers = (*headers, ("Content-Type", content_type.encode("latin-1")))
    return Req("POST", "/api/v1/calls", q, headers, body)


def _mutate_lines(draw: st.DrawFn, text: str, max_ops: int = 4) -> str:
    lines = text.replace("\r\n", "\n").split("\n")
    for _ in range(draw(st.integers(0, max_ops))):
        op = draw(st.sampled_from(["number", "drop", "dup", "insert", "truncate", "replace"]))
        if not lines:
            lines = [""]
        i = draw(st.integers(0, len(lines) - 1))
        if op == "number":  # on a line with a number in it (ports, payload types, rates)
            numbered = [n for n, line in enumerate(lines) if any(c.isdigit() for c in line)]
            i = draw(st.sampled_from(numbered)) if numbered else i
            tokens = lines[i].replace("/", " / ").replace(":", ": ").split(" ")
            digits = [n for n, t in enumerate(tokens) if t.isdigit()]
            if digits:
                tokens[draw(st.sampled_from(digits))] = draw(VALUE)
                lines[i] = " ".join(tokens).replace(" / ", "/").replace(": ", ":")
        elif op == "drop" and lines:
            del lines[i]
        elif op == "dup" and lines:
            lines[i:i] = [lines[i]] * draw(st.integers(1, 200))
        elif op == "insert":
            prefix = draw(
                st.sampled_from(
                    ["a=rtpmap:", "m=audio ", "a=mid:", "a=candidate:", "a=", "v=", "c=", "x"]
                )
            )
            lines.insert(i, prefix + draw(VALUE))
        elif op == "truncate":
            lines = lines[:i]
        elif op == "replace":
            lines[i] = draw(VALUE)
    sep = draw(st.sampled_from(["\r\n", "\n", "\r"]))
    return sep.join(lines)


@st.composite
def post_whip(draw: st.DrawFn) -> Req:
    headers, q = draw(auth_and_query("agent", "call", "roles"))
    if draw(st.integers(0, 9)) == 0:
        body = draw(st.binary(max_size=300))
    else:
        body = _mutate_lines(draw, CHROME).encode("utf-8", "surrogatepass")
    content_type = draw(st.one_of(st.just("application/sdp"), CONTENT_TYPES))
    if content_type is not None:
        headers = (*headers, ("Content-Type", content_type.encode("latin-1")))
    return Req("POST", "/api/v1/whip", q, headers, body)


FRAGMENT = (
    "a=ice-ufrag:idGi\r\na=ice-pwd:MIRWGiirxmhG9DeNx2acYH1T\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"
    "a=mid:0\r\na=candidate:798350125 1 udp 2122194687 127.0.0.1 38632 typ host generation 0 "
    "ufrag idGi\r\na=candidate:842163049 1 udp 1686052607 203.0.113.7 61764 typ srflx raddr "
    "192.0.2.2 rport 37842\r\na=end-of-candidates\r\n"
)


def patch_whip(server: FuzzServer) -> st.SearchStrategy[Req]:
    @st.composite
    def build(draw: st.DrawFn) -> Req:
        headers, q = draw(auth_and_query())
        session = draw(st.one_of(st.just(server.whip_session), path_value()))
        if_match = draw(
            st.sampled_from([server.whip_etag, "*", None, '"x"', "W/" + server.whip_etag])
        )
        if if_match is not None:
            headers = (*headers, ("If-Match", if_match.encode()))
        content_type = draw(st.one_of(st.just("application/trickle-ice-sdpfrag"), CONTENT_TYPES))
        if content_type is not None:
            headers = (*headers, ("Content-Type", content_type.encode("latin-1")))
        body = _mutate_lines(draw, FRAGMENT).encode()
        return Req("PATCH", f"/api/v1/whip/{session}", q, headers, body)

    return build()


def delete_whip() -> st.SearchStrategy[Req]:
    # Never the real session (the PATCH route needs it); unknown ids, other agents, no token.
    return st.tuples(auth_and_query(), path_value()).map(
        lambda t: Req("DELETE", f"/api/v1/whip/{t[1]}", t[0][1], t[0][0])
    )


def static_path() -> st.SearchStrategy[Req]:
    names = st.one_of(
        st.sampled_from(
            [
                "bridge.js",
                "bridge.css",
                "../http/app.py",
                "..%2Fhttp%2Fapp.py",
                "%2e%2e/%2e%2e/pyproject.toml",
                "..\\..\\pyproject.toml",
                "....//....//etc/passwd",
                "%00",
                "bridge.js%00.py",
                "",
                "/etc/passwd",
            ]
        ),
        RAW_VALUE,
    )
    return names.map(lambda name: Req("GET", "/static/" + name))


def any_route() -> st.SearchStrategy[Req]:
    method = st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD", "TRACE"])
    segments = st.lists(RAW_VALUE.filter(bool), min_size=1, max_size=4)
    return st.tuples(method, segments, auth_and_query()).map(
        lambda t: Req(t[0], "/" + "/".join(t[1]), t[2][1], t[2][0])
    )


def session_route(method: str) -> st.SearchStrategy[Req]:
    """/api/v1/session (the browser login): tokens as everywhere, plus hostile session cookies,
    Origin and Sec-Fetch-Site headers."""
    cookie = HEADER_VALUE.map(lambda v: b"bridge_session=" + v)
    extra = st.lists(
        st.one_of(
            cookie.map(lambda v: ("Cookie", v)),
            HEADER_VALUE.map(lambda v: ("Origin", v)),
            HEADER_VALUE.map(lambda v: ("Sec-Fetch-Site", v)),
        ),
        max_size=3,
    )
    return st.tuples(auth_and_query(), extra).map(
        lambda t: Req(method, "/api/v1/session", t[0][1], (*t[0][0], *t[1]))
    )


def websocket_live() -> st.SearchStrategy[Req]:
    return auth_and_query("call", "agent", "resume_from").map(
        lambda hq: Req("GET", "/api/v1/live", hq[1], hq[0], websocket=True)
    )


def routes(server: FuzzServer) -> dict[str, st.SearchStrategy[Req]]:
    """Every route of the app (and some that are not), by name."""
    return {
        "GET /health": get("/health"),
        "GET /ready": get("/ready"),
        "GET /openapi.json": get("/openapi.json"),
        "GET /metrics": get("/metrics"),
        "GET /api/v1/calls": get(
            "/api/v1/calls", "status", "since", "until", "q", "who", "agent", "limit", "offset"
        ),
        "POST /api/v1/calls": post_call(),
        "GET /api/v1/calls/{id}": call_route("GET", ""),
        "DELETE /api/v1/calls/{id}": call_route("DELETE", ""),
        "GET /api/v1/calls/{id}/export": call_route("GET", "/export", "format", "leg"),
        "POST /api/v1/calls/{id}/pause": call_route("POST", "/pause"),
        "POST /api/v1/calls/{id}/resume": call_route("POST", "/resume"),
        "GET /api/v1/live/snapshot": get("/api/v1/live/snapshot", "call", "agent"),
        "GET /api/v1/asr/backends": get("/api/v1/asr/backends"),
        "GET /api/v1/session": session_route("GET"),
        "POST /api/v1/session": session_route("POST"),
        "DELETE /api/v1/session": session_route("DELETE"),
        "WS /api/v1/live": websocket_live(),
        "POST /api/v1/whip": post_whip(),
        "OPTIONS /api/v1/whip": get("/api/v1/whip").map(
            lambda r: Req("OPTIONS", r.path, r.query, r.headers)
        ),
        "PATCH /api/v1/whip/{s}": patch_whip(server),
        "DELETE /api/v1/whip/{s}": delete_whip(),
        "OPTIONS /api/v1/whip/{s}": path_value().map(lambda s: Req("OPTIONS", f"/api/v1/whip/{s}")),
        "GET pages": st.tuples(
            st.sampled_from(["/", "/history", "/login", "/softphone", "/calls/"]),
            path_value(),
            query("next"),
        ).map(lambda t: Req("GET", t[0] + (t[1] if t[0] == "/calls/" else ""), t[2])),
        "GET /static/{path}": static_path(),
        "any other route": any_route(),
    }


# -- running it ---------------------------------------------------------------------------------


@dataclass
class Tally:
    """Inputs tried per route, and what went wrong (status, example) per route."""

    tried: Counter[str] = field(default_factory=Counter)
    statuses: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    problems: dict[str, list[tuple[str, Req, int, bytes]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    notes: Counter[str] = field(default_factory=Counter)
    note_examples: dict[str, list[tuple[str, Req]]] = field(
        default_factory=lambda: defaultdict(list)
    )

    def record(self, route: str, req: Req, outcome: Outcome) -> None:
        self.tried[route] += 1
        self.statuses[route][outcome.status] += 1
        for problem in outcome.problems:
            if len(self.problems[route]) < 50:
                self.problems[route].append((problem, req, outcome.status, outcome.body[:600]))
        for note in outcome.notes:
            self.notes[route] += 1
            if len(self.note_examples[route]) < 5:
                self.note_examples[route].append((note, req))


def fuzz_route(
    server: FuzzServer,
    client: httpx.Client,
    name: str,
    strategy: st.SearchStrategy[Req],
    tally: Tally,
    *,
    max_examples: int,
    fail_fast: bool,
    seed: int | None = None,
) -> None:
    """Run ``max_examples`` inputs of one route; ``fail_fast``: raise on the first problem
    (hypothesis then shrinks it), else only count it."""

    @settings(
        max_examples=max_examples,
        deadline=None if not fail_fast else 10_000,
        database=None,
        derandomize=seed is None and fail_fast,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
        report_multiple_bugs=False,
    )
    @given(strategy)
    def run(req: Req) -> None:
        outcome = send(server, client, req)
        tally.record(name, req, outcome)
        if fail_fast:
            assert not outcome.problems, (outcome.problems, req, outcome.status, outcome.body[:600])

    if seed is not None:
        from hypothesis import seed as hypothesis_seed

        run = hypothesis_seed(seed)(run)
    run()


@contextlib.contextmanager
def fuzz_session(db: Path) -> Iterator[tuple[FuzzServer, httpx.Client, HealthProbe]]:
    with (
        FuzzServer(db) as server,
        httpx.Client(timeout=30) as client,
        HealthProbe(server.base) as probe,
    ):
        yield server, client, probe


# -- CI: a short run ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzzing(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[FuzzServer, httpx.Client, HealthProbe]]:
    with fuzz_session(tmp_path_factory.mktemp("fuzz") / "bridge.db") as session:
        yield session


def _route_names() -> list[str]:
    dummy = FuzzServer.__new__(FuzzServer)
    dummy.whip_session, dummy.whip_etag = "s", '"e"'
    return list(routes(dummy))


@pytest.mark.timeout(120)
@pytest.mark.parametrize("name", _route_names())
def test_no_500_and_no_server_path(
    fuzzing: tuple[FuzzServer, httpx.Client, HealthProbe], name: str
) -> None:
    server, client, _ = fuzzing
    fuzz_route(
        server,
        client,
        name,
        routes(server)[name],
        Tally(),
        max_examples=CI_EXAMPLES,
        fail_fast=True,
    )


def test_health_stays_fast_while_fuzzed(
    fuzzing: tuple[FuzzServer, httpx.Client, HealthProbe],
) -> None:
    """Runs after the routes (pytest keeps file order): /health's latency over the whole run
    (and over one more burst of its own, should it run alone)."""
    server, client, probe = fuzzing
    for name in ("GET /api/v1/calls", "POST /api/v1/whip"):
        fuzz_route(
            server, client, name, routes(server)[name], Tally(), max_examples=20, fail_fast=True
        )
    assert len(probe.latencies) > 20
    assert probe.failures == 0
    assert probe.p99() < HEALTH_P99_LIMIT_S, f"/health p99 {probe.p99() * 1000:.0f} ms"


async def test_every_route_of_the_app_is_fuzzed(tmp_path: Path) -> None:
    store = await TranscriptStore.open(tmp_path / "routes.db")
    try:
        app = create_app(store=store, hub=LiveHub(), endpoint=NO_ASR, tokens=TOKENS)
    finally:
        await store.close()
    covered = set(_route_names())
    for route in app.routes:
        path = getattr(route, "path", "")
        methods = getattr(route, "methods", None) or {"GET"}
        if path in ("/", "/history", "/login", "/softphone", "/calls/{call_id}"):
            assert "GET pages" in covered
            continue
        if path == "/static":
            assert "GET /static/{path}" in covered
            continue
        shown = path.replace("{call_id}", "{id}").replace("{session_id}", "{s}")
        kind = "WS" if route.__class__.__name__ == "WebSocketRoute" else None
        for method in methods - {"HEAD"} if kind is None else {"WS"}:
            assert f"{method} {shown}" in covered, f"{method} {path} is not fuzzed"


def run_for(
    db: Path, seconds: float, *, examples_per_round: int, on_round: Callable[[int], None]
) -> tuple[Tally, HealthProbe]:
    """The long run (benchmarks/fuzz_http.py): rounds over every route until ``seconds``."""
    tally = Tally()
    with fuzz_session(db) as (server, client, probe):
        deadline = time.monotonic() + seconds
        n = 0
        while time.monotonic() < deadline:
            n += 1
            for name, strategy in routes(server).items():
                if time.monotonic() >= deadline:
                    break
                fuzz_route(
                    server,
                    client,
                    name,
                    strategy,
                    tally,
                    max_examples=examples_per_round,
                    fail_fast=False,
                    seed=n * 7919 + len(name),
                )
            on_round(n)
    return tally, probe
