"""An upload's request body, streamed to a file as it arrives, under the size limit.

A raw ``audio/*`` body is written as it comes; of a ``multipart/form-data`` body only the part
named ``file`` is (RFC 7578; the other parts are skipped).  The limit is enforced on the bytes
received, never on a whole body in memory: 413 as soon as it is passed.  Received bytes are
written in ``WRITE_BLOCK_BYTES`` blocks in a thread, off the event loop.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import IO, cast

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from .problems import HttpProblem

MULTIPART_SLACK_BYTES = 64 * 1024  # boundaries, part headers and small fields around the file
WRITE_BLOCK_BYTES = 1 << 20  # received bytes are written to disk in blocks this big, off the loop


def too_large(limit: int) -> HttpProblem:
    return HttpProblem(
        413,
        f"recordings are limited to {limit} bytes ({limit // (1024 * 1024)} MiB)",
        kind="too-large",
    )  # the rest of the body is read and dropped for a while (the server's linger), then cut


def gone() -> HttpProblem:
    """The client went away (or was cut for sending nothing) before its body ended."""
    return HttpProblem(400, "the request body ended early: the client disconnected")


class _DiskWriter:
    """Collects received bytes; writes them in WRITE_BLOCK_BYTES blocks in a thread."""

    def __init__(self, file: IO[bytes]) -> None:
        self.file = file
        self.pending = bytearray()
        self.written = 0

    def add(self, data: bytes) -> None:
        self.pending += data

    async def maybe_flush(self, *, final: bool = False) -> None:
        if self.pending and (final or len(self.pending) >= WRITE_BLOCK_BYTES):
            block, self.pending = bytes(self.pending), bytearray()
            await asyncio.to_thread(self.file.write, block)
            self.written += len(block)


async def receive_raw(request: Request, path: Path, limit: int) -> int:
    """Stream a raw body to ``path``; 413 as soon as more than ``limit`` bytes came."""
    received = 0
    with path.open("wb") as f:
        out = _DiskWriter(f)
        try:
            async for chunk in request.stream():
                received += len(chunk)
                if received > limit:
                    raise too_large(limit)
                out.add(chunk)
                await out.maybe_flush()
        except ClientDisconnect:
            raise gone() from None
        await out.maybe_flush(final=True)
    return received


async def receive_multipart(request: Request, path: Path, limit: int) -> tuple[int, str | None]:
    """Stream the ``file`` part of a multipart/form-data body to ``path``; other parts are
    skipped.  Returns the file's size and its file name.  413 past ``limit`` file bytes (or the
    body past ``limit`` + MULTIPART_SLACK_BYTES); 400 for a body that is not multipart."""
    _, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if not boundary:
        raise HttpProblem(400, "multipart body without a boundary parameter", kind="bad-request")
    header_field = bytearray()
    header_value = bytearray()
    part: dict[str, object] = {}
    found: dict[str, object] = {}

    def on_part_begin() -> None:
        part.clear()
        part["headers"] = {}

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_field.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        headers = cast(dict[bytes, bytes], part["headers"])
        headers[bytes(header_field).lower()] = bytes(header_value)
        header_field.clear()
        header_value.clear()

    def on_headers_finished() -> None:
        headers = cast(dict[bytes, bytes], part["headers"])
        _, disposition = parse_options_header(headers.get(b"content-disposition", b""))
        if disposition.get(b"name") == b"file":
            if "name" in found:
                raise HttpProblem(400, "multipart body: send one 'file' field", kind="bad-request")
            found["name"] = disposition.get(b"filename", b"").decode("utf-8", "replace")
            part["file"] = True

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if part.get("file"):
            out.add(data[start:end])
            if out.written + len(out.pending) > limit:
                raise too_large(limit)

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data,
        },
        max_header_count=16,
        max_header_size=8192,
    )
    body_limit = limit + MULTIPART_SLACK_BYTES
    received = 0
    with path.open("wb") as f:
        out = _DiskWriter(f)
        stream = request.stream()
        while True:
            try:
                chunk = await anext(stream)
            except StopAsyncIteration:
                break
            except ClientDisconnect:
                raise gone() from None
            received += len(chunk)
            if received > body_limit:
                raise too_large(limit)
            try:
                parser.write(chunk)
            except FormParserError as exc:
                raise HttpProblem(
                    400, f"multipart body: cannot parse it ({exc})", kind="bad-request"
                ) from None
            await out.maybe_flush()
        try:
            parser.finalize()
        except FormParserError as exc:
            raise HttpProblem(
                400, f"multipart body: cannot parse it ({exc})", kind="bad-request"
            ) from None
        await out.maybe_flush(final=True)
    if "name" not in found:
        raise HttpProblem(
            400, "multipart body: put the recording in a field named 'file'", kind="bad-request"
        )
    return out.written, cast(str, found["name"]) or None
