"""One registry of operator actions: bindings, the footer, the `?` help and the command palette all
read it, so a key remapped in the config's [keys] table changes everywhere at once (STYLE.md §8).

No Textual at import: `canvas-tui` checks a [keys] table against it before the UI (and Textual)
loads, while the engine process starts (tui/launch.py). The palette's provider is tui/palette.py.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from textual.binding import Binding


@dataclass(frozen=True, slots=True)
class ConsoleAction:
    id: str  # binding id; the name used in the config's [keys] table
    key: str  # default key(s), Textual key names, comma-separated
    action: str  # Textual action, e.g. "toggle_pause"
    label: str  # short footer label
    help: str  # one line for the help screen and the palette
    show: bool = True  # in the footer
    where: str = "console"  # "console" (everywhere), "queue" (the main screen) or "stepper"


ACTIONS: tuple[ConsoleAction, ...] = (
    # not `g`: the queue's vim keys take g/G for top/bottom; shift marks a load's start
    ConsoleAction(
        "start", "S", "start", "Start", "Start sending (READY shows what a start will do)"
    ),
    ConsoleAction("pause", "p", "toggle_pause", "Pause", "Pause or resume dispatching records"),
    ConsoleAction("skip", "s", "skip", "Skip", "Skip the selected record (it ends SKIPPED)"),
    ConsoleAction("retry", "r", "retry", "Retry", "Retry the selected failed or skipped record"),
    ConsoleAction(
        "retry_all", "R", "retry_all", "Retry all", "Retry all failed records, or one category"
    ),
    ConsoleAction("failures", "f", "failures", "Failures", "Step through the failed records"),
    ConsoleAction(
        "filter",
        "slash",
        "filter",
        "Filter",
        "Filter the queue: state:failed course:X or text",
        where="queue",
    ),
    ConsoleAction(
        "state_filter",
        "t",
        "cycle_state",
        "State",
        "Cycle the queue's state filter",
        where="queue",
    ),
    ConsoleAction(
        "sort", "o", "cycle_order", "Sort", "Cycle the queue's sort order", where="queue"
    ),
    ConsoleAction(
        "front",
        "F",
        "to_front",
        "Front",
        "Send the selected record's course first (with a text filter: the filter's records)",
        show=False,
        where="queue",
    ),
    ConsoleAction(
        "jump", "colon", "jump", "Jump", "Jump to a record by its number", show=False, where="queue"
    ),
    ConsoleAction(
        "trace",
        "T",
        "trace",
        "Trace",
        "Trace the selected record's person: every run, the source, Canvas on request",
        show=False,
    ),
    ConsoleAction("roster", "c", "roster", "Roster", "Open a course roster and compare with SIS"),
    ConsoleAction(
        "cap_up", "plus", "cap(1)", "Cap +", "Raise the concurrency cap by one", show=False
    ),
    ConsoleAction(
        "cap_down", "minus", "cap(-1)", "Cap -", "Lower the concurrency cap by one", show=False
    ),
    ConsoleAction(
        "uncap",
        "equals_sign",
        "uncap",
        "No cap",
        "Remove the concurrency cap (the governor decides)",
        show=False,
    ),
    ConsoleAction(
        "send_one", "n", "send_one", "Send one", "While paused, send one record (the selected one)"
    ),
    ConsoleAction("cancel", "x", "cancel_run", "Cancel", "Cancel the run (pending stay pending)"),
    ConsoleAction(
        "abort_import",
        "A",
        "abort_import",
        "Abort import",
        "Abort the running SIS import (it cannot be paused): asks first, says what stays",
        show=False,
    ),
    ConsoleAction(
        "export", "E", "export_failures", "Export", "Export the failures as a SIS CSV", show=False
    ),
    ConsoleAction(
        "edit", "e", "edit", "Edit+retry", "Edit the record's fields, then retry it", show=False
    ),
    ConsoleAction("help", "question_mark", "help", "Keys", "Show every key and what it does"),
    ConsoleAction("quit", "q", "quit_safely", "Quit", "Quit safely: in-flight requests finish"),
)

STEPPER_ACTIONS: tuple[ConsoleAction, ...] = (
    ConsoleAction(
        "next_failure", "right,l", "step(1)", "Next", "Next failed record", where="stepper"
    ),
    ConsoleAction(
        "previous_failure", "left,h", "step(-1)", "Prev", "Previous failed record", where="stepper"
    ),
    ConsoleAction("close", "escape", "close", "Back", "Back to the dashboard", where="stepper"),
)

BY_ID = {a.id: a for a in (*ACTIONS, *STEPPER_ACTIONS)}
QUEUE_ONLY = frozenset(a.action for a in ACTIONS if a.where == "queue")
# first in the footer, so that no terminal is too narrow to show how to get help and out
PINNED = ("help", "quit")


def bindings(
    actions: Sequence[ConsoleAction],
) -> list[Binding | tuple[str, str] | tuple[str, str, str]]:
    from textual.binding import Binding

    ordered = sorted(actions, key=lambda a: a.id not in PINNED)  # stable: the rest keep order
    return [
        Binding(a.key, a.action, a.label, show=a.show, id=a.id, tooltip=a.help) for a in ordered
    ]


def check_keymap(keymap: Mapping[str, str]) -> list[str]:
    """Problems with a [keys] table: unknown action ids (the keys themselves Textual validates)."""
    return [
        f"[keys] {name}: no such action (known: {', '.join(sorted(BY_ID))})"
        for name in keymap
        if name not in BY_ID
    ]


def display_key(key: str) -> str:
    """`question_mark` -> `?`, `slash` -> `/`: the key as printed on the keyboard."""
    from textual.keys import format_key

    return ", ".join(format_key(k.strip()) for k in key.split(","))


def effective_key(action: ConsoleAction, keymap: Mapping[str, str]) -> str:
    return display_key(keymap.get(action.id, action.key))
