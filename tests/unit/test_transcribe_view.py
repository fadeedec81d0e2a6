"""What a person sees while a file is transcribed."""

from __future__ import annotations

from bridge.cli.view import TerminalView
from bridge.core.types import CallId, Gap, LegId, LegInfo, LegRole, LegSource, Segment
from bridge.transcribe import Progress, parse_roles

INFO = LegInfo(CallId("c"), LegId("l"), LegRole.AGENT, "", "", LegSource.FILE, 0)


def seg(text: str, final: bool) -> Segment:
    return Segment(CallId("c"), LegId("l"), 0, 1500, 2000, text, final)


def test_terminal_shows_partials_on_the_status_line_and_finals_as_lines() -> None:
    out: list[str] = []
    view = TerminalView(out.append, tty=True, width=60)
    view.on_progress(Progress(5_000, 10_000))
    view.on_segment(INFO, seg("hello wor", final=False))
    view.on_segment(INFO, seg("hello world.", final=True))
    screen = "".join(out)
    assert "\r\x1b[K[##########----------]  50% 00:05.0/00:10.0 agent: hello wor" in screen
    assert "\r\x1b[K[00:01.5 agent] hello world.\n" in screen
    assert out[-1] == "\r\x1b[K[##########----------]  50% 00:05.0/00:10.0 "  # partial gone


def test_pipes_get_finals_gaps_and_progress_every_10_percent_only() -> None:
    out: list[str] = []
    view = TerminalView(out.append, tty=False)
    for ms in range(0, 10_001, 200):
        view.on_progress(Progress(ms, 10_000))
    view.on_segment(INFO, seg("partial", final=False))
    view.on_segment(INFO, Gap(CallId("c"), LegId("l"), 3_000, 700, "ASR unreachable"))
    lines = "".join(out).splitlines()
    assert len([line for line in lines if "%" in line]) == 11
    assert lines[-1] == "[00:03.0 agent] (gap 700 ms: ASR unreachable)"
    assert not any("partial" in line for line in lines)


def test_parse_roles() -> None:
    assert parse_roles("Agent, customer") == (LegRole.AGENT, LegRole.CUSTOMER)
