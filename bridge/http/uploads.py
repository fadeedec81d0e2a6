"""The HTTP side of ``POST /api/v1/calls``: an uploaded recording, checked and answered.

What the request says (its title, Content-Type and Content-Length), what an error about the
stored file tells the user (no server path), and the upload jobs as the routes use them: a
refusal of :class:`bridge.uploads.UploadJobs` is its problem document here (429 when the token
has too many, 503 + Retry-After when the bridge is busy, 422 for more channels than uploads may
use).  The body is streamed to disk by :mod:`.upload_body`; queueing, capacity and running the
file as a call are :mod:`bridge.uploads` (not HTTP).  Any format ``bridge transcribe`` reads is
taken (WAV, MP3, OGG/Opus, M4A/AAC, FLAC, ...: :mod:`bridge.files.reader`).
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path, PurePosixPath

from starlette.requests import Request

from bridge.errors import MediaError, UploadRefused
from bridge.uploads import UploadJobs, UploadLimits
from bridge.uploads.admission import BUSY, OVER_CAPACITY, TOO_MANY_UPLOADS

from .problems import HttpProblem
from .upload_body import MULTIPART_SLACK_BYTES, receive_multipart, receive_raw, too_large

__all__ = [  # what the routes (app.py) take from here
    "MULTIPART_SLACK_BYTES",
    "UploadLimits",
    "UploadRunner",
    "declared_length",
    "file_name_for",
    "is_recording_type",
    "parse_title",
    "receive_multipart",
    "receive_raw",
    "too_large",
    "unsupported_type",
    "user_message",
]

MAX_TITLE_CHARS = 255
_SUFFIX = re.compile(r"\.[A-Za-z0-9]{1,8}")
_FILE_STEM = "upload"
REFUSAL_STATUS = {TOO_MANY_UPLOADS: 429, BUSY: 503, OVER_CAPACITY: 422}


class UploadRunner(UploadJobs):
    """:class:`~bridge.uploads.UploadJobs` whose refusals are problem documents."""

    def refused(self, refusal: UploadRefused) -> Exception:
        headers = {}
        if refusal.retry_after_s is not None:
            headers["Retry-After"] = str(refusal.retry_after_s)
        status = REFUSAL_STATUS[refusal.reason]
        return HttpProblem(status, str(refusal), kind=refusal.reason, headers=headers)


def parse_title(raw: str | None) -> str:
    """The call's title from ``?title=`` or a multipart file name: its base name, at most
    MAX_TITLE_CHARS characters, no control characters; ``.wav`` added without an extension."""
    if raw is None or not raw.strip():
        return "upload.wav"
    if len(raw) > MAX_TITLE_CHARS:
        raise HttpProblem(
            400, f"title: at most {MAX_TITLE_CHARS} characters, got {len(raw)}", kind="bad-query"
        )
    if any(ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0 for ch in raw):
        raise HttpProblem(400, "title: control characters are not allowed", kind="bad-query")
    name = PurePosixPath(raw.replace("\\", "/")).name.strip()
    if not name or name in (".", ".."):
        return "upload.wav"
    if not PurePosixPath(name).suffix:
        name += ".wav"
    return name


def file_name_for(title: str) -> str:
    """The stored file's name: fixed, with the title's extension when it is a plain one (a raw
    ``.ul``/``.al`` recording is told apart by it)."""
    suffix = PurePosixPath(title).suffix
    return _FILE_STEM + (suffix.lower() if _SUFFIX.fullmatch(suffix) else ".wav")


def user_message(error: MediaError, path: Path, title: str) -> str:
    """A MediaError about the stored file, told about the user's file: no server path in it."""
    text = str(error).replace(str(path.parent) + os.sep, "")
    if text.startswith(path.name + ":"):
        text = title + text[len(path.name) :]
    stem = PurePosixPath(title).stem or "upload"
    return re.sub(
        rf"\b{_FILE_STEM}(-[a-z0-9]+)?(\.[a-z0-9]+)\b",
        lambda m: shlex.quote(stem + (m.group(1) or "") + m.group(2)),
        text,
    )


def is_recording_type(content_type: str) -> bool:
    """Whether a raw body of this Content-Type may be a recording: ``audio/*``, ``video/*`` (an
    MP4 or WebM with sound), ``application/ogg`` (RFC 5334) or ``application/octet-stream``.
    Media types are case-insensitive (RFC 9110 §8.3.1).  The type only keeps form posts and text
    out: what the file is, FFmpeg finds from its bytes (``bridge.files.reader``)."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    return media_type.startswith(("audio/", "video/")) or media_type in (
        "application/ogg",
        "application/octet-stream",
    )


def unsupported_type(content_type: str) -> HttpProblem:
    return HttpProblem(
        415,
        f"Content-Type {content_type[:100] or 'missing'}: send the recording as audio/* (audio/wav,"
        " audio/mpeg, audio/ogg, audio/mp4, audio/flac, ...), or multipart/form-data with a"
        " 'file' field",
        kind="unsupported-media",
    )


def declared_length(request: Request) -> int | None:
    raw = request.headers.get("content-length")
    if raw is None:
        return None
    raw = raw.strip()
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:
        raise HttpProblem(400, "Content-Length: expected a byte count", kind="bad-request")
    return int(raw)
