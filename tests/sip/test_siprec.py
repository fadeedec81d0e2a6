"""SIPREC offers, rs-metadata and roles (bridge.sip.siprec): pure.

The corpus (tests/sip/corpus/siprec, MIT, see its README) holds real offers; each one's expected
streams and participants below were read off the file by eye.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.core.types import LegRole
from bridge.errors import RemoteProtocolError
from bridge.sip.message import parse_message
from bridge.sip.offer import parse_sdp
from bridge.sip.siprec import (
    METADATA_TYPE,
    RecordingSession,
    assign_roles,
    is_siprec_invite,
    label_answer,
    parse_metadata,
    parse_recording_offer,
    parse_siprec_invite,
    split_body,
    update_session,
)

CORPUS = Path(__file__).parent / "corpus" / "siprec"
NS1 = "urn:ietf:params:xml:ns:recording:1"
CALLER, AGENT, SPEAKER = LegRole.CALLER, LegRole.AGENT, LegRole.SPEAKER


def corpus_offer(name: str, boundary: str) -> RecordingSession:
    body = (CORPUS / name).read_text()
    return parse_recording_offer(f"multipart/mixed;boundary={boundary}", body)


def streams(session: RecordingSession) -> list[tuple[object, ...]]:
    """(index, label, stream_id, direction, sender AOR, sender name) per recorded stream."""
    return [
        (
            s.index,
            s.label,
            s.stream_id,
            s.direction,
            s.sender.aor if s.sender else None,
            s.sender.name if s.sender else None,
        )
        for s in session.streams
    ]


def people(session: RecordingSession) -> list[tuple[str, str | None, str | None]]:
    return [(p.participant_id, p.aor, p.name) for p in session.participants]


# --- the corpus -------------------------------------------------------------------------------


def test_acme_packet_numeric_labels_old_style_send_and_namespace_without_1() -> None:
    session = corpus_offer("acme-siprec-offer.txt", "unique-boundary-1")
    assert session.namespace == "urn:ietf:params:xml:ns:recording"
    assert session.session_id == "AavRXwIIQj1Q39eJulTipQ=="  # <session id=...>
    assert session.sip_session_ids == ()
    # Senders come from <send> inside <participant> (no participantstreamassoc).
    assert streams(session) == [
        (0, "16777227", "Q4O8SGLQSilXHUGQX2zd8Q==", "sendonly", "sip:9000@192.168.50.102", "9000"),
        (1, "16777228", "l1NyQy8ORSlouUj2G3UE/A==", "sendonly", "sip:1002@192.168.50.10", "1002"),
    ]
    assert people(session) == [
        ("fSD3PFErSjNTHLDiXCELjw==", "sip:9000@192.168.50.102", "9000"),
        ("EbccNyypRlFYXTm4iw8hxw==", "sip:1002@192.168.50.10", "1002"),
    ]
    # <apkt:callingParty>true</apkt:callingParty> marks 9000.
    assert session.caller is not None and session.caller.aor == "sip:9000@192.168.50.102"
    assert assign_roles(session, ()) == (CALLER, AGENT)
    assert assign_roles(session, {"9000"}) == (AGENT, CALLER)


def test_broadworks_one_mixed_stream_with_metadata_that_names_nothing() -> None:
    # The corpus keeps the offer as published, its SBC's address redacted to c=IN IP4 X.X.X.X;
    # the SDP reader takes only IP addresses (docs/pjsua2.md P14), so give it a documentation one.
    body = (CORPUS / "broadworks-offer.txt").read_text().replace("X.X.X.X", "192.0.2.10")
    ct = "multipart/mixed;boundary=UniqueBroadWorksBoundary"
    # The metadata part comes first, typed "application/ +xml", with Content-Disposition
    # recording-session; the preamble is a line of two spaces.
    assert list(split_body(ct, body)) == [METADATA_TYPE, "application/sdp"]
    session = parse_recording_offer(ct, body)
    assert session.namespace == "urn:ietf:params:xml:ns:siprec"
    assert streams(session) == [(0, "1", None, "sendonly", None, None)]
    assert session.participants == () and session.session_id is None
    assert session.metadata_xml.startswith('<recording_metadata xmlns="urn:ietf:params:xml:ns:')
    assert "sip:caller_name" in session.metadata_xml  # kept raw for whoever wants to read it
    assert [f.encoding for f in session.offer.media[0].formats][:2] == ["PCMA", "TELEPHONE-EVENT"]
    assert assign_roles(session, ()) == (SPEAKER,)


def test_broadworks_dual_stream_with_participantstreamassoc() -> None:
    session = corpus_offer("broadworks-offer-2.txt", "foobar")
    assert session.namespace == NS1
    assert session.session_id == "00FA0800705D4C5DCAAC41"
    assert session.metadata is not None and session.metadata.data_mode == "complete"  # dataMode
    assert streams(session) == [
        (0, "10", "e6988909e02ca808ec0a", "sendonly", "sip:9878942259@212.188.68.145", None),
        (1, "20", "261ddd3615629f108092", "sendonly", "sip:ASBCE@asbce.com", None),
    ]
    assert assign_roles(session, {"sip:ASBCE@asbce.com"}) == (CALLER, AGENT)  # the whole AOR
    assert assign_roles(session, {"9878942259"}) == (AGENT, CALLER)


def test_cisco_cube_three_parts_and_no_close_delimiter() -> None:
    body = (CORPUS / "cisco-siprec-offer.txt").read_text()
    ct = "multipart/mixed;boundary=uniqueBoundary"
    parts = split_body(ct, body)
    assert list(parts) == ["application/sdp", METADATA_TYPE, "application/gtd"]
    assert parts["application/gtd"].startswith("IAM,")
    session = parse_recording_offer(ct, body)
    assert session.session_id == "kQNhKFdEEeeJ9tD/VsPGWA=="
    assert session.sip_session_ids == (
        "e9fffff2020a598b86962867715db0cf;remote=cd0f7093d62c5f0697098fd69a4aa57b",
    )
    assert streams(session) == [
        (0, "1", "kQOH5VdEEeeJ/ND/VsPGWA==", "sendonly", "sip:7301@35.162.237.204", None),
        (1, "2", "kQOH5VdEEeeJ/dD/VsPGWA==", "sendonly", "sip:7300@35.162.237.204", "7300"),
    ]
    assert assign_roles(session, {"7300"}) == (CALLER, AGENT)


def test_sonus_prefixed_namespace_and_calldata_names_the_caller() -> None:
    session = corpus_offer("sonus-siprec-offer.txt", "sonus-content-delim")
    assert session.namespace == "urn:ietf:params:xml:ns:recording"
    assert session.session_id == "MTQ3YzA3YzEtNjdkNy0xMA=="
    # The caller, 8500, sends on label 2; the blank <name> of 8012 is no name.
    assert streams(session) == [
        (0, "1", "MTQ3YzA3YzQtNjdkNy0xMA==", "sendonly", "2249888012@172.16.195.72", None),
        (
            1,
            "2",
            "MTQ3YzA3YzUtNjdkNy0xMA==",
            "sendonly",
            "2249888500@172.16.198.55",
            "Extension 8500",
        ),
    ]
    assert session.caller is not None and session.caller.name == "Extension 8500"
    assert session.streams[1].sender is not None and session.streams[1].sender.user == "2249888500"
    assert assign_roles(session, ()) == (AGENT, CALLER)  # <callData><fromhdr> beats position


def test_procomm_word_labels_and_rs_metadata_without_xml_suffix() -> None:
    session = corpus_offer("procomm-siprec-offer.txt", "2CD2A2E9")
    assert session.session_id == "ho9aUhEQTRS+31th7sHStA=="
    assert streams(session) == [
        (
            0,
            "a_leg",
            "HdU6Bt7GTZiHcNe4R2LHdA==",
            "sendonly",
            "sip:016190200@87.252.209.116",
            "016190200",
        ),
        (
            1,
            "b_leg",
            "T6T6syCpRSGH1J+gwLFaIQ==",
            "sendonly",
            "Extension-016190619@speechpath.ie",
            "Speechpath-Main-Line 016190619",
        ),
    ]
    assert assign_roles(session, {"Extension-016190619"}) == (CALLER, AGENT)


@pytest.mark.parametrize(
    ("name", "first_name"),
    [
        ("connectel-offer.txt", "test_user;lang=en-US;id=22"),
        ("connectel-offer2.txt", "test_user;lang=en-US"),
        ("connectel-offer3.txt", "test_user"),
    ],
)
def test_connectel_no_c_line_and_no_stream_association(name: str, first_name: str) -> None:
    session = corpus_offer(name, "OSS-unique-boundary-42")
    assert session.session_id == "2+hKdGY+QvCKu8HYTdBouQ=="
    assert session.sip_session_ids == ("2d8abbf0769c66e15bb349f509693d60@52.57.92.239",)
    assert people(session) == [
        ("WEWTz80cS1Cqdyepmu3STQ==", "sip:0771121212@52.57.92.239", first_name),
        ("21Isz6eFRYuiDN0vEkVXQQ==", "sip:0760516936@sip-cust1.connectel.io", None),
    ]
    assert streams(session) == [
        (0, "1", "EkG6jSRhQqCupqs53tna1w==", "sendonly", None, None),
        (1, "2", "4CLOddBJRvGyTJJxPE2ZSw==", "sendonly", None, None),
    ]
    assert [f.encoding for f in session.offer.media[1].formats] == [
        "PCMA",
        "PCMU",
        "TELEPHONE-EVENT",
    ]
    assert assign_roles(session, {"0760516936"}) == (CALLER, AGENT)  # no sender known: position


def test_inactive_offer_is_valid_with_both_streams_paused() -> None:
    session = corpus_offer("inactive-sdp-offer.txt", "uniqueBoundary")
    assert session.session_id == "GZBIusaXEeuxxK1dFIaIyA=="
    assert streams(session) == [
        (0, "1", "GbZGg8aXEeuxy61dFIaIyA==", "inactive", None, None),
        (1, "2", "GbZGg8aXEeuxzK1dFIaIyA==", "inactive", None, None),
    ]
    assert [p.aor for p in session.participants] == [
        "sip:0733165805@192.168.40.34",
        "sip:+972546136443@192.168.10.140",
    ]


def test_a_bare_sdp_is_a_session_without_metadata() -> None:
    session = parse_recording_offer(
        "application/sdp", (CORPUS / "non-siprec-payload.txt").read_text()
    )
    assert streams(session) == [(0, "1", None, "sendonly", None, None)]
    assert session.metadata is None and session.namespace is None and session.metadata_xml == ""
    assert session.participants == () and session.caller is None
    assert assign_roles(session, ()) == (SPEAKER,)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("sample-sdp2.txt", [[(35003, "1", "sendonly")], [(48926, "2", "sendonly")]]),
        ("sample-sdp3.txt", [[(22820, None, "sendrecv")], [(19640, None, "recvonly")]]),
        ("sample-sdps.txt", [[(48932, "1", "sendonly")], [(48926, "2", "sendonly")]]),
    ],
)
def test_sample_sdp_pairs(name: str, expected: list[list[tuple[int, str | None, str]]]) -> None:
    halves = (CORPUS / name).read_text().split("__split_here__")
    got = [[(m.port, m.label, m.direction) for m in parse_sdp(h).media] for h in halves]
    assert got == expected
    for half, want in zip(halves, expected, strict=True):
        session = parse_recording_offer("application/sdp", half)
        assert [(s.index, s.label, s.direction) for s in session.streams] == [
            (0, want[0][1], want[0][2])
        ]


# --- a whole INVITE (pjsua2.md §1.4: the sipp SRC scenario, as pjsua hands it over) -----------

METADATA = """<?xml version="1.0" encoding="UTF-8"?>
<recording xmlns="urn:ietf:params:xml:ns:recording:1">
  <datamode>complete</datamode>
  <session session_id="Q2FsbFNlc3Npb24wMQ==">
    <sipSessionID>1-42@127.0.0.1</sipSessionID>
  </session>
  <participant participant_id="UGFydGljaXBhbnRBMQ==">
    <nameID aor="sip:alice@example.com"><name xml:lang="en">Alice Caller</name></nameID>
  </participant>
  <participant participant_id="UGFydGljaXBhbnRCMg==">
    <nameID aor="sip:bob@example.com"><name xml:lang="en">Bob Agent</name></nameID>
  </participant>
  <stream stream_id="U3RyZWFtTGFiZWwxAA==" session_id="Q2FsbFNlc3Npb24wMQ==">
    <label>1</label>
  </stream>
  <stream stream_id="U3RyZWFtTGFiZWwyAA==" session_id="Q2FsbFNlc3Npb24wMQ==">
    <label>2</label>
  </stream>
  <participantsessionassoc participant_id="UGFydGljaXBhbnRBMQ==" session_id="Q2FsbFNlc3Npb24wMQ==">
    <associate-time>2026-11-25T10:00:00Z</associate-time>
  </participantsessionassoc>
  <participantstreamassoc participant_id="UGFydGljaXBhbnRBMQ==">
    <send>U3RyZWFtTGFiZWwxAA==</send>
    <recv>U3RyZWFtTGFiZWwyAA==</recv>
  </participantstreamassoc>
  <participantstreamassoc participant_id="UGFydGljaXBhbnRCMg==">
    <send>U3RyZWFtTGFiZWwyAA==</send>
    <recv>U3RyZWFtTGFiZWwxAA==</recv>
  </participantstreamassoc>
