"""SIPREC recording offers (RFC 7866) and their rs-metadata (RFC 7865), sans-I/O.

A session recording client (SRC: an SBC or a PBX) forks a call to the bridge, the recording
server (SRS), with an INVITE whose body is ``multipart/mixed`` (RFC 2046 §5.1): an
``application/sdp`` part with one m= line per recorded stream, each labelled with ``a=label``
(RFC 4574 §4; RFC 7866 §7.1.1), and an ``application/rs-metadata+xml`` part (RFC 7866 §9,
RFC 7865) that says who the participants are and who sends on which labelled stream.
:func:`parse_recording_offer` turns such a body into a :class:`RecordingSession`.

Tolerated, because real SRCs send it (tests/sip/corpus/siprec, collected by the drachtio SIPREC
recording server project):

* a metadata part recognised by ``Content-Disposition: recording-session`` whatever its type says
  (BroadWorks: ``application/ +xml``), and the type ``application/rs-metadata`` without ``+xml``;
* no close delimiter (``--boundary--``) after the last part (Cisco, Sonus: the bodies as logged)
  in the parser; an INVITE is still refused for it (:func:`parse_siprec_invite`), because
  pjsip then sees no offer in it at all;
* ids in ``participant_id``/``stream_id``/``session_id`` (RFC 7865) or in ``id`` (Acme Packet);
  senders in ``participantstreamassoc`` (RFC 7865) or as ``<send>`` inside ``<participant>``
  (earlier drafts, Acme Packet); element names in any case (``dataMode``);
* the namespaces in NAMESPACES;
* metadata that is well-formed but names nothing (BroadWorks' root element holding bare text):
  the streams come without senders and the raw text is kept;
* an SDP without any c= line (Connectel): only labels and directions are read here.

Refused with 400 (RemoteProtocolError, naming what is wrong): an empty body, a multipart body
without boundary or delimiter line or cut inside a part's headers, no SDP part, metadata that is
not well-formed XML, declares a DOCTYPE or ENTITY (no entity-expansion bombs; ``defusedxml`` is
not a dependency), is in an unknown namespace, or describes a label that no m= line carries.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Collection, Sequence
from dataclasses import dataclass

from bridge.core.types import LegRole
from bridge.errors import RemoteProtocolError
from bridge.sip.message import SipMessage, parse_message
from bridge.sip.multipart import METADATA_TYPE, bad_siprec, split_body
from bridge.sip.offer import SdpOffer, join_sdp, parse_sdp, sdp_blocks

SDP_TYPE = "application/sdp"
NAMESPACES = (
    "urn:ietf:params:xml:ns:recording:1",  # RFC 7865
    "urn:ietf:params:xml:ns:recording",  # Acme Packet, Ribbon/Sonus (no ":1")
    "urn:ietf:params:xml:ns:siprec",  # pre-RFC drafts (BroadWorks)
)


@dataclass(frozen=True, slots=True)
class Participant:
    """RFC 7865 ``<participant>``: its id and first ``<nameID aor=...>`` with ``<name>``."""

    participant_id: str
    aor: str | None
    name: str | None

    @property
    def user(self) -> str | None:
        """The AOR's user part: ``sip:1001@pbx;user=phone`` -> ``1001`` (also without scheme)."""
        if self.aor is None:
            return None
        bare = re.sub(r"^[a-z][a-z0-9+.-]*:", "", self.aor, flags=re.I)
        return re.split(r"[@;]", bare, maxsplit=1)[0] or None


@dataclass(frozen=True, slots=True)
class MetadataStream:
    """RFC 7865 ``<stream>``: its ``<label>`` (the SDP ``a=label``) and who sends on it."""

    stream_id: str
    label: str | None
    sender_ids: tuple[str, ...]  # participant ids, from <send> elements


