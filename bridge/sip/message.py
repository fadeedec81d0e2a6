"""A raw SIP message (pjsua's ``rdata.wholeMsg``) as start line, headers and body (sans-I/O).

pjsua has already parsed and accepted the message; the bridge reads it again only for what the
pjsua2 wheel does not expose: request-URI, extension headers, ``Require`` and a multipart body.
RFC 3261 §7.3: header names are case-insensitive, have compact forms (§7.3.3), and a header may be
folded onto continuation lines starting with whitespace (§7.3.1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# RFC 3261 §7.3.3 and the IANA registry: the compact forms the bridge reads.
COMPACT = {
    "c": "content-type",
    "i": "call-id",
    "f": "from",
    "t": "to",
    "m": "contact",
    "k": "supported",
    "l": "content-length",
    "v": "via",
}


@dataclass(frozen=True, slots=True)
class SipMessage:
    start_line: str
    headers: tuple[tuple[str, str], ...]  # (lower-case full name, value) in message order
    body: str

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (any case, full name), or ``None``."""
        wanted = name.lower()
        return next((v for n, v in self.headers if n == wanted), None)

    def option_tags(self, name: str) -> frozenset[str]:
        """The option tags of every ``name`` header (``Require``, ``Supported``), lower case."""
        wanted = name.lower()
        return frozenset(
            tag.strip().lower()
            for n, v in self.headers
            if n == wanted
            for tag in v.split(",")
            if tag.strip()
        )

    @property
    def request_uri(self) -> str:
        """RFC 3261 §7.1: ``Method SP Request-URI SP SIP-Version``; "" for a response."""
        parts = self.start_line.split()
        return parts[1] if len(parts) == 3 and parts[2].upper().startswith("SIP/") else ""

    @property
    def request_user(self) -> str:
        """The user part of the request-URI (``sip:1001@pbx`` -> ``1001``), or ""."""
        found = re.match(r"^sips?:([^@;?]+)@", self.request_uri)
        return found.group(1) if found else ""


def parse_message(whole_msg: str) -> SipMessage:
    """Split a raw SIP message; never raises (pjsua parsed it first)."""
    head, *rest = re.split(r"\r?\n\r?\n", whole_msg, maxsplit=1)
    body = rest[0] if rest else ""
    lines = head.replace("\r\n", "\n").split("\n")
    unfolded: list[str] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and unfolded:
            unfolded[-1] += " " + line.strip()  # §7.3.1: folding is one SP
        elif line:
            unfolded.append(line)
    headers = []
    for line in unfolded:
        name, sep, value = line.partition(":")
        if sep:
            key = name.strip().lower()
            headers.append((COMPACT.get(key, key), value.strip()))
    return SipMessage(lines[0].strip(), tuple(headers), body)
