"""A SIP message body by its parts (RFC 2046 §5.1 ``multipart/*``), sans-I/O.

SIPREC offers (:mod:`bridge.sip.siprec`) carry their SDP and rs-metadata as two parts of one
``multipart/mixed`` body; an SDP answer may come the same way (:func:`bridge.sip.policy.
unreadable_answer`).  What real SRCs send beyond the RFC is tolerated here and listed in
:mod:`bridge.sip.siprec`'s docstring; errors are 400s worded as a SIPREC body's (the tests and
the logs name them so), each naming what is wrong.
"""

from __future__ import annotations

import re

from bridge.errors import RemoteProtocolError

METADATA_TYPE = "application/rs-metadata+xml"  # RFC 7866 §9, with Content-Disposition below
METADATA_DISPOSITION = "recording-session"


def bad_siprec(what: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"malformed SIPREC body: {what}", status_hint=400)


def split_body(content_type: str, body: str, *, closed: bool = False) -> dict[str, str]:
    """The parts of a message body by media type (lower case, no parameters, no blanks).

    A body that is not ``multipart/*`` is one part.  In a multipart body (RFC 2046 §5.1.1) the
    preamble before the first delimiter and the epilogue after the close delimiter are ignored,
    and the line break before each delimiter belongs to the delimiter.  The first part of a type
    wins.  A part of type ``application/rs-metadata`` or with ``Content-Disposition:
    recording-session`` is filed under METADATA_TYPE.  ``closed``: the close delimiter must be
    there (RFC 2046 §5.1.1 requires it; some SRCs' logged bodies lack it, see the module doc).
    """
    media_type = _media_type(content_type)
    if not body.strip():
        return {}
    if not media_type:
        raise bad_siprec("a body without Content-Type (RFC 3261 §20.15)")
    if not media_type.startswith("multipart/"):
        return {_file_under(media_type, ""): body}
    found = re.search(r';\s*boundary\s*=\s*(?:"([^"]*)"|([^;\s]+))', content_type, re.I)
    boundary = (found.group(1) or found.group(2) or "") if found else ""
    if not 1 <= len(boundary) <= 70:
        raise bad_siprec(f"{media_type} without a boundary parameter (RFC 2046 §5.1.1)")
    # RFC 2046 §5.1.1: "--" boundary, then "--" for the close delimiter, then transport padding.
    lines = list(re.finditer(rf"^--{re.escape(boundary)}(--)?[ \t]*\r?$", body, re.M))
    if not lines:
        raise bad_siprec(f"no '--{boundary}' delimiter line in the {media_type} body")
    if closed and not any(line.group(1) for line in lines):
        raise bad_siprec(
            f"{media_type} body without its close delimiter '--{boundary}--' (RFC 2046 §5.1.1)"
        )
    parts: dict[str, str] = {}
    for n, (line, following) in enumerate(zip(lines, [*lines[1:], None], strict=True), 1):
        if line.group(1):
            break
        text = body[line.end() + 1 : following.start() if following else len(body)]
        if following:
            text = re.sub(r"\r?\n\Z", "", text)
        part_type, part_body = _read_part(n, text, terminated=following is not None)
        parts.setdefault(part_type, part_body)
    return parts


def _media_type(value: str) -> str:
    return re.sub(r"\s+", "", value.split(";", 1)[0]).lower()


def _read_part(n: int, text: str, *, terminated: bool) -> tuple[str, str]:
    if text.startswith(("\n", "\r\n")):
        head, body = "", re.sub(r"\A\r?\n", "", text)
    elif found := re.search(r"\r?\n\r?\n", text):
        head, body = text[: found.start()], text[found.end() :]
    elif terminated:
        head, body = text, ""
    else:
        raise bad_siprec(f"multipart part {n} ends inside its headers (truncated body?)")
    headers: dict[str, str] = {}
    for line in re.sub(r"\r?\n[ \t]+", " ", head).splitlines():  # RFC 2822 §2.2.3 unfolding
        name, colon, value = line.partition(":")
        if not colon:
            raise bad_siprec(f"multipart part {n}: header line {line[:40]!r} has no ':'")
        headers.setdefault(name.strip().lower(), value.strip())
    # RFC 2046 §5.1.1: a part without Content-Type is text/plain.
    part_type = _media_type(headers.get("content-type", "text/plain"))
    return _file_under(part_type, _media_type(headers.get("content-disposition", ""))), body


def _file_under(media_type: str, disposition: str) -> str:
    if disposition == METADATA_DISPOSITION or media_type == "application/rs-metadata":
        return METADATA_TYPE
    return media_type
