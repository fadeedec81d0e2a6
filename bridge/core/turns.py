"""Transcript assembly for the OpenAI dialect: one leg's turns become segments.

A turn (audio the leg committed at a pause, :mod:`bridge.core.openai_protocol`) is one segment:
its deltas grow a partial, its ``completed`` makes it final.  Nothing in a delta says which audio
it belongs to, so word times come from

* the server's ``...segment`` events (start/end seconds in the turn) when it sends them and their
  text is the completed transcript's: each word inside its segment - ``timing = server``;
* else the turn's speech (where the leg's energy detector heard it, within the turn the bridge
  committed) - ``timing = arrival``.

Either way several words inside one span are placed by character count: a word's share of the
span is its share of the letters.  Each turn keeps one ``seq`` across revisions, and a turn heard
again after a lost connection keeps its number, so its text is replaced, never doubled.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from bridge.core.asr_events import OpenAiEvent, TurnCompleted, TurnDelta, TurnSegment
from bridge.core.asr_protocol import AsrEvent
from bridge.core.types import CallId, LegId, Segment, Timing, Word, samples_to_ms


@dataclass(slots=True)
class _Turn:
    seq: int
    start: int
    end: int
    text: str = ""
    segments: list[TurnSegment] = field(default_factory=list)


def place_words(text: str, start: int, end: int, timing: Timing) -> list[Word]:
    """The words of ``text`` spread over samples ``start``..``end`` by character count."""
    words = text.split()
    letters = sum(len(w) for w in words)
    out: list[Word] = []
    done = 0
    for word in words:
        first = start + (end - start) * done // letters
        done += len(word)
        last = start + (end - start) * done // letters
        out.append(Word(word, samples_to_ms(first), samples_to_ms(last), timing))
    return out


class TurnAssembler:
    """Turns one leg's ``TurnDelta``/``TurnSegment``/``TurnCompleted`` into ``Segment``
    revisions (the vLLM dialect's steps: :class:`bridge.core.transcript.TranscriptAssembler`)."""

    def __init__(self, call_id: CallId, leg_id: LegId, *, next_seq: int = 0) -> None:
        self.call_id = call_id
        self.leg_id = leg_id
        self.next_seq = next_seq
        self._turns: dict[int, _Turn] = {}  # by turn number: seen, not final yet

    def receive(self, event: AsrEvent | OpenAiEvent) -> list[Segment]:
        """The segments an event changed (none for events that carry no text)."""
        match event:
            case TurnDelta() if event.delta:
                turn = self._turn(event.turn, event.start, event.end)
                turn.text += event.delta
                return [self._segment(turn, final=False)]
            case TurnSegment():
                # Kept for the final: partials stay on arrival times until the text is known.
                self._turn(event.turn, event.start, event.end).segments.append(event)
            case TurnCompleted():
                shown = self._turns.pop(event.turn) if event.turn in self._turns else None
                if shown is None and not event.text.strip():
                    return []  # nothing was said and nothing was shown
                turn = shown or self._new(event.start, event.end)
                turn.text = event.text
                return [self._segment(turn, final=True)]
        return []

    def finish(self) -> list[Segment]:
        """The leg ended: turns shown as partials and never completed stay as they were."""
        turns, self._turns = list(self._turns.values()), {}
        return [self._segment(t, final=True) for t in turns if t.text.strip()]

    def _turn(self, number: int, start: int, end: int) -> _Turn:
        turn = self._turns.get(number)
        if turn is None:
            turn = self._turns[number] = self._new(start, end)
        return turn

    def _new(self, start: int, end: int) -> _Turn:
        self.next_seq += 1
        return _Turn(self.next_seq - 1, start, end)

    def _segment(self, turn: _Turn, *, final: bool) -> Segment:
        words, timing = self._words(turn) if final else ([], Timing.ARRIVAL)
        if not words:
            words = place_words(turn.text, turn.start, turn.end, Timing.ARRIVAL)
        return Segment(
            call_id=self.call_id,
            leg_id=self.leg_id,
            seq=turn.seq,
            start_ms=words[0].start_ms if words else samples_to_ms(turn.start),
            end_ms=words[-1].end_ms if words else samples_to_ms(turn.end),
            text=" ".join(w.text for w in words),
            final=final,
            words=tuple(words),
            timing=timing,
        )

    @staticmethod
    def _words(turn: _Turn) -> tuple[list[Word], Timing]:
        """The server's segments, when they spell the completed text; else none."""
        said = " ".join(s.text for s in turn.segments).split()
        if not said or said != turn.text.split():
            return [], Timing.ARRIVAL
        words = [
            w for s in turn.segments for w in place_words(s.text, s.start, s.end, Timing.SERVER)
        ]
        return words, Timing.SERVER