@dataclass(frozen=True, slots=True)
class RecordingMetadata:
    """One rs-metadata document (a complete snapshot, or a partial update: see merge_metadata)."""

    namespace: str
    data_mode: str  # RFC 7865 <datamode>: "complete" (the default) or "partial"
    session_id: str | None  # the first <session>
    sip_session_ids: tuple[str, ...]  # <sipSessionID> of every <session>
    participants: tuple[Participant, ...]
    streams: tuple[MetadataStream, ...]
    caller_id: str | None  # the calling party, where the SRC says (Acme, Sonus extensions)
    xml: str  # the raw document


@dataclass(frozen=True, slots=True)
class RecordedStream:
    """One recorded audio stream: an audio m= line of the offer with a port."""

    index: int  # the m= line's position among ALL m= lines = pjsua's media index (getAudioMedia)
    label: str | None
    stream_id: str | None  # the metadata <stream> with this label, None if not described
    direction: str  # "sendonly" from an SRC (RFC 7866 §7.1.1); "inactive" while paused
    senders: tuple[Participant, ...]  # who speaks on it; two or more on a mixed stream

    @property
    def sender(self) -> Participant | None:
        """The one participant sending on this stream, None if unknown or mixed."""
        return self.senders[0] if len(self.senders) == 1 else None


@dataclass(frozen=True, slots=True)
class RecordingSession:
    """A SIPREC offer: the SDP's recorded streams, linked to the metadata by label."""

    offer: SdpOffer
    streams: tuple[RecordedStream, ...]
    metadata: RecordingMetadata | None  # None: the SRC sent no metadata (yet)

    @property
    def labels(self) -> tuple[str | None, ...]:
        """The ``a=label`` of every m= line in order, for :func:`label_answer`."""
        return tuple(m.label for m in self.offer.media)

    @property
    def session_id(self) -> str | None:
        return self.metadata.session_id if self.metadata else None

    @property
    def sip_session_ids(self) -> tuple[str, ...]:
        return self.metadata.sip_session_ids if self.metadata else ()

    @property
    def participants(self) -> tuple[Participant, ...]:
        return self.metadata.participants if self.metadata else ()

    @property
    def namespace(self) -> str | None:
        return self.metadata.namespace if self.metadata else None

    @property
    def metadata_xml(self) -> str:
        return self.metadata.xml if self.metadata else ""

    @property
    def caller(self) -> Participant | None:
        wanted = self.metadata.caller_id if self.metadata else None
        return next((p for p in self.participants if p.participant_id == wanted), None)


# --- SIP message and body ---------------------------------------------------------------------


def is_siprec_invite(message: SipMessage) -> bool:
    """RFC 7866 §6.2: an SRS treats an INVITE as a recording session only when it has both the
    ``siprec`` option tag in Require and the ``+sip.src`` feature tag in Contact (§6.1.1)."""
    method = message.start_line.split(" ", 1)[0].upper()
    contact_params = re.sub(r"<[^>]*>", "", message.header("contact") or "")
    return (
        method == "INVITE"
        and "siprec" in message.option_tags("require")
        and re.search(r";\s*\+sip\.src\b", contact_params, re.I) is not None
    )


def parse_siprec_invite(whole_msg: str) -> RecordingSession:
    """The recording session offered by a raw INVITE (pjsua's ``rdata.wholeMsg``).

    Reads the body whatever the headers say; :func:`is_siprec_invite` decides whether it is one.
    A multipart body must end with its close delimiter here: pjsip, which negotiates the media,
    cannot read one without it, and would take the INVITE for one without an offer.
    """
    message = parse_message(whole_msg)
    return parse_recording_offer(message.header("content-type") or "", message.body, closed=True)


# --- the offer --------------------------------------------------------------------------------


