"""How the ASR protocol objects move through their transition tables (design.md §5: one table
per state machine): an input that is not in the table for the current state changes nothing and
raises - ``AsrProtocolError`` when the server sent it, ``InvalidState`` when we did (a bug)."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import TypeVar

from bridge.errors import AsrProtocolError, InvalidState

S = TypeVar("S", bound=enum.Enum)
I = TypeVar("I", bound=enum.Enum)  # noqa: E741


def transition(table: Mapping[tuple[S, I], S], state: S, what: I, *, by_server: bool) -> S:
    """The state after ``what`` in ``state``."""
    try:
        return table[(state, what)]
    except KeyError:
        message = f"{what.value} is not allowed in state {state.name}"
        if by_server:
            raise AsrProtocolError(f"server sent {message}") from None
        raise InvalidState(f"Cannot handle {message}") from None