</recording>"""

SDP = """v=0
o=SRC 2890844526 2890844526 IN IP4 127.0.0.1
s=SIPREC
c=IN IP4 127.0.0.1
t=0 0
m=audio 20000 RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=ptime:20
a=label:1
a=sendonly
m=audio 20004 RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
a=ptime:20
a=label:2
a=sendonly
"""

HEAD = """INVITE sip:srs@127.0.0.1:5080 SIP/2.0
Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-1
From: <sip:src@127.0.0.1:5070>;tag=1SIPpTag001
To: <sip:srs@127.0.0.1:5080>
Call-ID: 1-42@127.0.0.1
CSeq: 1 INVITE
Contact: <sip:src@127.0.0.1:5070>;+sip.src
Require: siprec
Supported: replaces
Max-Forwards: 70
Subject: SIPREC test
Content-Type: multipart/mixed;boundary=OSS-unique-boundary-42
"""


def multipart(sdp: str = SDP, xml: str = METADATA, boundary: str = "OSS-unique-boundary-42") -> str:
    return (
        f"--{boundary}\nContent-Type: application/sdp\n\n{sdp}\n"
        f"--{boundary}\nContent-Type: application/rs-metadata+xml\n"
        f"Content-Disposition: recording-session\n\n{xml}\n--{boundary}--\n"
    )


def crlf(text: str) -> str:
    return text.replace("\n", "\r\n")


def invite(head: str = HEAD, body: str = "") -> str:
    body = body or multipart()
    return crlf(f"{head}Content-Length: {len(crlf(body))}\n\n{body}")


def test_the_sipp_src_invite_round_trip() -> None:
    whole_msg = invite()
    assert is_siprec_invite(parse_message(whole_msg))
    session = parse_siprec_invite(whole_msg)
    assert session.session_id == "Q2FsbFNlc3Npb24wMQ==" and session.namespace == NS1
    assert session.sip_session_ids == ("1-42@127.0.0.1",)
    assert streams(session) == [
        (0, "1", "U3RyZWFtTGFiZWwxAA==", "sendonly", "sip:alice@example.com", "Alice Caller"),
        (1, "2", "U3RyZWFtTGFiZWwyAA==", "sendonly", "sip:bob@example.com", "Bob Agent"),
    ]
    assert assign_roles(session, {"bob"}) == (CALLER, AGENT)
    assert assign_roles(session, {"alice"}) == (AGENT, CALLER)
    # What pjsua answers (pjsua2.md §1.3: recvonly, ports 40000/40002), labelled for the SRC.
    answer = crlf(
        "v=0\no=- 3 2 IN IP4 127.0.0.1\ns=pjmedia\nt=0 0\n"
        "m=audio 40000 RTP/AVP 0 101\nc=IN IP4 127.0.0.1\na=rtpmap:0 PCMU/8000\na=recvonly\n"
        "m=audio 40002 RTP/AVP 0 101\nc=IN IP4 127.0.0.1\na=rtpmap:0 PCMU/8000\na=recvonly\n"
    )
    labelled = label_answer(answer, session.labels)
    assert labelled.endswith("a=recvonly\r\na=label:2\r\n") and "\n\n" not in labelled
    again = parse_sdp(labelled)
    assert [(m.port, m.label, m.direction) for m in again.media] == [
        (40000, "1", "recvonly"),
        (40002, "2", "recvonly"),
    ]
    assert label_answer(labelled, session.labels) == labelled  # never labels twice


def test_label_answer_skips_missing_labels_and_keeps_lf() -> None:
    answer = "v=0\nc=IN IP4 h\nm=audio 1 RTP/AVP 0\nm=audio 2 RTP/AVP 0\nm=video 0 RTP/AVP 96\n"
    assert label_answer(answer, [None, "b"]) == answer.replace(
        "0\nm=video", "0\na=label:b\nm=video"
    )


def test_headers_in_any_form_lf_compact_and_folded() -> None:
    head = (
        HEAD.replace("Contact: <sip:src@127.0.0.1:5070>;+sip.src", "m: <sip:src@h>;+sip.src")
        .replace("Require: siprec", "require: timer,  SIPREC")
        .replace("Content-Type: multipart/mixed;boundary=", 'c: multipart/mixed;\n  boundary="')
        .replace("boundary-42\n", 'boundary-42"\n')
    )
    whole_msg = invite(head).replace("\r\n", "\n")
    assert is_siprec_invite(parse_message(whole_msg))
    assert [s.label for s in parse_siprec_invite(whole_msg).streams] == ["1", "2"]


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("Require: siprec\n", ""),
        ("Require: siprec", "Supported: siprec"),
        (";+sip.src", ""),
        ("<sip:src@127.0.0.1:5070>;+sip.src", "<sip:src@127.0.0.1:5070;+sip.src>"),  # a URI param
        ("INVITE sip:srs", "OPTIONS sip:srs"),
    ],
)
def test_not_a_siprec_invite_without_both_tags(old: str, new: str) -> None:
    """RFC 7866 §6.2: both Require: siprec and Contact ...;+sip.src, on an INVITE."""
    assert not is_siprec_invite(parse_message(invite(HEAD.replace(old, new))))


# --- multipart --------------------------------------------------------------------------------


def test_split_body_quoted_boundary_preamble_epilogue_and_padding() -> None:
    body = (
        "preamble text\r\n--b:1 x\r\nContent-Type: Application/SDP ; charset=x\r\n\r\nv=0\r\n\r\n"
        "--b:1 x  \r\nContent-Type: text/plain\r\n"
        "Content-Disposition:\r\n recording-session\r\n\r\n"
        "<x/>\r\n--b:1 x--\t\r\nepilogue\r\n"
    )
    parts = split_body('multipart/mixed; BOUNDARY="b:1 x"', body)
    # The CRLF before a delimiter belongs to it (RFC 2046 §5.1.1); the folded disposition counts.
    assert parts == {"application/sdp": "v=0\r\n", METADATA_TYPE: "<x/>"}


def test_split_body_first_part_of_a_type_wins_and_untyped_is_text_plain() -> None:
    body = "--b\n\nhello\n--b\nContent-Type: text/plain\n\nbye\n--b\nContent-Type: a/b\n\n1\n--b--"
    assert split_body("multipart/mixed;boundary=b", body) == {"text/plain": "hello", "a/b": "1"}
    assert split_body("application/rs-metadata", "<x/>") == {METADATA_TYPE: "<x/>"}
    assert split_body("application/sdp", "  \r\n") == {}


# --- refusals ---------------------------------------------------------------------------------

SIPREC_CT = "multipart/mixed;boundary=OSS-unique-boundary-42"
BAD_XML = [
    (
        '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaa">]><recording>&a;</recording>',
        "must not declare a DOCTYPE or ENTITY",
    ),
    (
        METADATA.replace(NS1, "urn:example:other"),
        "unknown rs-metadata namespace 'urn:example:other'",
    ),
    (METADATA.replace(f' xmlns="{NS1}"', ""), "unknown rs-metadata namespace '(none)'"),
    (METADATA[:-40], "rs-metadata is not well-formed XML"),
    (f'<foo xmlns="{NS1}"/>', "root element <foo>: expected <recording>"),
    (
        METADATA.replace("<label>2</label>", "<label>3</label>"),
        "rs-metadata stream label '3' is on no m= line (SDP labels: '1', '2')",
    ),
]


@pytest.mark.parametrize(
    ("content_type", "body", "reason"),
    [
        ("multipart/mixed", multipart(), "multipart/mixed without a boundary parameter"),
        ('multipart/mixed;boundary=""', multipart(), "without a boundary parameter"),
        ("multipart/mixed;boundary=nope", multipart(), "no '--nope' delimiter line"),
        (
            "multipart/mixed;boundary=b",
            "--b\r\nContent-Type: application/sdp\r\n",
            "multipart part 1 ends inside its headers (truncated body?)",
        ),
        (
            "multipart/mixed;boundary=b",
            "--b\r\nv=0\r\n--b--",
            "part 1: header line 'v=0' has no ':'",
        ),
        (SIPREC_CT, "", "empty body"),
        (SIPREC_CT, " \r\n", "empty body"),
        ("", SDP, "a body without Content-Type"),
        (SIPREC_CT, multipart(sdp="hello"), "malformed SDP: must start with v=0"),
        *[(SIPREC_CT, multipart(xml=xml), reason) for xml, reason in BAD_XML],
    ],
)
def test_a_bad_offer_is_400_naming_what_is_wrong(content_type: str, body: str, reason: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        parse_recording_offer(content_type, body)
    assert reason in str(info.value)
    assert info.value.status_hint == 400


def test_a_body_without_an_sdp_part_is_415() -> None:
    """RFC 3261 §21.4.13: a body with nothing the bridge can use (pjsua answered it so too)."""
    body = f"--b\nContent-Type: application/rs-metadata+xml\n\n{METADATA}\n--b--"
    with pytest.raises(RemoteProtocolError) as info:
        parse_recording_offer("multipart/mixed;boundary=b", body)
    assert "no application/sdp part in the SIPREC body (found: application/rs-metadata+xml)" in (
        str(info.value)
    )
    assert info.value.status_hint == 415


def test_the_doctype_is_refused_before_any_parsing() -> None:
    bomb = '<!DOCTYPE r [<!ENTITY a "x"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]><r>&b;</r>'
    with pytest.raises(RemoteProtocolError, match="DOCTYPE or ENTITY"):
        parse_metadata(bomb)


# --- metadata updates (re-INVITE / UPDATE in the dialog) -------------------------------------

PARTIAL = f"""<recording xmlns="{NS1}">
  <datamode>partial</datamode>
  <participantstreamassoc participant_id="WEWTz80cS1Cqdyepmu3STQ==">
    <send>EkG6jSRhQqCupqs53tna1w==</send>
  </participantstreamassoc>
  <participant participant_id="21Isz6eFRYuiDN0vEkVXQQ==">
    <nameID aor="sip:0760516936@sip-cust1.connectel.io"><name>Agent Smith</name></nameID>
    <send>4CLOddBJRvGyTJJxPE2ZSw==</send>
  </participant>