def parse_recording_offer(
    content_type: str, body: str, *, closed: bool = False
) -> RecordingSession:
    """The recording session of an INVITE body: SDP plus, usually, rs-metadata.

    A bare SDP (no metadata) gives a session without participants, which a later re-INVITE or
    UPDATE can fill in (:func:`update_session`); pjproject's own SRS takes such offers too
    (``siprec_require_metadata`` is off by default).

    Raises:
        RemoteProtocolError: ``status_hint=400``, naming what is wrong.
    """
    if not body.strip():
        raise bad_siprec("empty body: a recording session starts with the SRC's SDP offer")
    parts = split_body(content_type, body, closed=closed)
    if SDP_TYPE not in parts:
        # RFC 3261 §21.4.13: a body the bridge cannot use is 415 (pjsua answered it so too).
        raise RemoteProtocolError(
            f"no {SDP_TYPE} part in the SIPREC body (found: {', '.join(parts)})",
            status_hint=415,
        )
    xml = parts.get(METADATA_TYPE)
    metadata = parse_metadata(xml) if xml is not None else None
    return _link(parse_sdp(parts[SDP_TYPE], require_connection=False), metadata)


def update_session(session: RecordingSession, content_type: str, body: str) -> RecordingSession:
    """The session after an in-dialog re-INVITE or UPDATE (RFC 7866 §9: metadata can change).

    Either part may be missing: a hold re-INVITE carries only SDP, an UPDATE may carry only
    metadata, which is merged with what is known (:func:`merge_metadata`).
    """
    parts = split_body(content_type, body)
    metadata = session.metadata
    if METADATA_TYPE in parts:
        metadata = merge_metadata(metadata, parse_metadata(parts[METADATA_TYPE]))
    offer = session.offer
    if SDP_TYPE in parts:
        offer = parse_sdp(parts[SDP_TYPE], require_connection=False)
    return _link(offer, metadata)


def _link(offer: SdpOffer, metadata: RecordingMetadata | None) -> RecordingSession:
    """RFC 7866 §7.1.1: the a=label of each m= line names the metadata <stream> sent on it."""
    labels = [m.label for m in offer.media]
    described = {s.label: s for s in metadata.streams if s.label} if metadata else {}
    for label in described:
        if label not in labels:
            shown = ", ".join(repr(x) for x in labels if x) or "none"
            raise bad_siprec(
                f"rs-metadata stream label {label!r} is on no m= line (SDP labels: {shown})"
            )
    people = {p.participant_id: p for p in metadata.participants} if metadata else {}
    streams = []
    for index, media in enumerate(offer.media):
        # RFC 3264 §8.2: port 0 is a removed stream.
        if media.kind != "audio" or media.port == 0:
            continue
        found = described.get(media.label) if media.label else None
        senders = tuple(people[i] for i in found.sender_ids if i in people) if found else ()
        stream_id = found.stream_id if found else None
        streams.append(RecordedStream(index, media.label, stream_id, media.direction, senders))
    return RecordingSession(offer, tuple(streams), metadata)


# --- rs-metadata ------------------------------------------------------------------------------


