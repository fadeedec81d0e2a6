"""RTP-derived frame times -> leg positions (pure).

aiortc gives every decoded frame a ``pts`` in ``1/sample_rate`` units, taken from the RTP
timestamp (RFC 3550 §5.1: it advances by the samples in the packet, also across lost packets).
:class:`PtsClock` maps it onto the leg's input-sample position so that
:meth:`bridge.core.audio.LegAudio.receive_frame` fills lost packets with silence.  A jump larger
than ``max_jump_samples`` either way (sender restart, new SSRC) rebases instead: the leg clock
never skips more than that.
"""

from __future__ import annotations


class PtsClock:
    """Frame ``pts`` -> position in input samples since the leg started."""

    __slots__ = ("_base", "max_jump_samples")

    def __init__(self, *, max_jump_samples: int) -> None:
        self._base: int | None = None
        self.max_jump_samples = max_jump_samples

    def position(self, pts: int | None, expected: int) -> int | None:
        """Where a frame stamped ``pts`` starts; ``expected``: the next contiguous position."""
        if pts is None:
            return None
        if self._base is None:
            self._base = pts - expected
        position = pts - self._base
        if abs(position - expected) > self.max_jump_samples:
            self._base = pts - expected
            position = expected
        return position
