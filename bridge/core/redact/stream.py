"""One leg's segments, redacted before anything outside the leg sees them.

A leg's transcript comes as revisions of segments (partials that grow, then a final).  The
:class:`Redactor` sits between the assembler and everything else - the store, the live push,
webhooks, exports, logs - and passes on only redacted revisions:

* Entities are found over the words of the finals it still holds and the current partial, as
  one stretch of speech: a card read in groups with pauses between them spans several segments.
* A final whose last words may be the start of an entity (a run of digits reaching its end, an
  e-mail address being spelled, a date after "date of birth") is *held* until what follows shows
  where that ends: the next segment's first words, or the leg's end.  Then it is released with
  the entity redacted, or as it was.
* A partial is shown without such an open tail: "4111 1111" is never pushed while it could still
  become a card.  Its tail appears once the run is over (redacted if it was an entity).
* A redacted span becomes one ``[CARD]``-style word per segment, from the first redacted word's
  start to the last one's end: the times stay, the text goes.

Sans-I/O: segments in, segments out, no clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from bridge.core.redact.entities import ENTITIES, Found, scan, worth_reading
from bridge.core.redact.lexicon import AMBIGUOUS_NUMBER_WORDS, LANGUAGES
from bridge.core.redact.spoken import clean
from bridge.core.types import Segment, Word

_PUNCTUATION = ".?!,;:。？！"
DTMF_KEYS = "0123456789*#ABCD"
#: A run of this many characters is over, whatever follows (the longest entity is an IBAN of
#: 34); holding longer would hold a leg's text for good.
MAX_OPEN_WORDS = 48


@dataclass(frozen=True, slots=True)
class RedactionPolicy:
    """What is redacted (``entities``, from :data:`ENTITIES`) in which ``languages``; ``dtmf``:
    keyed digits are stored and pushed as ``*`` (a card is keyed as often as it is said);
    ``pause_keys``/``resume_keys``: DTMF sequences that pause and resume the call."""

    entities: tuple[str, ...] = ("card", "cvv")
    languages: tuple[str, ...] = LANGUAGES
    dtmf: bool = True
    # Keys an IVR or agent presses to pause the call's transcription for a payment step, and
    # to resume it ("": none); see bridge.call.Call.pause.
    pause_keys: str = ""
    resume_keys: str = ""

    def __post_init__(self) -> None:
        unknown = set(self.entities) - set(ENTITIES)
        if unknown:
            raise ValueError(f"unknown entity type(s) {sorted(unknown)}: expected {ENTITIES}")
        for keys in (self.pause_keys, self.resume_keys):
            if len(keys) > 8 or set(keys) - set(DTMF_KEYS):
                raise ValueError(f"DTMF keys {keys!r}: up to 8 of {DTMF_KEYS}")
        if self.pause_keys and self.pause_keys == self.resume_keys:
            raise ValueError("pause_keys and resume_keys must differ")

    @property
    def enabled(self) -> bool:
        return bool(self.entities)

    def dtmf_digit(self, digit: str, detail: str) -> tuple[str, str]:
        """A keyed digit and its event detail (``digit=5 ...``) as they may be stored."""
        if not self.dtmf:
            return digit, detail
        return "*", " ".join("digit=*" if p.startswith("digit=") else p for p in detail.split())


class Redactor:
    """Redacts one leg's segment revisions (see the module docstring)."""

    def __init__(self, policy: RedactionPolicy) -> None:
        self.policy = policy
        self._held: list[Segment] = []  # finals not passed on yet, oldest first
        # The last words passed on: read again with what follows (a card whose last group
        # comes in the next segment), never passed on again.
        self._context: list[str] = []
        self.redacted = 0  # entities redacted so far (each counted in the revision it left in)

    def receive(self, segment: Segment) -> list[Segment]:
        """The revisions to pass on now for one that came in (possibly none)."""
        if not self.policy.enabled:
            return [segment]
        if segment.final:
            self._held.append(segment)
            return self._release(None)
        return self._release(segment)

    def finish(self) -> list[Segment]:
        """The leg ended: every held final goes, its open tail over."""
        return self._release(None, ended=True)

    # -- internals -----------------------------------------------------------------------------

    def _release(self, partial: Segment | None, *, ended: bool = False) -> list[Segment]:
        segments = [*self._held, *([partial] if partial else [])]
        words = [*self._context, *(w.text for s in segments for w in s.words)]
        growing = partial is not None and bool(partial.words)
        policy = self.policy
        found, tail = scan(words, policy.entities, policy.languages, growing=growing, ended=ended)
        if tail is not None and len(words) - tail > MAX_OPEN_WORDS:
            tail = None
        labels = _labels(found, len(words))
        out: list[Segment] = []
        at = len(self._context)
        keep: list[Segment] = []
        for segment in self._held:
            end = at + len(segment.words)
            if tail is not None and end > tail or keep:
                keep.append(segment)  # it reaches into what may still grow: wait
            else:
                out.append(self._apply(segment, labels[at:end]))
                self._context = [*self._context, *(w.text for w in segment.words)]
            at = end
        self._held = keep
        # Only a number that reaches the end of what was passed on can go on in what follows.
        last = clean(self._context[-1]) if self._context else ""
        ends_open = (
            worth_reading(last)
            or last in AMBIGUOUS_NUMBER_WORDS
            or (len(last) == 1 and last.isalpha())  # an IBAN's "D E"
        )
        self._context = self._context[-MAX_OPEN_WORDS:] if ends_open else []
        if partial is not None:
            shown = len(partial.words) if tail is None else max(0, tail - at)
            if shown == len(partial.words):
                out.append(self._apply(partial, labels[at:]))
            elif shown:  # the open tail waits; what comes before it is shown
                out.append(self._apply(partial, labels[at : at + shown], cut=shown))
        return out

    def _apply(self, segment: Segment, labels: Sequence[str | None], cut: int = -1) -> Segment:
        """``segment`` with its labelled words replaced, and only its first ``cut`` words."""
        if not any(labels) and cut < 0:
            return segment
        words: list[Word] = []
        previous: str | None = None
        for word, label in zip(segment.words[: cut if cut >= 0 else None], labels, strict=True):
            # The token keeps the sentence's punctuation: "[CARD]." ends a sentence as it did.
            token = f"[{label}]{_trailing(word.text)}" if label else None
            if token and label == previous:  # one token per span, to its last word's end
                words[-1] = replace(words[-1], text=token, end_ms=word.end_ms)
            elif token:
                words.append(replace(word, text=token))
                self.redacted += segment.final
            else:
                words.append(word)
            previous = label
        return replace(
            segment,
            words=tuple(words),
            text=" ".join(w.text for w in words),
            start_ms=words[0].start_ms,
            end_ms=words[-1].end_ms,
        )


def _trailing(text: str) -> str:
    """The punctuation ``text`` ends with ("eleven." -> ".")."""
    return text[len(text.rstrip(_PUNCTUATION)) :]


def _labels(found: list[Found], count: int) -> list[str | None]:
    """Per word, the label of the first entity that covers it."""
    labels: list[str | None] = [None] * count
    for item in found:
        for i in range(max(0, item.first), min(count, item.last + 1)):
            labels[i] = labels[i] or item.label
    return labels
