"""The blank-token rut guard (issue 16): speech goes in, only empty text comes out.

vLLM #47614: a Voxtral Realtime session can fall into a rut where every step yields the blank
token ("the blank token (id 32)", docs/vllm-realtime.md §2.3) for minutes while real speech goes
in, more often when sessions are co-scheduled; a fresh session recovers.  The leg's own energy
detector knows when there is speech, so a leg that sent ``after_s`` of speech-level audio with no
text at all since the last text (or since the last rut) ends its generation and continues on a
new one (the recycling path: nothing lost, nothing twice).

Audio that is loud but not speech (music on hold) looks the same; a recognizer that rightly
returns nothing for it would be recycled every ``after_s``.  So each rut in a row doubles the
wait, up to ``max_after_s``, and text brings it back to ``after_s``.  Pure: fed by the leg.
"""

from __future__ import annotations

from typing import Final

MAX_AFTER_S: Final = 128.0


class RutGuard:
    """Counts speech-level samples sent since the last text; says when a rut is due."""

    __slots__ = ("_after", "_base", "_ceiling", "_speech")

    def __init__(self, after_s: float, rate_hz: int, max_after_s: float = MAX_AFTER_S) -> None:
        self._base = int(after_s * rate_hz)  # 0: off
        self._ceiling = max(self._base, int(max_after_s * rate_hz))
        self._after = self._base
        self._speech = 0

    def audio(self, samples: int, speech: bool) -> None:
        """``samples`` more sent to the server; ``speech``: at speech level (not quiet)."""
        if speech:
            self._speech += samples

    def text(self) -> None:
        """The server returned text: no rut, and the wait is back to its base."""
        self._speech = 0
        self._after = self._base

    @property
    def due(self) -> bool:
        return self._base > 0 and self._speech >= self._after

    def fired(self) -> int:
        """The leg started a new session: returns the speech samples the rut lasted, and
        doubles the wait for the next one."""
        speech, self._speech = self._speech, 0
        self._after = min(2 * self._after, self._ceiling)
        return speech
