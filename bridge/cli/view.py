"""What a terminal shows while ``bridge transcribe`` runs: live partial text and a progress bar
on a terminal, plain final lines (and a progress line every 10 %) in a pipe."""

from __future__ import annotations

from collections.abc import Callable

from bridge.core.types import Gap, LegInfo, Segment
from bridge.export import fmt_ms
from bridge.transcribe import Progress


class TerminalView:
    """Live partial text and a progress bar on a terminal; plain final lines otherwise."""

    def __init__(self, write: Callable[[str], None], *, tty: bool, width: int = 100) -> None:
        self.write = write
        self.tty = tty
        self.width = width
        self._partial: dict[str, str] = {}
        self._progress = ""
        self._last_percent = -1

    def on_segment(self, info: LegInfo, item: Segment | Gap) -> None:
        name = info.role.value
        if isinstance(item, Gap):
            self._line(
                f"[{fmt_ms(item.start_ms)} {name}] (gap {item.duration_ms} ms: {item.reason})"
            )
        elif item.final:
            self._partial.pop(info.leg_id, None)
            self._line(f"[{fmt_ms(item.start_ms)} {name}] {item.text}")
        elif self.tty:
            self._partial[info.leg_id] = f"{name}: {item.text}"
            self._status()

    def on_progress(self, progress: Progress) -> None:
        percent = 100 * progress.position_ms // max(progress.duration_ms, 1)
        bar = "#" * (percent // 5) + "-" * (20 - percent // 5)
        self._progress = (
            f"[{bar}] {percent:3d}% {fmt_ms(progress.position_ms)}/{fmt_ms(progress.duration_ms)}"
        )
        if self.tty:
            self._status()
        elif percent // 10 != self._last_percent // 10:
            self.write(self._progress + "\n")
        self._last_percent = percent

    def close(self) -> None:
        if self.tty:
            self.write("\r\x1b[K")

    def _line(self, text: str) -> None:
        self.write(("\r\x1b[K" if self.tty else "") + text + "\n")
        if self.tty:
            self._status()

    def _status(self) -> None:
        partial = " | ".join(self._partial.values())
        line = f"{self._progress} {partial}"
        if len(line) > self.width:
            line = line[: self.width - 1] + "…"
        self.write("\r\x1b[K" + line)
