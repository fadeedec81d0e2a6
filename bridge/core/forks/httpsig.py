"""HTTP message signatures on the AudioHook upgrade request (hmac-sha256; pure, no I/O).

docs/media-forks.md §4.3.  Genesys signs the WebSocket upgrade when the integration has a client
secret, as the AudioHook specification describes and the reference server verifies
(purecloudlabs/audiohook-reference-implementation ``app/src/authenticator.ts``,
``app/audiohook/src/httpsignature/signature-verifier.ts``; the HTTP Message Signatures draft,
now RFC 9421, with RFC 8941 structured fields)::

    Signature-Input: sig1=("@request-target" "@authority" "audiohook-organization-id"
        "audiohook-session-id" "audiohook-correlation-id" "x-api-key");keyid="<api key>";
        nonce="...";alg="hmac-sha256";created=1641013200;expires=1641013230
    Signature: sig1=:<base64 of HMAC-SHA256(client secret, signature base)>:

The signature base is one line ``"<component>": <value>`` per covered component, then
``"@signature-params": <the inner list re-encoded>``, joined by ``\\n``.  The secret is the
integration's client secret, base64-decoded.  Like the reference server, the bridge requires
those six components, a nonce of at least 22 characters, ``keyid`` equal to ``X-API-KEY``, and a
signature created at most :data:`MAX_AGE_S` ago.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Callable
from typing import Final

REQUIRED: Final = (
    "@request-target",
    "@authority",
    "audiohook-organization-id",
    "audiohook-session-id",
    "audiohook-correlation-id",
    "x-api-key",
)
MAX_AGE_S: Final = 10  # the reference server's maxSignatureAge
CLOCK_SKEW_S: Final = 3  # its MAX_CLOCK_SKEW
MIN_NONCE: Final = 22
MAX_FIELD: Final = 4096

Bare = str | int | bool | bytes
Params = list[tuple[str, Bare]]
_KEY = re.compile(r"[a-z*][a-z0-9_.*-]{0,63}", re.ASCII)
_TOKEN = re.compile(r"[A-Za-z*][A-Za-z0-9!#$%&'*+.^_`|~:/-]*", re.ASCII)
_INT = re.compile(r"-?[0-9]{1,15}", re.ASCII)


class SignatureError(ValueError):
    """The request's signature is missing, malformed, stale or wrong (the message says which)."""


class _Reader:
    """RFC 8941 §4.2 parsing, the parts a signature uses (strings, integers, tokens, booleans,
    byte sequences, inner lists and parameters)."""

    def __init__(self, text: str) -> None:
        self.text, self.at = text, 0

    def peek(self) -> str:
        return self.text[self.at : self.at + 1]

    def skip(self, spaces: str = " ") -> None:
        while self.peek() and self.peek() in spaces:
            self.at += 1

    def match(self, pattern: re.Pattern[str], what: str) -> str:
        found = pattern.match(self.text, self.at)
        if found is None:
            raise SignatureError(f"expected {what} at character {self.at}")
        self.at = found.end()
        return found.group()

    def bare(self) -> Bare:
        c = self.peek()
        if c == '"':
            self.at += 1
            out: list[str] = []
            while True:
                ch = self.peek()
                if not ch:
                    raise SignatureError("unterminated string")
                self.at += 1
                if ch == "\\":
                    ch = self.peek()
                    if ch not in ('"', "\\"):
                        raise SignatureError("bad escape in a string")
                    self.at += 1
                elif ch == '"':
                    return "".join(out)
                elif not " " <= ch <= "~":
                    raise SignatureError("a string may hold printable ASCII only")
                out.append(ch)
        if c == ":":
            end = self.text.find(":", self.at + 1)
            if end < 0:
                raise SignatureError("unterminated byte sequence")
            chunk, self.at = self.text[self.at + 1 : end], end + 1
            try:
                return base64.b64decode(chunk, validate=True)
            except binascii.Error:
                raise SignatureError("a byte sequence is not base64") from None
        if c == "?":
            self.at += 1
            value = self.match(re.compile("[01]"), "?0 or ?1")
            return value == "1"
        if c == "-" or c.isdigit():
            return int(self.match(_INT, "an integer"))
        return self.match(_TOKEN, "a token")

    def params(self) -> Params:
        found: Params = []
        while self.peek() == ";":
            self.at += 1
            self.skip()
            key = self.match(_KEY, "a parameter name")
            value: Bare = True
            if self.peek() == "=":
                self.at += 1
                value = self.bare()
            found.append((key, value))
        return found

    def member(self) -> tuple[list[tuple[Bare, Params]] | Bare, Params]:
        if self.peek() != "(":
            return self.bare(), self.params()
        self.at += 1
        items: list[tuple[Bare, Params]] = []
        while True:
            self.skip()
            if self.peek() == ")":
                self.at += 1
                return items, self.params()
            if not self.peek():
                raise SignatureError("unterminated inner list")
            items.append((self.bare(), self.params()))
            if self.peek() not in (" ", ")"):
                raise SignatureError("inner list items are separated by spaces")

    def dictionary(self) -> dict[str, tuple[list[tuple[Bare, Params]] | Bare, Params]]:
        found: dict[str, tuple[list[tuple[Bare, Params]] | Bare, Params]] = {}
        self.skip(" \t")
        while self.peek():
            key = self.match(_KEY, "a dictionary key")
            if self.peek() == "=":
                self.at += 1
                found[key] = self.member()
            else:
                found[key] = (True, self.params())
            self.skip(" \t")
            if not self.peek():
                break
            if self.peek() != ",":
                raise SignatureError("dictionary members are separated by commas")
            self.at += 1
            self.skip(" \t")
            if not self.peek():
                raise SignatureError("a trailing comma")
        return found


