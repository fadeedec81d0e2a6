"""The OpenAPI 3.1 document of the HTTP API, written by hand next to the routes it describes.

``tests/http/test_openapi.py`` checks that every route of the app is in it and nothing else.
"""

from __future__ import annotations

from typing import Any

from bridge import __version__
from bridge.core.types import TIMINGS
from bridge.export import SCHEMA

_PROBLEM = {"$ref": "#/components/responses/Problem"}
_ID = {"name": "call_id", "in": "path", "required": True, "schema": {"type": "string"}}


def _q(name: str, description: str, **schema: Any) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


def _json(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "description": description,
        "content": {"application/json": {"schema": schema or {"type": "object"}}},
    }


_ERRORS = {"400": _PROBLEM, "401": _PROBLEM, "403": _PROBLEM, "404": _PROBLEM}

_CALL = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "source": {"type": "string", "enum": ["file", "sip", "siprec", "webrtc"]},
        "title": {"type": "string"},
        "agent": {"type": ["string", "null"]},
        "started_at_ms": {"type": "integer"},
        "ended_at_ms": {"type": ["integer", "null"]},
        "end_cause": {"type": ["string", "null"]},
        "duration_ms": {"type": ["integer", "null"]},
        "leg_count": {"type": "integer"},
        "active": {"type": "boolean"},
        "links": {"type": "object"},
    },
}


# A segment's and a word's shape (bridge/export.py segment_json): the call's transcript, the
# export and the live API's segment events all use it.
_TIMING = {
    "type": "string",
    "enum": list(TIMINGS),
    "description": (
        "how start_ms/end_ms were obtained. step-clock: the 80 ms model step that carried the "
        "text (vLLM realtime), exact to 80 ms. server: a span the ASR server stated (OpenAI "
        "transcription dialect); several words in one span are placed in it by character count. "
        "arrival: the server stated no time; the audio span the bridge committed as one turn, "
        "words placed in it by character count."
    ),
}

_WORD = {
    "type": "object",
    "properties": {
        "text": {"type": "string"},
        "start_ms": {"type": "integer", "description": "leg clock"},
        "end_ms": {"type": "integer", "description": "leg clock"},
        "timing": _TIMING,
    },
    "required": ["text", "start_ms", "end_ms", "timing"],
}

_SEGMENT = {
    "type": "object",
    "properties": {
        "leg_id": {"type": "string"},
        "role": {"type": "string"},
        "seq": {"type": "integer"},
        "start_ms": {"type": "integer", "description": "leg clock"},
        "end_ms": {"type": "integer", "description": "leg clock"},
        "text": {"type": "string", "description": "the whole utterance so far"},
        "final": {"type": "boolean"},
        "timing": _TIMING,
        "words": {"type": "array", "items": {"$ref": "#/components/schemas/Word"}},
    },
    "required": ["leg_id", "role", "seq", "start_ms", "end_ms", "text", "final", "timing", "words"],
}

_TRANSCRIPT = {
    "type": "object",
    "properties": {
        "schema": {"type": "string", "const": SCHEMA},
        "call": {"type": "object"},
        "legs": {"type": "array", "items": {"type": "object"}},
        "segments": {"type": "array", "items": {"$ref": "#/components/schemas/Segment"}},
        "gaps": {"type": "array", "items": {"type": "object"}},
        "events": {"type": "array", "items": {"type": "object"}},
    },
}


_PAUSED = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "paused": {"type": "boolean"},
        "changed": {"type": "boolean", "description": "whether this request changed the state"},
    },
}


_BACKEND = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "url": {"type": "string"},
        "model": {"type": "string"},
        "dialect": {"type": "string", "enum": ["vllm", "openai"]},
        "healthy": {"type": "boolean"},
        "problem": {"type": ["string", "null"], "description": "why it is not healthy"},
        "legs": {"type": "integer"},
        "max_legs": {"type": ["integer", "null"], "description": "null: no limit"},
        "lagging": {"type": "integer", "description": "its legs behind real time"},
        "failures": {"type": "integer", "description": "times it went unhealthy"},
    },
}


