"""The dashboard: how far the run is, how close Canvas's limiter is, and what is failing.

It renders one `RunState` snapshot per tick (STYLE.md §4) and keeps no state of its own.
"""

from __future__ import annotations

from collections.abc import Callable

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.widgets import ProgressBar, Sparkline, Static

from canvas_tui.engine.state import Phase, RunState
from canvas_tui.records import State
from canvas_tui.text import printable
from canvas_tui.tui import format as fmt

PHASE_STYLES: dict[Phase, str] = {
    Phase.LOADING: "bold blue",
    Phase.RUNNING: "bold green",
    Phase.PAUSED: "bold yellow",
    Phase.CANCELLING: "bold magenta",
    Phase.FINISHED: "bold green",
    Phase.CANCELLED: "bold magenta",
    Phase.ABORTED: "bold red",
}


def counts_table(state: RunState) -> Table:
    table = Table.grid(padding=(0, 1))
    table.add_column(min_width=9)
    table.add_column(justify="right", min_width=8)
    for s in State:
        n = state.counts.get(s, 0)
        table.add_row(Text(fmt.STATE_LABELS[s], style=fmt.STATE_STYLES[s]), fmt.count(n))
    table.add_row(Text("total", style="bold"), Text(fmt.count(state.total), style="bold"))
    return table


def progress_text(state: RunState, idle: bool = False) -> Text:
    label = "NOT RUNNING" if idle else state.phase.value.upper()
    phase = Text(f" {label} ", style=f"reverse {PHASE_STYLES[state.phase]}")
    text = Text.assemble(phase, " ")
    if not idle and state.phase in (Phase.RUNNING, Phase.PAUSED, Phase.LOADING, Phase.CANCELLING):
        text.append(f"ETA {fmt.duration(state.eta)}", style="bold")
    else:
        text.append(f"{fmt.count(state.finished)}/{fmt.count(state.total)} final", style="bold")
    text.append(f" · elapsed {fmt.duration(state.elapsed)}")
    if state.abort_reason:
        text.append(f"\n{printable(state.abort_reason)}", style="bold red")
    elif state.paused_reason:
        text.append(f"\n{printable(state.paused_reason)}", style="bold yellow")
    return text


def throughput_text(state: RunState) -> Text:
    peak = max(state.rate_history, default=0.0)
    return Text.assemble(
        ("now ", "dim"),
        (fmt.rate(state.rate), "bold"),
        (" · peak ", "dim"),
        fmt.rate(peak),
        (" · ", "dim"),
        f"{fmt.count(state.requests)} req",
    )


def headroom_text(state: RunState, width: int = 24) -> Text:
    gov = state.governor
    if gov.remaining is None:
        return Text.assemble(("headroom ", "dim"), ("no response yet", "italic"))
    fraction = gov.remaining / gov.high_water_mark if gov.high_water_mark else 0.0
    style = "green" if fraction > 0.5 else "yellow" if fraction > 0.2 else "red"
    return Text.assemble(
        ("headroom ", "dim"),
        (fmt.bar(fraction, width), style),
        f" {gov.remaining:,.0f}/{gov.high_water_mark:,.0f}",
    )


def concurrency_text(state: RunState) -> Text:
    gov = state.governor
    cap = "no cap" if gov.cap is None else f"cap {gov.cap}"
    cost = "" if gov.average_cost is None else f" · cost {gov.average_cost:.1f}"
    return Text.assemble(
        ("in flight ", "dim"),
        (str(gov.in_flight), "bold"),
        f"/{gov.limit} limit ({cap}){cost}",
    )


def pressure_text(state: RunState) -> Text:
    throttled_style = "bold red" if state.throttled_last_minute else ""
    retry_style = "bold yellow" if state.retries_last_minute else ""
    return Text.assemble(
        ("last minute: ", "dim"),
        (f"{state.throttled_last_minute} throttled", throttled_style),
        ", ",
        (f"{state.retries_last_minute} retries", retry_style),
        (f"   (run: {state.throttled} / {state.retries})", "dim"),
    )