def parse_metadata(xml: str) -> RecordingMetadata:
    """One rs-metadata document (RFC 7865), from an INVITE, re-INVITE or UPDATE.

    Raises:
        RemoteProtocolError: ``status_hint=400``: not well-formed, a DOCTYPE/ENTITY declaration,
        an unknown namespace or root element.
    """
    text = xml.strip()
    if re.search(r"<!(DOCTYPE|ENTITY)", text, re.I):
        raise bad_siprec("rs-metadata must not declare a DOCTYPE or ENTITY (refused unparsed)")
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise bad_siprec(f"rs-metadata is not well-formed XML ({exc})") from None
    namespace, _, name = root.tag[1:].partition("}") if root.tag[0] == "{" else ("", "", root.tag)
    if namespace not in NAMESPACES:
        raise bad_siprec(
            f"unknown rs-metadata namespace {namespace or '(none)'!r}; "
            f"expected {' or '.join(NAMESPACES)}"
        )
    if name.lower() not in ("recording", "recording_metadata"):
        raise bad_siprec(f"rs-metadata root element <{name}>: expected <recording>")
    sessions = _children(root, "session")
    participants: dict[str, Participant] = {}
    senders: dict[str, list[str]] = {}  # stream id -> participant ids
    caller_id = None
    for element in _children(root, "participant"):
        if (pid := _id(element, "participant")) is None:
            continue
        name_ids = _children(element, "nameid")
        name_id = next((n for n in name_ids if n.get("aor")), name_ids[0] if name_ids else None)
        if name_id is None:
            participants.setdefault(pid, Participant(pid, None, None))
        else:
            aor = (name_id.get("aor") or "").strip() or None
            participants.setdefault(pid, Participant(pid, aor, _text(name_id, "name")))
        for sent in _texts(element, "send"):  # earlier drafts, Acme Packet
            senders.setdefault(sent, []).append(pid)
        if any(_text(e, "callingparty") == "true" for e in _children(element, "extensiondata")):
            caller_id = pid  # Acme Packet <apkt:callingParty>
    for assoc in _children(root, "participantstreamassoc"):
        if (pid := _id(assoc, "participant")) is not None:
            for sent in _texts(assoc, "send"):
                senders.setdefault(sent, []).append(pid)
    streams = {
        sid: MetadataStream(sid, _text(e, "label"), ())
        for e in _children(root, "stream")
        if (sid := _id(e, "stream")) is not None
    }
    for sid, pids in senders.items():
        label = streams[sid].label if sid in streams else None
        streams[sid] = MetadataStream(sid, label, tuple(dict.fromkeys(pids)))
    return RecordingMetadata(
        namespace=namespace,
        data_mode=(_text(root, "datamode") or "complete").lower(),
        session_id=_id(sessions[0], "session") if sessions else None,
        sip_session_ids=tuple(i for s in sessions for i in _texts(s, "sipsessionid")),
        participants=tuple(participants.values()),
        streams=tuple(streams.values()),
        caller_id=caller_id or _sonus_caller(root, participants.values()),
        xml=xml,
    )


def merge_metadata(
    current: RecordingMetadata | None, update: RecordingMetadata
) -> RecordingMetadata:
    """What is known after ``update``: RFC 7865 ``<datamode>partial</datamode>`` carries changes.

    A complete document replaces everything.  A partial one adds or changes participants and
    streams by id, keeping the fields it leaves out; nothing is removed (a participant who left
    stays the last known sender of its stream).
    """
    if current is None or update.data_mode != "partial":
        return update
    people = {p.participant_id: p for p in current.participants}
    for p in update.participants:
        old = people.get(p.participant_id, p)
        people[p.participant_id] = Participant(
            p.participant_id, p.aor or old.aor, p.name or old.name
        )
    streams = {s.stream_id: s for s in current.streams}
    for s in update.streams:
        was = streams.get(s.stream_id, s)
        streams[s.stream_id] = MetadataStream(
            s.stream_id, s.label or was.label, s.sender_ids or was.sender_ids
        )
    return RecordingMetadata(
        namespace=update.namespace,
        data_mode=current.data_mode,
        session_id=update.session_id or current.session_id,
        sip_session_ids=update.sip_session_ids or current.sip_session_ids,
        participants=tuple(people.values()),
        streams=tuple(streams.values()),
        caller_id=update.caller_id or current.caller_id,
        xml=update.xml,
    )


def _local(element: ET.Element) -> str:
    """The element's name without namespace, lower case."""
    return element.tag.rpartition("}")[2].lower()


def _children(element: ET.Element, name: str) -> list[ET.Element]:
    return [c for c in element if _local(c) == name]


def _texts(element: ET.Element, name: str) -> list[str]:
    return [text for c in _children(element, name) if (text := (c.text or "").strip())]


def _text(element: ET.Element, name: str) -> str | None:
    return next(iter(_texts(element, name)), None)


def _id(element: ET.Element, kind: str) -> str | None:
    return (element.get(f"{kind}_id") or element.get("id") or "").strip() or None


