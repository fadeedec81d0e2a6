"""Place recognized words on vLLM's 80 ms step clock, sans I/O.

The bridge turns deltas into word times by counting them: delta ``k`` ends at
``first_step + 80 k`` ms of audio and describes audio one transcription delay earlier
(design.md §2).  So a word's text goes into the first step whose audio end is at least its
*anchor*:

* ``end`` (default): ``word end + delay`` — the step that, read back, lands on the word's end;
* ``start``: ``max(word start + delay, word end)`` — reads back as the word's start (Voxtral's
  own alignment) but never before the server has heard the whole word.

Never earlier; later when recognition lags (the word was committed after its step had to go).

A step may go out only when the recognizer's *horizon* says that no word still to come could
belong to it: every uncommitted word starts at or after the horizon, so its anchor is at least
``horizon + delay``.  Holding a step keeps the timing exact at the cost of latency: deltas trail
the audio by the recognizer's commit latency (as a slow vLLM's would), never by less.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Final, Literal

__all__ = ["HORIZON_ALL", "StepAligner", "TimedWord", "WordAnchor"]

WordAnchor = Literal["end", "start"]

# A horizon that lets every step go: the recognizer has committed everything.
HORIZON_ALL: Final = 1 << 62


@dataclass(frozen=True, slots=True)
class TimedWord:
    """A committed word: ``text`` as the recognizer spells it (leading space included)."""

    text: str
    start_samples: int
    end_samples: int


class StepAligner:
    """Committed words in, delta texts out, one per step."""

    def __init__(
        self,
        *,
        delay_samples: int,
        anchor: WordAnchor = "start",
    ) -> None:
        self.delay_samples = delay_samples
        self.anchor = anchor
        self._pending: deque[tuple[int, str]] = deque()
        self._last_anchor = 0

    def add_words(self, words: list[TimedWord]) -> None:
        """Queue newly committed words (in spoken order)."""
        for word in words:
            if self.anchor == "end":
                anchor = word.end_samples + self.delay_samples
            else:
                anchor = max(word.start_samples + self.delay_samples, word.end_samples)
            # Keep anchors monotonic so the text never reorders.
            self._last_anchor = max(self._last_anchor, anchor)
            self._pending.append((self._last_anchor, word.text))

    @property
    def pending_text(self) -> str:
        return "".join(text for _, text in self._pending)

    def may_send(self, step_end_samples: int, *, horizon_samples: int) -> bool:
        """Whether the step ending at ``step_end_samples`` can go out now."""
        return step_end_samples - self.delay_samples <= horizon_samples

    def text_for_step(self, step_end_samples: int) -> str:
        """Pop the text of every queued word whose anchor the step has reached."""
        parts: list[str] = []
        while self._pending and self._pending[0][0] <= step_end_samples:
            parts.append(self._pending.popleft()[1])
        return "".join(parts)

    def flush(self) -> str:
        """Everything still queued (a generation's last step takes it)."""
        text = self.pending_text
        self._pending.clear()
        return text