def _encode(value: Bare) -> str:
    if isinstance(value, bool):
        return "?1" if value else "?0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, bytes):
        return ":" + base64.b64encode(value).decode() + ":"
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _encode_params(params: Params) -> str:
    return "".join(f";{k}" if v is True else f";{k}={_encode(v)}" for k, v in params)


def canonical(value: str) -> str:
    """A header value as it is signed (trimmed, obsolete line folding joined)."""
    return re.sub(r"[ \t]*\r\n[ \t]+", " ", value.strip())


def verify(
    header: Callable[[str], str | None],
    target: str,
    key: bytes,
    *,
    now: float,
    api_key: str,
    max_age_s: float | None = MAX_AGE_S,
) -> None:
    """Check the request's ``Signature-Input``/``Signature`` against ``key``.

    ``header(name)`` gives a header's value (all of them joined by ``", "``) or None; ``target``
    is the request target (path and query).  Raises :class:`SignatureError` saying why not.
    """
    raw_input, raw_signature = header("signature-input"), header("signature")
    if not raw_input or not raw_signature:
        raise SignatureError("unsigned: no Signature-Input and Signature header fields")
    if len(raw_input) > MAX_FIELD or len(raw_signature) > MAX_FIELD:
        raise SignatureError("signature header fields too long")
    inputs = _Reader(canonical(raw_input)).dictionary()
    signatures = _Reader(canonical(raw_signature)).dictionary()
    if not inputs:
        raise SignatureError("empty Signature-Input")
    label, (covered, params) = next(iter(inputs.items()))
    signature = signatures.get(label, (None, []))[0]
    if not isinstance(signature, bytes):
        raise SignatureError(f"no byte-sequence Signature for label {label!r}")
    if not isinstance(covered, list) or not all(isinstance(n, str) for n, _ in covered):
        raise SignatureError("Signature-Input must be an inner list of component names")
    p = dict(params)
    if set(p) - {"alg", "created", "expires", "keyid", "nonce"}:
        raise SignatureError("unknown signature parameter")
    if p.get("alg", "hmac-sha256") != "hmac-sha256":
        raise SignatureError(f"algorithm {p['alg']!r}: only hmac-sha256")
    nonce = p.get("nonce")
    if not isinstance(nonce, str) or len(nonce) < MIN_NONCE:
        raise SignatureError(f"a nonce of at least {MIN_NONCE} characters is required")
    if p.get("keyid") != api_key:
        raise SignatureError("keyid is not the X-API-KEY")
    created, expires = p.get("created"), p.get("expires")
    if created is not None and (not isinstance(created, int) or created > now + CLOCK_SKEW_S):
        raise SignatureError("created is in the future")
    if expires is not None and (not isinstance(expires, int) or expires < now):
        raise SignatureError("the signature expired")
    if max_age_s is not None and (
        not isinstance(created, int) or created + max_age_s + CLOCK_SKEW_S < now
    ):
        raise SignatureError(f"the signature is older than {max_age_s:.0f} s (or undated)")
    names = [str(name) for name, _ in covered]
    missing = [name for name in REQUIRED if name not in names]
    if missing:
        raise SignatureError("the signature does not cover " + ", ".join(missing))
    if len(set(names)) != len(names) or any(item_params for _, item_params in covered):
        raise SignatureError("duplicate or parameterized components are not taken")
    lines = []
    for name in names:
        if name == "@request-target":
            value: str | None = target
        elif name == "@authority":
            value = header("host")
        elif name.startswith("@"):
            raise SignatureError(f"component {name!r} is not taken")
        else:
            value = header(name)
        if not value:
            raise SignatureError(f"covered component {name!r} is not in the request")
        lines.append(f'"{name}": {canonical(value)}')
    inner = "(" + " ".join(_encode(n) for n in names) + ")" + _encode_params(params)
    lines.append(f'"@signature-params": {inner}')
    expected = hmac.new(key, "\n".join(lines).encode(), hashlib.sha256).digest()
    if not hmac.compare_digest(expected, signature):
        raise SignatureError("the signature does not match (wrong client secret?)")


def sign(
    components: list[tuple[str, str]], key: bytes, *, keyid: str, nonce: str, created: int
) -> dict[str, str]:
    """The two header fields that sign ``components`` (name, value) as Genesys does (the
    reference's ``SignatureBuilder``; used by the tests' peer)."""
    params: Params = [
        ("keyid", keyid),
        ("nonce", nonce),
        ("alg", "hmac-sha256"),
        ("created", created),
        ("expires", created + 30),
    ]
    inner = "(" + " ".join(_encode(n) for n, _ in components) + ")" + _encode_params(params)
    lines = [f'"{name}": {canonical(value)}' for name, value in components]
    lines.append(f'"@signature-params": {inner}')
    digest = hmac.new(key, "\n".join(lines).encode(), hashlib.sha256).digest()
    return {"Signature-Input": f"sig1={inner}", "Signature": f"sig1={_encode(digest)}"}
