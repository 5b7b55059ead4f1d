"""Plain text helpers for the console: numbers, durations and labels an operator reads at a glance."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from canvas_tui.canvas.errors import TITLES, Category
from canvas_tui.engine.state import Attempt, RecordRow
from canvas_tui.records import State
from canvas_tui.text import printable

STATE_LABELS: dict[State, str] = {
    State.PENDING: "pending",
    State.IN_FLIGHT: "in flight",
    State.DONE: "done",
    State.FAILED: "failed",
    State.SKIPPED: "skipped",
}

# Rich styles per state: the same colours in the counts, the queue and the stepper.
STATE_STYLES: dict[State, str] = {
    State.PENDING: "dim",
    State.IN_FLIGHT: "bold cyan",
    State.DONE: "green",
    State.FAILED: "bold red",
    State.SKIPPED: "yellow",
}


def duration(seconds: float | None) -> str:
    """`75` -> `1m15s`; `3725` -> `1h02m`; None -> `--`."""
    if seconds is None or seconds != seconds or seconds < 0:
        return "--"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def count(n: int) -> str:
    """Thousands separated with a thin comma: `100000` -> `100,000`."""
    return f"{n:,}"


def rate(per_second: float) -> str:
    return f"{per_second:,.1f}/s" if per_second < 100 else f"{per_second:,.0f}/s"


def category_title(category: str | None) -> str:
    if not category:
        return "-"
    try:
        return TITLES[Category(category)]
    except ValueError:
        return category


def bar(fraction: float, width: int) -> str:
    """A solid gauge of `width` cells, with eighth-block precision."""
    fraction = min(1.0, max(0.0, fraction))
    eighths = round(fraction * width * 8)
    full, part = divmod(eighths, 8)
    partial = " ▏▎▍▌▋▊▉"[part] if part else ""
    return ("█" * full + partial).ljust(width)[:width]


def duration_range(low: float, high: float) -> str:
    """`(75, 110)` -> `1m15s` to `1m50s` joined by an en dash; a range whose ends round alike is one figure."""
    a, b = duration(low), duration(high)
    return a if a == b else f"{a}–{b}"


SPARKS = " ▁▂▃▄▅▆▇█"


def spark(values: Sequence[float], width: int, top: float) -> str:
    """The last `width` samples as a one-line chart scaled from 0 to `top` (not to the samples'
    own range, so a flat line reads as flat, and 0 as empty)."""
    if width <= 0:
        return ""
    shown = list(values)[-width:]
    if top <= 0:
        top = max(shown, default=0.0)
    cells = []
    for v in shown:
        if top <= 0 or v <= 0:
            cells.append(SPARKS[0] if v <= 0 else SPARKS[-1])
            continue
        level = max(1, min(8, round(min(v, top) / top * 8)))
        cells.append(SPARKS[level])
    return "".join(cells).rjust(width)


def printable_row(row: RecordRow) -> RecordRow:
    """A record's outside text (source fields, Canvas's message) safe to draw (text.py)."""
    return replace(
        row,
        source=printable(row.source),
        user=printable(row.user),
        course=None if row.course is None else printable(row.course),
        section=None if row.section is None else printable(row.section),
        role=printable(row.role),
        status=printable(row.status),
        message=None if row.message is None else printable(row.message),
        raw={printable(k): printable(v) for k, v in row.raw.items()},
        warnings=tuple(printable(w) for w in row.warnings),
    )


def printable_attempt(attempt: Attempt) -> Attempt:
    return replace(
        attempt,
        url=printable(attempt.url),
        request_body=None if attempt.request_body is None else printable(attempt.request_body),
        message=None if attempt.message is None else printable(attempt.message),
    )
