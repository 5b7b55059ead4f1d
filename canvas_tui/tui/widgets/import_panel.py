"""The SIS import panel: Canvas's own account of the run's import (engine/sis_import/), shown
between the dashboard and the queue only while a run has one.

It renders the snapshot's `ImportStatus` and keeps no state of its own: Canvas's workflow state,
its progress, the rows and counts, and the warnings and errors so far (they become failed
records, each with its message, once Canvas finishes and the engine maps them to rows).
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from canvas_tui.engine.state import ImportStatus
from canvas_tui.text import printable
from canvas_tui.tui import format as fmt

# Canvas's workflow states (SisBatch), by how an operator should read them
GOOD = frozenset({"imported", "restored"})
WARN = frozenset({"imported_with_messages", "partially_restored"})
BAD = frozenset({"failed", "failed_with_messages", "aborted"})
# ours, before Canvas has the file or after it finished
STAGE_LABELS = {
    "prepared": "PREPARED",
    "uploading": "UPLOADING",
    "mapping": "READING MESSAGES",
}
ABORTING = frozenset({"sent", "accepted"})
# data.counts entries the line shows as its own figures
SHOWN_ELSEWHERE = frozenset({"warning_count", "error_count"})
PERCENT = 5  # characters of " 100%"
SEPARATOR = " · "
MAX_LINES = 3  # the figures' lines at most, under the state line (the panel grows to fit)


def running(status: ImportStatus | None) -> bool:
    """An import Canvas has (or is about to have) and has not finished: it cannot be paused."""
    return status is not None and status.stage in ("prepared", "uploading", "polling")


def abortable(status: ImportStatus | None) -> bool:
    """Canvas is running it and no abort has been accepted: PUT abort can stop it."""
    return (
        status is not None
        and status.stage == "polling"
        and status.sis_import_id is not None
        and status.abort not in ABORTING
    )


def state_label(status: ImportStatus) -> tuple[str, str]:
    """The badge: Canvas's workflow state (or our stage before and after it) and its style."""
    workflow = status.workflow_state or ""
    if status.stage == "polling" and status.abort in ABORTING:
        return "ABORTING", "bold magenta"
    if status.stage in STAGE_LABELS:
        return STAGE_LABELS[status.stage], "bold cyan"
    label = (workflow or status.stage).replace("_", " ").upper()
    if workflow in GOOD:
        return label, "bold green"
    if workflow in WARN:
        return label, "bold yellow"
    if workflow in BAD or (status.final and not workflow):
        return label, "bold red"
    return label, "bold blue"


def time_left(status: ImportStatus) -> float | None:
    """Seconds until Canvas finishes (`ImportStatus.time_left`; sync's progress line uses it
    too)."""
    return status.time_left


def import_text(status: ImportStatus, width: int = 76) -> Text:
    """The state, progress and id; then the rows, messages and counts, on as many lines as
    `width` needs (`MAX_LINES` at most are shown)."""
    label, style = state_label(status)
    head = Text.assemble((f" {label} ", f"reverse {style}"), " ")
    ident = f" SIS import {status.sis_import_id}" if status.sis_import_id is not None else ""
    clock = f" · {fmt.duration(status.elapsed)}" if status.elapsed > 0 else ""
    left = time_left(status)
    if left is not None:
        clock += f", ≈{fmt.duration(left)} left"
    tail = f"{ident}{clock}"
    bar_width = max(4, width - len(head) - PERCENT - len(tail))
    progress = status.progress / 100.0
    filled = fmt.bar(progress, bar_width).rstrip()
    head.append(filled, style="green" if status.final else "cyan")
    head.append("━" * (bar_width - len(filled)), style="dim")
    head.append(f"{status.progress:4.0f}%", style="bold")
    head.append(tail, style="dim")

    for row in _wrap(_figures(status), width):
        head.append("\n")
        head.append_text(row)
    return head


def _figures(status: ImportStatus) -> list[Text]:
    """The rows, the messages, Canvas's counts, the outcome and the REST records beside it."""
    figures = [Text.assemble((fmt.count(status.rows), "bold"), (" rows", "dim"))]
    warned = status.warning_count
    figures.append(
        Text.assemble(
            (fmt.count(warned), "bold yellow" if warned else "bold"),
            (" warnings" if warned != 1 else " warning", "dim"),
        )
    )
    if status.error_count:
        figures.append(
            Text.assemble(
                (fmt.count(status.error_count), "bold red"),
                (" errors" if status.error_count != 1 else " error", "dim"),
            )
        )
    for name, n in sorted(status.counts.items()):
        if n and name not in SHOWN_ELSEWHERE:
            figures.append(Text.assemble((f"{printable(name)} ", "dim"), (fmt.count(n), "bold")))
    if status.final:
        figures.append(Text.assemble(("done ", "dim"), (fmt.count(status.done), "green")))
        figures.append(
            Text.assemble(
                ("failed ", "dim"),
                (fmt.count(status.failed), "bold red" if status.failed else ""),
            )
        )
    if status.rest_records:
        figures.append(Text(f"{fmt.count(status.rest_records)} by REST beside it", style="dim"))
    return figures


def _wrap(figures: list[Text], width: int) -> list[Text]:
    """The figures joined by " · ", a new line rather than one cut at the panel's edge (a
    finished import's figures fill more than 76 columns)."""
    rows: list[Text] = []
    for figure in figures:
        if rows and len(rows[-1]) + len(SEPARATOR) + len(figure) <= width:
            rows[-1].append(SEPARATOR, style="dim")
            rows[-1].append_text(figure)
        else:
            rows.append(figure.copy())
    return rows


def update_fitted(static: Static, text: Text, height: int) -> None:
    """Show `text` in `static` at `height` rows: a layout pass only when the height changes
    (an update of the same size repaints only)."""
    grows = static.styles.height is None or static.styles.height.value != height
    if grows:
        static.styles.height = height
    static.update(text, layout=grows)


def note_text(status: ImportStatus) -> str:
    """The border's subtitle: an abort's fate, else what the import waits for or ended with."""
    if status.abort == "sent":
        return "abort sent: Canvas stops after the chunk in hand"
    if status.abort == "accepted" and not status.final:
        return "abort accepted: the chunk in hand still lands"
    if status.abort not in (None, *ABORTING):
        return printable(status.abort or "")
    if status.stage == "polling":
        return ""  # the badge and the bar say what "importing 45%" would
    return printable(status.message or "")


class ImportPanel(Static):
    """The run's SIS import; hidden while the run has none."""

    DEFAULT_CSS = """
    ImportPanel {
        height: 4;  /* two lines; more while the figures wrap (`show`) */
        border: round $primary 50%;
        border-title-color: $text;
        border-subtitle-color: $text-muted;
        padding: 0 1;
        display: none;
    }
    ImportPanel.-shown { display: block; }
    """

    def __init__(self) -> None:
        super().__init__(id="import-panel")
        self.border_title = "SIS import"
        self._shown: object = None

    def show(self, status: ImportStatus | None, keys: str = "") -> None:
        """Render one snapshot's import; call inside `app.batch_update()`. `keys`: what the
        operator may do about it (the pause key's meaning while it runs)."""
        self.set_class(status is not None, "-shown")
        if status is None:
            return
        width = self.content_size.width or 76
        key = (status, width, keys)
        if key == self._shown:
            return
        self._shown = key
        note = note_text(status)
        self.border_subtitle = f"{note} · {keys}" if keys and note else (note or keys)
        text = import_text(status, width)
        lines = min(1 + MAX_LINES, len(text.plain.split("\n")))
        update_fitted(self, text, lines + 2)  # + the border