_PRINCIPAL = {
    "type": "object",
    "properties": {
        "role": {"type": "string", "enum": ["supervisor", "agent"]},
        "agent": {"type": ["string", "null"]},
    },
}


def openapi_document() -> dict[str, Any]:
    public: list[dict[str, Any]] = []
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Call transcription bridge",
            "version": __version__,
            "description": (
                "Calls, live transcripts and exports.  Every endpoint except /health and /ready "
                "needs an API token (Authorization: Bearer TOKEN, ?token= for links, or the "
                "browser session cookie that POST /api/v1/session sets).  Errors are RFC 9457 "
                "problem documents.  The live API is a WebSocket at /api/v1/live (see "
                "x-websocket)."
            ),
        },
        "security": [{"bearer": []}],
        "paths": {
            "/health": {
                "get": {
                    "summary": "The process answers",
                    "security": public,
                    "responses": {"200": _json("alive")},
                }
            },
            "/ready": {
                "get": {
                    "summary": "The store is readable and the bridge not stopping",
                    "security": public,
                    "responses": {"200": _json("ready"), "503": _PROBLEM},
                }
            },
            "/openapi.json": {
                "get": {"summary": "This document", "responses": {"200": _json("OpenAPI 3.1")}}
            },
            "/metrics": {
                "get": {
                    "summary": "Prometheus metrics",
                    "responses": {
                        "200": {
                            "description": "text exposition format",
                            "content": {"text/plain": {"schema": {"type": "string"}}},
                        },
                        "401": _PROBLEM,
                    },
                }
            },
            "/api/v1/session": {
                "get": {
                    "summary": "Whom the request authenticates as: role and agent",
                    "responses": {"200": _json("the principal", _PRINCIPAL), "401": _PROBLEM},
                },
                "post": {
                    "summary": "Browser login: the Bearer token becomes a session cookie",
                    "description": (
                        "The login page sends the token as Authorization: Bearer (not ?token=). "
                        "The answer sets the cookie bridge_session: HttpOnly, SameSite=Strict, "
                        "no Max-Age (it ends with the browser session), Secure over https.  The "
                        "cookie then authorizes pages, REST, downloads and the live WebSocket; a "
                        "POST, PUT, PATCH, DELETE or WebSocket that relies on it must come from "
                        "a page of this origin (Origin, or Sec-Fetch-Site: same-origin), else "
                        "403.  A page URL with ?token= sets it too (303 to the URL without it)."
                    ),
                    "responses": {
                        "200": _json("logged in: the principal", _PRINCIPAL),
                        "400": _PROBLEM,
                        "401": _PROBLEM,
                    },
                },
                "delete": {
                    "summary": "Log out: the session cookie is cleared",
                    "responses": {
                        "204": {"description": "logged out"},
                        "401": _PROBLEM,
                        "403": _PROBLEM,
                    },
                },
            },
            "/api/v1/calls": {
                "get": {
                    "summary": "List and search calls, newest first",
                    "parameters": [
                        _q("status", "all, active or ended", enum=["all", "active", "ended"]),
                        _q("since", "started at or after (epoch ms or ISO 8601)"),
                        _q("until", "started before (epoch ms or ISO 8601)"),
                        _q("q", "full-text search over final segment text: every word must occur"),
                        _q("who", "participant: title or leg label contains this (name, number)"),
                        _q("agent", "only this agent's calls (agents: always their own)"),
                        _q("limit", "page size", type="integer", minimum=1, maximum=200),
                        _q("offset", "calls to skip", type="integer", minimum=0),
                    ],
                    "responses": {
                        "200": _json(
                            "a page of calls",
                            {
                                "type": "object",
                                "properties": {
                                    "calls": {"type": "array", "items": _CALL},
                                    "total": {"type": "integer"},
                                    "limit": {"type": "integer"},
                                    "offset": {"type": "integer"},
                                    "next": {"type": ["string", "null"]},
                                },
                            },
                        ),
                        **_ERRORS,
                    },
                },
                "post": {
                    "summary": "Transcribe a recording as a live call (for tests and demos)",
                    "parameters": [
                        _q("pace", "realtime (like a call) or fast", enum=["realtime", "fast"]),
                        _q("roles", "roles of the channels, e.g. caller,agent"),
                        _q("agent", "the agent the call belongs to"),
                        _q(
                            "title",
                            "the call's title for a raw audio/* body (multipart: the file name)",
                        ),
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {
                            # WAV, MP3, OGG/Opus, M4A/AAC, FLAC, ...: FFmpeg reads the bytes
                            "audio/*": {"schema": {"type": "string", "format": "binary"}},
                            "multipart/form-data": {
                                "schema": {
                                    "type": "object",
                                    "properties": {"file": {"type": "string", "format": "binary"}},
                                }
                            },
                        },
                    },
                    "responses": {
                        "202": _json(
                            "accepted; Location is the call. Body: id, status (running, or"
                            " queued until live calls leave ASR capacity spare), queue_position"
                            " (0 when running), links"
                        ),
                        "413": _PROBLEM,
                        "415": _PROBLEM,
                        "422": _PROBLEM,
                        "429": _PROBLEM,
                        "503": _PROBLEM,
                        **_ERRORS,
                    },
                },
            },
            "/api/v1/calls/{call_id}": {
                "parameters": [_ID],
                "get": {
                    "summary": "One call: legs, segments with words, gaps, events",
                    "description": f"Schema {SCHEMA} (bridge/export.py).",
                    "responses": {"200": _json("the call", _TRANSCRIPT), **_ERRORS},
                },
                "delete": {
                    "summary": "Delete an ended call and its transcript (supervisors); an upload"
                    " still queued or running is cancelled instead (ends 'cancelled', finals kept)",
                    "responses": {
                        "200": _json("the cancelled upload's call"),
                        "202": _json("cancelling: its legs are still finishing"),
                        "204": {"description": "deleted"},
                        "409": _PROBLEM,
                        **_ERRORS,
                    },
                },
            },
            "/api/v1/calls/{call_id}/export": {
                "parameters": [_ID],
                "get": {
                    "summary": "Download the transcript (streamed)",
                    "parameters": [
                        _q("format", "json, txt, vtt or srt", enum=["json", "txt", "vtt", "srt"]),
                        _q("leg", "one leg (id or role); default: all legs merged in time order"),
                    ],
                    "responses": {
                        "200": {
                            "description": "the transcript",
                            "content": {
                                "application/json": {},
                                "text/plain": {},
                                "text/vtt": {},
                                "application/x-subrip": {},
                            },
                        },
                        **_ERRORS,
                    },
                },
            },
            **{
                f"/api/v1/calls/{{call_id}}/{action}": {
                    "parameters": [_ID],
                    "post": {
                        "summary": summary,
                        "description": (
                            "A payment step (PCI DSS): while a call is paused nothing of it is "
                            "transcribed, stored or pushed; each leg's span is a gap with reason "
                            "'paused'.  The call's agent or a supervisor; 409 when the call is "
                            "not in progress.  Idempotent: 'changed' says whether this request "
                            "changed the state."
                        ),
                        "responses": {
                            "200": {
                                "description": "the call's state",
                                "content": {"application/json": {"schema": _PAUSED}},
                            },
                            **_ERRORS,
                        },
                    },
                }
                for action, summary in (
                    ("pause", "Pause a live call's transcription (a payment step)"),
                    ("resume", "Resume a paused call's transcription"),
                )
            },
            "/api/v1/whip": {
                "post": {
                    "summary": "WebRTC ingest (WHIP, RFC 9725): an SDP offer becomes a live call",
                    "description": (
                        "Body: the SDP offer (Content-Type application/sdp, non-trickle: all "
                        "candidates included).  201 with the SDP answer, Location (the session "
                        "URL for DELETE), ETag and Bridge-Call-Id.  Each sending audio track is "
                        "one leg, roles by track order (roles=agent,customer by default); codecs "
                        "Opus, PCMU, PCMA.  415 not application/sdp, 400 malformed SDP, 406 no "
                        "usable audio track (or video offered, or more tracks than roles), 503 "
                        "with Retry-After over the session limit.  Trickle ICE/ICE restart "
                        "(PATCH) is not supported."
                    ),
                    "parameters": [
                        _q("agent", "owner of the call (supervisor tokens only)"),
                        _q("call", "the call's title"),
                        _q("roles", "leg roles in track order, e.g. agent,customer"),
                    ],
                    "requestBody": {
                        "required": True,
                        "content": {"application/sdp": {"schema": {"type": "string"}}},
                    },
                    "responses": {
                        "201": {
                            "description": "SDP answer",
                            "content": {"application/sdp": {"schema": {"type": "string"}}},
                        },
                        **_ERRORS,
                    },
                },
                "options": {
                    "summary": "CORS preflight (no token)",
                    "responses": {"204": {"description": "allowed methods and headers"}},
                },
            },
            "/api/v1/whip/{session_id}": {
                "delete": {
                    "summary": "End a WHIP session: legs finalise, the call ends 'whip-delete'",
                    "parameters": [
                        {
                            "name": "session_id",
                            "in": "path",
                            "required": True,
                            "schema": {"type": "string"},
                        }
                    ],
                    "responses": {"200": {"description": "ended"}, **_ERRORS},
                }
            },
            "/api/v1/live/snapshot": {
                "get": {
                    "summary": "Active calls with the latest line per leg, ASR health and seq",
                    "parameters": [_q("call", "one call"), _q("agent", "one agent's calls")],
                    "responses": {"200": _json("snapshot"), **_ERRORS},
                }
            },
            "/api/v1/asr/backends": {
                "get": {
                    "summary": "The ASR servers: health and why, legs, budget (supervisors)",
                    "responses": {
                        "200": _json(
                            "backends",
                            {
                                "type": "object",
                                "properties": {"backends": {"type": "array", "items": _BACKEND}},
                            },
                        ),
                        **_ERRORS,
                    },
                }
            },
            "/api/v1/live": {
                "get": {
                    "summary": "Live events (WebSocket upgrade)",
                    "description": (
                        "Each message is a JSON text: an array of one or more events, oldest "
                        "first (everything pending for the client when it is sent; at most 1000 "
                        "events or about 256 KiB, the rest follows in the next message).  Each "
                        "event has seq (hub-wide, increasing), type (call.started, call.ended, "
                        "leg.started, leg.ended, segment.partial, segment.final, gap, dtmf, "
                        "asr.health, resync) and call_id; payloads use the export JSON's field "
                        "names (a segment is #/components/schemas/Segment).  A partial may be "
                        "replaced by a newer revision of the same segment before it is sent; "
                        "finals are never dropped.  Reconnect with "
                        "resume_from=<last seq> to miss nothing; on resync re-read over REST.  "
                        "Closed with 1013 'too-slow' when a client falls behind.  A refused "
                        "upgrade (no or invalid token, another agent's calls, a bad query) is "
                        "HTTP 403 without a body; the bridge logs why at INFO."
                    ),
                    "parameters": [
                        _q("call", "one call"),
                        _q("agent", "one agent's calls"),
                        _q("all", "every call (the default for supervisors)"),
                        _q("resume_from", "last seq seen", type="integer"),
                        _q("token", "API token, for browsers"),
                    ],
                    "x-websocket": True,
                    "responses": {
                        "101": {"description": "switching protocols"},
                        "403": {"description": "upgrade refused (token, agent or query)"},
                    },
                }
            },
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {"Segment": _SEGMENT, "Word": _WORD},
            "responses": {
                "Problem": {
                    "description": "RFC 9457 problem details",
                    "content": {
                        "application/problem+json": {
                            "schema": {
                                "type": "object",
                                "properties": {
                                    "type": {"type": "string"},
                                    "title": {"type": "string"},
                                    "status": {"type": "integer"},
                                    "detail": {"type": "string"},
                                },
                                "required": ["type", "title", "status", "detail"],
                            }
                        }
                    },
                }
            },
        },
    }
