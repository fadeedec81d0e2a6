"""A SIP fuzzer: hostile INVITEs, re-INVITEs, UPDATEs, INFOs and strays, over UDP and TCP.

No pytest imports: ``tests/integration/test_sip_fuzz.py`` runs a short campaign in CI and
``benchmarks/fuzz_sip.py`` a long one with a report.

Messages are built from real material (a plain SDP offer; the vendor SIPREC offers of
``tests/sip/corpus/siprec``) and mutated in the ways the issue-12 probe and RFC 4475 ("SIP
Torture Test Messages") describe: non-ASCII digits, Latin-1 and NUL bytes, numbers of 5,000
digits, missing or duplicated headers, multipart bodies without a boundary or without a closing
delimiter, broken and hostile rs-metadata XML, dozens of m-lines, unknown codecs and body types.

Every message keeps or breaks the headers a response is routed by (RFC 3261 §8.1.1: Via, From,
To, Call-ID, CSeq).  One that keeps them must get a final response (:attr:`Outcome.answered`);
one that breaks them may be dropped by pjsip's parser, as RFC 3261 §16.3 allows for a request
that cannot be answered.

The :class:`RawUac` acknowledges every final response (RFC 3261 §17.1.1.3), and for a 2xx it
sends the mutated in-dialog requests of that message (re-INVITE, UPDATE, INFO), then a BYE —
or keeps the call open until :meth:`RawUac.close` when asked to hold calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "corpus" / "siprec"
SIPREC_OFFERS = sorted(p for p in CORPUS.glob("*.txt") if "offer" in p.name)

PJSIP_MAX_PKT_LEN = 4000  # pjsip drops a larger message (sip_transport.c "Dropping ... packet")
ROUTING = ("via", "from", "to", "call-id", "cseq")  # RFC 3261 §8.1.1: a response needs these

PLAIN_SDP = (
    "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
    "m=audio {port} RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
)

ODD_DIGITS = ("\u00b2", "\u0663", "\u00bd", "\uff17", "9" * 5000, "-1", "0x10", "1e3", " 7", "")
ODD_TEXT = (
    "caf\xe9".encode("latin-1"),
    b"\x00",
    b"\xff\xfe",
    b"\xc3\x28",
    "\u202e\u200b".encode(),
    b"%00",
    b"A" * 3000,
)


@dataclass
class Message:
    """A SIP request under construction: start line, headers in order, body."""

    method: str
    uri: str
    headers: list[tuple[str, bytes]]
    body: bytes = b""
    fix_length: bool = True  # Content-Length follows the body unless a mutation says so
    # A mutation touched syntax pjsip's own parser checks (start line, Content-Length, CSeq,
    # Max-Forwards, option tags, Content-Type, duplicated single headers): pjsip may drop the
    # request before any application code sees it (sip_transport.c "Dropping ... packet").
    parser_may_drop: bool = False

    def header(self, name: str) -> bytes | None:
        return next((v for n, v in self.headers if n.lower() == name), None)

    def set(self, name: str, value: bytes) -> None:
        self.headers = [(n, v) for n, v in self.headers if n.lower() != name.lower()]
        self.headers.append((name, value))

    def encode(self) -> bytes:
        headers = self.headers
        if self.fix_length:
            headers = [(n, v) for n, v in headers if n.lower() not in ("content-length", "l")]
            headers.append(("Content-Length", str(len(self.body)).encode()))
        head = f"{self.method} {self.uri} SIP/2.0\r\n".encode()
        return (
            head
            + b"".join(n.encode() + b": " + v + b"\r\n" for n, v in headers)
            + (b"\r\n" + self.body)
        )

    @property
    def routable(self) -> bool:
        names = {n.lower() for n, _ in self.headers}
        return all(h in names for h in ROUTING) and not self.parser_may_drop


@dataclass
class Case:
    """One generated message and what was done to it."""

    message: Message
    mutations: list[str]
    in_dialog: list[Message] = field(default_factory=list)  # sent after a 2xx, before BYE


class Generator:
    """Seeded: the same seed gives the same messages."""

    def __init__(self, seed: int, *, host: str = "127.0.0.1") -> None:
        self.rng = random.Random(seed)
        self.host = host
        self.n = 0
        self.offers = [(p.name, p.read_bytes()) for p in SIPREC_OFFERS]

    # -- base messages ---------------------------------------------------------------------

    def _base(self, method: str, target: str, body: bytes, content_type: bytes) -> Message:
        self.n += 1
        call_id = f"fuzz-{self.n}-{self.rng.getrandbits(32):08x}@{self.host}"
        headers: list[tuple[str, bytes]] = [
            ("Via", b"SIP/2.0/@TRANSPORT@ @VIA@;branch=z9hG4bK@BRANCH@;rport"),
            ("Max-Forwards", b"70"),
            ("From", f"<sip:fuzz@{self.host}>;tag=f{self.n}".encode()),
            ("To", f"<sip:{target}>".encode()),
            ("Call-ID", call_id.encode()),
            ("CSeq", f"1 {method}".encode()),
            ("Contact", b"<sip:fuzz@@VIA@;transport=@transport@>"),
            ("User-Agent", b"call-bridge-fuzz"),
        ]
        if body:
            headers.append(("Content-Type", content_type))
        return Message(method, f"sip:{target}", headers, body)

    def invite(self, user: str, body: bytes, content_type: bytes) -> Message:
        """An INVITE to ``user`` with ``body``, nothing mutated."""
        return self.request("INVITE", user, body, content_type)

    def request(
        self, method: str, user: str, body: bytes = b"", content_type: bytes = b""
    ) -> Message:
        """An out-of-dialog ``method`` request to ``user``, nothing mutated."""
        return self._base(method, f"{user}@{self.host}", body, content_type)

    def plain_invite(self) -> Message:
        sdp = PLAIN_SDP.format(port=2 * self.rng.randrange(5000, 30000)).encode()
        user = self.rng.choice(("bridge", "1001", "tap-2000", "+15551234567", "*97"))
        return self._base("INVITE", f"{user}@{self.host}", sdp, b"application/sdp")

    def siprec_invite(self, name: str | None = None) -> Message:
        """A SIPREC INVITE with a corpus offer: ``name``, or one at random."""
        offers = dict(self.offers)
        name = name or self.rng.choice(sorted(offers))
        body = offers[name]
        found = re.search(rb"^--([^\r\n]+?)\s*$", body, re.M)
        boundary = found.group(1) if found else b"boundary"
        message = self._base(
            "INVITE",
            f"srs@{self.host}",
            body.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"),
            b"multipart/mixed;boundary=" + boundary,
        )
        message.set("Require", b"siprec")
        message.set("Contact", b"<sip:src@@VIA@;transport=@transport@>;+sip.src")
        return message

    def stray(self) -> Message:
        """An out-of-dialog request that is not an INVITE, or one for a dialog nobody has."""
        method = self.rng.choice(("OPTIONS", "BYE", "INFO", "UPDATE", "MESSAGE", "CANCEL", "PRACK"))
        message = self._base(method, f"bridge@{self.host}", b"", b"")
        if method in ("BYE", "INFO", "UPDATE") or self.rng.random() < 0.3:
            message.set("To", f"<sip:bridge@{self.host}>;tag=nobody{self.n}".encode())
        return message

    # -- mutations ---------------------------------------------------------------------------

    def mutate(self, message: Message, mutations: list[str]) -> None:
        for _ in range(self.rng.choice((0, 1, 1, 2, 3))):
            name, mutation = self.rng.choice(MUTATIONS)
            with contextlib.suppress(ValueError, IndexError):
                mutation(self, message)
                mutations.append(name)

    def cases(self) -> Iterator[Case]:
        while True:
            roll = self.rng.random()
            if roll < 0.45:
                message = self.plain_invite()
            elif roll < 0.85:
                message = self.siprec_invite()
            else:
                message = self.stray()
            mutations: list[str] = []
            self.mutate(message, mutations)
            case = Case(message, mutations)
            if message.method == "INVITE":
                case.in_dialog = [self.in_dialog(message) for _ in range(self.rng.randrange(3))]
            yield case

    def in_dialog(self, invite: Message) -> Message:
        """A mutated re-INVITE, UPDATE or INFO for the dialog ``invite`` opens."""
        method = self.rng.choice(("INVITE", "UPDATE", "INFO"))
        if method == "INFO":
            digit = self.rng.choice("0123456789*#AD")
            # Unterminated last lines too: pjsua's own reader aborted on them (pjsua2.md P15).
            body = self.rng.choice(
                (f"Signal={digit}\r\nDuration=160\r\n", f"Signal={digit}", "Duration=1\r\n")
            ).encode()
            ctype = self.rng.choice((b"application/dtmf-relay", b"application/dtmf"))
        else:
            body, ctype = invite.body, invite.header("content-type") or b"application/sdp"
        message = Message(method, "@CONTACT@", list(invite.headers), body)
        message.set("Content-Type", ctype)
        message.set("CSeq", f"@CSEQ@ {method}".encode())
        message.set("To", b"@TO@")
        mutations: list[str] = []
        self.mutate(message, mutations)
        for name in ROUTING:  # in-dialog: the dialog's own routing headers, always
            if message.header(name) is None:
                value = {"to": b"@TO@", "cseq": f"@CSEQ@ {method}".encode()}.get(name)
                message.set(name.title(), value or invite.header(name) or b"")
        return message


def _digits_in_body(g: Generator, m: Message) -> None:
    numbers = list(re.finditer(rb"(?<![0-9A-Za-z])[0-9]{1,5}(?![0-9A-Za-z])", m.body))
    hit = g.rng.choice(numbers)
    odd = g.rng.choice(ODD_DIGITS).encode()
    m.body = m.body[: hit.start()] + odd + m.body[hit.end() :]


def _text_in_body(g: Generator, m: Message) -> None:
    at = g.rng.randrange(len(m.body) + 1)
    m.body = m.body[:at] + g.rng.choice(ODD_TEXT) + m.body[at:]


def _latin1_name(g: Generator, m: Message) -> None:
    """A participant named in ISO-8859-1 inside UTF-8 rs-metadata (the issue's probe)."""
    if b"<name" not in m.body and b"<nameID" not in m.body:
        raise ValueError("no name element")
    jose = "Jos\xe9".encode("latin-1")
    m.body = re.sub(rb"(<name[^>]*>)[^<]*", lambda x: x.group(1) + jose, m.body)


def _xml_hostile(g: Generator, m: Message) -> None:
    if b"<?xml" not in m.body and b"recording" not in m.body:
        raise ValueError("no XML part")
    laughs = (
        b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa">'
        b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
        b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;">]>'
        b'<recording xmlns="urn:ietf:params:xml:ns:recording:1">&c;</recording>'
    )
    choice = g.rng.choice(
        (
            laughs,
            b'<?xml version="1.0"?><recording xmlns="urn:ietf:params:xml:ns:recording:1">',
            b'<?xml version="1.0" encoding="UTF-16"?><recording/>',
            b"<recording>" + b"<participant>" * 500 + b"</recording>",
            b"not xml at all",
        )
    )
    start = m.body.find(b"<?xml")
    start = start if start >= 0 else m.body.find(b"<recording")
    end = m.body.find(b"\r\n--", start)
    m.body = m.body[:start] + choice + (m.body[end:] if end >= 0 else b"")


def _no_boundary(g: Generator, m: Message) -> None:
    m.set("Content-Type", b"multipart/mixed")


def _no_closing_delimiter(g: Generator, m: Message) -> None:
    at = m.body.rfind(b"\r\n--")
    if at < 0:
        raise ValueError("not multipart")
    m.body = m.body[:at] + b"\r\n"


def _wrong_boundary(g: Generator, m: Message) -> None:
    m.set("Content-Type", b"multipart/mixed;boundary=not-the-one")


def _many_media(g: Generator, m: Message) -> None:
    count = g.rng.choice((3, 16, 17, 100))
    extra = b"".join(
        b"m=audio %d RTP/AVP 0\r\na=label:%d\r\n" % (4000 + 2 * i, i) for i in range(count)
    )
    at = m.body.find(b"\r\n--", m.body.find(b"m=audio"))
    m.body = m.body[:at] + b"\r\n" + extra + m.body[at:] if at >= 0 else m.body + extra


def _unknown_codecs(g: Generator, m: Message) -> None:
    m.body = re.sub(rb"RTP/AVP[ 0-9]+", b"RTP/AVP 3 18 97", m.body)


def _drop_line(g: Generator, m: Message) -> None:
    lines = m.body.split(b"\r\n")
    del lines[g.rng.randrange(len(lines))]
    m.body = b"\r\n".join(lines)


def _truncate_body(g: Generator, m: Message) -> None:
    m.body = m.body[: g.rng.randrange(len(m.body) + 1)]


def _body_type(g: Generator, m: Message) -> None:
    m.parser_may_drop = True
    m.set(
        "Content-Type",
        g.rng.choice(
            (b"text/plain", b"application/sdp;charset=latin-1", b"application/", b"", b"\xe9/sdp")
        ),
    )


def _drop_header(g: Generator, m: Message) -> None:
    names = [n for n, _ in m.headers if n.lower() not in ROUTING]
    drop = g.rng.choice(names)
    m.headers = [(n, v) for n, v in m.headers if n != drop]


def _drop_routing_header(g: Generator, m: Message) -> None:
    if g.rng.random() > 0.2:  # rare: such a message may legitimately go unanswered
        raise ValueError("not this time")
    drop = g.rng.choice(ROUTING)
    m.headers = [(n, v) for n, v in m.headers if n.lower() != drop]


def _duplicate_header(g: Generator, m: Message) -> None:
    name, value = g.rng.choice(m.headers)
    m.parser_may_drop |= name.lower() not in ("via", "contact", "user-agent", "require")
    m.headers.append((name, value))


def _odd_header_value(g: Generator, m: Message) -> None:
    name = g.rng.choice(("Subject", "X-Bridge-Target", "Require", "Supported", "Max-Forwards"))
    odd = g.rng.choice(ODD_TEXT) if g.rng.random() < 0.7 else g.rng.choice(ODD_DIGITS).encode()
    # pjsip's scanner parses option tags and numbers, and stops at a NUL (a C string's end).
    m.parser_may_drop |= name in ("Require", "Supported", "Max-Forwards") or b"\x00" in odd
    m.set(name, odd)


def _odd_request_user(g: Generator, m: Message) -> None:
    user = g.rng.choice(("caf\xe9", "\u00b2\u00b2", "tap-" + "9" * 300, "a;b=c", "%00"))
    m.uri = f"sip:{user}@{g.host}"
    m.parser_may_drop |= not user.isascii() or "%" in user


def _wrong_length(g: Generator, m: Message) -> None:
    m.fix_length = False
    m.parser_may_drop = True
    m.set("Content-Length", g.rng.choice((b"0", b"5", b"99999", b"-1", "\u00b2".encode())))


def _cseq_method(g: Generator, m: Message) -> None:
    if m.header("cseq") == b"@CSEQ@ " + m.method.encode():
        raise ValueError("in-dialog CSeq is filled in later")
    m.parser_may_drop = True
    m.set("CSeq", g.rng.choice((b"1 BYE", "\u00b2 INVITE".encode(), b"99999999999 INVITE")))


MUTATIONS: list[tuple[str, Callable[[Generator, Message], None]]] = [
    (f.__name__.strip("_"), f)
    for f in (
        _digits_in_body,
        _text_in_body,
        _latin1_name,
        _xml_hostile,
        _no_boundary,
        _no_closing_delimiter,
        _wrong_boundary,
        _many_media,
        _unknown_codecs,
        _drop_line,
        _truncate_body,
        _body_type,
        _drop_header,
        _drop_routing_header,
        _duplicate_header,
        _odd_header_value,
        _odd_request_user,
        _wrong_length,
        _cseq_method,
    )
]


# -- the UAC that sends them ---------------------------------------------------------------------


@dataclass
class Outcome:
    case: Case
    transport: str
    final: int | None = None  # the final status of the (initial) request, if any
    reason: bytes = b""
    response: bytes = b""  # the final response itself
    in_dialog_finals: list[int | None] = field(default_factory=list)
    bye: int | None = None  # the final status of our BYE, once the call was answered
    seconds: float = 0.0
    final_s: float = 0.0  # from sending the request to its final response

    @property
    def must_answer(self) -> bool:
        """RFC 3261 §8.2: a request whose routing headers are intact gets a final response;
        ACK (never answered) and CANCEL of nothing (481) aside, pjsip answers every method."""
        m = self.case.message
        small = len(m.encode()) < PJSIP_MAX_PKT_LEN - 100  # the placeholders' values vary
        return m.routable and m.method not in ("ACK", "CANCEL") and self._wire_ok and small

    @property
    def _wire_ok(self) -> bool:
        """Framing pjsip can read: over TCP a wrong Content-Length desynchronises the stream
        (RFC 3261 §18.3: the length frames the message) and may leave it waiting for bytes."""
        return self.case.message.fix_length or self.transport == "udp"


class _Dialog:
    def __init__(self, response: bytes, invite: Message) -> None:
        self.to = _header(response, b"to") or b""
        contact = _header(response, b"contact") or b""
        found = re.search(rb"<([^>]+)>", contact)
        self.contact = (found.group(1) if found else contact).decode(errors="replace")
        self.cseq = 1
        self.invite = invite


def _header(response: bytes, name: bytes) -> bytes | None:
    head = response.split(b"\r\n\r\n", 1)[0]
    compact = {b"to": b"t", b"contact": b"m", b"call-id": b"i", b"via": b"v"}.get(name, b"")
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() in (name, compact):
            return value.strip()
    return None


def _status(response: bytes) -> tuple[int, bytes] | None:
    found = re.match(rb"SIP/2\.0 ([0-9]{3}) ?([^\r\n]*)", response)
    return (int(found.group(1)), found.group(2)) if found else None


@dataclass
class _Tcp:
    """One TCP connection to the bridge and the task reading its responses."""

    writer: asyncio.StreamWriter
    reader: asyncio.Task[None]
    via: str

    async def close(self) -> None:
        self.reader.cancel()
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self.reader


Stream = _Tcp


class RawUac:
    """Sends generated cases to ``host:port`` and waits for their final responses."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        answer_timeout_s: float = 5.0,
        hold_calls: bool = False,
    ) -> None:
        self.target = (host, port)
        self.answer_timeout_s = answer_timeout_s
        self.hold_calls = hold_calls
        self.held: list[tuple[_Dialog, str]] = []
        self._waiting: dict[tuple[bytes, bytes], asyncio.Future[bytes]] = {}
        self._udp: asyncio.DatagramTransport | None = None
        self._udp_addr = ""
        self._tcp: dict[int, _Tcp] = {}
        self.stray_responses = 0
        self.counts: Counter[str] = Counter()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        uac = self

        class Protocol(asyncio.DatagramProtocol):
            def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
                uac._received(data, "udp")

        transport, _ = await loop.create_datagram_endpoint(Protocol, local_addr=(self.target[0], 0))
        self._udp = transport
        host, port = transport.get_extra_info("sockname")[:2]
        self._udp_addr = f"{host}:{port}"

    async def close(self) -> None:
        for dialog, transport in self.held:
            with contextlib.suppress(Exception):
                await self._bye(dialog, transport)
        self.held.clear()
        for conn in self._tcp.values():
            await conn.close()
        self._tcp.clear()
        if self._udp is not None:
            self._udp.close()

    def _received(self, data: bytes, transport: str) -> None:
        status = _status(data)
        if status is None:  # a request from the bridge (its BYE for an RTP timeout, say)
            self._answer_request(data)
            return
        call_id = _header(data, b"call-id") or b""
        cseq = (_header(data, b"cseq") or b"").split(b" ")[0]
        future = self._waiting.get((call_id, cseq))
        if status[0] >= 200 and future is not None and not future.done():
            future.set_result(data)
        elif status[0] >= 200 and future is None:
            self.stray_responses += 1  # a retransmitted final we already ACKed

    def _answer_request(self, data: bytes) -> None:
        if self._udp is None or data.startswith(b"ACK "):
            return
        head = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
        keep = [
            line
            for line in head[1:]
            if line.split(b":")[0].strip().lower()
            in (b"via", b"v", b"from", b"f", b"to", b"t", b"call-id", b"i", b"cseq")
        ]
        response = b"SIP/2.0 200 OK\r\n" + b"\r\n".join(keep) + b"\r\nContent-Length: 0\r\n\r\n"
        self._udp.sendto(response, self.target)

    def _fill(
        self, message: Message, transport: str, via: str, branch: str, **more: bytes
    ) -> bytes:
        data = message.encode()
        data = data.replace(b"@TRANSPORT@", transport.upper().encode())
        data = data.replace(b"@transport@", transport.encode())
        data = data.replace(b"@VIA@", via.encode()).replace(b"@BRANCH@", branch.encode())
        for key, value in more.items():
            data = data.replace(f"@{key}@".encode(), value)
        return data

    async def _connect(self) -> _Tcp:
        reader, writer = await asyncio.open_connection(*self.target)
        local = writer.get_extra_info("sockname")
        task = asyncio.create_task(self._read_stream(reader, "tcp"))
        return _Tcp(writer, task, f"{local[0]}:{local[1]}")

    async def _pooled(self, slot: int) -> _Tcp:
        conn = self._tcp.get(slot)
        if conn is None or conn.reader.done() or conn.writer.is_closing():
            conn = self._tcp[slot] = await self._connect()
        return conn

    async def run(self, case: Case, transport: str, slot: int = 0) -> Outcome:
        outcome = Outcome(case, transport)
        started = time.monotonic()
        message = case.message
        call_id = message.header("call-id") or b""
        cseq = (message.header("cseq") or b"1").split(b" ")[0]
        branch = f"{time.monotonic_ns():x}{id(case):x}"
        stream: Stream | None = None
        one_shot = False
        try:
            if transport == "tcp":
                # RFC 3261 §18: one connection carries many requests, as a PBX or SBC keeps
                # it; a message pjsip cannot frame or read would break it for the next ones.
                one_shot = not outcome.must_answer  # pjsip may give up on its stream
                try:
                    stream = await self._connect() if one_shot else await self._pooled(slot)
                except OSError as exc:
                    outcome.reason = f"connect: {exc}".encode()
                    return outcome
                via = stream.via
            else:
                via = self._udp_addr
            data = self._fill(message, transport, via, branch)
            # A request pjsip may drop gets a short wait: nothing will come for it.
            wait_s = self.answer_timeout_s if outcome.must_answer else 1.0
            response = await self._request(data, (call_id, cseq), transport, stream, wait_s)
            if response is None and stream is not None and not one_shot and stream.reader.done():
                # pjsip closed the connection (an earlier request on it broke its framing):
                # like any client, send again on a new one (RFC 3261 §18.1.1), with its Via.
                stream = await self._pooled(slot)
                via = stream.via
                data = self._fill(message, transport, via, branch)
                response = await self._request(data, (call_id, cseq), transport, stream, wait_s)
            if response is None:
                return outcome
            status = _status(response)
            assert status is not None
            outcome.final, outcome.reason = status
            outcome.response = response
            outcome.final_s = time.monotonic() - started
            if message.method != "INVITE":
                return outcome
            dialog = _Dialog(response, message)
            if 200 <= status[0] < 300:
                await self._ack(dialog, transport, via, stream, response)
                for request in case.in_dialog:
                    outcome.in_dialog_finals.append(
                        await self._in_dialog(dialog, request, transport, via, stream)
                    )
                if self.hold_calls and stream is None:
                    self.held.append((dialog, transport))
                else:
                    outcome.bye = await self._bye(dialog, transport, via, stream)
            else:  # RFC 3261 §17.1.1.3: the ACK of a non-2xx final: same branch and Request-URI
                ack = self._fill(
                    Message(
                        "ACK",
                        message.uri,
                        [
                            ("Via", b"SIP/2.0/@TRANSPORT@ @VIA@;branch=z9hG4bK@BRANCH@;rport"),
                            ("Max-Forwards", b"70"),
                            ("From", message.header("from") or b""),
                            ("To", dialog.to),
                            ("Call-ID", call_id),
                            ("CSeq", cseq + b" ACK"),
                        ],
                    ),
                    transport,
                    via,
                    branch,
                )
                self._send(ack, transport, stream)
            return outcome
        finally:
            outcome.seconds = time.monotonic() - started
            self.counts[f"{transport} {message.method} {outcome.final}"] += 1
            if stream is not None and one_shot:
                await stream.close()

    def _send(self, data: bytes, transport: str, stream: Stream | None) -> None:
        if stream is not None:
            stream.writer.write(data)
        elif self._udp is not None:
            self._udp.sendto(data, self.target)

    async def _request(
        self,
        data: bytes,
        key: tuple[bytes, bytes],
        transport: str,
        stream: Stream | None,
        timeout_s: float | None = None,
    ) -> bytes | None:
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._waiting[key] = future
        try:
            # RFC 3261 §17.1.1.2 / §17.1.2.2: over UDP a request is sent again after T1 (500 ms),
            # doubling, until a response comes.
            deadline = time.monotonic() + (timeout_s or self.answer_timeout_s)
            interval = 0.5
            while True:
                self._send(data, transport, stream)
                wait = min(interval, deadline - time.monotonic())
                if transport != "udp":
                    wait = deadline - time.monotonic()
                try:
                    return await asyncio.wait_for(asyncio.shield(future), wait)
                except TimeoutError:
                    if time.monotonic() >= deadline:
                        return None
                interval = min(interval * 2, 4.0)
        except ConnectionError:
            return None
        finally:
            self._waiting.pop(key, None)

    async def _read_stream(self, reader: asyncio.StreamReader, transport: str) -> None:
        """RFC 3261 §18.3: messages on a stream are framed by Content-Length."""
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = _header(head, b"content-length") or _header(head, b"l") or b"0"
            body = await reader.readexactly(int(length)) if length.isdigit() else b""
            self._received(head + body, transport)

    async def _ack(
        self,
        dialog: _Dialog,
        transport: str,
        via: str,
        stream: Stream | None,
        response: bytes,
    ) -> None:
        """RFC 3261 §13.2.2.4: the ACK of a 2xx is a new transaction to the remote target."""
        invite = dialog.invite
        cseq = (_header(response, b"cseq") or b"1").split(b" ")[0]
        ack = Message(
            "ACK",
            dialog.contact,
            [
                ("Via", b"SIP/2.0/@TRANSPORT@ @VIA@;branch=z9hG4bK@BRANCH@;rport"),
                ("Max-Forwards", b"70"),
                ("From", invite.header("from") or b""),
                ("To", dialog.to),
                ("Call-ID", invite.header("call-id") or b""),
                ("CSeq", cseq + b" ACK"),
            ],
        )
        data = self._fill(ack, transport, via, f"ack{time.monotonic_ns():x}")
        self._send(data, transport, stream)

    async def _in_dialog(
        self,
        dialog: _Dialog,
        request: Message,
        transport: str,
        via: str,
        stream: Stream | None,
    ) -> int | None:
        dialog.cseq += 1
        cseq = str(dialog.cseq).encode()
        data = self._fill(
            request,
            transport,
            via,
            f"in{time.monotonic_ns():x}",
            CONTACT=dialog.contact.encode(),
            TO=dialog.to,
            CSEQ=cseq,
        )
        call_id = dialog.invite.header("call-id") or b""
        response = await self._request(data, (call_id, cseq), transport, stream)
        status = _status(response) if response else None
        if status is not None and request.method == "INVITE" and 200 <= status[0] < 300:
            await self._ack(dialog, transport, via, stream, response or b"")
        return status[0] if status else None

    async def _bye(
        self,
        dialog: _Dialog,
        transport: str,
        via: str | None = None,
        stream: Stream | None = None,
    ) -> int | None:
        via = via or self._udp_addr
        dialog.cseq += 1
        invite = dialog.invite
        bye = Message(
            "BYE",
            dialog.contact,
            [
                ("Via", b"SIP/2.0/@TRANSPORT@ @VIA@;branch=z9hG4bK@BRANCH@;rport"),
                ("Max-Forwards", b"70"),
                ("From", invite.header("from") or b""),
                ("To", dialog.to),
                ("Call-ID", invite.header("call-id") or b""),
                ("CSeq", f"{dialog.cseq} BYE".encode()),
            ],
        )
        data = self._fill(bye, transport, via, f"bye{time.monotonic_ns():x}")
        key = (invite.header("call-id") or b"", str(dialog.cseq).encode())
        response = await self._request(data, key, transport, stream)
        status = _status(response) if response else None
        return status[0] if status else None


@dataclass
class Report:
    sent: int = 0
    answered: int = 0
    must_answer: int = 0
    unanswered: list[Outcome] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    mutations: Counter[str] = field(default_factory=Counter)
    in_dialog_sent: int = 0
    in_dialog_unanswered: int = 0
    seconds: float = 0.0
    slowest_s: float = 0.0
    final_s: list[float] = field(default_factory=list)  # time to the final, answered ones
    calls: list[Outcome] = field(default_factory=list)  # INVITEs answered 2xx
    slowest: Outcome | None = None

    def add(self, outcome: Outcome) -> None:
        invite = outcome.case.message.method == "INVITE"
        if invite and outcome.final is not None and 200 <= outcome.final < 300:
            self.calls.append(outcome)
        self.sent += 1 + len(outcome.in_dialog_finals) + (outcome.bye is not None)
        self.in_dialog_sent += len(outcome.in_dialog_finals)
        self.in_dialog_unanswered += outcome.in_dialog_finals.count(None)
        self.mutations.update(outcome.case.mutations)
        if outcome.final is not None:
            self.answered += 1
            self.statuses[outcome.final] += 1
            self.final_s.append(outcome.final_s)
            if outcome.final_s >= self.slowest_s:
                self.slowest_s, self.slowest = outcome.final_s, outcome
        if outcome.must_answer:
            self.must_answer += 1
            if outcome.final is None:
                self.unanswered.append(outcome)

    def summary(self) -> dict[str, object]:
        return {
            "messages_sent": self.sent,
            "initial_requests": self.sent - self.in_dialog_sent,
            "in_dialog_requests": self.in_dialog_sent,
            "answered": self.answered,
            "must_answer": self.must_answer,
            "unanswered_that_must_be": len(self.unanswered),
            "in_dialog_unanswered": self.in_dialog_unanswered,
            "statuses": dict(sorted(self.statuses.items())),
            "final_s_p50": round(_quantile(self.final_s, 0.5), 3),
            "final_s_p99": round(_quantile(self.final_s, 0.99), 3),
            "slowest_final_s": round(self.slowest_s, 3),
            "seconds": round(self.seconds, 1),
            "mutations": dict(self.mutations.most_common()),
        }


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


async def campaign(
    uac: RawUac,
    *,
    seed: int,
    messages: int,
    concurrency: int = 8,
    tcp_share: float = 0.25,
    progress: Callable[[Report], None] | None = None,
) -> Report:
    """Send generated cases until ``messages`` SIP requests (in-dialog ones included) are out."""
    generator = Generator(seed, host=uac.target[0])
    cases = generator.cases()
    report = Report()
    started = time.monotonic()
    pick = random.Random(seed + 1)

    async def worker(slot: int) -> None:
        while report.sent < messages:
            case = next(cases)
            transport = "tcp" if pick.random() < tcp_share else "udp"
            outcome = await uac.run(case, transport, slot)
            report.add(outcome)
            if progress is not None:
                progress(report)

    await asyncio.gather(*(worker(slot) for slot in range(concurrency)))
    report.seconds = time.monotonic() - started
    return report