</recording>"""


def test_a_partial_update_adds_senders_and_keeps_the_rest() -> None:
    session = corpus_offer("connectel-offer.txt", "OSS-unique-boundary-42")
    updated = update_session(session, "application/rs-metadata+xml", PARTIAL)
    assert streams(updated) == [
        (
            0,
            "1",
            "EkG6jSRhQqCupqs53tna1w==",
            "sendonly",
            "sip:0771121212@52.57.92.239",
            "test_user;lang=en-US;id=22",
        ),
        (
            1,
            "2",
            "4CLOddBJRvGyTJJxPE2ZSw==",
            "sendonly",
            "sip:0760516936@sip-cust1.connectel.io",
            "Agent Smith",
        ),
    ]
    assert updated.session_id == session.session_id and updated.metadata_xml == PARTIAL
    # A hold re-INVITE carries SDP only: the directions change, the senders stay.
    body = (CORPUS / "connectel-offer.txt").read_text()
    hold = split_body(SIPREC_CT, body)["application/sdp"].replace("a=sendonly", "a=inactive")
    held = update_session(updated, "application/sdp", hold)
    assert [(s.direction, s.sender) for s in held.streams] == [
        ("inactive", updated.streams[0].sender),
        ("inactive", updated.streams[1].sender),
    ]


def test_a_complete_snapshot_replaces_what_was_known() -> None:
    session = parse_siprec_invite(invite())
    snapshot = METADATA.replace("<send>U3RyZWFtTGFiZWwyAA==</send>", "")
    updated = update_session(session, "application/rs-metadata+xml", snapshot)
    assert [s.sender.name if s.sender else None for s in updated.streams] == ["Alice Caller", None]
    assert update_session(session, "", "") == session