def failures_table(state: RunState, rows: int = 7) -> Table | Text:
    items = sorted(state.failures_by_category.items(), key=lambda kv: (-kv[1], kv[0]))
    items = [(k, v) for k, v in items if v]
    if not items:
        return Text("no failures", style="green")
    table = Table.grid(padding=(0, 1))
    table.add_column(ratio=1, no_wrap=True, overflow="ellipsis")
    table.add_column(justify="right")
    shown = items if len(items) <= rows else items[: rows - 1]
    for category, n in shown:
        table.add_row(fmt.category_title(category), Text(fmt.count(n), style="red"))
    if len(shown) < len(items):
        rest = sum(n for _, n in items[len(shown) :])
        table.add_row(Text(f"{len(items) - len(shown)} more", style="dim"), fmt.count(rest))
    return table


class Dashboard(Horizontal):
    DEFAULT_CSS = """
    Dashboard {
        height: 10;
    }
    Dashboard > Vertical {
        border: round $primary 50%;
        border-title-color: $text;
        padding: 0 1;
        height: 100%;
    }
    Dashboard #counts-panel { width: 24; }
    Dashboard #progress-panel { width: 2fr; }
    Dashboard #limit-panel { width: 2fr; }
    Dashboard #failures-panel { width: 1fr; min-width: 26; }
    Dashboard ProgressBar { width: 100%; }
    Dashboard ProgressBar Bar { width: 1fr; }
    Dashboard Sparkline { height: 2; margin-top: 1; }
    Dashboard #counts { height: 6; }
    Dashboard #progress-text { height: 2; }
    Dashboard #throughput, Dashboard #headroom, Dashboard #concurrency, Dashboard #pressure {
        height: 1;
    }
    Dashboard #failures { height: 1fr; }
    """

    def __init__(self) -> None:
        super().__init__()
        self._shown: dict[str, object] = {}

    def compose(self) -> ComposeResult:
        with Vertical(id="counts-panel") as panel:
            panel.border_title = "Records"
            yield Static(id="counts")
        with Vertical(id="progress-panel") as panel:
            panel.border_title = "Progress"
            yield ProgressBar(total=1, show_eta=False, id="progress")
            yield Static(id="progress-text")
            yield Static(id="throughput")
            yield Sparkline([], id="rate-spark")
        with Vertical(id="limit-panel") as panel:
            panel.border_title = "Canvas rate limit"
            yield Static(id="headroom")
            yield Static(id="concurrency")
            yield Static(id="pressure")
            yield Sparkline([], id="remaining-spark")
        with Vertical(id="failures-panel") as panel:
            panel.border_title = "Failures by category"
            yield Static(id="failures")

    def _set(self, widget_id: str, key: object, content: Callable[[], RenderableType]) -> None:
        """Repaint one Static only when what it shows changed; sizes are fixed in CSS, so no
        layout pass is needed (a layout pass per tick was the console's largest idle cost)."""
        if self._shown.get(widget_id) == key:
            return
        self._shown[widget_id] = key
        self.query_one(f"#{widget_id}", Static).update(content(), layout=False)

    def show(self, state: RunState, *, idle: bool = False) -> None:
        """Render one snapshot; call inside `app.batch_update()`. `idle`: the journal is open
        but no run was started (triage, read-only), whatever phase the runner was left in."""
        counts = tuple(state.counts.get(s, 0) for s in State)
        self._set("counts", (counts, state.total), lambda: counts_table(state))
        bar = self.query_one("#progress", ProgressBar)
        bar.update(total=max(state.total, 1), progress=state.finished)
        progress = progress_text(state, idle)
        self._set("progress-text", progress, lambda: progress)
        throughput = throughput_text(state)
        self._set("throughput", throughput, lambda: throughput)
        headroom = headroom_text(state)
        self._set("headroom", headroom, lambda: headroom)
        concurrency = concurrency_text(state)
        self._set("concurrency", concurrency, lambda: concurrency)
        pressure = pressure_text(state)
        self._set("pressure", pressure, lambda: pressure)
        failures = tuple(sorted(state.failures_by_category.items()))
        self._set("failures", failures, lambda: failures_table(state))
        rates = list(state.rate_history) or [0.0]
        spark = self.query_one("#rate-spark", Sparkline)
        if spark.data != rates:
            spark.data = rates
        remaining = list(state.remaining_history) or [0.0]
        spark = self.query_one("#remaining-spark", Sparkline)
        if spark.data != remaining:
            spark.data = remaining