def _sonus_caller(root: ET.Element, participants: Collection[Participant]) -> str | None:
    """Ribbon/Sonus ``<callData><fromhdr>``: the participant whose AOR is the From URI."""
    from_header = next((e.text for e in root.iter() if _local(e) == "fromhdr"), None)
    if not from_header:
        return None
    uri = re.search(r"<([^>]*)>", from_header)
    wanted = _address(uri.group(1) if uri else from_header)
    return next((p.participant_id for p in participants if _address(p.aor) == wanted), None)


def _address(aor: str | None) -> str:
    """``sip:1001@pbx;user=phone`` -> ``1001@pbx``, for comparing AORs."""
    bare = re.sub(r"^[a-z][a-z0-9+.-]*:", "", (aor or "").strip(), flags=re.I)
    return bare.split(";", 1)[0].lower()


# --- roles and the answer ---------------------------------------------------------------------


def assign_roles(session: RecordingSession, agent_users: Collection[str]) -> tuple[LegRole, ...]:
    """One role per stream of ``session.streams``, in that order.

    1. A stream whose one sender is an agent (the AOR's user part, ``sip:1001@pbx`` -> ``1001``,
       or the whole AOR is in ``agent_users``) is AGENT.
    2. A lone stream that is not an agent's is SPEAKER: a mixed recording (BroadWorks sends one
       m= line for both sides) or one side nobody named.
    3. With an agent found, every other stream is CALLER, the customer's side, whoever dialled.
    4. Without one, the stream of the participant the SRC marks as the calling party (Acme
       ``callingParty``, Sonus ``callData`` From) is CALLER and the next one AGENT.
    5. Otherwise by position: the first stream is CALLER, the second AGENT, any more UNKNOWN.
       SRCs put the calling side first (label 1, a_leg, 10: the drachtio SRS assumes the same),
       the bridge's default for two channels is caller then agent (bridge.transcribe), and on
       the inbound contact-centre calls SIPREC mostly records, the callee is the agent.
    """
    streams = session.streams
    agents = [_is_agent(s.sender, agent_users) for s in streams]
    if len(streams) == 1:
        return (LegRole.AGENT if agents[0] else LegRole.SPEAKER,)
    if any(agents):
        return tuple(LegRole.AGENT if agent else LegRole.CALLER for agent in agents)
    order = list(range(len(streams)))
    caller = session.caller
    marked = [
        i
        for i, s in enumerate(streams)
        if caller and s.sender and s.sender.participant_id == caller.participant_id
    ]
    if marked:
        order.remove(marked[0])
        order.insert(0, marked[0])
    roles = [LegRole.UNKNOWN] * len(streams)
    for role, i in zip((LegRole.CALLER, LegRole.AGENT), order, strict=False):
        roles[i] = role
    return tuple(roles)


def _is_agent(participant: Participant | None, agent_users: Collection[str]) -> bool:
    if participant is None or participant.aor is None:
        return False
    return participant.aor in agent_users or participant.user in agent_users


def label_answer(answer_sdp: str, labels: Sequence[str | None]) -> str:
    """``answer_sdp`` with ``a=label:<labels[i]>`` added to the i-th m= block (RFC 4574 §4).

    RFC 7866 asks the SRC to label its offer (§7.1.1) and does not require the SRS to label its
    answer: m= lines pair up by position (RFC 3264 §6).  Echoing the labels is a courtesy to SRCs
    that match by label; pjsua2 re-parses the edited SDP in ``onCallSdpCreated`` (pjsua2.md
    §1.3, tested).  Blocks that already have a label, and ``None`` labels, are left alone.
    """
    eol = "\r\n" if "\r\n" in answer_sdp else "\n"
    blocks = sdp_blocks(answer_sdp)
    for block, label in zip(blocks[1:], labels, strict=False):
        if label and not any(line.startswith("a=label:") for line in block):
            block.append(f"a=label:{label}")
    return join_sdp(blocks, eol)
