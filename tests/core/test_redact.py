"""Redaction of one leg's segment revisions (bridge/core/redact): what is found in each language,
what is kept, and that no revision that leaves the redactor - partial or final - ever shows a
piece of an entity, however the speech is cut into segments."""

from __future__ import annotations

import pytest

from bridge.core.redact import ENTITIES, RedactionPolicy, Redactor
from bridge.core.redact.entities import find
from bridge.core.types import CallId, LegId, Segment, Word

ALL = RedactionPolicy(entities=ENTITIES)
CARD = "4111111111111111"


def segment(seq: int, text: str, *, final: bool = True, start_ms: int = 0) -> Segment:
    words = tuple(
        Word(w, start_ms + 400 * i, start_ms + 400 * i + 300) for i, w in enumerate(text.split())
    )
    return Segment(
        call_id=CallId("c"),
        leg_id=LegId("l"),
        seq=seq,
        start_ms=words[0].start_ms if words else start_ms,
        end_ms=words[-1].end_ms if words else start_ms,
        text=text,
        final=final,
        words=words,
    )


def redact(policy: RedactionPolicy, *texts: str) -> list[Segment]:
    """Each text a final segment, in order, then the leg's end."""
    redactor = Redactor(policy)
    out = [s for n, t in enumerate(texts) for s in redactor.receive(segment(n, t))]
    return out + redactor.finish()


def texts(segments: list[Segment]) -> list[str]:
    return [s.text for s in segments]


@pytest.mark.parametrize(
    ("said", "first"),
    [
        ("my card is four one one one one one one one one one one one one one one one", 3),
        ("my card is 4111 1111 1111 1111", 3),
        ("my card is forty one eleven eleven eleven eleven eleven eleven eleven", 3),
        ("mi tarjeta es cuatro uno uno uno uno uno uno uno uno uno uno uno uno uno uno uno", 3),
        ("ma carte est quarante et un onze onze onze onze onze onze onze", 3),
        ("meine Karte ist vier eins eins eins eins eins eins eins eins eins eins eins eins eins "
         "eins eins", 3),
        ("card four one one one double one one one one triple one one one one one", 1),
    ],
)  # fmt: skip
def test_a_card_said_any_way_is_one_card_token(said: str, first: int) -> None:
    [out] = redact(RedactionPolicy(), said)
    assert out.text == " ".join([*said.split()[:first], "[CARD]"])
    # The token keeps the times of the words it replaced: from the first digit to the last.
    card = out.words[-1]
    assert (card.start_ms, card.end_ms) == (400 * first, 400 * (len(said.split()) - 1) + 300)


def test_a_card_read_in_groups_over_four_segments_is_redacted_in_every_one() -> None:
    groups = ["my card is four one one one", "one one one one", "one one one one",
              "one one one one thank you"]  # fmt: skip
    out = redact(RedactionPolicy(), *groups)
    assert texts(out) == ["my card is [CARD]", "[CARD]", "[CARD]", "[CARD] thank you"]
    assert [s.seq for s in out] == [0, 1, 2, 3] and all(s.final for s in out)


def test_partials_never_show_digits_that_may_become_a_card() -> None:
    redactor = Redactor(RedactionPolicy())
    said = ("my card is " + " ".join(CARD) + " and that is all").split()
    shown: list[str] = []
    for n in range(1, len(said) + 1):  # the partial grows a word at a time
        shown += [s.text for s in redactor.receive(segment(0, " ".join(said[:n]), final=False))]
    shown += [s.text for s in redactor.receive(segment(0, " ".join(said)))]
    assert not [text for text in shown if any(c.isdigit() for c in text)], shown
    assert shown[-1] == "my card is [CARD] and that is all"
    assert "my card is" in shown  # what came before the number was shown at once


def test_security_code_and_expiry_next_to_a_card() -> None:
    [out] = redact(
        RedactionPolicy(),
        f"card {CARD} expiry oh three twenty seven and the security code is one two three ok",
    )
    assert out.text == "card [CARD] expiry [EXPIRY] and the security code is [CVV] ok"


