"""App-wide messages: the rare engine events an operator must see at once (STYLE.md §4, §6)."""

from __future__ import annotations

from dataclasses import dataclass

from textual.message import Message

from canvas_tui.engine.state import Phase


@dataclass
class PhaseChanged(Message):
    """The engine's run phase changed (paused, finished, aborted, ...)."""

    phase: Phase
    reason: str | None = None


@dataclass
class RunEnded(Message):
    """`session.run()` returned (finished, cancelled or aborted)."""

    phase: Phase
