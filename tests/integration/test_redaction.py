"""Redaction through the real pipeline (issue 17 item 1): a leg's every revision - each partial
the live API, webhooks and the FreeSWITCH reply get (the leg's listener feeds them all), each
final - and what SQLite, the JSON export and the log hold never show a card number.

* English speech (flite) through the embedded engine (faster-whisper), cards, phone numbers and
  e-mail addresses as people say them, ordinary numbers kept;
* Spanish, French and German number words through the real vLLM server, whose transcript is
  scripted (the tiny random-weight Voxtral cannot hear; espeak-ng speech is more than the
  embedded Whisper base model can read in those languages), a card spread over two utterances.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from engine_server import EngineServer
from vllm_server import VllmServer

from bridge.asr.client import AsrEndpoint
from bridge.core.redact import ENTITIES, RedactionPolicy
from bridge.core.types import Gap, LegInfo, Segment
from bridge.export import to_json
from bridge.leg import LegSettings
from tests.engine.speech import build
from tests.integration.test_pipeline import finals, run_leg, tone

pytestmark = pytest.mark.integration

#: What must never be seen: a digit of the test card, or two number words in a row of it.
CARD_DIGITS = re.compile(r"4111|1111|\b(four|one|uno|un|eins|cuatro|quatre|vier)[ ,.]+"
                         r"(one|uno|un|eins)\b", re.I)  # fmt: skip


def pcm16(audio: np.ndarray) -> np.ndarray:
    return (np.clip(audio, -1, 1) * 32767).astype(np.int16)


class Seen:
    """Every revision the leg pushed, as the live API would have sent it."""

    def __init__(self) -> None:
        self.revisions: list[Segment] = []

    def __call__(self, _: LegInfo, item: Segment | Gap) -> None:
        if isinstance(item, Segment):
            self.revisions.append(item)

    def leaks(self) -> Iterator[str]:
        yield from (s.text for s in self.revisions if CARD_DIGITS.search(s.text))


async def test_english_speech_cards_phones_and_emails_never_leave_the_leg(
    engine_server: EngineServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, "bridge")
    speech = build(
        [
            "my card number is four one one one, one one one one, one one one one, one one one one",
            1.2,
            "please call me back on two zero two, five five five, zero one two three",
            1.2,
            "my email is john dot smith at example dot com",
            1.2,
            "the order number is seven three five two, and it costs twenty nine dollars",
            1.0,
        ]
    )
    seen = Seen()
    endpoint = AsrEndpoint(
        url=engine_server.url, model=engine_server.model, api_key=engine_server.api_key
    )
    policy = LegSettings(redaction=RedactionPolicy(entities=ENTITIES))
    run = await run_leg(
        tmp_path / "t.db", pcm16(speech.audio), endpoint=endpoint, settings=policy, listener=seen
    )
    text = " ".join(s.text for s in finals(run))
    assert "[CARD]" in text and "[PHONE]" in text and "[EMAIL]" in text, text
    assert "7352" in text and "29" in text, text  # an order number and a price are kept
    assert not list(seen.leaks()), list(seen.leaks())
    shown = [s.text for s in seen.revisions]
    assert not re.search(r"202|555|0123|smith|example", " | ".join(shown)), shown
    assert seen.revisions and any(not s.final for s in seen.revisions)  # partials were pushed
    exported = to_json(run.transcript)
    assert not CARD_DIGITS.search(exported) and "smith" not in exported.lower()
    words = [w["text"] for s in json.loads(exported)["segments"] for w in s["words"]]
    assert "[CARD]" in words  # the token stands in the words, with the card's times
    db = run.db.read_bytes()
    assert b"4111" not in db and b"1111" not in db and b"smith" not in db.lower()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert not CARD_DIGITS.search(logged) and "smith" not in logged.lower()


SCRIPT = (
    "||||||||||||||||| mi tarjeta es cuatro uno uno uno uno uno uno uno"
    "|||||||||||| uno uno uno uno uno uno uno uno. gracias"
    "||||||||||||||||| ma carte est quatre un un un un un un un un un un un un un un un."
    "||||||||||||||||| meine karte ist vier eins eins eins eins eins eins eins eins eins eins "
    "eins eins eins eins eins. danke"
    "||||||||||||||||| cuesta veinte euros."
    "|||||||||||||||||"
)


@pytest.fixture(scope="module")
def scripted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VllmServer]:
    server = VllmServer(work_dir=tmp_path_factory.mktemp("vllm-redaction"), script=SCRIPT)
    server.start()
    try:
        yield server
    finally:
        server.stop()


async def test_spanish_french_and_german_number_words_and_a_card_over_two_utterances(
    scripted: VllmServer, tmp_path: Path
) -> None:
    seen = Seen()
    endpoint = AsrEndpoint(url=scripted.url, model=scripted.model, stall_timeout_s=30)
    seconds = len(SCRIPT) * 0.08 + 1
    run = await run_leg(tmp_path / "t.db", tone(seconds), endpoint=endpoint, listener=seen)
    said = [s.text for s in finals(run)]
    # The card over two utterances is one card, redacted in both (the words' punctuation
    # stays: the assembler ends a segment at "uno." followed by a word).
    assert said[:3] == ["mi tarjeta es [CARD]", "[CARD].", "gracias"], said
    assert said[3:6] == ["ma carte est [CARD].", "meine karte ist [CARD].", "danke"], said
    assert "cuesta veinte euros." in said  # a price is kept
    assert not list(seen.leaks()), list(seen.leaks())
    assert b"uno uno" not in run.db.read_bytes() and b"eins eins" not in run.db.read_bytes()
