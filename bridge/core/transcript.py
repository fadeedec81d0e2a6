"""Transcript assembly: one leg's steps of text become words with times, then segments.

Each ``transcription.delta`` is the text of one 80 ms frame on the leg clock (see
``asr_protocol``), so a word starts at the frame that carried its first character and ends with
the frame that carried its last one: 80 ms resolution with no help from the server.

Segments (utterances) grow as partials and become final when

* a word ending in sentence punctuation (``.``, ``?``, ``!``, and their CJK forms) is followed by
  a new word or by ``sentence_pause_steps`` empty steps,
* ``pause_steps`` empty steps follow the last text (a pause of ``pause_steps * 80`` ms),
* the segment is longer than ``max_segment_ms`` and a new word starts,
* the generation ends (its text is complete), or the leg ends.

Every change yields the whole segment again (``text`` is never a delta), keyed by ``seq``:
storing and pushing are idempotent by ``(leg_id, seq)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bridge.core.asr_events import AsrEvent, GenerationEnded, OpenAiEvent, StepText
from bridge.core.types import CallId, LegId, Segment, Word, samples_to_ms

_PIECES = re.compile(r"\s+|\S+")
_SENTENCE_END = tuple(".?!。？！")


@dataclass(frozen=True, slots=True)
class SegmentPolicy:
    """When a segment becomes final.  Steps are 80 ms."""

    pause_steps: int = 10  # 800 ms without new text
    sentence_pause_steps: int = 2  # 160 ms after sentence punctuation
    max_segment_ms: int = 30_000


class _OpenWord:
    __slots__ = ("text", "start", "end")

    def __init__(self, text: str, start: int, end: int) -> None:
        self.text, self.start, self.end = text, start, end


class TranscriptAssembler:
    """Turns one leg's ``StepText``/``GenerationEnded`` events into ``Segment`` revisions."""

    def __init__(
        self,
        call_id: CallId,
        leg_id: LegId,
        *,
        policy: SegmentPolicy | None = None,
        next_seq: int = 0,
    ) -> None:
        self.call_id = call_id
        self.leg_id = leg_id
        self.policy = policy or SegmentPolicy()
        self.next_seq = next_seq
        self._words: list[_OpenWord] = []
        self._word_open = False  # the last word may still grow (no space after it yet)
        self._empty_steps = 0

    def receive(self, event: AsrEvent | OpenAiEvent) -> list[Segment]:
        """The segments an event changed (none for events that carry no text)."""
        if isinstance(event, StepText):
            return self.receive_step(event)
        if isinstance(event, GenerationEnded):
            return self.receive_generation_end(event)
        return []

    def receive_step(self, step: StepText) -> list[Segment]:
        """Add one step's text; returns the segments that changed, oldest first."""
        out: list[Segment] = []
        if not step.text:
            self._empty_steps += 1
            if self._words and self._paused():
                out.append(self._finalize())
            return out
        self._empty_steps = 0
        for piece in _PIECES.findall(step.text):
            if piece.isspace():
                self._word_open = False
            elif self._word_open:
                word = self._words[-1]
                word.text += piece
                word.end = step.frame_end
            else:
                if self._words and (self._sentence_ended() or self._too_long(step.frame_start)):
                    out.append(self._finalize())
                self._words.append(_OpenWord(piece, step.frame_start, step.frame_end))
                self._word_open = True
        if self._words:
            out.append(self._segment(final=False))
        return out

    def receive_generation_end(self, ended: GenerationEnded) -> list[Segment]:
        """A generation's text is complete: whatever is open becomes final."""
        return self.finish()

    def finish(self) -> list[Segment]:
        """Finalize the open segment, if any (generation or leg ended)."""
        return [self._finalize()] if self._words else []

    def _paused(self) -> bool:
        if self._empty_steps >= self.policy.pause_steps:
            return True
        return self._sentence_ended() and self._empty_steps >= self.policy.sentence_pause_steps

    def _sentence_ended(self) -> bool:
        # Checked only when a new word starts or after a pause, so "3." growing into "3.5"
        # within one word never ends a sentence.
        return self._words[-1].text.endswith(_SENTENCE_END)

    def _too_long(self, at: int) -> bool:
        return samples_to_ms(at - self._words[0].start) > self.policy.max_segment_ms

    def _segment(self, *, final: bool) -> Segment:
        words = tuple(
            Word(w.text, samples_to_ms(w.start), samples_to_ms(w.end)) for w in self._words
        )
        return Segment(
            call_id=self.call_id,
            leg_id=self.leg_id,
            seq=self.next_seq,
            start_ms=words[0].start_ms,
            end_ms=words[-1].end_ms,
            text=" ".join(w.text for w in words),
            final=final,
            words=words,
        )

    def _finalize(self) -> Segment:
        segment = self._segment(final=True)
        self.next_seq += 1
        self._words = []
        self._word_open = False
        self._empty_steps = 0
        return segment