@pytest.mark.parametrize(
    ("said", "kept"),
    [
        ("it costs twenty nine ninety nine", "it costs twenty nine ninety nine"),
        ("your order number is one two three four five six seven eight nine zero",
         "your order number is one two three four five six seven eight nine zero"),
        ("see you at three thirty on the fourth", "see you at three thirty on the fourth"),
        ("flight 4111 leaves at 9", "flight 4111 leaves at 9"),
        ("the total is 1,234.56 euros", "the total is 1,234.56 euros"),
    ],
)  # fmt: skip
def test_ordinary_numbers_are_kept(said: str, kept: str) -> None:
    assert texts(redact(ALL, said)) == [kept]


@pytest.mark.parametrize(
    ("said", "redacted"),
    [
        ("my IBAN is D E eight nine three seven zero four zero zero four four zero five three two "
         "zero one three zero zero zero", "my IBAN is [IBAN]"),
        ("call me on two zero two five five five zero one two three please",
         "call me on [PHONE] please"),
        ("mi teléfono es seis uno dos tres cuatro cinco seis siete ocho", "mi teléfono es [PHONE]"),
        ("my email is john dot smith at example dot com thanks", "my email is [EMAIL] thanks"),
        ("write to john.smith@example.com", "write to [EMAIL]"),
        ("my date of birth is March third nineteen eighty five okay",
         "my date of birth is [DOB] okay"),
        ("my social security number is one two three four five six seven eight nine",
         "my social security number is [ID]"),
        ("mi DNI es uno dos tres cuatro cinco seis siete ocho Z", "mi DNI es [ID]"),
        ("the account number is one two three four five six seven eight",
         "the account number is [ACCOUNT]"),
    ],
)  # fmt: skip
def test_every_entity_type_when_enabled(said: str, redacted: str) -> None:
    assert texts(redact(ALL, said)) == [redacted]


def test_the_default_policy_redacts_cards_and_codes_only() -> None:
    said = "email john dot smith at example dot com phone two zero two five five five zero one two"
    assert texts(redact(RedactionPolicy(), said)) == [said]
    assert texts(redact(RedactionPolicy(entities=()), f"card {CARD}")) == [f"card {CARD}"]


def test_an_email_being_spelled_is_held_in_partials() -> None:
    redactor = Redactor(ALL)
    shown = [
        s.text
        for n, text in enumerate(
            ["my email is", "my email is john dot", "my email is john dot smith at example"]
        )
        for s in redactor.receive(segment(0, text, final=False))
    ]
    assert shown == ["my email is", "my email is", "my email is"]


def test_keyed_digits_are_stars_unless_kept() -> None:
    assert RedactionPolicy().dtmf_digit("7", "digit=7 method=info duration_ms=120") == (
        "*",
        "digit=* method=info duration_ms=120",
    )
    assert RedactionPolicy(dtmf=False).dtmf_digit("7", "digit=7") == ("7", "digit=7")


def test_an_unknown_entity_type_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown entity type"):
        RedactionPolicy(entities=("cards",))


def test_a_run_that_never_ends_is_released_after_a_bound() -> None:
    redactor = Redactor(RedactionPolicy())
    out = [s for n in range(20) for s in redactor.receive(segment(n, "five five five five"))]
    assert out, "held for ever"
    assert find("hello".split(), ENTITIES, ("en",)) == []


def test_a_partial_growing_a_step_at_a_time_never_shows_a_piece_of_the_card() -> None:
    """vLLM's deltas are pieces of words ("ei" of "eins"): the partial's last word may still be
    a number word, so the run before it stays held too."""
    said = "meine karte ist vier " + "eins " * 15 + "danke schön"
    redactor = Redactor(RedactionPolicy())
    shown = [
        s.text
        for n in range(1, len(said) + 1)
        for s in redactor.receive(segment(0, said[:n], final=False))
    ]
    shown += [s.text for s in redactor.receive(segment(0, said))]
    assert not [t for t in shown if "eins" in t or "vier" in t], shown
    assert shown[-1] == "meine karte ist [CARD] danke schön"
